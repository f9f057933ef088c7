package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock is a goroutine-safe clock for Store.Now: every call moves it on by step, so
// each save gets a distinct, predictable time unless a test freezes it (step 0).
type testClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

var clockStart = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func newClock() *testClock { return &testClock{t: clockStart, step: time.Second} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// set makes the next call to Now return at exactly, then continue with step.
func (c *testClock) set(at time.Time, step time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t, c.step = at.Add(-step), step
}

// openTestStore opens a fresh store in a temporary file with a test clock.
func openTestStore(t testing.TB) (*Store, *testClock) {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "cartclass.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c := newClock()
	s.Now = c.Now
	return s, c
}

func mustCreate(t testing.TB, s *Store, f Fields) Association {
	t.Helper()
	a, err := s.CreateAssociation(context.Background(), f, Actor{Subject: "sub-creator", Name: "Creator"})
	if err != nil {
		t.Fatalf("CreateAssociation(%q): %v", f.DisplayName, err)
	}
	return a
}

func mustGet(t testing.TB, s *Store, id int64) Association {
	t.Helper()
	a, err := s.GetAssociation(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAssociation(%d): %v", id, err)
	}
	return a
}

func names(items []Association) []string {
	out := make([]string, len(items))
	for i, a := range items {
		out[i] = a.DisplayName
	}
	return out
}

func ids(items []Association) []int64 {
	out := make([]int64, len(items))
	for i, a := range items {
		out[i] = a.ID
	}
	return out
}

// latestMigration is the number of the newest file in migrations/, read from the
// directory itself so adding a migration does not break the test.
func latestMigration(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	latest := 0
	for _, e := range entries {
		n, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			t.Fatalf("migration %s does not start with a number", e.Name())
		}
		latest = max(latest, n)
	}
	if latest == 0 {
		t.Fatal("no migrations found")
	}
	return latest
}

func TestOpenCreatesSchemaAndReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "..", "cartclass.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := os.Stat(filepath.Clean(path)); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if want := latestMigration(t); version != want {
		t.Errorf("user_version after first Open = %d, want %d", version, want)
	}
	a, err := s.CreateAssociation(ctx, Fields{DisplayName: "Kept across restarts", Version: 3}, Actor{})
	if err != nil {
		t.Fatalf("create on fresh schema: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A second Open must not re-run 0001 (it would fail on "table already exists" or, worse,
	// drop data) and must leave the version as it was.
	for range 2 {
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("re-Open: %v", err)
		}
		got, err := s2.GetAssociation(ctx, a.ID)
		if err != nil || got.DisplayName != "Kept across restarts" || got.Version != 3 {
			t.Errorf("after re-Open GetAssociation = %+v, %v; want the saved association", got, err)
		}
		var n int
		s2.write.QueryRowContext(ctx, "SELECT count(*) FROM associations").Scan(&n)
		if n != 1 {
			t.Errorf("after re-Open there are %d associations, want 1", n)
		}
		var v2 int
		s2.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v2)
		if v2 != version {
			t.Errorf("user_version after re-Open = %d, want %d", v2, version)
		}
		if err := s2.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
		s2.Close()
	}
}

func TestOpenRejectsEmptyPath(t *testing.T) {
	if s, err := Open(t.Context(), ""); err == nil {
		s.Close()
		t.Fatal(`Open("") succeeded; want an error`)
	}
}

func TestOpenUsesThePathLiterally(t *testing.T) {
	// CARTCLASS_DB is a file name, not a URI: '#', '%' and '?' are legal in file names.
	dir := t.TempDir()
	for _, name := range []string{"cart#class.db", "cart%41class.db", "cart?class.db"} {
		path := filepath.Join(dir, name)
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Errorf("Open(%q): %v", name, err)
			continue
		}
		s.Close()
		if _, err := os.Stat(path); err != nil {
			entries, _ := os.ReadDir(dir)
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			t.Fatalf("Open(%q) did not create that file (directory holds %q): store.Open pastes the path into a file: URI unescaped, so SQLite cuts it at '#'/'?' and decodes %%XX", name, got)
		}
	}
}

