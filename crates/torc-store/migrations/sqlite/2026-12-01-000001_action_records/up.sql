-- Workflow actions that fired (one record each, numbered per workflow from 1) and the executors
-- that claimed them. A record and the job changes that fired it are committed together.
CREATE TABLE action_records (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    action_index INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    triggered_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, id)
);

CREATE TABLE action_claims (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    record_id INTEGER NOT NULL,
    executor TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, record_id, executor)
);
