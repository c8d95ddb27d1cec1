-- PostgreSQL only (SQLite never dropped it):
CREATE INDEX results_workflow ON results (workflow_id, id);
ALTER TABLE results DROP CONSTRAINT results_pkey;
ALTER TABLE results ADD CONSTRAINT results_pkey PRIMARY KEY (id);
ALTER TABLE jobs SET (fillfactor = 70);
ALTER TABLE job_user_data ADD CONSTRAINT job_user_data_workflow_id_fkey
    FOREIGN KEY (workflow_id) REFERENCES workflows (id) ON DELETE CASCADE;
ALTER TABLE job_files ADD CONSTRAINT job_files_workflow_id_fkey
    FOREIGN KEY (workflow_id) REFERENCES workflows (id) ON DELETE CASCADE;
ALTER TABLE job_dependencies ADD CONSTRAINT job_dependencies_workflow_id_fkey
    FOREIGN KEY (workflow_id) REFERENCES workflows (id) ON DELETE CASCADE;
ALTER TABLE jobs ADD CONSTRAINT jobs_workflow_id_fkey
    FOREIGN KEY (workflow_id) REFERENCES workflows (id) ON DELETE CASCADE;
