-- Delivery to Microsoft Graph. Every save commits its outbox row in the same transaction;
-- a worker leases rows, pushes the association's latest state (so edits coalesce) and
-- records the outcome on the association. Timestamps are Unix nanoseconds (UTC).

-- Where each association stands with Graph:
--   sync_state      waiting (queued), synced, failed (Graph rejected it; parked until an
--                   edit or Retry), deleted (a PATCH answered 404: removed in Intune; parked
--                   until Recreate)
--   sync_error      JSON {"status","code","message","request_id"} of the last Graph error
--   synced_revision the local revision Graph is known to hold (0: none yet)
--   synced_fields   JSON of the fields Graph is known to hold, the base of PATCH diffs
ALTER TABLE associations ADD COLUMN sync_state TEXT NOT NULL DEFAULT 'waiting'
    CHECK (sync_state IN ('waiting', 'synced', 'failed', 'deleted'));
ALTER TABLE associations ADD COLUMN sync_error TEXT
    CHECK (sync_error IS NULL OR json_valid(sync_error));
ALTER TABLE associations ADD COLUMN synced_revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE associations ADD COLUMN synced_fields TEXT
    CHECK (synced_fields IS NULL OR json_valid(synced_fields));

CREATE INDEX associations_sync_state ON associations (sync_state);

-- One row per association with something to push.
--   next_attempt_at  when the row is next due; NULL while parked (failed or deleted)
--   lease_owner/lease_until  the worker pushing it; a lease past lease_until may be
--                    taken over (its holder crashed or hung)
--   create_sent_at   a POST was attempted whose outcome may be unknown: before posting
--                    again, list the remote objects and adopt a match. create_sent_revision
--                    and create_sent_fields (JSON) are what that POST carried.
CREATE TABLE outbox (
    association_id       INTEGER PRIMARY KEY REFERENCES associations (id) ON DELETE CASCADE,
    enqueued_at          INTEGER NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      INTEGER,
    lease_owner          TEXT,
    lease_until          INTEGER,
    create_sent_at       INTEGER,
    create_sent_revision INTEGER,
    create_sent_fields   TEXT CHECK (create_sent_fields IS NULL OR json_valid(create_sent_fields))
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- Associations saved before the outbox existed were never pushed: queue them all. Those
-- with a graph_id get a full PATCH (synced_fields is NULL), the rest a create.
INSERT INTO outbox (association_id, enqueued_at, next_attempt_at)
    SELECT id, updated_at, updated_at FROM associations;

-- Delegated mode: each admin's OAuth tokens, so changes can be pushed as their author after
-- the session that made them has ended. data is sealed by the web layer; opaque here.
CREATE TABLE user_tokens (
    subject    TEXT    PRIMARY KEY,
    data       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
