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
