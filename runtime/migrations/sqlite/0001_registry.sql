-- Module versions are content-addressed: a component's bytes are stored once.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);

CREATE TABLE modules (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    active_version TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE versions (
    module TEXT NOT NULL REFERENCES modules(name) ON DELETE CASCADE,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs(sha256),
    manifest TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (module, version)
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    module TEXT NOT NULL,
    version TEXT,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_module_at ON audit (module, at);
