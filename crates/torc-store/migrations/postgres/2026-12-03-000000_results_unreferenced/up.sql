-- Every completion inserts a result, and PostgreSQL checks a foreign key one row at a time (a
-- lookup and a row lock on the workflow, per result): half the cost of inserting results. The
-- store checks the workflow once per commit instead, and deletes a workflow's results itself.
ALTER TABLE results DROP CONSTRAINT IF EXISTS results_workflow_id_fkey;