func TestPragmasOnEveryPooledConnection(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	n := max(4, runtime.NumCPU())
	if got := s.read.Stats().OpenConnections; got != n {
		t.Errorf("read pool after Open: %d connections open, want all %d (warm)", got, n)
	}
	if got := s.write.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer MaxOpenConnections = %d, want 1", got)
	}
	// Hold every read connection at once so each one is checked, not the same one n times.
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := s.read.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	if got := s.read.Stats().OpenConnections; got != n {
		t.Errorf("read pool with %d connections held: %d open, want no more than the fixed %d", n, got, n)
	}
	type pragmas struct {
		mode                              string
		fk, busy, syncMode, queryOnly, kb int
	}
	read := func(c *sql.Conn) (p pragmas, err error) {
		for q, dst := range map[string]any{
			"journal_mode": &p.mode, "foreign_keys": &p.fk, "busy_timeout": &p.busy,
			"synchronous": &p.syncMode, "query_only": &p.queryOnly, "cache_size": &p.kb,
		} {
			if err := c.QueryRowContext(ctx, "PRAGMA "+q).Scan(dst); err != nil {
				return p, fmt.Errorf("PRAGMA %s: %w", q, err)
			}
		}
		return p, nil
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			p, err := read(c)
			if err != nil {
				t.Errorf("read conn %d: %v", i, err)
				return
			}
			if p.mode != "wal" || p.fk != 1 || p.busy < 1000 || p.queryOnly != 1 || p.kb != -8192 {
				t.Errorf("read conn %d: %+v; want wal, foreign keys, a busy timeout of a second or more, query_only, cache_size -8192", i, p)
			}
		})
	}
	wg.Wait()
	if _, err := conns[0].ExecContext(ctx, "DELETE FROM associations"); err == nil {
		t.Error("a write through the read pool succeeded; want query_only to refuse it")
	}
	w, err := s.write.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p, err := read(w)
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	if p.mode != "wal" || p.fk != 1 || p.busy < 1000 || p.syncMode != 2 || p.queryOnly != 0 {
		t.Errorf("writer: %+v; want wal, foreign keys, a busy timeout of a second or more, synchronous FULL (2), writable", p)
	}
}

