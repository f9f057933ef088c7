package store

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// searchNames returns the sorted display names that query finds, failing on an error.
func searchNames(t *testing.T, s *Store, query string) []string {
	t.Helper()
	page, err := s.ListAssociations(t.Context(), ListFilter{Query: query, PerPage: 100})
	if err != nil {
		t.Fatalf("search %q: %v", query, err)
	}
	if page.Total != len(page.Items) || page.TotalCapped {
		t.Errorf("search %q: Total %d (capped %v) for %d items", query, page.Total, page.TotalCapped, len(page.Items))
	}
	got := names(page.Items)
	slices.Sort(got)
	return got
}

func TestSearchSubstringsIDsAndScripts(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	for _, f := range []Fields{
		{DisplayName: "Science block", DeviceCartIDs: []string{"cart-12"}, ClassroomIDs: []string{"room-101"}},
		{DisplayName: "Ünïcode lab", Description: "École maternelle"},
		{DisplayName: "Αθήνα", Description: "Москва"},
		{DisplayName: "理科室 二階"},
		{DisplayName: "Ecole sans accent", DeviceCartIDs: []string{"cart-120"}},
	} {
		mustCreate(t, s, f)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"ienc", []string{"Science block"}},                         // the middle of a word
		{"cart-12", []string{"Ecole sans accent", "Science block"}}, // cart-12 and cart-120
		{"cart-120", []string{"Ecole sans accent"}},
		{"ROOM-101", []string{"Science block"}},
		{"oom-10", []string{"Science block"}},
		{"ÜNÏCODE", []string{"Ünïcode lab"}},
		{"nïc", []string{"Ünïcode lab"}},
		{"unicode", nil}, // diacritics are significant, as they were
		{"école", []string{"Ünïcode lab"}},
		{"ecole", []string{"Ecole sans accent"}},
		{"ΑΘΉ", []string{"Αθήνα"}},
		{"θήν", []string{"Αθήνα"}},
		{"МОСК", []string{"Αθήνα"}},
		{"сква", []string{"Αθήνα"}},
		{"理科室", []string{"理科室 二階"}},
		{"科室 二", []string{"理科室 二階"}},
		// 1–2 characters: the start of a word only. A run of CJK is one word to the word
		// index, so "科室" (inside 理科室) no longer matches, while 理科 and 二階 do.
		{"理科", []string{"理科室 二階"}},
		{"科室", nil},
		{"二", []string{"理科室 二階"}},
		{"sc", []string{"Science block"}},
		{"ie", nil},                                            // inside "Science": matched before, not any more
		{"12", []string{"Ecole sans accent", "Science block"}}, // the words 12 (cart-12) and 120 (cart-120)
		{"01", nil}, // inside 101
		{"ü", []string{"Ünïcode lab"}},
		{"u", nil},
		{"é", []string{"Ünïcode lab"}},
		{"М", []string{"Αθήνα"}}, // Cyrillic (Москва)
		{"α", []string{"Αθήνα"}}, // Greek (Αθήνα)
	} {
		if got := searchNames(t, s, tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("search %q = %q, want %q", tc.query, got, tc.want)
		}
	}
}

func TestSearchTakesFTSSyntaxLiterally(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	mustCreate(t, s, Fields{DisplayName: `Room (A) "East" x:y a*b -neg ^top NEAR(p q) AND OR NOT`})
	mustCreate(t, s, Fields{DisplayName: "plain"})
	const room = `Room (A) "East" x:y a*b -neg ^top NEAR(p q) AND OR NOT`
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"(a)", []string{room}},
		{`"east"`, []string{room}},
		{`"east`, []string{room}},
		{`east"`, []string{room}},
		{`""`, nil}, // two characters, no word
		{`"`, nil},
		{"x:y", []string{room}},
		{"a*b", []string{room}},
		{"a*", []string{room}}, // the word "a" (of "a*b"), followed by "*"
		{"*", nil},
		{"-neg", []string{room}},
		{"-", nil},
		{"^top", []string{room}},
		{"^", nil},
		{"near(p q)", []string{room}},
		{"(", nil},
		{":", nil},
		{"and or not", []string{room}},
		{"AND", []string{room}},
		{"NOT", []string{room}},
		{"OR", []string{room}}, // a word of its own
		{"a\x00b", nil},        // NUL: FTS5 reads C strings; no match rather than a cut query
		{"\x00", nil},
		{"ro\xffom", nil}, // invalid UTF-8
		{"x*:y", nil},
		{"plain OR room", nil}, // no boolean operators: a literal phrase
	} {
		if got := searchNames(t, s, tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("search %q = %q, want %q", tc.query, got, tc.want)
		}
	}
}

