-- Associations as cartclass keeps them locally. The seven Graph properties sit beside
-- local bookkeeping: a revision for optimistic concurrency, local timestamps, who changed
-- the row, and where it stands with Graph. Timestamps are Unix nanoseconds (UTC).
CREATE TABLE associations (
    id                INTEGER PRIMARY KEY,
    graph_id          TEXT UNIQUE,
    display_name      TEXT    NOT NULL,
    description       TEXT    NOT NULL DEFAULT '',
    version           INTEGER NOT NULL CHECK (version BETWEEN -2147483648 AND 2147483647),
    device_cart_ids   TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(device_cart_ids)),
    classroom_ids     TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(classroom_ids)),
    graph_created_at  INTEGER,
    graph_modified_at INTEGER,
    revision          INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    created_by_sub    TEXT    NOT NULL DEFAULT '',
    created_by_name   TEXT    NOT NULL DEFAULT '',
    updated_by_sub    TEXT    NOT NULL DEFAULT '',
    updated_by_name   TEXT    NOT NULL DEFAULT '',
    -- Lower-cased name, description and ids, one per line: what the search box matches.
    search_text       TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX associations_updated ON associations (updated_at DESC, id DESC);
CREATE INDEX associations_name ON associations (display_name COLLATE NOCASE, id);
