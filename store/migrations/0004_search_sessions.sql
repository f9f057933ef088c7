-- Search whose cost follows its matches, and sessions that carry their role.

-- Two full-text indexes over associations.search_text (still the source of truth), kept in
-- step by the triggers below so that every insert path, raw SQL included, keeps them right.
--   association_search  trigram: a phrase of 3+ characters is a substring match, case-
--                       insensitive, diacritics significant (like the lower-cased instr
--                       it replaces).
--   association_words   words, with prefix indexes of 1 and 2 characters: trigram cannot
--                       answer queries that short, so those match the start of a word.
-- Both are contentless with contentless_delete: they hold only the index (no second copy
-- of the text), and a row is removed by rowid alone, with no need to repeat its old text
-- exactly (as an external-content table would require). An INSERT OR REPLACE on
-- associations deletes the old row without firing the delete trigger, but the insert
-- trigger's INSERT then runs with the outer statement's OR REPLACE, which replaces the
-- rowid's whole entry: no stale words are left behind either way. (The triggers' INSERTs
-- are plain: OR REPLACE on every insert would write a tombstone each time, 6× slower.)
CREATE VIRTUAL TABLE association_search USING fts5 (
    search_text,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram case_sensitive 0 remove_diacritics 0'
);

CREATE VIRTUAL TABLE association_words USING fts5 (
    search_text,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0',
    prefix = '1 2'
);

CREATE TRIGGER associations_search_insert AFTER INSERT ON associations BEGIN
    INSERT INTO association_search (rowid, search_text) VALUES (new.id, new.search_text);
    INSERT INTO association_words (rowid, search_text) VALUES (new.id, new.search_text);
END;

CREATE TRIGGER associations_search_update AFTER UPDATE OF id, search_text ON associations BEGIN
    DELETE FROM association_search WHERE rowid = old.id;
    DELETE FROM association_words WHERE rowid = old.id;
    INSERT INTO association_search (rowid, search_text) VALUES (new.id, new.search_text);
    INSERT INTO association_words (rowid, search_text) VALUES (new.id, new.search_text);
END;

CREATE TRIGGER associations_search_delete AFTER DELETE ON associations BEGIN
    DELETE FROM association_search WHERE rowid = old.id;
    DELETE FROM association_words WHERE rowid = old.id;
END;

INSERT INTO association_search (rowid, search_text) SELECT id, search_text FROM associations;
INSERT INTO association_words (rowid, search_text) SELECT id, search_text FROM associations;

-- The "not synced" filter walks these in the listing's order instead of reading every row's
-- state: they hold only the rows Graph does not have yet, usually few.
CREATE INDEX associations_not_synced_updated ON associations (updated_at DESC, id DESC)
    WHERE sync_state <> 'synced';
CREATE INDEX associations_not_synced_name ON associations (display_name COLLATE NOCASE, id)
    WHERE sync_state <> 'synced';
-- Only the "not synced" filter used it, and "<> 'synced'" cannot seek in it: counting the
-- matches read every entry. The partial indexes hold just those rows.
DROP INDEX associations_sync_state;

-- The login in progress now lives in a sealed, short-lived cookie: nothing a signed-out
-- client can reach writes to the database.
DROP TABLE login_requests;

-- Sessions carry the person's display name (for the admins' Sessions page), the web layer's
-- role (opaque here) and when that role was last read from the identity provider (0: never,
-- so existing sessions are re-checked at once). Lifetimes are computed from created_at and
-- the limits configured now, so the stored absolute end goes.
ALTER TABLE sessions ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN role INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN roles_checked_at INTEGER NOT NULL DEFAULT 0;
DROP INDEX sessions_expires;
ALTER TABLE sessions DROP COLUMN expires_at;
CREATE INDEX sessions_subject ON sessions (subject);
