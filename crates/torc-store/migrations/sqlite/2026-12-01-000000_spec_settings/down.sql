ALTER TABLE files DROP COLUMN st_mtime;
ALTER TABLE files DROP COLUMN identifier;
ALTER TABLE workflows DROP COLUMN config;
