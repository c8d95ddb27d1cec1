DROP TABLE action_claims;
DROP TABLE action_records;
