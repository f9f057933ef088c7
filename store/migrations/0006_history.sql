-- Who changed what: one entry per change to an association, appended in the transaction
-- of the change it records and never updated or deleted by the application.
--   association_id  no foreign key: an entry outlives its association (a deleted one is
--                   purged after 30 days), so it keeps the association's display_name as
--                   it was after the change. The store never gives a new association
--                   an id that has history (see nextAssociationID)
--   at              when (Unix nanoseconds, UTC)
--   kind            created, edited, deleted, restored, imported (read from Intune), taken
--                   (changed in Intune, taken by a read), resolved (a conflict settled),
--                   removed (Remove from cartclass), recreated (Re-create in Intune). Not a
--                   CHECK: SQLite cannot loosen one in place, and kinds will be added (the
--                   store writes only its own constants)
--   choice          for resolved: keep-intune or push-mine; empty otherwise
--   actor_sub/name  who: the identity provider's subject and name; "Intune" or "Imported
--                   from Intune" (no subject) for changes read from Graph
--   revision        the association's revision after the change
--   changes         JSON array, per field (Graph's name) either {"field","old","new"} or,
--                   for id lists, {"field","added","removed"}
CREATE TABLE history (
    id             INTEGER PRIMARY KEY,
    association_id INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    choice         TEXT    NOT NULL DEFAULT '',
    actor_sub      TEXT    NOT NULL DEFAULT '',
    actor_name     TEXT    NOT NULL DEFAULT '',
    revision       INTEGER NOT NULL,
    display_name   TEXT    NOT NULL,
    changes        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(changes) AND json_type(changes) = 'array')
);

-- One association's history, newest first (the detail page), and everyone's (the
-- activity log).
CREATE INDEX history_association ON history (association_id, at DESC, id DESC);
CREATE INDEX history_at ON history (at DESC, id DESC);
-- One person's entries, newest first (the activity log's person filter, which matches a
-- subject exactly or a name in any case: one index each).
CREATE INDEX history_actor_sub ON history (actor_sub, at DESC, id DESC);
CREATE INDEX history_actor_name ON history (actor_name COLLATE NOCASE, at DESC, id DESC);

-- The Graph requests made for an association, beside its history: one row per request
-- the push worker sent for it (and the GETs a read of Intune sends to confirm one is gone;
-- not the pages of a listing, which are for no association in particular). Appended,
-- never updated; only the newest graphRequestsKept (50) of an association are kept (the
-- trigger below). No foreign keys, like history: the rows outlive their association.
--   history_id         the association's newest history entry at or before revision (the
--                      change the request delivered); 0 when it has none
--   revision           the association's revision the request was made for
--   at                 when the request was sent (Unix nanoseconds, UTC)
--   status             the HTTP status answered; 0 when no answer came back
--   duration_ns        from sending until the answer was read (or the exchange failed)
--   request_id         Graph's request-id; empty without an answer
--   client_request_id  the client-request-id cartclass sent
--   code               Graph's error code when it answered with an error
CREATE TABLE graph_requests (
    id                INTEGER PRIMARY KEY,
    association_id    INTEGER NOT NULL,
    history_id        INTEGER NOT NULL DEFAULT 0,
    revision          INTEGER NOT NULL DEFAULT 0,
    at                INTEGER NOT NULL,
    method            TEXT    NOT NULL,
    status            INTEGER NOT NULL DEFAULT 0,
    duration_ns       INTEGER NOT NULL DEFAULT 0,
    request_id        TEXT    NOT NULL DEFAULT '',
    client_request_id TEXT    NOT NULL DEFAULT '',
    code              TEXT    NOT NULL DEFAULT ''
);

-- One association's requests, newest first (the detail page, and the trigger's bound).
CREATE INDEX graph_requests_association ON graph_requests (association_id, id DESC);

-- Keeps the newest 50 requests of an association: part of the INSERT that adds one, so
-- the bound holds at every moment without a job to schedule, and the writer is taken
-- once per request. It costs one seek into the index above and usually deletes one row.
CREATE TRIGGER graph_requests_keep AFTER INSERT ON graph_requests BEGIN
    DELETE FROM graph_requests WHERE association_id = NEW.association_id AND id <= (
        SELECT id FROM graph_requests WHERE association_id = NEW.association_id
        ORDER BY id DESC LIMIT 1 OFFSET 50);
END;
