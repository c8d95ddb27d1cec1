-- A workflow may cap how many of its jobs run at once (NULL: no cap). Changeable at run time.
ALTER TABLE workflows ADD COLUMN max_concurrent_jobs INTEGER;
