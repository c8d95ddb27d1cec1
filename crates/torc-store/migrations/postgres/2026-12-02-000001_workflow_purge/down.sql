ALTER TABLE workflows DROP COLUMN deleting;