func TestCreateGetRoundTrip(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	in := Fields{
		DisplayName:   "Ärztezimmer 🚑 – 理科室",
		Description:   "Zweite Etage\n\tlinks, „neben“ dem Labor",
		Version:       math.MaxInt32,
		DeviceCartIDs: []string{"Z-9", "a-1", "M-5", "wagen-ß"},
		ClassroomIDs:  []string{"R 204", "R 101", "Раум-3"},
	}
	by := Actor{Subject: "oid-123", Name: "Åsa Admin"}
	created, err := s.CreateAssociation(ctx, in, by)
	if err != nil {
		t.Fatal(err)
	}
	want1 := clockStart.Add(time.Second)
	got := mustGet(t, s, created.ID)
	for _, a := range []Association{created, got} {
		if a.ID < 1 {
			t.Errorf("ID = %d, want positive", a.ID)
		}
		if a.DisplayName != "Ärztezimmer 🚑 – 理科室" || a.Description != "Zweite Etage\n\tlinks, „neben“ dem Labor" || a.Version != 2147483647 {
			t.Errorf("scalar fields = %q, %q, %d", a.DisplayName, a.Description, a.Version)
		}
		if !slices.Equal(a.DeviceCartIDs, []string{"Z-9", "a-1", "M-5", "wagen-ß"}) {
			t.Errorf("DeviceCartIDs = %q, want the order given", a.DeviceCartIDs)
		}
		if !slices.Equal(a.ClassroomIDs, []string{"R 204", "R 101", "Раум-3"}) {
			t.Errorf("ClassroomIDs = %q, want the order given", a.ClassroomIDs)
		}
		if a.Revision != 1 {
			t.Errorf("Revision = %d, want 1", a.Revision)
		}
		if !a.CreatedAt.Equal(want1) || !a.UpdatedAt.Equal(want1) {
			t.Errorf("CreatedAt, UpdatedAt = %v, %v; want both %v", a.CreatedAt, a.UpdatedAt, want1)
		}
		if a.CreatedBy != by || a.UpdatedBy != by {
			t.Errorf("CreatedBy, UpdatedBy = %+v, %+v; want %+v", a.CreatedBy, a.UpdatedBy, by)
		}
		if a.GraphID != "" || !a.GraphCreatedAt.IsZero() || !a.GraphModifiedAt.IsZero() {
			t.Errorf("Graph fields set on a new association: %q %v %v", a.GraphID, a.GraphCreatedAt, a.GraphModifiedAt)
		}
	}

	// Empty lists and negative-free minimum version round-trip too.
	empty := mustCreate(t, s, Fields{DisplayName: "No ids", Version: 0})
	e := mustGet(t, s, empty.ID)
	if len(e.DeviceCartIDs) != 0 || len(e.ClassroomIDs) != 0 || e.Version != 0 || e.Description != "" {
		t.Errorf("empty association read back as %+v", e.Fields)
	}
	if empty.ID == created.ID {
		t.Error("two creates got the same ID")
	}
}

func TestGetAndUpdateUnknownIDAreNotFound(t *testing.T) {
	s, _ := openTestStore(t)
	if _, err := s.GetAssociation(t.Context(), 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAssociation(42) error = %v, want ErrNotFound", err)
	}
	_, err := s.UpdateAssociation(t.Context(), 42, 1, Fields{DisplayName: "x"}, Actor{})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateAssociation(42) error = %v, want ErrNotFound", err)
	}
	var n int
	s.write.QueryRow("SELECT count(*) FROM associations").Scan(&n)
	if n != 0 {
		t.Errorf("update of a missing id left %d rows", n)
	}
}

func TestUpdateIncrementsRevisionAndKeepsCreation(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Lab carts", Version: 1, DeviceCartIDs: []string{"C1"}})
	editor := Actor{Subject: "sub-editor", Name: "Editor"}

	u1, err := s.UpdateAssociation(ctx, a.ID, 1, Fields{DisplayName: "Lab carts", Version: 2, DeviceCartIDs: []string{"C2", "C1"}, ClassroomIDs: []string{"R1"}}, editor)
	if err != nil {
		t.Fatalf("first update: %v", err)
	}
	u2, err := s.UpdateAssociation(ctx, a.ID, 2, Fields{DisplayName: "Lab carts (west)", Version: 2, DeviceCartIDs: []string{"C2", "C1"}, ClassroomIDs: []string{"R1"}}, editor)
	if err != nil {
		t.Fatalf("second update: %v", err)
	}
	got := mustGet(t, s, a.ID)
	if u1.Revision != 2 || u2.Revision != 3 || got.Revision != 3 {
		t.Errorf("revisions = %d, %d, stored %d; want 2, 3, 3", u1.Revision, u2.Revision, got.Revision)
	}
	if got.DisplayName != "Lab carts (west)" || !slices.Equal(got.DeviceCartIDs, []string{"C2", "C1"}) || !slices.Equal(got.ClassroomIDs, []string{"R1"}) {
		t.Errorf("stored fields = %+v", got.Fields)
	}
	// Clock: create at +1s, updates at +2s and +3s.
	if !got.CreatedAt.Equal(clockStart.Add(1*time.Second)) || !got.UpdatedAt.Equal(clockStart.Add(3*time.Second)) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v", got.CreatedAt, got.UpdatedAt)
	}
	if got.CreatedBy.Name != "Creator" || got.UpdatedBy != editor {
		t.Errorf("CreatedBy, UpdatedBy = %+v, %+v", got.CreatedBy, got.UpdatedBy)
	}
}

