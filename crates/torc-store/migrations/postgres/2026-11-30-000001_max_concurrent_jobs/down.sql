ALTER TABLE workflows DROP COLUMN max_concurrent_jobs;
