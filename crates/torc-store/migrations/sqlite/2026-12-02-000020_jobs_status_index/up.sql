-- Every claim and every completion changes a job's status, and an index on the status turned
-- each of those row updates into an index delete and insert as well (on PostgreSQL it also ruled
-- out heap-only updates). Counting and listing a workflow's jobs by status read the workflow's
-- rows through the primary key instead; the engine keeps live counts in memory.
DROP INDEX jobs_workflow_status;
