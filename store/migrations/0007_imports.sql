-- CSV imports: a preview of what an uploaded file would change, kept for the admin who
-- uploaded it until it is applied or expires (an hour). Nothing in it is saved to an
-- association before Apply, which re-checks every row in one transaction.
--   id                 26 random base32 characters (crypto/rand.Text, 130 bits): the
--                      preview's URL; also checked against owner_sub
--   owner_sub/name     who uploaded it; nobody else can see or apply it
--   file_name          the uploaded file's name, as the browser sent it (shown, never a path)
--   created_at         when the preview was made (Unix nanoseconds, UTC)
--   expires_at         when it can no longer be applied
--   applied_at         when it was applied; NULL before (kept until a day past expiry,
--                      so that a second press of Apply says "already applied", and the
--                      page of an applied or expired preview still says so)
--   new_rows … invalid_rows  the preview's counts
--   ignored            JSON array of the header's columns the import did not read
--   rows               JSON array of every data row (see store.ImportRow); unchanged rows
--                      hold only their association and its revision, for Apply's check
-- History entries of kind csv (imported from CSV) hold the file's name in history.choice.
CREATE TABLE import_previews (
    id             TEXT    PRIMARY KEY,
    owner_sub      TEXT    NOT NULL,
    owner_name     TEXT    NOT NULL DEFAULT '',
    file_name      TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    applied_at     INTEGER,
    new_rows       INTEGER NOT NULL DEFAULT 0,
    changed_rows   INTEGER NOT NULL DEFAULT 0,
    unchanged_rows INTEGER NOT NULL DEFAULT 0,
    invalid_rows   INTEGER NOT NULL DEFAULT 0,
    ignored        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(ignored)),
    rows           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(rows))
);

-- One admin's previews (only the newest few, by rowid, are kept), and the expired ones
-- (the cleanup).
CREATE INDEX import_previews_owner ON import_previews (owner_sub);
CREATE INDEX import_previews_expires ON import_previews (expires_at);
