CREATE INDEX jobs_workflow_status ON jobs (workflow_id, status, id);
ALTER TABLE jobs RESET (fillfactor);
