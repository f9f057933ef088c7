-- Server-side sessions and in-flight logins. Only a hash of each random id is stored, so a
-- copy of the database does not yield working cookies; data is sealed (AES-GCM) by the web
-- layer before it gets here, because it holds the user's OAuth tokens.
CREATE TABLE sessions (
    id_hash      BLOB    PRIMARY KEY,
    subject      TEXT    NOT NULL DEFAULT '',
    data         BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_expires ON sessions (expires_at);

-- A login in progress between the redirect to the identity provider and its callback:
-- single use, keyed by a hash of the state parameter.
CREATE TABLE login_requests (
    state_hash BLOB    PRIMARY KEY,
    data       BLOB    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
