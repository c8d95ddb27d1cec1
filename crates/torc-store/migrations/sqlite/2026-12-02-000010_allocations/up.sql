-- Allocations (batch jobs) requested for a workflow's schedulers, from request to end.
CREATE TABLE allocations (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    record_id INTEGER NOT NULL,
    scheduler TEXT NOT NULL,
    batch_id BIGINT,
    state TEXT NOT NULL,
    executor TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    note TEXT NOT NULL,
    PRIMARY KEY (workflow_id, id)
);
