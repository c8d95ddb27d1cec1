-- A creation writes a row per job (and per dependency, file and user-data edge), and PostgreSQL
-- checks a foreign key with a query per row: half of the time of creating a 100,000-job
-- workflow. The store writes these rows only in the transaction that creates their workflow,
-- and deletes them itself (as it does results, see `results_unreferenced`).
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_workflow_id_fkey;
ALTER TABLE job_dependencies DROP CONSTRAINT IF EXISTS job_dependencies_workflow_id_fkey;
ALTER TABLE job_files DROP CONSTRAINT IF EXISTS job_files_workflow_id_fkey;
ALTER TABLE job_user_data DROP CONSTRAINT IF EXISTS job_user_data_workflow_id_fkey;
-- A job's row is updated twice (claimed, then ended). At 70 % full, two in five of those
-- updates found no room on the row's page: a new tuple elsewhere, an entry in the primary key
-- and, later, the index's clean-up of the dead ones. At 50 % nearly all are in-page (HOT)
-- updates, for a table about 40 % larger on disk.
ALTER TABLE jobs SET (fillfactor = 50);
-- Results keyed by (workflow, id): the key serves the listing of a workflow's results in
-- order, which had an index of its own: one index fewer to write per result.
ALTER TABLE results DROP CONSTRAINT results_pkey;
ALTER TABLE results ADD CONSTRAINT results_pkey PRIMARY KEY (workflow_id, id);
-- PostgreSQL only (SQLite keys results by rowid and keeps this index):
DROP INDEX results_workflow;
