ALTER TABLE results DROP COLUMN end_reason;