func TestUpdateUnchangedWritesNothing(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Same", Description: "d", Version: 5, DeviceCartIDs: []string{"A", "B"}})
	before := mustGet(t, s, a.ID)

	for _, f := range []Fields{
		{DisplayName: "Same", Description: "d", Version: 5, DeviceCartIDs: []string{"A", "B"}},
		// nil and empty id lists mean the same thing
		{DisplayName: "Same", Description: "d", Version: 5, DeviceCartIDs: []string{"A", "B"}, ClassroomIDs: []string{}},
	} {
		got, err := s.UpdateAssociation(ctx, a.ID, 1, f, Actor{Name: "Someone"})
		if !errors.Is(err, ErrUnchanged) {
			t.Fatalf("UpdateAssociation with identical fields: err = %v, want ErrUnchanged", err)
		}
		if got.ID != a.ID || got.Revision != 1 {
			t.Errorf("returned association = id %d rev %d, want the stored one", got.ID, got.Revision)
		}
	}
	after := mustGet(t, s, a.ID)
	if after.Revision != 1 || !after.UpdatedAt.Equal(before.UpdatedAt) || after.UpdatedBy != before.UpdatedBy {
		t.Errorf("unchanged save wrote: revision %d→%d, updated_at %v→%v, by %+v→%+v",
			before.Revision, after.Revision, before.UpdatedAt, after.UpdatedAt, before.UpdatedBy, after.UpdatedBy)
	}
	// Reordering ids is a change.
	if _, err := s.UpdateAssociation(ctx, a.ID, 1, Fields{DisplayName: "Same", Description: "d", Version: 5, DeviceCartIDs: []string{"B", "A"}}, Actor{}); err != nil {
		t.Errorf("reordered ids: err = %v, want a saved change", err)
	}
}

func TestUpdateStaleRevisionIsConflict(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Original", Version: 1})
	if _, err := s.UpdateAssociation(ctx, a.ID, 1, Fields{DisplayName: "Alice's", Version: 2}, Actor{Subject: "alice", Name: "Alice"}); err != nil {
		t.Fatal(err)
	}

	_, err := s.UpdateAssociation(ctx, a.ID, 1, Fields{DisplayName: "Bob's", Version: 7}, Actor{Subject: "bob", Name: "Bob"})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: err = %v, want ErrConflict", err)
	}
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("stale update: err %T is not a *ConflictError", err)
	}
	if ce.Current.ID != a.ID || ce.Current.Revision != 2 || ce.Current.DisplayName != "Alice's" || ce.Current.Version != 2 || ce.Current.UpdatedBy.Name != "Alice" {
		t.Errorf("ConflictError.Current = %+v, want Alice's revision 2", ce.Current)
	}
	got := mustGet(t, s, a.ID)
	if got.DisplayName != "Alice's" || got.Revision != 2 {
		t.Errorf("after the conflict the store holds %q rev %d, want Alice's rev 2", got.DisplayName, got.Revision)
	}
	// A revision from the future is just as stale.
	if _, err := s.UpdateAssociation(ctx, a.ID, 9, Fields{DisplayName: "Bob's"}, Actor{}); !errors.Is(err, ErrConflict) {
		t.Errorf("update at revision 9 of a revision-2 row: err = %v, want ErrConflict", err)
	}
}

