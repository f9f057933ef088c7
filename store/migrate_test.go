package store

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// schema4File makes a database file as migrations 0001–0004 left it (read from the
// migrations directory, applied in order on a plain connection), runs seed in it and
// returns its path.
func schema4File(t *testing.T, seed string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("migrations", "000[1-4]_*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	if len(files) != 4 {
		t.Fatalf("migrations 0001–0004: found %v", files)
	}
	path := filepath.Join(t.TempDir(), "schema4.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, name := range files {
		body, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := db.Exec("PRAGMA user_version = 4"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(seed); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// schema4Seed holds an association in every state the previous schema knew, with the
// columns as that code wrote them (search_text lower-cased, one value a line).
const schema4Seed = `
INSERT INTO associations (id, graph_id, display_name, description, version, device_cart_ids, classroom_ids,
	graph_created_at, graph_modified_at, revision, created_at, updated_at,
	created_by_sub, created_by_name, updated_by_sub, updated_by_name, search_text,
	sync_state, sync_error, synced_revision, synced_fields) VALUES
(1, NULL, 'Waiting cart', 'never pushed', 1, '["cart-w"]', '["room-w"]', NULL, NULL, 1, 1000, 1000,
	'sub-a', 'Ada', 'sub-a', 'Ada', 'waiting cart'||char(10)||'never pushed'||char(10)||'cart-w'||char(10)||'room-w',
	'waiting', '{"status":503,"code":"ServiceUnavailable","message":"try later"}', 0, NULL),
(2, 'g-2', 'Synced cart', 'in graph', 2, '["cart-s"]', '["room-s"]', 2100, 2200, 3, 2000, 2300,
	'sub-a', 'Ada', 'sub-b', 'Bob', 'synced cart'||char(10)||'in graph'||char(10)||'cart-s'||char(10)||'room-s',
	'synced', NULL, 3, '{"displayName":"Synced cart","description":"in graph","version":2,"deviceCartIds":["cart-s"],"classroomIds":["room-s"]}'),
(3, NULL, 'Failed cart', 'refused', 3, '["cart-f"]', '[]', NULL, NULL, 1, 3000, 3000,
	'sub-b', 'Bob', 'sub-b', 'Bob', 'failed cart'||char(10)||'refused'||char(10)||'cart-f',
	'failed', '{"status":400,"code":"BadRequest","message":"displayName is too long","request_id":"r-3"}', 0, NULL),
(4, 'g-4', 'Deleted cart', 'gone in intune', 4, '[]', '["room-d"]', 4100, 4200, 2, 4000, 4300,
	'sub-a', 'Ada', 'sub-a', 'Ada', 'deleted cart'||char(10)||'gone in intune'||char(10)||'room-d',
	'deleted', '{"status":404,"code":"ResourceNotFound"}', 1, '{"displayName":"Deleted cart","description":"","version":4,"deviceCartIds":[],"classroomIds":["room-d"]}'),
(5, NULL, 'Sent cart', 'answer lost', 5, '["cart-x"]', '["room-x"]', NULL, NULL, 1, 5000, 5000,
	'sub-a', 'Ada', 'sub-a', 'Ada', 'sent cart'||char(10)||'answer lost'||char(10)||'cart-x'||char(10)||'room-x',
	'waiting', NULL, 0, NULL),
(6, 'g-6', 'Edited cart', 'patch due', 6, '["cart-e"]', '["room-e"]', 6100, 6200, 2, 6000, 6300,
	'sub-a', 'Ada', 'sub-b', 'Bob', 'edited cart'||char(10)||'patch due'||char(10)||'cart-e'||char(10)||'room-e',
	'waiting', NULL, 1, '{"displayName":"Edited cart","description":"","version":6,"deviceCartIds":["cart-e"],"classroomIds":["room-e"]}');
INSERT INTO outbox (association_id, enqueued_at, attempts, next_attempt_at, lease_owner, lease_until,
	create_sent_at, create_sent_revision, create_sent_fields) VALUES
(1, 1000, 2, 1500, NULL, NULL, NULL, NULL, NULL),
(3, 3000, 1, NULL, NULL, NULL, NULL, NULL, NULL),
(4, 4300, 1, NULL, NULL, NULL, NULL, NULL, NULL),
(5, 5000, 1, 5500, 'w-old', 5100, 5050, 1,
	'{"displayName":"Sent cart","description":"answer lost","version":5,"deviceCartIds":["cart-x"],"classroomIds":["room-x"]}'),
(6, 6300, 0, 6300, NULL, NULL, NULL, NULL, NULL);
INSERT INTO sessions (id_hash, subject, data, created_at, last_seen_at, name, role, roles_checked_at)
	VALUES (x'0a0b', 'sub-a', x'ff', 10, 20, 'Ada', 2, 30);
`

// schema4Columns are the associations columns of the previous schema.
const schema4Columns = `id, graph_id, display_name, description, version, device_cart_ids, classroom_ids,
	graph_created_at, graph_modified_at, revision, created_at, updated_at,
	created_by_sub, created_by_name, updated_by_sub, updated_by_name, search_text,
	sync_state, sync_error, synced_revision, synced_fields`

// dump reads every row of query as a list of column values.
func dump(t *testing.T, q interface {
	Query(string, ...any) (*sql.Rows, error)
}, query string) [][]any {
	t.Helper()
	rows, err := q.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	dumpAssociations = "SELECT " + schema4Columns + " FROM associations ORDER BY id"
	// Schema 4's outbox columns (0005 adds delete_sent_at, NULL for every old row).
	dumpOutbox = `SELECT association_id, enqueued_at, attempts, next_attempt_at, lease_owner, lease_until,
		create_sent_at, create_sent_revision, create_sent_fields FROM outbox ORDER BY association_id`
)

func TestMigrationFromSchema4KeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := schema4File(t, schema4Seed)
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	wantAssoc, wantOutbox := dump(t, old, dumpAssociations), dump(t, old, dumpOutbox)
	old.Close()
	if len(wantAssoc) != 6 || len(wantOutbox) != 5 {
		t.Fatalf("seed: %d associations, %d outbox rows", len(wantAssoc), len(wantOutbox))
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open over schema 4: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.Now = func() time.Time { return obT0 }

	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if want := latestMigration(t); version != want || version < 5 {
		t.Fatalf("user_version = %d, want %d", version, want)
	}
	var check string
	if err := s.write.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	if got := dump(t, s.write, dumpAssociations); !reflect.DeepEqual(got, wantAssoc) {
		t.Fatalf("associations after migration:\n got %v\nwant %v", got, wantAssoc)
	}
	if got := dump(t, s.write, dumpOutbox); !reflect.DeepEqual(got, wantOutbox) {
		t.Fatalf("outbox after migration:\n got %v\nwant %v", got, wantOutbox)
	}
	// Linked before the migration: a listing may prove them gone (linked_at), and their
	// base is as old as their last change (based_at).
	if got := dump(t, s.write, "SELECT id, linked_at, based_at FROM associations ORDER BY id"); !reflect.DeepEqual(got, [][]any{
		{int64(1), nil, nil}, {int64(2), int64(2300), int64(2300)}, {int64(3), nil, nil},
		{int64(4), int64(4300), int64(4300)}, {int64(5), nil, nil}, {int64(6), int64(6300), int64(6300)},
	}) {
		t.Fatalf("linked_at, based_at = %v", got)
	}

	// What the application reads.
	a1 := mustGet(t, s, 1)
	if a1.Sync.State != SyncWaiting || a1.Sync.Attempts != 2 || a1.Sync.NextAttemptAt.UnixNano() != 1500 ||
		a1.Sync.Error == nil || a1.Sync.Error.Status != 503 || a1.GraphID != "" || a1.CreatedBy != (Actor{"sub-a", "Ada"}) {
		t.Errorf("waiting: %+v", a1)
	}
	a2 := mustGet(t, s, 2)
	if a2.GraphID != "g-2" || a2.Sync.State != SyncSynced || a2.Sync.SyncedRevision != 3 || a2.Revision != 3 ||
		a2.GraphCreatedAt.UnixNano() != 2100 || a2.UpdatedBy != (Actor{"sub-b", "Bob"}) ||
		!a2.Fields.Equal(Fields{"Synced cart", "in graph", 2, []string{"cart-s"}, []string{"room-s"}}) {
		t.Errorf("synced: %+v", a2)
	}
	a3 := mustGet(t, s, 3)
	if a3.Sync.State != SyncFailed || !a3.Sync.NextAttemptAt.IsZero() || a3.Sync.Error == nil ||
		*a3.Sync.Error != (SyncError{Status: 400, Code: "BadRequest", Message: "displayName is too long", RequestID: "r-3"}) {
		t.Errorf("failed: %+v", a3.Sync)
	}
	a4 := mustGet(t, s, 4)
	if a4.Sync.State != SyncDeleted || a4.GraphID != "g-4" || !a4.Sync.NextAttemptAt.IsZero() {
		t.Errorf("deleted: %+v", a4.Sync)
	}
	for id := int64(1); id <= 6; id++ {
		a := mustGet(t, s, id)
		if !a.DeletedAt.IsZero() || a.DeletedBy != (Actor{}) || a.Sync.DeletePending || a.Sync.RemoteFields != nil || a.Sync.ConflictFields != nil {
			t.Errorf("association %d gained mirror state: deleted %v by %+v %+v", id, a.DeletedAt, a.DeletedBy, a.Sync)
		}
	}
	if sess, err := s.GetSession(ctx, []byte{0x0a, 0x0b}); err != nil || sess.Subject != "sub-a" || sess.Name != "Ada" || sess.Role != 2 {
		t.Errorf("session after migration: %+v, %v", sess, err)
	}

	// Listing and search.
	if got := mrIDs(t, s, ListFilter{}); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6}) {
		t.Errorf("list = %v, want all six", got)
	}
	if got := mrIDs(t, s, ListFilter{NotSynced: true}); !slices.Equal(got, []int64{1, 3, 4, 5, 6}) {
		t.Errorf("NotSynced list = %v", got)
	}
	if got := mrIDs(t, s, ListFilter{Deleted: true}); len(got) != 0 {
		t.Errorf("Deleted list = %v, want none", got)
	}
	for q, want := range map[string][]string{
		"synced cart": {"Synced cart"}, "room-w": {"Waiting cart"}, "ed": {"Edited cart"},
		"answer": {"Sent cart"}, "cart": {"Deleted cart", "Edited cart", "Failed cart", "Sent cart", "Synced cart", "Waiting cart"},
	} {
		if got := searchNames(t, s, q); !slices.Equal(got, want) {
			t.Errorf("search %q = %v, want %v", q, got, want)
		}
	}

	// The queue as it was: due in order, the lost POST remembered, parked ones parked.
	claimAt := time.Unix(0, 10_000).UTC()
	var claimed []int64
	for {
		it, err := s.ClaimOutbox(ctx, "w-new", claimAt, time.Hour)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, it.Association.ID)
		switch it.Association.ID {
		case 1:
			if it.SyncedFields != nil || it.CreateSent != nil || it.Attempts != 2 {
				t.Errorf("item 1: %+v", it)
			}
		case 5:
			want := SentCreate{At: time.Unix(0, 5050).UTC(), Revision: 1,
				Fields: Fields{"Sent cart", "answer lost", 5, []string{"cart-x"}, []string{"room-x"}}}
			if it.CreateSent == nil || !it.CreateSent.At.Equal(want.At) || it.CreateSent.Revision != 1 ||
				!it.CreateSent.Fields.Equal(want.Fields) {
				t.Errorf("item 5 create sent = %+v, want %+v", it.CreateSent, want)
			}
		case 6:
			if it.Association.GraphID != "g-6" || it.SyncedFields == nil ||
				!it.SyncedFields.Equal(Fields{"Edited cart", "", 6, []string{"cart-e"}, []string{"room-e"}}) {
				t.Errorf("item 6: graph %q synced %+v", it.Association.GraphID, it.SyncedFields)
			}
		}
	}
	if !slices.Equal(claimed, []int64{1, 5, 6}) {
		t.Fatalf("claimed %v, want 1, 5, 6 (3 failed and 4 deleted stay parked)", claimed)
	}

	// The new state through the store's own writer (the connection that migrated), and
	// through a new connection; anything else is still refused.
	if err := s.MarkChanged(ctx, 6, "w-new", obGet(t, s, 6).Revision, Fields{DisplayName: "Edited in Intune", Version: 6}, []string{"displayName"}); err != nil {
		t.Fatalf("MarkChanged after migration: %v", err)
	}
	if got := mustGet(t, s, 6); got.Sync.State != SyncChanged || got.Sync.RemoteFields == nil || got.Sync.RemoteFields.DisplayName != "Edited in Intune" {
		t.Fatalf("after MarkChanged: %+v", got.Sync)
	}
	if _, err := s.write.ExecContext(ctx, `UPDATE associations SET sync_state = 'bogus' WHERE id = 1`); err == nil ||
		!strings.Contains(err.Error(), "CHECK") {
		t.Fatalf("bogus state through the writer: %v, want a CHECK failure", err)
	}
	fresh, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.ExecContext(ctx, `UPDATE associations SET sync_state = 'changed' WHERE id = 3`); err != nil {
		t.Fatalf("'changed' on a new connection: %v", err)
	}
	if _, err := fresh.ExecContext(ctx, `UPDATE associations SET sync_state = 'bogus' WHERE id = 3`); err == nil ||
		!strings.Contains(err.Error(), "CHECK") {
		t.Fatalf("bogus state on a new connection: %v, want a CHECK failure", err)
	}
	if _, err := fresh.ExecContext(ctx, `UPDATE associations SET sync_state = 'failed' WHERE id = 3`); err != nil {
		t.Fatal(err)
	}
	if err := fresh.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after the writes = %q, %v", check, err)
	}

	// Linked before the migration, so a complete listing can prove them gone: of 2 (synced)
	// and 6 (now changed), only 6 was seen; 4 was deleted in Intune already.
	n, err := markMissing(s, ctx, []string{"g-6"}, obT0)
	if err != nil || n != 1 {
		t.Fatalf("MarkMissing = %d, %v; want 1 (association 2)", n, err)
	}
	if got := mustGet(t, s, 2); got.Sync.State != SyncDeleted {
		t.Fatalf("association 2 after MarkMissing: %s", got.Sync.State)
	}
}

// A migration that fails takes its edit of the table definition with it: the file stays
// as schema 4 left it, and opens once the obstacle is gone.
func TestMigration5FailureLeavesSchema4(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := schema4File(t, schema4Seed+"CREATE TABLE graph_reads (x);")
	if s, err := Open(ctx, path); err == nil {
		s.Close()
		t.Fatal("Open succeeded although migration 5 cannot create graph_reads")
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version int
	var def string
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != 4 {
		t.Fatalf("user_version after a failed migration = %d, %v; want 4", version, err)
	}
	if err := db.QueryRow(`SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'associations'`).Scan(&def); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(def, "'changed'") || strings.Contains(def, "deleted_at") {
		t.Fatalf("associations definition kept part of the failed migration: %s", def)
	}
	if _, err := db.Exec(`UPDATE associations SET sync_state = 'changed' WHERE id = 1`); err == nil {
		t.Fatal("'changed' accepted after a failed migration")
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	if _, err := db.Exec("DROP TABLE graph_reads"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open once the obstacle is gone: %v", err)
	}
	defer s.Close()
	if got := mustGet(t, s, 5); got.DisplayName != "Sent cart" || got.Sync.State != SyncWaiting {
		t.Fatalf("association 5 = %+v", got)
	}
}
