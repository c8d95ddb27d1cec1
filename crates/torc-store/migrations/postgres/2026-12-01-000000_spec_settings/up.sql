-- Workflow-level settings from the spec (execution_config, resource_monitor, slurm_schedulers,
-- slurm_defaults, actions, compute_node_*) and the jobs' own stdio settings, as one JSON
-- document; NULL: the defaults. (The jobs table is at the 16 columns diesel supports without
-- its slower wide-table feature, and few jobs have a stdio of their own.)
ALTER TABLE workflows ADD COLUMN config TEXT;
-- A file's identifier and modification time, as the spec gives them.
ALTER TABLE files ADD COLUMN identifier TEXT;
ALTER TABLE files ADD COLUMN st_mtime DOUBLE PRECISION;
