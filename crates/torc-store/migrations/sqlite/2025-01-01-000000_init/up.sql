-- The torc schema, SQLite flavour.
--
-- Column types are ones PostgreSQL also has (BIGINT, INTEGER, SMALLINT, TEXT, DOUBLE PRECISION,
-- BOOLEAN); only the auto-assigned keys differ (`INTEGER PRIMARY KEY AUTOINCREMENT` here, an
-- identity column there). Every child table belongs to one workflow and goes with it.
--
-- Ids of jobs, files, user data, resource requirements and failure handlers are local to their
-- workflow and 1-based, in the order of the workflow definition.

CREATE TABLE workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT,
    "user" TEXT,
    project TEXT,
    metadata TEXT,
    jobs_sort_method TEXT NOT NULL,
    state TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    num_jobs INTEGER NOT NULL,
    spec TEXT
);

CREATE TABLE resource_requirements (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    num_cpus INTEGER NOT NULL,
    memory_bytes BIGINT NOT NULL,
    num_gpus INTEGER NOT NULL,
    num_nodes INTEGER NOT NULL,
    runtime_secs DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workflow_id, id)
);

CREATE TABLE failure_handlers (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    rules TEXT NOT NULL,
    PRIMARY KEY (workflow_id, id)
);

CREATE TABLE files (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (workflow_id, id)
);

CREATE TABLE user_data (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT,
    is_ephemeral BOOLEAN NOT NULL,
    PRIMARY KEY (workflow_id, id)
);

CREATE TABLE jobs (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    command TEXT NOT NULL,
    invocation_script TEXT,
    status SMALLINT NOT NULL,
    attempt_id INTEGER NOT NULL,
    resource_requirement_id INTEGER,
    cancel_on_blocking_job_failure BOOLEAN NOT NULL,
    supports_termination BOOLEAN NOT NULL,
    failure_handler_id INTEGER,
    priority BIGINT NOT NULL,
    tags TEXT NOT NULL,
    env TEXT NOT NULL,
    timeout_secs DOUBLE PRECISION,
    scheduler TEXT,
    PRIMARY KEY (workflow_id, id)
);

-- Job counts per status and listings filtered by status.
CREATE INDEX jobs_workflow_status ON jobs (workflow_id, status, id);

CREATE TABLE job_dependencies (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    job_id INTEGER NOT NULL,
    depends_on_job_id INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, job_id, depends_on_job_id)
);

-- `position` keeps each job's list of inputs (or outputs) in the order of its definition.
CREATE TABLE job_files (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    job_id INTEGER NOT NULL,
    is_output BOOLEAN NOT NULL,
    position INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, job_id, is_output, position)
);

CREATE TABLE job_user_data (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    job_id INTEGER NOT NULL,
    is_output BOOLEAN NOT NULL,
    position INTEGER NOT NULL,
    user_data_id INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, job_id, is_output, position)
);

CREATE TABLE results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    job_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    attempt_id INTEGER NOT NULL,
    runner TEXT,
    return_code INTEGER NOT NULL,
    status SMALLINT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    exec_time_secs DOUBLE PRECISION NOT NULL,
    peak_memory_bytes BIGINT,
    avg_memory_bytes BIGINT,
    peak_cpu_percent DOUBLE PRECISION,
    avg_cpu_percent DOUBLE PRECISION,
    UNIQUE (workflow_id, job_id, run_id, attempt_id)
);

-- Listing a workflow's results in the order they were recorded.
CREATE INDEX results_workflow ON results (workflow_id, id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    time BIGINT NOT NULL,
    kind TEXT NOT NULL,
    job_id INTEGER,
    message TEXT NOT NULL
);

CREATE INDEX events_workflow ON events (workflow_id, id);
