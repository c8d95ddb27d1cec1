-- Bearer tokens created through the API (`POST /tokens`), beside those of the server's auth
-- configuration. Only the SHA-256 of a token is kept (lowercase hex); the token itself is shown
-- once, to the admin who created it. `scope_kind` is NULL (the token acts as `user`),
-- 'workflow', 'user' or 'group', and `scope_value` then names the workflow id, user or group.
-- Keep in step with `migrations/postgres`.

CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    "user" TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    scope_kind TEXT,
    scope_value TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (sha256),
    UNIQUE (name)
);
