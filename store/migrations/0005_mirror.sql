-- Mirror Intune both ways: objects read from Graph, changes made there, deletes.
-- (The sync_state CHECK gains 'changed' in Go before this runs: see allowChangedState.)

-- Graph's values while sync_state is 'changed' (the same field changed in cartclass and in
-- Intune), and the Graph property names changed on both sides (a JSON array).
ALTER TABLE associations ADD COLUMN remote_fields TEXT
    CHECK (remote_fields IS NULL OR json_valid(remote_fields));
ALTER TABLE associations ADD COLUMN conflict_fields TEXT
    CHECK (conflict_fields IS NULL OR json_valid(conflict_fields));
-- Deleted in cartclass: a tombstone kept 30 days (for the Deleted filter and Restore). Its
-- DELETE is pending while an outbox row exists.
ALTER TABLE associations ADD COLUMN deleted_at INTEGER;
ALTER TABLE associations ADD COLUMN deleted_by_sub TEXT NOT NULL DEFAULT '';
ALTER TABLE associations ADD COLUMN deleted_by_name TEXT NOT NULL DEFAULT '';
-- When graph_id was set: a listing that began before it cannot prove the object gone.
ALTER TABLE associations ADD COLUMN linked_at INTEGER;
-- When synced_fields was last written: a listing page fetched before then is older than
-- what cartclass knows, and is not applied to this row.
ALTER TABLE associations ADD COLUMN based_at INTEGER;

UPDATE associations SET linked_at = updated_at WHERE graph_id IS NOT NULL;
-- Graph ids are GUIDs, equal whatever their case: kept lower-cased from now on.
UPDATE associations SET graph_id = lower(graph_id) WHERE graph_id <> lower(graph_id);
UPDATE associations SET based_at = updated_at WHERE synced_fields IS NOT NULL;

-- The list walks only associations that are not deleted; the Deleted filter reads its few
-- rows by deletion time.
DROP INDEX associations_updated;
DROP INDEX associations_name;
CREATE INDEX associations_live_updated ON associations (updated_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX associations_live_name ON associations (display_name COLLATE NOCASE, id) WHERE deleted_at IS NULL;
CREATE INDEX associations_deleted ON associations (deleted_at) WHERE deleted_at IS NOT NULL;

-- When a DELETE was sent that may have reached Graph: if the association is restored
-- before its answer came, a later 404 is that DELETE's doing, and it is created again.
ALTER TABLE outbox ADD COLUMN delete_sent_at INTEGER;

-- The last read of Intune (one row): for the sync panel and the empty list page.
CREATE TABLE graph_reads (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    objects     INTEGER NOT NULL,
    complete    INTEGER NOT NULL CHECK (complete IN (0, 1)),
    error       TEXT    NOT NULL DEFAULT ''
);
