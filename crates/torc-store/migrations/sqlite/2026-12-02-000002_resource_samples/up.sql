-- Time series of resource use (resource_monitor with granularity: time_series): one row per
-- sample of a job's attempt (job_id, run_id, attempt_id set) or of a runner's node (all three
-- NULL). Written in the same commit as the report that carried them.
CREATE TABLE resource_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    job_id INTEGER,
    run_id INTEGER,
    attempt_id INTEGER,
    runner TEXT NOT NULL,
    time BIGINT NOT NULL,
    cpu_percent DOUBLE PRECISION NOT NULL,
    memory_bytes BIGINT NOT NULL,
    num_processes INTEGER NOT NULL
);

CREATE INDEX resource_samples_workflow ON resource_samples (workflow_id, job_id, id);
