-- Classes read from Graph, and the carts and classrooms the associations list: for the
-- Carts and Classrooms pages, and for the form's suggestions and warnings.
--
-- Every table here but classes and class_reads is derived, kept by triggers so that every
-- write, raw SQL included, keeps it right; the associations' JSON arrays stay the source
-- of truth. The triggers avoid conflicts rather than resolve them: a trigger's INSERT runs
-- with the conflict policy of the statement that fired it (an INSERT OR REPLACE), so an
-- OR IGNORE written here could become a REPLACE.

-- Education classes as the last complete read of Graph found them (ReplaceClasses
-- replaces them all in one transaction).
--   n            the rowid, named so that VACUUM keeps it (class_search and rooms refer
--                to classes by it)
--   id           Graph's class id, as Graph sent it. Unique and matched regardless of case
--                (NOCASE: the ids are GUIDs, and classroomIds are typed by admins)
--   display_name, class_code, external_id  Graph's displayName, classCode and externalId
--                ('' when Graph has none)
--   name_key, code_key  display_name and class_code lower-cased by the store (Unicode,
--                which SQLite's lower() is not): what queries match, and the name order
CREATE TABLE classes (
    n            INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT    NOT NULL DEFAULT '',
    class_code   TEXT    NOT NULL DEFAULT '',
    external_id  TEXT    NOT NULL DEFAULT '',
    name_key     TEXT    NOT NULL DEFAULT '',
    code_key     TEXT    NOT NULL DEFAULT ''
);

-- Name order (the Classrooms page, suggestions), and the suggestions' prefix matches: a
-- range of either key, the code's index covering what the name order needs.
CREATE UNIQUE INDEX classes_name ON classes (name_key, id);
CREATE INDEX classes_code ON classes (code_key, name_key, id);

-- Full-text indexes over each class, for suggestions that are not prefixes, contentless
-- like association_search (0004):
--   class_search  trigram over the name, code and id (one a line, so that no match spans
--                 two): a query of 3+ characters is a substring, case folded
--   class_words   the words of the name and code, with prefix indexes of 1 and 2
--                 characters: shorter queries match the start of a word (not of the id,
--                 where 1 or 2 hex digits would match a fifth of all classes)
CREATE VIRTUAL TABLE class_search USING fts5 (
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram case_sensitive 0 remove_diacritics 0'
);

CREATE VIRTUAL TABLE class_words USING fts5 (
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0',
    prefix = '1 2'
);

-- When classes were last read from Graph (one row; none before the first read).
CREATE TABLE class_reads (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    read_at INTEGER NOT NULL
);

-- The device cart ids and the classroom ids of every live association (deleted_at IS
-- NULL), one row per id and association: the JSON arrays as tables that can be indexed.
-- Ids are as stored (Intune's are case-sensitive); only the arrays' strings are taken,
-- each once.
--   association_id  the association. The foreign key (with foreign_keys on, as on every
--                   connection of the store) also removes the rows of an association
--                   that an OR REPLACE deletes over its graph_id, which fires no trigger
-- The primary keys serve an id's associations; the second indexes an association's ids.
CREATE TABLE association_carts (
    cart_id        TEXT    NOT NULL,
    association_id INTEGER NOT NULL REFERENCES associations (id) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (cart_id, association_id)
) WITHOUT ROWID;
CREATE INDEX association_carts_association ON association_carts (association_id);

CREATE TABLE association_rooms (
    classroom_id   TEXT    NOT NULL,
    association_id INTEGER NOT NULL REFERENCES associations (id) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (classroom_id, association_id)
) WITHOUT ROWID;
CREATE INDEX association_rooms_association ON association_rooms (association_id);

-- The distinct ids of the two tables above: each id once, however many associations list
-- it (the pages list ids, and a scan of these reads each once).
--   class_n  the class whose id the classroom id is, regardless of case (classes.n);
--            NULL when it is none
-- Ids sort ignoring case, then exactly (the _nocase indexes: also case-insensitive
-- prefix ranges). The Classrooms page walks classes by name, and rooms by class_n.
CREATE TABLE carts (
    cart_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE INDEX carts_nocase ON carts (cart_id COLLATE NOCASE, cart_id);

CREATE TABLE rooms (
    classroom_id TEXT PRIMARY KEY,
    class_n      INTEGER
) WITHOUT ROWID;
CREATE INDEX rooms_nocase ON rooms (classroom_id COLLATE NOCASE, classroom_id);
CREATE INDEX rooms_class ON rooms (class_n, classroom_id COLLATE NOCASE, classroom_id);

-- classes → class_search, class_words, rooms.class_n
CREATE TRIGGER classes_insert AFTER INSERT ON classes BEGIN
    INSERT INTO class_search (rowid, text)
        VALUES (new.n, new.display_name || char(10) || new.class_code || char(10) || new.id);
    INSERT INTO class_words (rowid, text) VALUES (new.n, new.display_name || char(10) || new.class_code);
    UPDATE rooms SET class_n = new.n WHERE classroom_id = new.id COLLATE NOCASE;
END;

CREATE TRIGGER classes_update AFTER UPDATE OF n, id, display_name, class_code ON classes BEGIN
    DELETE FROM class_search WHERE rowid = old.n;
    DELETE FROM class_words WHERE rowid = old.n;
    INSERT INTO class_search (rowid, text)
        VALUES (new.n, new.display_name || char(10) || new.class_code || char(10) || new.id);
    INSERT INTO class_words (rowid, text) VALUES (new.n, new.display_name || char(10) || new.class_code);
    UPDATE rooms SET class_n = NULL WHERE class_n = old.n;
    UPDATE rooms SET class_n = new.n WHERE classroom_id = new.id COLLATE NOCASE;
END;

CREATE TRIGGER classes_delete AFTER DELETE ON classes BEGIN
    DELETE FROM class_search WHERE rowid = old.n;
    DELETE FROM class_words WHERE rowid = old.n;
    UPDATE rooms SET class_n = NULL WHERE class_n = old.n;
END;

-- associations → association_carts, association_rooms. An INSERT OR REPLACE over an
-- existing id deletes the old row without firing the delete trigger: the insert trigger
-- clears the id's rows first. The update trigger clears both ids, for an UPDATE OR
-- REPLACE that moves a row onto another's id; an UPDATE that sets the arrays to what they
-- were (every edit sets them) changes nothing here.
CREATE TRIGGER associations_links_insert AFTER INSERT ON associations BEGIN
    DELETE FROM association_carts WHERE association_id = new.id;
    DELETE FROM association_rooms WHERE association_id = new.id;
    INSERT INTO association_carts (cart_id, association_id)
        SELECT DISTINCT value, new.id FROM json_each(new.device_cart_ids)
        WHERE type = 'text' AND new.deleted_at IS NULL;
    INSERT INTO association_rooms (classroom_id, association_id)
        SELECT DISTINCT value, new.id FROM json_each(new.classroom_ids)
        WHERE type = 'text' AND new.deleted_at IS NULL;
END;

CREATE TRIGGER associations_links_update AFTER UPDATE OF id, device_cart_ids, classroom_ids, deleted_at ON associations
    WHEN old.id IS NOT new.id
        OR old.device_cart_ids IS NOT new.device_cart_ids
        OR old.classroom_ids IS NOT new.classroom_ids
        OR (old.deleted_at IS NULL) <> (new.deleted_at IS NULL)
BEGIN
    DELETE FROM association_carts WHERE association_id IN (old.id, new.id);
    DELETE FROM association_rooms WHERE association_id IN (old.id, new.id);
    INSERT INTO association_carts (cart_id, association_id)
        SELECT DISTINCT value, new.id FROM json_each(new.device_cart_ids)
        WHERE type = 'text' AND new.deleted_at IS NULL;
    INSERT INTO association_rooms (classroom_id, association_id)
        SELECT DISTINCT value, new.id FROM json_each(new.classroom_ids)
        WHERE type = 'text' AND new.deleted_at IS NULL;
END;

CREATE TRIGGER associations_links_delete AFTER DELETE ON associations BEGIN
    DELETE FROM association_carts WHERE association_id = old.id;
    DELETE FROM association_rooms WHERE association_id = old.id;
END;

-- association_carts → carts, association_rooms → rooms: an id is added with its first
-- association and removed with its last. (These fire for the foreign keys' cascades too.)
CREATE TRIGGER association_carts_insert AFTER INSERT ON association_carts BEGIN
    INSERT INTO carts (cart_id) SELECT new.cart_id
        WHERE NOT EXISTS (SELECT 1 FROM carts WHERE cart_id = new.cart_id);
END;

CREATE TRIGGER association_carts_update AFTER UPDATE OF cart_id ON association_carts BEGIN
    DELETE FROM carts WHERE cart_id = old.cart_id
        AND NOT EXISTS (SELECT 1 FROM association_carts WHERE cart_id = old.cart_id);
    INSERT INTO carts (cart_id) SELECT new.cart_id
        WHERE NOT EXISTS (SELECT 1 FROM carts WHERE cart_id = new.cart_id);
END;

CREATE TRIGGER association_carts_delete AFTER DELETE ON association_carts BEGIN
    DELETE FROM carts WHERE cart_id = old.cart_id
        AND NOT EXISTS (SELECT 1 FROM association_carts WHERE cart_id = old.cart_id);
END;

CREATE TRIGGER association_rooms_insert AFTER INSERT ON association_rooms BEGIN
    INSERT INTO rooms (classroom_id, class_n)
        SELECT new.classroom_id, (SELECT n FROM classes WHERE id = new.classroom_id)
        WHERE NOT EXISTS (SELECT 1 FROM rooms WHERE classroom_id = new.classroom_id);
END;

CREATE TRIGGER association_rooms_update AFTER UPDATE OF classroom_id ON association_rooms BEGIN
    DELETE FROM rooms WHERE classroom_id = old.classroom_id
        AND NOT EXISTS (SELECT 1 FROM association_rooms WHERE classroom_id = old.classroom_id);
    INSERT INTO rooms (classroom_id, class_n)
        SELECT new.classroom_id, (SELECT n FROM classes WHERE id = new.classroom_id)
        WHERE NOT EXISTS (SELECT 1 FROM rooms WHERE classroom_id = new.classroom_id);
END;

CREATE TRIGGER association_rooms_delete AFTER DELETE ON association_rooms BEGIN
    DELETE FROM rooms WHERE classroom_id = old.classroom_id
        AND NOT EXISTS (SELECT 1 FROM association_rooms WHERE classroom_id = old.classroom_id);
END;

-- The associations there are now (the triggers above fill carts and rooms).
INSERT INTO association_carts (cart_id, association_id)
    SELECT DISTINCT j.value, a.id FROM associations AS a, json_each(a.device_cart_ids) AS j
    WHERE j.type = 'text' AND a.deleted_at IS NULL;
INSERT INTO association_rooms (classroom_id, association_id)
    SELECT DISTINCT j.value, a.id FROM associations AS a, json_each(a.classroom_ids) AS j
    WHERE j.type = 'text' AND a.deleted_at IS NULL;
