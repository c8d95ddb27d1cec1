-- A workflow being deleted: hidden from every read at once, then its rows are deleted a chunk
-- per transaction (so that a huge workflow's delete never holds the database for long), the
-- workflow's own row last. A restart finds the workflows still marked and goes on. Keep in
-- step with the other backend.

ALTER TABLE workflows ADD COLUMN deleting BOOLEAN NOT NULL DEFAULT FALSE;