// searchFixture stores associations whose text exercises case folding, non-ASCII and
// LIKE wildcards.
func searchFixture(t *testing.T) *Store {
	s, _ := openTestStore(t)
	for _, f := range []Fields{
		{DisplayName: "Science block iPads", Description: "Carts for the labs", DeviceCartIDs: []string{"CART-001"}, ClassroomIDs: []string{"ROOM-12"}},
		{DisplayName: "ärzte Zimmer", DeviceCartIDs: []string{"X"}},
		{DisplayName: "Hundred% done", Description: "under_score"},
		{DisplayName: "Hundreds done", Description: "underXscore"},
		{DisplayName: "Maths", Description: "Rooms 101 to 105", DeviceCartIDs: []string{"cart-abc"}, ClassroomIDs: []string{"R_1"}},
		{DisplayName: "ÖLBERG", ClassroomIDs: []string{"Straße-7"}},
	} {
		mustCreate(t, s, f)
	}
	return s
}

func TestListSearch(t *testing.T) {
	s := searchFixture(t)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"science", []string{"Science block iPads"}},
		{"LABS", []string{"Science block iPads"}}, // description
		{"cart-001", []string{"Science block iPads"}},
		{"room-12", []string{"Science block iPads"}}, // classroom id
		{"CART", []string{"Maths", "Science block iPads"}},
		{"ÄRZTE", []string{"ärzte Zimmer"}},
		{"ölberg", []string{"ÖLBERG"}},
		{"straße", []string{"ÖLBERG"}},
		// A query of 1–2 characters matches only where a word starts, and "%" and "_" start
		// none: before the word index these matched "Hundred% done" (and "_" also Maths's
		// "R_1" and "under_score"). 3+ characters still match anywhere, wildcards included.
		{"%", nil},
		{"_", nil},
		{"hundred%", []string{"Hundred% done"}},
		{"r_", []string{"Maths"}}, // the word "R" of "R_1", followed by "_"
		{"under_", []string{"Hundred% done"}},
		{"  maths  ", []string{"Maths"}},
		{"does-not-exist", nil},
		{"", []string{"Hundred% done", "Hundreds done", "Maths", "Science block iPads", "ärzte Zimmer", "ÖLBERG"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			page, err := s.ListAssociations(t.Context(), ListFilter{Query: tc.query, Sort: SortNameAsc})
			if err != nil {
				t.Fatal(err)
			}
			got := names(page.Items)
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("search %q = %q, want %q", tc.query, got, tc.want)
			}
			if page.Total != len(tc.want) {
				t.Errorf("search %q Total = %d, want %d", tc.query, page.Total, len(tc.want))
			}
		})
	}
}

