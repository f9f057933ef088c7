package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// clAssoc creates an association of the given carts and classrooms.
func clAssoc(t *testing.T, s *Store, name string, carts, rooms []string) Association {
	t.Helper()
	return mustCreate(t, s, Fields{DisplayName: name, Version: 1, DeviceCartIDs: carts, ClassroomIDs: rooms})
}

// clExec runs raw SQL through the store's writer (foreign_keys on, like every store
// connection).
func clExec(t *testing.T, s *Store, query string, args ...any) {
	t.Helper()
	if _, err := s.exec(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// clLinks is what the derived tables hold, each row as a string, sorted.
type clLinks struct {
	Carts, Rooms          []string // "cart-id #association"
	CartIDs, ClassroomIDs []string // the distinct ids; a classroom's with "→ class n" when it is a class's
}

func clRead(t *testing.T, db interface {
	Query(string, ...any) (*sql.Rows, error)
}) clLinks {
	t.Helper()
	strs := func(query string) []string {
		var out []string
		for _, r := range dump(t, db, query) {
			parts := make([]string, len(r))
			for i, v := range r {
				parts[i] = fmt.Sprint(v)
			}
			out = append(out, strings.Join(parts, " "))
		}
		slices.Sort(out)
		return out
	}
	return clLinks{
		Carts:        strs("SELECT cart_id, '#' || association_id FROM association_carts"),
		Rooms:        strs("SELECT classroom_id, '#' || association_id FROM association_rooms"),
		CartIDs:      strs("SELECT cart_id FROM carts"),
		ClassroomIDs: strs("SELECT classroom_id, coalesce('→ class ' || class_n, '') FROM rooms"),
	}
}

// clExpected computes what the derived tables should hold from the source: the live
// associations' JSON arrays (their strings, each once) and the classes' ids (equal when
// they differ in ASCII case only, as NOCASE compares).
func clExpected(t *testing.T, db interface {
	Query(string, ...any) (*sql.Rows, error)
}) clLinks {
	t.Helper()
	classOf := map[string]int64{}
	for _, r := range dump(t, db, "SELECT id, n FROM classes") {
		classOf[asciiLower(r[0].(string))] = r[1].(int64)
	}
	var want clLinks
	carts, rooms := map[string]bool{}, map[string]bool{}
	for _, r := range dump(t, db, "SELECT id, device_cart_ids, classroom_ids FROM associations WHERE deleted_at IS NULL") {
		id := r[0].(int64)
		for i, list := range []any{r[1], r[2]} {
			var vals []any
			if err := json.Unmarshal([]byte(list.(string)), &vals); err != nil {
				t.Fatalf("association %d: %v", id, err)
			}
			seen := map[string]bool{}
			for _, v := range vals {
				str, ok := v.(string)
				if !ok || seen[str] {
					continue
				}
				seen[str] = true
				row := fmt.Sprintf("%s #%d", str, id)
				if i == 0 {
					want.Carts, carts[str] = append(want.Carts, row), true
				} else {
					want.Rooms, rooms[str] = append(want.Rooms, row), true
				}
			}
		}
	}
	for c := range carts {
		want.CartIDs = append(want.CartIDs, c)
	}
	for r := range rooms {
		class := ""
		if n, ok := classOf[asciiLower(r)]; ok {
			class = fmt.Sprintf("→ class %d", n)
		}
		want.ClassroomIDs = append(want.ClassroomIDs, r+" "+class)
	}
	for _, l := range []*[]string{&want.Carts, &want.Rooms, &want.CartIDs, &want.ClassroomIDs} {
		slices.Sort(*l)
	}
	return want
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// clInStep fails unless the derived tables hold what the associations and classes say.
func clInStep(t *testing.T, s *Store, step string) clLinks {
	t.Helper()
	got, want := clRead(t, s.read), clExpected(t, s.read)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after %s:\n got %+v\nwant %+v", step, got, want)
	}
	return got
}

func TestLinksFollowEveryWrite(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()

	a := clAssoc(t, s, "Alpha", []string{"cart-1", "cart-2", "cart-1"}, []string{"room-1"})
	b := clAssoc(t, s, "Beta", []string{"cart-2"}, []string{"room-1", "ROOM-1"})
	got := clInStep(t, s, "create")
	// Written out once, so that the check above is not only the two sides agreeing.
	if want := []string{"cart-1 #1", "cart-2 #1", "cart-2 #2"}; !slices.Equal(got.Carts, want) {
		t.Fatalf("association_carts = %q, want %q", got.Carts, want)
	}
	if want := []string{"ROOM-1 ", "room-1 "}; !slices.Equal(got.ClassroomIDs, want) {
		t.Fatalf("rooms = %q, want %q", got.ClassroomIDs, want)
	}

	a, err := s.UpdateAssociation(ctx, a.ID, a.Revision, Fields{DisplayName: "Alpha", Version: 1,
		DeviceCartIDs: []string{"cart-3"}, ClassroomIDs: []string{"room-2"}}, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if got := clInStep(t, s, "edit"); !slices.Equal(got.CartIDs, []string{"cart-2", "cart-3"}) {
		t.Fatalf("carts after edit = %q: cart-1 has no association left", got.CartIDs)
	}
	a = obUpdate(t, s, a.ID, "only the description")
	clInStep(t, s, "an edit that leaves the ids")

	mrDelete(t, s, a.ID)
	if got := clInStep(t, s, "delete"); !slices.Equal(got.Carts, []string{"cart-2 #2"}) {
		t.Fatalf("association_carts after delete = %q", got.Carts)
	}
	if _, err := s.RestoreAssociation(ctx, a.ID, mrAdmin); err != nil {
		t.Fatal(err)
	}
	if got := clInStep(t, s, "restore"); !slices.Contains(got.Carts, "cart-3 #1") {
		t.Fatalf("association_carts after restore = %q", got.Carts)
	}
	mrDelete(t, s, a.ID) // never pushed: nothing to send, purged at once below
	*now = now.Add(time.Hour)
	if n, err := s.PurgeDeleted(ctx, *now); err != nil || n != 1 {
		t.Fatalf("PurgeDeleted = %d, %v", n, err)
	}
	clInStep(t, s, "purge")

	// Raw SQL: values other than strings are not ids.
	clExec(t, s, `INSERT INTO associations (id, graph_id, display_name, version, created_at, updated_at, device_cart_ids, classroom_ids)
		VALUES (100, 'g-100', 'Raw', 1, 1, 1, '["x-1", 5, null, {"k": "v"}, ["n"], "x-1"]', '["room-1"]')`)
	if got := clInStep(t, s, "raw insert"); !slices.Contains(got.Carts, "x-1 #100") || len(got.Carts) != 2 {
		t.Fatalf("association_carts after raw insert = %q", got.Carts)
	}
	clExec(t, s, `UPDATE associations SET device_cart_ids = '["x-2"]' WHERE id = 100`)
	clInStep(t, s, "raw update of the carts")
	clExec(t, s, `UPDATE associations SET deleted_at = 5 WHERE id = 100`)
	clInStep(t, s, "raw tombstone")
	clExec(t, s, `UPDATE associations SET deleted_at = NULL, classroom_ids = '["room-9"]' WHERE id = 100`)
	clInStep(t, s, "raw restore")
	clExec(t, s, `UPDATE associations SET id = 101 WHERE id = 100`)
	if got := clInStep(t, s, "raw change of id"); !slices.Contains(got.Carts, "x-2 #101") {
		t.Fatalf("association_carts after the id changed = %q", got.Carts)
	}
	clExec(t, s, `INSERT OR REPLACE INTO associations (id, graph_id, display_name, version, created_at, updated_at, device_cart_ids)
		VALUES (101, 'g-101', 'Replaced', 1, 2, 2, '["x-3"]')`)
	if got := clInStep(t, s, "INSERT OR REPLACE over the id"); slices.Contains(got.CartIDs, "x-2") {
		t.Fatalf("carts after INSERT OR REPLACE = %q", got.CartIDs)
	}
	// Over another row's graph_id: the replaced row (101) goes by the foreign keys.
	clExec(t, s, `INSERT OR REPLACE INTO associations (id, graph_id, display_name, version, created_at, updated_at, device_cart_ids)
		VALUES (102, 'g-101', 'Replaced again', 1, 3, 3, '["x-4"]')`)
	if got := clInStep(t, s, "INSERT OR REPLACE over the graph id"); slices.Contains(got.CartIDs, "x-3") {
		t.Fatalf("carts after INSERT OR REPLACE over the graph id = %q", got.CartIDs)
	}
	// Onto another row's id: b goes, 102's ids follow it.
	clExec(t, s, `UPDATE OR REPLACE associations SET id = ? WHERE id = 102`, b.ID)
	if got := clInStep(t, s, "UPDATE OR REPLACE onto another id"); !slices.Equal(got.Carts, []string{fmt.Sprintf("x-4 #%d", b.ID)}) {
		t.Fatalf("association_carts after UPDATE OR REPLACE = %q", got.Carts)
	}
	// A tool's connection, without foreign keys: the triggers alone.
	var seq int
	var schema, path string
	if err := s.read.QueryRowContext(ctx, "PRAGMA database_list").Scan(&seq, &schema, &path); err != nil {
		t.Fatal(err)
	}
	tool, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	for _, step := range []struct {
		query string
		gone  []string // cart and classroom ids no longer listed
	}{
		{`INSERT INTO associations (id, display_name, version, created_at, updated_at, device_cart_ids, classroom_ids)
			VALUES (200, 'Tool', 1, 1, 1, '["t-1"]', '["t-room"]')`, nil},
		{`INSERT OR REPLACE INTO associations (id, display_name, version, created_at, updated_at, device_cart_ids)
			VALUES (200, 'Tool again', 1, 1, 1, '["t-2"]')`, []string{"t-1", "t-room"}},
		{`INSERT INTO associations (id, display_name, version, created_at, updated_at, device_cart_ids)
			VALUES (201, 'Tool 2', 1, 1, 1, '["t-3"]')`, nil},
		{`UPDATE OR REPLACE associations SET id = 200 WHERE id = 201`, []string{"t-2"}},
	} {
		if _, err := tool.ExecContext(ctx, step.query); err != nil {
			t.Fatalf("%s: %v", step.query, err)
		}
		got := clInStep(t, s, step.query)
		for _, id := range step.gone {
			if slices.Contains(got.CartIDs, id) || slices.Contains(got.ClassroomIDs, id+" ") {
				t.Fatalf("after %s, %s is still listed: %+v", step.query, id, got)
			}
		}
	}
	clExec(t, s, `DELETE FROM associations`)
	if got := clInStep(t, s, "raw delete"); len(got.Carts)+len(got.Rooms)+len(got.CartIDs)+len(got.ClassroomIDs) != 0 {
		t.Fatalf("after deleting every association: %+v", got)
	}
}

// Classes and classroom ids meet whatever the order they arrive in, and whatever the case.
func TestRoomsFollowClasses(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	clAssoc(t, s, "A", []string{"c"}, []string{"guid-a", "GUID-B", "room 7"})
	if err := s.ReplaceClasses(ctx, []Class{{ID: "GUID-A", DisplayName: "Art"}, {ID: "guid-b", DisplayName: "Biology"}}); err != nil {
		t.Fatal(err)
	}
	if got := clInStep(t, s, "classes after rooms"); strings.Contains(got.ClassroomIDs[2], "class") ||
		!strings.Contains(got.ClassroomIDs[0], "class") || !strings.Contains(got.ClassroomIDs[1], "class") {
		t.Fatalf("rooms = %q, want GUID-B and guid-a with a class, room 7 without", got.ClassroomIDs)
	}
	clAssoc(t, s, "B", []string{"c"}, []string{"Guid-A"})
	clInStep(t, s, "a room after its class")
	if err := s.ReplaceClasses(ctx, []Class{{ID: "Guid-B", DisplayName: "Biology"}, {ID: "room 7", DisplayName: "Seven"}}); err != nil {
		t.Fatal(err)
	}
	clInStep(t, s, "classes replaced")
	clExec(t, s, `UPDATE classes SET id = 'other' WHERE id = 'room 7'`)
	clInStep(t, s, "raw change of a class id")
	clExec(t, s, `DELETE FROM classes`)
	clInStep(t, s, "raw delete of the classes")
}

// schema7File makes a database file as migrations 0001–0007 left it (schema5File's, then
// 0006 and 0007), then runs seed in it.
func schema7File(t *testing.T, seed string) string {
	t.Helper()
	path := schema5File(t, "")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, name := range []string{"0006_history.sql", "0007_imports.sql"} {
		body, err := os.ReadFile(filepath.Join("migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, q := range []string{"PRAGMA user_version = 7", seed} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("schema 7: %v", err)
		}
	}
	return path
}

func TestMigration8BackfillsLinks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// schema4Seed's six associations, and: a tombstone, one listing a cart twice and a
	// number, one sharing a cart and a room in another case.
	path := schema7File(t, `
		INSERT INTO associations (id, display_name, version, device_cart_ids, classroom_ids, created_at, updated_at, deleted_at)
		VALUES (10, 'Deleted', 1, '["cart-gone"]', '["room-gone"]', 1, 1, 5),
			(11, 'Twice', 1, '["cart-t", "cart-t", 7]', '["Room-S"]', 1, 1, NULL),
			(12, 'Shared', 1, '["cart-s", "cart-t"]', '["room-s"]', 1, 1, NULL);`)
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	wantAssoc := dump(t, old, "SELECT * FROM associations ORDER BY id")
	old.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open over schema 7: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version < 8 {
		t.Fatalf("user_version = %d, %v", version, err)
	}
	if got := dump(t, s.write, "SELECT * FROM associations ORDER BY id"); !reflect.DeepEqual(got, wantAssoc) {
		t.Fatalf("associations changed by the migration:\n got %v\nwant %v", got, wantAssoc)
	}
	got := clInStep(t, s, "migration")
	wantCarts := []string{"cart-e #6", "cart-f #3", "cart-s #12", "cart-s #2", "cart-t #11", "cart-t #12",
		"cart-w #1", "cart-x #5"}
	if !slices.Equal(got.Carts, wantCarts) {
		t.Fatalf("association_carts = %q, want %q", got.Carts, wantCarts)
	}
	entries, total, err := s.ListCarts(ctx, "", 1, 50)
	if err != nil || total != 6 || len(entries) != 6 {
		t.Fatalf("ListCarts = %d of %d, %v", len(entries), total, err)
	}
	if e := entries[2]; e.CartID != "cart-s" || !slices.Equal(e.Classrooms, []string{"room-s"}) ||
		!slices.Equal(e.Associations, []AssociationRef{{12, "Shared"}, {2, "Synced cart"}}) {
		t.Fatalf("cart-s = %+v", e)
	}
	var check string
	if err := s.write.QueryRowContext(ctx, "PRAGMA foreign_key_check").Scan(&check); err != sql.ErrNoRows {
		t.Fatalf("foreign_key_check: %q, %v", check, err)
	}
}

func TestReplaceClassesReplacesAll(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	if at, err := s.ReadClassesAt(ctx); err != nil || !at.IsZero() {
		t.Fatalf("ReadClassesAt before any read = %v, %v", at, err)
	}
	if err := s.ReplaceClasses(ctx, []Class{
		{ID: "id-a", DisplayName: "Art 7A", ClassCode: "ART-7A", ExternalID: "sis-1"},
		{ID: "id-b", DisplayName: "Biology"},
		{ID: "id-c", DisplayName: "Chemistry"},
		{ID: "", DisplayName: "No id"},
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ClassCount(ctx); err != nil || n != 3 {
		t.Fatalf("ClassCount = %d, %v; want 3", n, err)
	}
	if at, err := s.ReadClassesAt(ctx); err != nil || !at.Equal(obT0) {
		t.Fatalf("ReadClassesAt = %v, %v; want %v", at, err, obT0)
	}
	*now = obT0.Add(time.Hour)
	// b back in another case and renamed, d new and given twice (the later wins), a and c gone.
	if err := s.ReplaceClasses(ctx, []Class{
		{ID: "ID-B", DisplayName: "Biology 2", ClassCode: "BIO"},
		{ID: "id-d", DisplayName: "Drama (old)"},
		{ID: "id-d", DisplayName: "Drama", ExternalID: "sis-4"},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClassNames(ctx, []string{"id-a", "id-b", "id-c", "id-d"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Class{
		"id-b": {ID: "ID-B", DisplayName: "Biology 2", ClassCode: "BIO"},
		"id-d": {ID: "id-d", DisplayName: "Drama", ExternalID: "sis-4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the second read: %v, want %v", got, want)
	}
	if at, err := s.ReadClassesAt(ctx); err != nil || !at.Equal(obT0.Add(time.Hour)) {
		t.Fatalf("ReadClassesAt = %v, %v", at, err)
	}
	// Nothing in the full-text indexes for what went.
	for _, q := range []string{"chemistry", "art 7a", "ch", "drama (old)"} {
		if got, err := s.SuggestClasses(ctx, q, 10); err != nil || len(got) != 0 {
			t.Errorf("SuggestClasses(%q) = %v, %v; want none", q, got, err)
		}
	}
	if err := s.ReplaceClasses(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ClassCount(ctx); err != nil || n != 0 {
		t.Fatalf("ClassCount after an empty read = %d, %v", n, err)
	}
}

// clSuggestFixture holds classes whose names, codes and ids overlap in the ways the
// ranking decides between.
func clSuggestFixture(t *testing.T) *Store {
	t.Helper()
	s, _ := openTestStore(t)
	if err := s.ReplaceClasses(t.Context(), []Class{
		{ID: "0b6f7b2e-0000-4000-8000-000000000001", DisplayName: "Science 7B", ClassCode: "SCI-7B"},
		{ID: "0b6f7b2e-0000-4000-8000-000000000002", DisplayName: "science 8a", ClassCode: "SCI-8A"},
		{ID: "1c2d3e4f-0000-4000-8000-000000000003", DisplayName: "Applied Science", ClassCode: "APS-1"},
		{ID: "2d3e4f5a-0000-4000-8000-000000000004", DisplayName: "Year 7 Physics", ClassCode: "SCIENCE-Y7"},
		{ID: "3e4f5a6b-0000-4000-8000-000000000005", DisplayName: "Müller's Music", ClassCode: "MUS"},
		{ID: "4f5a6b7c-0000-4000-8000-000000000006", DisplayName: `'; DROP TABLE classes; --`, ClassCode: `"quoted" AND NOT x*`},
		{ID: "5a6b7c8d-0000-4000-8000-000000000007", DisplayName: `100% _under\score`, ClassCode: "<b>B</b>"},
		{ID: "6b7c8d9e-0000-4000-8000-000000000008", DisplayName: "Ελληνικά 🎓\nline two", ClassCode: "GRE"},
		{ID: "7c8d9e0f-0000-4000-8000-000000000009", DisplayName: "Y17B club", ClassCode: "CLUB"},
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func clNames(cs []Class) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.DisplayName
	}
	return out
}

func TestSuggestClasses(t *testing.T) {
	t.Parallel()
	s := clSuggestFixture(t)
	for _, tc := range []struct {
		q     string
		limit int
		want  []string
	}{
		// Name or code prefixes first (by name), then the other matches (by name).
		{"science", 10, []string{"Science 7B", "science 8a", "Year 7 Physics", "Applied Science"}},
		{"  SCIENCE\n", 10, []string{"Science 7B", "science 8a", "Year 7 Physics", "Applied Science"}},
		{"sci", 2, []string{"Science 7B", "science 8a"}},
		{"sci", 3, []string{"Science 7B", "science 8a", "Year 7 Physics"}},
		{"sci-7", 10, []string{"Science 7B"}},
		{"ience", 10, []string{"Applied Science", "Science 7B", "science 8a", "Year 7 Physics"}},
		// A GUID fragment.
		{"7b2e", 10, []string{"Science 7B", "science 8a"}},
		{"-000000000004", 10, []string{"Year 7 Physics"}},
		{"4F5A6B", 10, []string{`'; DROP TABLE classes; --`, "Müller's Music"}},
		// 1–2 characters: prefixes, then the start of a word of the name or code.
		{"7b", 10, []string{"Science 7B"}},
		{"y", 10, []string{"Y17B club", "Year 7 Physics"}},
		{"7", 10, []string{"Science 7B", "Year 7 Physics"}},
		{"s", 3, []string{"Science 7B", "science 8a", "Year 7 Physics"}},
		{"ph", 10, []string{"Year 7 Physics"}},
		// Unicode case, prefixes that end in a multi-byte character, hostile text.
		{"MÜLLER", 10, []string{"Müller's Music"}},
		{"mü", 10, []string{"Müller's Music"}},
		{"ελλη", 10, []string{"Ελληνικά 🎓\nline two"}},
		{"ά 🎓", 10, []string{"Ελληνικά 🎓\nline two"}},
		{"🎓", 10, nil}, // short, and no word
		{"'; drop", 10, []string{`'; DROP TABLE classes; --`}},
		{`"quoted" and`, 10, []string{`'; DROP TABLE classes; --`}},
		{"x*", 10, []string{`'; DROP TABLE classes; --`}},
		{"100%", 10, []string{`100% _under\score`}},
		{"% _", 10, []string{`100% _under\score`}},
		{`r\s`, 10, []string{`100% _under\score`}},
		{"<b>", 10, []string{`100% _under\score`}},
		{"%", 10, nil},
		{"_", 10, nil},
		{"two", 10, []string{"Ελληνικά 🎓\nline two"}},
		// Nothing.
		{"", 10, nil},
		{"   ", 10, nil},
		{"zzz", 10, nil},
		{"a\x00b", 10, nil},
		{"\xff\xfe", 10, nil},
		{"-", 10, nil},
	} {
		got, err := s.SuggestClasses(t.Context(), tc.q, tc.limit)
		if err != nil {
			t.Fatalf("SuggestClasses(%q): %v", tc.q, err)
		}
		if !slices.Equal(clNames(got), tc.want) {
			t.Errorf("SuggestClasses(%q, %d) = %q, want %q", tc.q, tc.limit, clNames(got), tc.want)
		}
	}
	// Whole classes, as stored; the default limit.
	got, err := s.SuggestClasses(t.Context(), "drop table", 0)
	if err != nil || len(got) != 1 || got[0] != (Class{ID: "4f5a6b7c-0000-4000-8000-000000000006",
		DisplayName: `'; DROP TABLE classes; --`, ClassCode: `"quoted" AND NOT x*`}) {
		t.Fatalf("SuggestClasses(drop table) = %+v, %v", got, err)
	}
	many := make([]Class, 25)
	for i := range many {
		many[i] = Class{ID: fmt.Sprintf("id-%02d", i), DisplayName: fmt.Sprintf("Class %02d", i)}
	}
	if err := s.ReplaceClasses(t.Context(), many); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SuggestClasses(t.Context(), "class", 0); err != nil || len(got) != 10 || got[0].ID != "id-00" || got[9].ID != "id-09" {
		t.Fatalf("SuggestClasses(class, 0) = %v, %v; want the first 10", clNames(got), err)
	}
}

func TestClassNames(t *testing.T) {
	t.Parallel()
	s := clSuggestFixture(t)
	got, err := s.ClassNames(t.Context(), []string{"0B6F7B2E-0000-4000-8000-000000000001", "nope", "0b6f7b2e-0000-4000-8000-000000000002", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Class{
		"0B6F7B2E-0000-4000-8000-000000000001": {ID: "0b6f7b2e-0000-4000-8000-000000000001", DisplayName: "Science 7B", ClassCode: "SCI-7B"},
		"0b6f7b2e-0000-4000-8000-000000000002": {ID: "0b6f7b2e-0000-4000-8000-000000000002", DisplayName: "science 8a", ClassCode: "SCI-8A"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ClassNames = %v, want %v", got, want)
	}
	if got, err := s.ClassNames(t.Context(), nil); err != nil || len(got) != 0 {
		t.Fatalf("ClassNames(nil) = %v, %v", got, err)
	}
}

// clCartsFixture: carts shared between associations, ids that differ only in case, and
// a deleted association whose carts and rooms are not listed.
func clCartsFixture(t *testing.T) (*Store, map[string]Association) {
	t.Helper()
	s, _ := openOutboxStore(t)
	as := map[string]Association{}
	for _, a := range []struct {
		name         string
		carts, rooms []string
	}{
		{"Science iPads", []string{"CART-12", "cart-7"}, []string{"guid-sci", "Lab 1"}},
		{"Maths iPads", []string{"cart-12", "CART-3"}, []string{"guid-math", "Lab 1"}},
		{"Art laptops", []string{"CART-12"}, []string{"Studio"}},
		{"art laptops", []string{"spare-1"}, nil},
		{"Gone", []string{"cart-gone", "CART-12"}, []string{"room-gone"}},
		{"Science iPads", []string{"x-1"}, []string{"GUID-SCI"}},
	} {
		as[a.name] = clAssoc(t, s, a.name, a.carts, a.rooms)
	}
	mrDelete(t, s, as["Gone"].ID)
	if err := s.ReplaceClasses(t.Context(), []Class{
		{ID: "GUID-sci", DisplayName: "Science 7B", ClassCode: "SCI-7B"},
		{ID: "guid-math", DisplayName: "Maths 9", ClassCode: "MA-9"},
		{ID: "guid-unused", DisplayName: "Unused"},
	}); err != nil {
		t.Fatal(err)
	}
	return s, as
}

func TestSuggestCarts(t *testing.T) {
	t.Parallel()
	s, _ := clCartsFixture(t)
	for _, tc := range []struct {
		q     string
		limit int
		want  []CartUse
	}{
		// CART-12 and cart-12 are two carts. Rooms: distinct classroom ids.
		{"cart", 10, []CartUse{{"CART-12", 3, 2}, {"cart-12", 2, 1}, {"CART-3", 2, 1}, {"cart-7", 2, 1}}},
		{"CART-1", 10, []CartUse{{"CART-12", 3, 2}, {"cart-12", 2, 1}}},
		{"2", 10, []CartUse{{"CART-12", 3, 2}, {"cart-12", 2, 1}}},
		// Prefixes first, then by id.
		{"-1", 10, []CartUse{{"CART-12", 3, 2}, {"cart-12", 2, 1}, {"spare-1", 0, 1}, {"x-1", 1, 1}}},
		{"s", 10, []CartUse{{"spare-1", 0, 1}}},
		{"x", 10, []CartUse{{"x-1", 1, 1}}},
		{"cart", 1, []CartUse{{"CART-12", 3, 2}}},
		{"gone", 10, nil},
		{"%", 10, nil},
		{"_", 10, nil},
		{"", 10, nil},
	} {
		got, err := s.SuggestCarts(t.Context(), tc.q, tc.limit)
		if err != nil {
			t.Fatalf("SuggestCarts(%q): %v", tc.q, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("SuggestCarts(%q, %d) = %v, want %v", tc.q, tc.limit, got, tc.want)
		}
	}
}

func TestListCarts(t *testing.T) {
	t.Parallel()
	s, as := clCartsFixture(t)
	// Two are named "Science iPads": the map kept the second, the first is association 1.
	sci, sci2, maths, art, art2 := mustGet(t, s, 1), as["Science iPads"], as["Maths iPads"], as["Art laptops"], as["art laptops"]
	all := []CartEntry{
		{"CART-12", []string{"guid-sci", "Lab 1", "Studio"}, []AssociationRef{{art.ID, "Art laptops"}, {sci.ID, "Science iPads"}}},
		{"cart-12", []string{"guid-math", "Lab 1"}, []AssociationRef{{maths.ID, "Maths iPads"}}},
		{"CART-3", []string{"guid-math", "Lab 1"}, []AssociationRef{{maths.ID, "Maths iPads"}}},
		{"cart-7", []string{"guid-sci", "Lab 1"}, []AssociationRef{{sci.ID, "Science iPads"}}},
		{"spare-1", nil, []AssociationRef{{art2.ID, "art laptops"}}},
		{"x-1", []string{"GUID-SCI"}, []AssociationRef{{sci2.ID, "Science iPads"}}},
	}
	for _, tc := range []struct {
		q             string
		page, perPage int
		want          []CartEntry
		total         int
	}{
		{"", 1, 50, all, 6},
		{"", 0, 0, all, 6},
		{"", 2, 4, all[4:], 6},
		{"", 3, 4, nil, 6},
		{"cart-12", 1, 50, all[:2], 2},
		{"LAB", 1, 50, all[:4], 4},                         // a classroom it serves
		{"laptops", 1, 50, []CartEntry{all[0], all[4]}, 2}, // an association's name
		{"lap", 1, 50, []CartEntry{all[0], all[4]}, 2},
		{"la", 1, 1, all[:1], 5}, // a short query: "Lab 1", "laptops", scanned
		{"science", 2, 2, all[5:], 3},
		{"guid-sci", 1, 50, []CartEntry{all[0], all[3], all[5]}, 3},
		{"gone", 1, 50, nil, 0},
		{"%", 1, 50, nil, 0},
		{"   ", 1, 50, all, 6},
	} {
		got, total, err := s.ListCarts(t.Context(), tc.q, tc.page, tc.perPage)
		if err != nil {
			t.Fatalf("ListCarts(%q): %v", tc.q, err)
		}
		if total != tc.total || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListCarts(%q, %d, %d) = %d: %+v\nwant %d: %+v", tc.q, tc.page, tc.perPage, total, got, tc.total, tc.want)
		}
	}
}

func TestListClassrooms(t *testing.T) {
	t.Parallel()
	s, as := clCartsFixture(t)
	sci, sci2, maths, art := mustGet(t, s, 1), as["Science iPads"], as["Maths iPads"], as["Art laptops"]
	math := &Class{ID: "guid-math", DisplayName: "Maths 9", ClassCode: "MA-9"}
	science := &Class{ID: "GUID-sci", DisplayName: "Science 7B", ClassCode: "SCI-7B"}
	// Known classes by name (one class's ids by id), then the others by id.
	all := []ClassroomEntry{
		{"guid-math", math, []string{"cart-12", "CART-3"}, []AssociationRef{{maths.ID, "Maths iPads"}}},
		{"GUID-SCI", science, []string{"x-1"}, []AssociationRef{{sci2.ID, "Science iPads"}}},
		{"guid-sci", science, []string{"CART-12", "cart-7"}, []AssociationRef{{sci.ID, "Science iPads"}}},
		{"Lab 1", nil, []string{"CART-12", "cart-12", "CART-3", "cart-7"}, []AssociationRef{{maths.ID, "Maths iPads"}, {sci.ID, "Science iPads"}}},
		{"Studio", nil, []string{"CART-12"}, []AssociationRef{{art.ID, "Art laptops"}}},
	}
	for _, tc := range []struct {
		q             string
		page, perPage int
		want          []ClassroomEntry
		total         int
	}{
		{"", 1, 50, all, 5},
		{"", 0, -1, all, 5},
		{"", 1, 2, all[:2], 5},
		{"", 2, 2, all[2:4], 5}, // across the end of the known classes
		{"", 3, 2, all[4:], 5},
		{"", 4, 2, nil, 5},
		{"science", 1, 50, all[1:3], 2}, // a class name
		{"sci-7", 1, 50, all[1:3], 2},   // a class code
		{"ma", 1, 50, all[:1], 1},       // short: scanned
		{"lab", 1, 50, all[3:4], 1},     // a classroom id
		{"cart-3", 1, 50, []ClassroomEntry{all[0], all[3]}, 2},
		{"x-1", 1, 50, all[1:2], 1}, // a cart
		{"CART-12", 1, 50, []ClassroomEntry{all[0], all[2], all[3], all[4]}, 4},
		{"room-gone", 1, 50, nil, 0},
		{"unused", 1, 50, nil, 0},
	} {
		got, total, err := s.ListClassrooms(t.Context(), tc.q, tc.page, tc.perPage)
		if err != nil {
			t.Fatalf("ListClassrooms(%q): %v", tc.q, err)
		}
		if total != tc.total || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListClassrooms(%q, %d, %d) = %d: %s\nwant %d: %s", tc.q, tc.page, tc.perPage, total, clShow(got), tc.total, clShow(tc.want))
		}
	}
}

func clShow(es []ClassroomEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %s %+v %q %v", e.ClassroomID, e.Class, e.Carts, e.Associations)
	}
	return b.String()
}

func TestOtherCartUsesAndSameName(t *testing.T) {
	t.Parallel()
	s, as := clCartsFixture(t)
	sci, sci2, maths, art, art2 := mustGet(t, s, 1), as["Science iPads"], as["Maths iPads"], as["Art laptops"], as["art laptops"]
	got, err := s.OtherCartUses(t.Context(), []string{"CART-12", "cart-7", "cart-gone", "Cart-3"}, sci.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Not sci itself, not the deleted "Gone", not cart-12 (another case).
	if want := map[string][]AssociationRef{"CART-12": {{art.ID, "Art laptops"}}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("OtherCartUses = %v, want %v", got, want)
	}
	got, err = s.OtherCartUses(t.Context(), []string{"CART-12", "cart-12"}, 0)
	if want := map[string][]AssociationRef{"CART-12": {{art.ID, "Art laptops"}, {sci.ID, "Science iPads"}},
		"cart-12": {{maths.ID, "Maths iPads"}}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("OtherCartUses(new association) = %v, %v; want %v", got, err, want)
	}
	if got, err := s.OtherCartUses(t.Context(), nil, 0); err != nil || len(got) != 0 {
		t.Fatalf("OtherCartUses(nil) = %v, %v", got, err)
	}

	same, err := s.SameNameAssociations(t.Context(), "Science iPads", sci.ID)
	if err != nil || !slices.Equal(same, []AssociationRef{{sci2.ID, "Science iPads"}}) {
		t.Fatalf("SameNameAssociations = %v, %v", same, err)
	}
	same, err = s.SameNameAssociations(t.Context(), "Art laptops", 0)
	if err != nil || !slices.Equal(same, []AssociationRef{{art.ID, "Art laptops"}}) {
		t.Fatalf("SameNameAssociations(Art laptops) = %v, %v; want the exact name only (not %d)", same, err, art2.ID)
	}
	for _, name := range []string{"Gone", "Science", ""} {
		if same, err := s.SameNameAssociations(t.Context(), name, 0); err != nil || len(same) != 0 {
			t.Errorf("SameNameAssociations(%q) = %v, %v; want none", name, same, err)
		}
	}
}

// Each query reads the indexes it was written for: no scan of associations or of the
// link tables, and no sort where the walk is meant to stop at its limit.
func TestClassQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	s, _ := clCartsFixture(t)
	pat, phrase, list := "%x%", `"xyz"`, `["a","b"]`
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		want  []string // in the plan, each
		scans []string // the only tables scanned (json_each and FTS5 aside)
		sort  bool     // a temporary b-tree is expected
	}{
		{"suggest prefix", suggestPrefix, []any{"x", "y", 10},
			[]string{"SEARCH classes USING COVERING INDEX classes_name (name_key>? AND name_key<?)",
				"SEARCH classes USING COVERING INDEX classes_code (code_key>? AND code_key<?)"}, []string{"p"}, true},
		{"suggest trigram", suggestTrigram, []any{"x", "y", 10, phrase}, []string{"class_search VIRTUAL TABLE"}, nil, true},
		{"suggest words", suggestWords, []any{"x", "y", 10, phrase}, []string{"class_words VIRTUAL TABLE"}, nil, true},
		{"carts prefix", cartsPrefix, []any{"x", "y", 10, "x%", pat},
			[]string{"SEARCH carts USING COVERING INDEX carts_nocase (cart_id>? AND cart_id<?)"}, nil, false},
		{"carts containing", cartsContaining, []any{"x", "y", 10, "x%", pat},
			[]string{"SCAN carts USING COVERING INDEX carts_nocase"}, []string{"carts"}, false},
		{"cart uses", cartUses, []any{list},
			[]string{"SEARCH c USING PRIMARY KEY (cart_id=?)", "SEARCH r USING COVERING INDEX association_rooms_association"}, nil, true},
		{"all carts", allCarts, []any{50, 0}, []string{"SCAN carts USING COVERING INDEX carts_nocase"}, []string{"carts"}, false},
		{"matching carts", matchingCarts, []any{pat},
			[]string{"SEARCH ar USING PRIMARY KEY (classroom_id=?)", "SEARCH c USING COVERING INDEX association_carts_association"},
			[]string{"carts", "r", "a"}, true},
		{"matching carts, indexed", matchingCartsIndex, []any{pat, phrase},
			[]string{"association_search VIRTUAL TABLE", "SEARCH a USING INTEGER PRIMARY KEY"}, []string{"carts", "r"}, true},
		{"carts' rooms", cartsRooms, []any{list}, []string{"SEARCH c USING PRIMARY KEY (cart_id=?)"}, nil, true},
		{"carts' associations", cartsAssociations, []any{list}, []string{"SEARCH a USING INTEGER PRIMARY KEY"}, nil, true},
		{"known rooms", knownRooms, []any{50, 0},
			[]string{"SCAN k USING COVERING INDEX classes_name", "SEARCH r USING COVERING INDEX rooms_class (class_n=?)"}, []string{"k"}, false},
		{"other rooms", otherRooms, []any{50, 0}, []string{"SEARCH rooms USING COVERING INDEX rooms_class (class_n=?)"}, nil, false},
		{"matching rooms", matchingRooms, []any{pat},
			[]string{"SEARCH ac USING PRIMARY KEY (cart_id=?)", "SEARCH r USING COVERING INDEX rooms_class (class_n=?)"},
			[]string{"rooms", "c", "k", "m"}, true},
		{"matching rooms, indexed", matchingRoomsIndex, []any{pat, phrase},
			[]string{"class_search VIRTUAL TABLE", "SEARCH k USING INTEGER PRIMARY KEY"}, []string{"rooms", "c", "m"}, true},
		{"rooms' classes", roomsClasses, []any{list}, []string{"SEARCH r USING PRIMARY KEY (classroom_id=?)"}, nil, false},
		{"rooms' carts", roomsCarts, []any{list}, []string{"SEARCH r USING PRIMARY KEY (classroom_id=?)"}, nil, true},
		{"rooms' associations", roomsAssociations, []any{list}, []string{"SEARCH a USING INTEGER PRIMARY KEY"}, nil, true},
		{"class names", classNamesOf, []any{list}, []string{"SEARCH c USING INDEX sqlite_autoindex_classes_1 (id=?)"}, nil, false},
		{"other cart uses", otherCartUses, []any{list, 1}, []string{"SEARCH c USING PRIMARY KEY (cart_id=?)"}, nil, true},
		{"same name", sameName, []any{"x", 1}, []string{"SEARCH associations USING INDEX associations_live_name (display_name=?)"}, nil, true},
		// What the triggers run.
		{"an association's carts", `DELETE FROM association_carts WHERE association_id IN (?, ?)`, []any{1, 2},
			[]string{"association_carts USING COVERING INDEX association_carts_association (association_id=?)"}, nil, false},
		{"a cart's last association", `SELECT 1 FROM association_carts WHERE cart_id = ?`, []any{"x"},
			[]string{"SEARCH association_carts USING PRIMARY KEY (cart_id=?)"}, nil, false},
		{"a class's rooms", `UPDATE rooms SET class_n = NULL WHERE class_n = ?`, []any{1},
			[]string{"rooms USING COVERING INDEX rooms_class (class_n=?)"}, nil, false},
		{"a class id's rooms", `UPDATE rooms SET class_n = 1 WHERE classroom_id = ? COLLATE NOCASE`, []any{"x"},
			[]string{"rooms USING INDEX rooms_nocase (classroom_id=?)"}, nil, false},
		{"a room's class", `SELECT n FROM classes WHERE id = ?`, []any{"x"},
			[]string{"SEARCH classes USING COVERING INDEX sqlite_autoindex_classes_1 (id=?)"}, nil, false},
	} {
		plan := queryPlan(t, s, tc.query, tc.args)
		for _, w := range tc.want {
			if !strings.Contains(plan, w) {
				t.Errorf("%s: plan lacks %q:\n%s", tc.name, w, plan)
			}
		}
		var scans []string
		for _, line := range strings.Split(plan, "\n") {
			// A subquery's rows are the query's own (few, or the matches).
			if f := strings.Fields(line); len(f) > 1 && f[0] == "SCAN" && !strings.Contains(line, "VIRTUAL TABLE") &&
				!strings.HasPrefix(f[1], "(subquery-") {
				scans = append(scans, f[1])
			}
		}
		if !slices.Equal(scans, tc.scans) {
			t.Errorf("%s: scans %q, want %q:\n%s", tc.name, scans, tc.scans, plan)
		}
		if strings.Contains(plan, "TEMP B-TREE FOR ORDER BY") && !tc.sort {
			t.Errorf("%s: sorts:\n%s", tc.name, plan)
		}
	}
}

// LIKE's wildcards and its escape character in a query are literal, in every query that
// matches ids.
func TestIDQueriesTakeWildcardsLiterally(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	for _, id := range []string{"a_b", "axb", "a%b", `a\b`, `a\\b`} {
		clAssoc(t, s, "Cart "+id, []string{id}, []string{"room " + id})
	}
	for q, want := range map[string][]string{
		"a_b": {"a_b"}, "_": {"a_b"}, "a%": {"a%b"}, "%b": {"a%b"}, `a\b`: {`a\b`}, `\`: {`a\\b`, `a\b`},
		`\\`: {`a\\b`}, "a": {"a%b", `a\\b`, `a\b`, "a_b", "axb"},
	} {
		uses, err := s.SuggestCarts(t.Context(), q, 10)
		if err != nil {
			t.Fatal(err)
		}
		var suggested []string
		for _, u := range uses {
			suggested = append(suggested, u.CartID)
		}
		if !slices.Equal(suggested, want) {
			t.Errorf("SuggestCarts(%q) = %q, want %q", q, suggested, want)
		}
		carts, total, err := s.ListCarts(t.Context(), q, 1, 50)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, e := range carts {
			listed = append(listed, e.CartID)
		}
		if !slices.Equal(listed, want) || total != len(want) {
			t.Errorf("ListCarts(%q) = %q (%d), want %q", q, listed, total, want)
		}
		rooms, total, err := s.ListClassrooms(t.Context(), q, 1, 50)
		if err != nil {
			t.Fatal(err)
		}
		var roomCarts []string
		for _, e := range rooms {
			roomCarts = append(roomCarts, e.Carts...)
		}
		if !slices.Equal(roomCarts, want) || total != len(want) {
			t.Errorf("ListClassrooms(%q): carts %q (%d), want %q", q, roomCarts, total, want)
		}
	}
}
