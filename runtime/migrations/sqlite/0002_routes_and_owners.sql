-- One owner per HTTP route across every node: the primary key is the claim.
CREATE TABLE routes (
    route TEXT PRIMARY KEY,
    module TEXT NOT NULL
);
CREATE INDEX routes_module ON routes (module);

-- Who uploaded a version (the token's name) and its component's size, for
-- per-token storage quotas.
ALTER TABLE versions ADD COLUMN uploaded_by TEXT;
ALTER TABLE versions ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
