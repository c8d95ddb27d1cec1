-- Why a runner ended an attempt itself, as JSON: {"reason": memory|timeout|allocation_end|
-- shutdown|canceled|runner_error, "message": text for people}; NULL for attempts that ended on
-- their own. One column: diesel's tables hold 16 at most.
ALTER TABLE results ADD COLUMN end_reason TEXT;