// The search indexes follow every change of associations, also one made with raw SQL (a
// seeding tool, or the delete that comes later).
func TestSearchIndexFollowsWrites(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Chemistry carts", ClassroomIDs: []string{"LAB-7"}})
	if got := searchNames(t, s, "mistry"); !slices.Equal(got, []string{"Chemistry carts"}) {
		t.Fatalf("after create: %q", got)
	}
	if _, err := s.UpdateAssociation(ctx, a.ID, a.Revision, Fields{DisplayName: "Physics trolleys", ClassroomIDs: []string{"LAB-8"}}, Actor{}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string][]string{
		"mistry": nil, "chemistry": nil, "ch": nil, "lab-7": nil,
		"physics": {"Physics trolleys"}, "ph": {"Physics trolleys"}, "lab-8": {"Physics trolleys"}, "oll": {"Physics trolleys"},
	} {
		if got := searchNames(t, s, q); !slices.Equal(got, want) {
			t.Errorf("after edit, search %q = %q, want %q", q, got, want)
		}
	}

	// Raw SQL: an insert, an INSERT OR REPLACE over an existing id (whose implicit delete
	// fires no trigger), an update of search_text, and a delete.
	if _, err := s.exec(ctx, `INSERT INTO associations (id, display_name, version, created_at, updated_at, search_text)
		VALUES (100, 'Seeded', 1, 1, 1, 'seeded by a tool')`); err != nil {
		t.Fatal(err)
	}
	if got := searchNames(t, s, "by a tool"); !slices.Equal(got, []string{"Seeded"}) {
		t.Errorf("raw insert: search = %q", got)
	}
	if _, err := s.exec(ctx, `INSERT OR REPLACE INTO associations (id, display_name, version, created_at, updated_at, search_text)
		VALUES (100, 'Replaced', 1, 2, 2, 'replaced wholesale')`); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string][]string{"by a tool": nil, "seeded": nil, "se": nil, "wholesale": {"Replaced"}, "wh": {"Replaced"}} {
		if got := searchNames(t, s, q); !slices.Equal(got, want) {
			t.Errorf("after INSERT OR REPLACE, search %q = %q, want %q", q, got, want)
		}
	}
	if _, err := s.exec(ctx, `UPDATE associations SET search_text = 'renamed quietly' WHERE id = 100`); err != nil {
		t.Fatal(err)
	}
	if got := searchNames(t, s, "wholesale"); len(got) != 0 {
		t.Errorf("after raw update, old text still found: %q", got)
	}
	if got := searchNames(t, s, "quietly"); !slices.Equal(got, []string{"Replaced"}) {
		t.Errorf("after raw update, new text: %q", got)
	}
	if _, err := s.exec(ctx, `DELETE FROM associations WHERE id IN (100, ?)`, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"quietly", "physics", "ph", "re", "trolleys"} {
		if got := searchNames(t, s, q); len(got) != 0 {
			t.Errorf("after delete, search %q = %q, want nothing", q, got)
		}
	}
	for _, table := range []string{"association_search", "association_words"} {
		var n int
		if err := s.read.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE "+table+" MATCH 'quietly OR physics OR trolleys'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s still holds %d deleted rows", table, n)
		}
	}
}