func TestListSearchFollowsUpdates(t *testing.T) {
	s, _ := openTestStore(t)
	a := mustCreate(t, s, Fields{DisplayName: "Old name"})
	if _, err := s.UpdateAssociation(t.Context(), a.ID, 1, Fields{DisplayName: "New name", ClassroomIDs: []string{"R-9"}}, Actor{}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int{"old": 0, "new": 1, "r-9": 1} {
		page, err := s.ListAssociations(t.Context(), ListFilter{Query: q})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != want {
			t.Errorf("search %q after update: Total = %d, want %d", q, page.Total, want)
		}
	}
}

func TestListSearchDoesNotSpanValues(t *testing.T) {
	s := searchFixture(t)
	// The doc comment of searchText promises that a match never spans two values.
	page, err := s.ListAssociations(t.Context(), ListFilter{Query: "ipads\ncarts"})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 0 {
		t.Fatalf("query %q matched %q across display name and description; searchText joins values with \\n and ListAssociations only trims the query, so a query containing a line break spans values", "ipads\ncarts", names(page.Items))
	}
}

func TestListPaging(t *testing.T) {
	s, _ := openTestStore(t)
	for i := 1; i <= 7; i++ {
		mustCreate(t, s, Fields{DisplayName: fmt.Sprintf("Item %d", i)})
	}
	for _, tc := range []struct {
		page, perPage int
		want          []string
	}{
		{1, 3, []string{"Item 1", "Item 2", "Item 3"}},
		{2, 3, []string{"Item 4", "Item 5", "Item 6"}},
		{3, 3, []string{"Item 7"}},
		{4, 3, nil},
		{0, 3, []string{"Item 1", "Item 2", "Item 3"}},  // below 1 means 1
		{-2, 3, []string{"Item 1", "Item 2", "Item 3"}}, // below 1 means 1
		{1, 0, []string{"Item 1", "Item 2", "Item 3", "Item 4", "Item 5", "Item 6", "Item 7"}},
	} {
		page, err := s.ListAssociations(t.Context(), ListFilter{Sort: SortNameAsc, Page: tc.page, PerPage: tc.perPage})
		if err != nil {
			t.Fatal(err)
		}
		if got := names(page.Items); !slices.Equal(got, tc.want) {
			t.Errorf("page %d per %d = %q, want %q", tc.page, tc.perPage, got, tc.want)
		}
		if page.Total != 7 {
			t.Errorf("page %d per %d: Total = %d, want 7", tc.page, tc.perPage, page.Total)
		}
	}
}

func TestListDefaultPerPageIs50(t *testing.T) {
	s, _ := openTestStore(t)
	for i := range 51 {
		mustCreate(t, s, Fields{DisplayName: fmt.Sprintf("n%02d", i)})
	}
	page, err := s.ListAssociations(t.Context(), ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 50 || page.Total != 51 {
		t.Errorf("default listing: %d items of %d, want 50 of 51", len(page.Items), page.Total)
	}
}

func TestListSortOrders(t *testing.T) {
	s, clock := openTestStore(t)
	t0 := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	// ids 1..6; ids 2 and 3 share a modification time, as do 4 and 5; names tie by case.
	create := func(name string, at time.Time) int64 {
		clock.set(at, 0)
		return mustCreate(t, s, Fields{DisplayName: name}).ID
	}
	beta1 := create("beta", t0.Add(3*time.Hour))
	alphaUp := create("Alpha", t0.Add(1*time.Hour))
	alphaLow := create("alpha", t0.Add(1*time.Hour))
	gamma := create("Gamma", t0.Add(5*time.Hour))
	beta2 := create("beta", t0.Add(5*time.Hour))
	delta := create("delta", t0)

	for _, tc := range []struct {
		sort string
		want []int64
	}{
		{SortNameAsc, []int64{alphaUp, alphaLow, beta1, beta2, delta, gamma}},
		{SortNameDesc, []int64{gamma, delta, beta2, beta1, alphaLow, alphaUp}},
		{SortModifiedAsc, []int64{delta, alphaUp, alphaLow, beta1, gamma, beta2}},
		{SortModifiedDesc, []int64{beta2, gamma, beta1, alphaLow, alphaUp, delta}},
		{"", []int64{beta2, gamma, beta1, alphaLow, alphaUp, delta}},
		{"bogus; DROP TABLE associations", []int64{beta2, gamma, beta1, alphaLow, alphaUp, delta}},
	} {
		t.Run(tc.sort, func(t *testing.T) {
			all, err := s.ListAssociations(t.Context(), ListFilter{Sort: tc.sort})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(all.Items); !slices.Equal(got, tc.want) {
				t.Errorf("sort %q = %v, want %v", tc.sort, got, tc.want)
			}
			// Paging through ties neither repeats nor skips a row.
			var paged []int64
			for p := 1; p <= 3; p++ {
				page, err := s.ListAssociations(t.Context(), ListFilter{Sort: tc.sort, Page: p, PerPage: 2})
				if err != nil {
					t.Fatal(err)
				}
				paged = append(paged, ids(page.Items)...)
			}
			if !slices.Equal(paged, tc.want) {
				t.Errorf("sort %q paged by 2 = %v, want %v", tc.sort, paged, tc.want)
			}
		})
	}
	if !ValidSort(SortNameAsc) || !ValidSort(SortModifiedAsc) || !ValidSort(SortNameDesc) || !ValidSort(SortModifiedDesc) || ValidSort("") || ValidSort("size") {
		t.Error("ValidSort accepts the wrong set")
	}
}

func TestUpdateMovesToTopOfDefaultSort(t *testing.T) {
	s, _ := openTestStore(t)
	first := mustCreate(t, s, Fields{DisplayName: "first"})
	mustCreate(t, s, Fields{DisplayName: "second"})
	if _, err := s.UpdateAssociation(t.Context(), first.ID, 1, Fields{DisplayName: "first, edited"}, Actor{}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListAssociations(t.Context(), ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(page.Items); !slices.Equal(got, []string{"first, edited", "second"}) {
		t.Errorf("default order after edit = %q", got)
	}
}

func TestConcurrentCreatesAndUpdatesAllSucceed(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	const n = 20
	errs := make(chan error, 3*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, err := s.CreateAssociation(ctx, Fields{DisplayName: fmt.Sprintf("cart %02d", i), DeviceCartIDs: []string{"C"}}, Actor{})
			if err != nil {
				errs <- fmt.Errorf("create %d: %w", i, err)
				return
			}
			if _, err := s.UpdateAssociation(ctx, a.ID, 1, Fields{DisplayName: fmt.Sprintf("cart %02d edited", i)}, Actor{}); err != nil {
				errs <- fmt.Errorf("update %d: %w", i, err)
			}
			if _, err := s.ListAssociations(ctx, ListFilter{Query: "cart"}); err != nil {
				errs <- fmt.Errorf("list %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	page, err := s.ListAssociations(ctx, ListFilter{Query: "edited", PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != n {
		t.Errorf("%d edited associations stored, want %d", page.Total, n)
	}
	for _, a := range page.Items {
		if a.Revision != 2 {
			t.Errorf("%q has revision %d, want 2", a.DisplayName, a.Revision)
		}
	}
}

func TestConcurrentUpdatesOfOneRowExactlyOneWins(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "contested"})
	const n = 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won       []string
		conflicts int
	)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("writer %02d", i)
			_, err := s.UpdateAssociation(ctx, a.ID, 1, Fields{DisplayName: name}, Actor{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, name)
			case errors.Is(err, ErrConflict):
				conflicts++
			default:
				t.Errorf("writer %d: unexpected error %v", i, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 || conflicts != n-1 {
		t.Fatalf("%d winners (%q) and %d conflicts; want 1 and %d", len(won), won, conflicts, n-1)
	}
	got := mustGet(t, s, a.ID)
	if got.DisplayName != won[0] || got.Revision != 2 {
		t.Errorf("stored %q rev %d, want the winner %q at rev 2", got.DisplayName, got.Revision, won[0])
	}
}

func TestFieldsEqual(t *testing.T) {
	base := Fields{DisplayName: "a", Description: "b", Version: 1, DeviceCartIDs: []string{"x"}, ClassroomIDs: nil}
	same := Fields{DisplayName: "a", Description: "b", Version: 1, DeviceCartIDs: []string{"x"}, ClassroomIDs: []string{}}
	if !base.Equal(same) {
		t.Error("nil and empty lists should be equal")
	}
	for _, other := range []Fields{
		{DisplayName: "A", Description: "b", Version: 1, DeviceCartIDs: []string{"x"}},
		{DisplayName: "a", Description: "", Version: 1, DeviceCartIDs: []string{"x"}},
		{DisplayName: "a", Description: "b", Version: 2, DeviceCartIDs: []string{"x"}},
		{DisplayName: "a", Description: "b", Version: 1, DeviceCartIDs: []string{"x", "y"}},
		{DisplayName: "a", Description: "b", Version: 1, DeviceCartIDs: []string{"x"}, ClassroomIDs: []string{"x"}},
	} {
		if base.Equal(other) {
			t.Errorf("%+v reported equal to %+v", other, base)
		}
	}
}
