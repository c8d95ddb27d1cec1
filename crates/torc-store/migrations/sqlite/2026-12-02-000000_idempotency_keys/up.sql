-- Keys of workflow creations that may be retried (`Idempotency-Key`): a creation sent again
-- with the same key by the same user gets the workflow the first one made. `request_sha256`
-- is the SHA-256 of what was sent (format and spec), so that a key reused for another request
-- is refused. A key lives as long as its workflow. Keep in step with the other backend.

CREATE TABLE idempotency_keys (
    "user" TEXT NOT NULL,
    key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY ("user", key)
);

CREATE INDEX idempotency_keys_workflow ON idempotency_keys (workflow_id);