// capFixture holds 2,000 associations (one in 100 waiting for Graph), the first 1,200 of
// them matching "match-me".
func capFixture(t *testing.T) *Store {
	s, _ := openTestStore(t)
	err := seedAssociations(t.Context(), s, 2000, func(i int) Fields {
		f := Fields{DisplayName: fmt.Sprintf("row %04d", i)}
		if i < 1200 {
			f.Description = "match-me"
		}
		return f
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestListCountIsCapped(t *testing.T) {
	t.Parallel()
	s := capFixture(t)
	for _, tc := range []struct {
		name   string
		filter ListFilter
		total  int
		capped bool
		items  int
	}{
		{"search first page", ListFilter{Query: "match-me"}, 1000, true, 50},
		{"search page 20", ListFilter{Query: "match-me", Page: 20}, 1000, true, 50},
		// page 21 needs rows up to 1,050: the cap rises to that, still short of 1,200
		{"search page 21", ListFilter{Query: "match-me", Page: 21}, 1050, true, 50},
		{"search last page", ListFilter{Query: "match-me", Page: 24}, 1200, false, 50},
		{"search past the end", ListFilter{Query: "match-me", Page: 30}, 1200, false, 0},
		{"unfiltered", ListFilter{}, 1000, true, 50},
		{"unfiltered page 30", ListFilter{Page: 30}, 1500, true, 50},
		{"unfiltered past the end", ListFilter{Page: 41}, 2000, false, 0},
		{"unfiltered last page", ListFilter{Page: 40}, 2000, false, 50},
		{"short query", ListFilter{Query: "ma"}, 1000, true, 50},
		{"short query past the end", ListFilter{Query: "ma", Page: 25}, 1200, false, 0},
		{"not synced", ListFilter{NotSynced: true}, 20, false, 20}, // one in 100 is waiting
		{"not synced past the end", ListFilter{NotSynced: true, Page: 2, PerPage: 20}, 20, false, 0},
		{"few matches", ListFilter{Query: "row 00"}, 100, false, 50},
	} {
		page, err := s.ListAssociations(t.Context(), tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if page.Total != tc.total || page.TotalCapped != tc.capped || len(page.Items) != tc.items {
			t.Errorf("%s: %d items, Total %d, capped %v; want %d items, Total %d, capped %v",
				tc.name, len(page.Items), page.Total, page.TotalCapped, tc.items, tc.total, tc.capped)
		}
	}
}

// Every way ListAssociations may take (the index, a walk, a bounded walk that gives up,
// a filter walked alone) gives the page that sorting all matches would.
func TestListPagesMatchSortingAllMatches(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	const n = 4000
	// The 1,100 matches of "bunched" are the rows least recently modified: a walk along
	// -modified meets none within its bound and must ask the index. "spread" matches every
	// third row.
	at := func(i int) int64 { return int64((i * 7919) % n) } // the seeder's order of modification
	err := seedAssociations(t.Context(), s, n, func(i int) Fields {
		f := Fields{DisplayName: fmt.Sprintf("%c row %04d", 'A'+i%26, i), Description: "x"}
		if at(i) < 1100 {
			f.Description += " bunched"
		}
		if i%3 == 0 {
			f.Description += " spread"
		}
		return f
	})
	if err != nil {
		t.Fatal(err)
	}
	all := make([]Association, 0, n)
	for p := 1; ; p++ {
		page, err := s.ListAssociations(t.Context(), ListFilter{Page: p, PerPage: 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) == 0 {
			break
		}
		all = append(all, page.Items...)
	}
	if len(all) != n {
		t.Fatalf("listed %d rows, want %d", len(all), n)
	}
	for _, f := range []ListFilter{
		{Query: "bunched"}, {Query: "bunched", Page: 3}, {Query: "bunched", Sort: SortModifiedAsc},
		{Query: "bunched", Sort: SortNameAsc, Page: 2}, {Query: "bunched", Sort: SortNameDesc},
		{Query: "spread"}, {Query: "spread", Page: 7, PerPage: 30}, {Query: "spread", Sort: SortNameAsc, Page: 5},
		{Query: "spread", Sort: SortNameDesc, Page: 2, PerPage: 100},
		{Query: "sp"}, {Query: "bu", Page: 2}, {Query: "sp", Page: 3, PerPage: 100}, {Query: "b", Sort: SortNameAsc},
		{Query: "spread", NotSynced: true}, {Query: "x", NotSynced: true, Sort: SortNameDesc},
		{NotSynced: true, Page: 2, PerPage: 10}, {Sort: SortNameDesc, Page: 40},
	} {
		want := expectedPage(all, f)
		page, err := s.ListAssociations(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(page.Items); !slices.Equal(got, want) {
			t.Errorf("%+v: ids %v, want %v", f, got, want)
		}
	}
}

// expectedPage picks f's page from all rows (in -modified order) by sorting the matches in
// Go: a substring of the lower-cased text, for 1–2 characters at the start of a word.
func expectedPage(all []Association, f ListFilter) []int64 {
	q := strings.ToLower(f.Query)
	var m []Association
	for _, a := range all {
		text := strings.ToLower(a.DisplayName + "\n" + a.Description)
		ok := strings.Contains(text, q)
		if len([]rune(q)) <= 2 && q != "" {
			ok = slices.ContainsFunc(strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == '\n' }),
				func(w string) bool { return strings.HasPrefix(w, q) })
		}
		if ok && (!f.NotSynced || a.Sync.State != SyncSynced) {
			m = append(m, a)
		}
	}
	key := func(a Association) string { return strings.ToLower(a.DisplayName) }
	slices.SortStableFunc(m, func(a, b Association) int {
		switch f.Sort {
		case SortModifiedAsc:
			return a.UpdatedAt.Compare(b.UpdatedAt)*2 + cmpInt(a.ID, b.ID)
		case SortNameAsc:
			return strings.Compare(key(a), key(b))*2 + cmpInt(a.ID, b.ID)
		case SortNameDesc:
			return strings.Compare(key(b), key(a))*2 + cmpInt(b.ID, a.ID)
		}
		return b.UpdatedAt.Compare(a.UpdatedAt)*2 + cmpInt(b.ID, a.ID)
	})
	per := f.PerPage
	if per < 1 {
		per = 50
	}
	start := (max(f.Page, 1) - 1) * per
	if start >= len(m) {
		return []int64{}
	}
	return ids(m[start:min(start+per, len(m))])
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Existing rows must be found after the upgrade: the migration fills the indexes.
func TestSearchFindsRowsFromBeforeTheIndexes(t *testing.T) {
	t.Parallel()
	s := openPreviousSchema(t)
	for q, want := range map[string][]string{
		"old cart": {"Old cart"}, "ol": {"Old cart"}, "cart": {"Linked cart", "Old cart"},
		"g-room": {"Linked cart"}, "li": {"Linked cart"},
	} {
		if got := searchNames(t, s, q); !slices.Equal(got, want) {
			t.Errorf("search %q = %q, want %q", q, got, want)
		}
	}
}

// openPreviousSchema makes a database as migrations 0001–0003 left it, with rows in every
// table, and opens it with the current code.
func openPreviousSchema(t *testing.T) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "previous.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"migrations/0001_init.sql", "migrations/0002_sessions.sql", "migrations/0003_outbox.sql"} {
		body, err := migrations.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := db.Exec(`PRAGMA user_version = 3;
		INSERT INTO associations (id, display_name, version, created_at, updated_at, search_text)
			VALUES (1, 'Old cart', 1, 10, 10, 'old cart'||char(10)||'c-1');
		INSERT INTO associations (id, graph_id, display_name, version, created_at, updated_at, search_text, sync_state)
			VALUES (2, 'g-2', 'Linked cart', 2, 20, 20, 'linked cart'||char(10)||'g-room', 'synced');
		INSERT INTO outbox (association_id, enqueued_at, attempts, next_attempt_at) VALUES (1, 10, 3, 10);
		INSERT INTO sessions (id_hash, subject, data, created_at, last_seen_at, expires_at)
			VALUES (x'0102', 'sub-old', x'aa', 100, 200, 300);
		INSERT INTO login_requests (state_hash, data, expires_at) VALUES (x'03', x'bb', 400);
		INSERT INTO user_tokens (subject, data, updated_at) VALUES ('sub-old', x'cc', 5)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open over the previous schema: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
