package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of the activity log's reads (ListHistory, EachHistory) and of PruneHistory. They
// use the outbox tests' fixed clock: each change is made at the time set before it.

// hlSeed is a small history across three associations and five people, made at known
// times, one of them out of order with its id; the third association is purged at the end.
// It returns the ids of alpha, beta and gamma.
//
// Newest first, the entries are:
//
//	Sep 3 10:00  gamma deleted, by Admin (sub-admin), then purged
//	Sep 3 09:00  alpha edited (renamed alpha-renamed), by Bob (sub-bob)
//	Sep 2 10:00  alpha edited, by Ada (sub-1)
//	Sep 2 09:00  beta edited, by Intune (no subject); made after the entry above
//	Sep 1 10:00  gamma created, by Carol (subject "carol")
//	Sep 1 09:00  beta created, by Bob
//	Sep 1 08:00  alpha created, by Ada
func hlSeed(t *testing.T) (s *Store, alpha, beta, gamma int64) {
	t.Helper()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	at := func(day, hour int) { *now = time.Date(2025, 9, day, hour, 0, 0, 0, time.UTC) }
	create := func(name string, by Actor) int64 {
		a, err := s.CreateAssociation(ctx, obFields(name), by)
		if err != nil {
			t.Fatal(err)
		}
		return a.ID
	}
	edit := func(id int64, by Actor, change func(*Fields)) {
		cur := obGet(t, s, id)
		f := cur.Fields
		change(&f)
		if _, err := s.UpdateAssociation(ctx, id, cur.Revision, f, by); err != nil {
			t.Fatal(err)
		}
	}
	at(1, 8)
	alpha = create("alpha", obActor)
	at(1, 9)
	beta = create("beta", hlBob)
	at(1, 10)
	gamma = create("gamma", hlCarol)
	at(2, 10)
	edit(alpha, obActor, func(f *Fields) { f.Description = "by Ada" })
	at(2, 9)
	edit(beta, hlIntune, func(f *Fields) { f.Version = 8 })
	at(3, 9)
	edit(alpha, hlBob, func(f *Fields) { f.DisplayName = "alpha-renamed" })
	at(3, 10)
	mrDelete(t, s, gamma)
	if n, err := s.PurgeDeleted(ctx, time.Date(2025, 9, 4, 0, 0, 0, 0, time.UTC)); err != nil || n != 1 {
		t.Fatalf("PurgeDeleted = %d, %v; want gamma purged", n, err)
	}
	return s, alpha, beta, gamma
}

var (
	hlBob    = Actor{Subject: "sub-bob", Name: "Bob"}
	hlCarol  = Actor{Subject: "carol", Name: "Carol"}
	hlIntune = Actor{Name: "Intune"}
)

// hlSeedAll is hlSeed's entries, newest first, as hlDescribe writes them.
var hlSeedAll = []string{
	"gamma deleted Admin",
	"alpha-renamed edited Bob",
	"alpha edited Ada",
	"beta edited Intune",
	"gamma created Carol",
	"beta created Bob",
	"alpha created Ada",
}

// hlDescribe is each entry as "<display name> <kind> <actor name>".
func hlDescribe(es []ActivityEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.DisplayName + " " + string(e.Kind) + " " + e.Actor.Name
	}
	return out
}

func hlList(t *testing.T, s *Store, f HistoryFilter) ([]ActivityEntry, bool) {
	t.Helper()
	es, more, err := s.ListHistory(t.Context(), f)
	if err != nil {
		t.Fatalf("ListHistory(%+v): %v", f, err)
	}
	return es, more
}

func TestListHistoryFilters(t *testing.T) {
	t.Parallel()
	s, alpha, beta, gamma := hlSeed(t)
	day := func(d int) time.Time { return time.Date(2025, 9, d, 0, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		name string
		f    HistoryFilter
		want []string
	}{
		{"everything", HistoryFilter{}, hlSeedAll},
		{"subject", HistoryFilter{Person: "sub-1"}, []string{"alpha edited Ada", "alpha created Ada"}},
		{"name in another case", HistoryFilter{Person: "ADA"}, []string{"alpha edited Ada", "alpha created Ada"}},
		{"name without a subject", HistoryFilter{Person: "intune"}, []string{"beta edited Intune"}},
		{"subject that is also the name, once", HistoryFilter{Person: "carol"}, []string{"gamma created Carol"}},
		{"subject is exact", HistoryFilter{Person: "SUB-BOB"}, nil},
		{"nobody", HistoryFilter{Person: "Eve"}, nil},
		{"association", HistoryFilter{AssociationID: alpha}, []string{"alpha-renamed edited Bob", "alpha edited Ada", "alpha created Ada"}},
		{"purged association", HistoryFilter{AssociationID: gamma}, []string{"gamma deleted Admin", "gamma created Carol"}},
		{"unknown association", HistoryFilter{AssociationID: gamma + 100}, nil},
		{"one day", HistoryFilter{From: day(2), To: day(3)}, []string{"alpha edited Ada", "beta edited Intune"}},
		{"from only", HistoryFilter{From: day(3)}, []string{"gamma deleted Admin", "alpha-renamed edited Bob"}},
		{"to only, excluded", HistoryFilter{To: time.Date(2025, 9, 1, 10, 0, 0, 0, time.UTC)}, []string{"beta created Bob", "alpha created Ada"}},
		{"from included", HistoryFilter{From: time.Date(2025, 9, 1, 10, 0, 0, 0, time.UTC), To: day(2)}, []string{"gamma created Carol"}},
		{"person and association", HistoryFilter{Person: "Bob", AssociationID: alpha}, []string{"alpha-renamed edited Bob"}},
		{"person and dates", HistoryFilter{Person: "sub-bob", To: day(2)}, []string{"beta created Bob"}},
		{"everything at once", HistoryFilter{Person: "intune", AssociationID: beta, From: day(2), To: day(3)}, []string{"beta edited Intune"}},
	} {
		es, more := hlList(t, s, c.f)
		if got := hlDescribe(es); !slices.Equal(got, c.want) || more {
			t.Errorf("%s: %q (more %v), want %q", c.name, got, more, c.want)
		}
	}

	// The association as it is now, or the name it last had once it is purged.
	es, _ := hlList(t, s, HistoryFilter{})
	for _, e := range es {
		switch e.AssociationID {
		case alpha:
			if e.Current != "alpha-renamed" || e.Purged {
				t.Errorf("alpha's %s entry: current %q purged %v", e.Kind, e.Current, e.Purged)
			}
		case beta:
			if e.Current != "beta" || e.Purged {
				t.Errorf("beta's %s entry: current %q purged %v", e.Kind, e.Current, e.Purged)
			}
		case gamma:
			if e.Current != "" || !e.Purged || e.DisplayName != "gamma" {
				t.Errorf("purged gamma's %s entry: current %q purged %v name %q", e.Kind, e.Current, e.Purged, e.DisplayName)
			}
		}
		if e.At.Location() != time.UTC {
			t.Errorf("entry %d at %v, not UTC", e.ID, e.At)
		}
	}
	// What each entry recorded comes along.
	if e := es[1]; e.Actor != hlBob || len(e.Changes) != 1 || !reflect.DeepEqual(e.Changes[0], FieldChange{Field: "displayName", Old: "alpha", New: "alpha-renamed"}) {
		t.Errorf("rename entry = %+v", e)
	}
}

func TestListHistoryPaging(t *testing.T) {
	t.Parallel()
	s, alpha, _, _ := hlSeed(t)
	// Pages of 2, newest first, each starting after the previous page's last entry.
	var pages [][]string
	f := HistoryFilter{Limit: 2}
	for {
		es, more := hlList(t, s, f)
		pages = append(pages, hlDescribe(es))
		if !more {
			break
		}
		if len(pages) > 10 {
			t.Fatal("paging does not end")
		}
		f.Before = es[len(es)-1].ID
	}
	want := [][]string{hlSeedAll[0:2], hlSeedAll[2:4], hlSeedAll[4:6], hlSeedAll[6:7]}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Errorf("pages of 2:\n got %q\nwant %q", pages, want)
	}

	// Every filter pages alike: its pages of 1, 2 and 3 put together are its whole list.
	people := []string{"", "Bob", "ada", "carol", "Intune"}
	for _, p := range people {
		for _, id := range []int64{0, alpha} {
			base := HistoryFilter{Person: p, AssociationID: id}
			all, _ := hlList(t, s, base)
			for limit := 1; limit <= 3; limit++ {
				var got []ActivityEntry
				f := base
				f.Limit = limit
				for range 10 {
					es, more := hlList(t, s, f)
					if len(es) > limit || (more && len(es) != limit) {
						t.Fatalf("%+v: page of %d entries, more %v", f, len(es), more)
					}
					got = append(got, es...)
					if !more {
						break
					}
					f.Before = es[len(es)-1].ID
				}
				if !slices.Equal(hlDescribe(got), hlDescribe(all)) {
					t.Errorf("person %q association %d in pages of %d: %q, want %q", p, id, limit, hlDescribe(got), hlDescribe(all))
				}
			}
		}
	}

	// A before that is no entry's gives nothing (not the newest again); the default page is 50.
	if es, more := hlList(t, s, HistoryFilter{Before: 9999}); len(es) != 0 || more {
		t.Errorf("unknown before: %d entries, more %v", len(es), more)
	}
	hlInsert(t, s, 60, func(i int) (int64, int64, string) { return 7, obT0.Add(-time.Duration(i) * time.Hour).UnixNano(), "" })
	if es, more := hlList(t, s, HistoryFilter{}); len(es) != DefaultActivityPage || !more {
		t.Errorf("default page: %d entries, more %v; want %d and more", len(es), more, DefaultActivityPage)
	}
}

// hlInsert appends n entries directly, entry i for association, at and actor subject from
// row(i), for tests that need many.
func hlInsert(t *testing.T, s *Store, n int, row func(i int) (assoc, at int64, sub string)) {
	t.Helper()
	err := s.inTx(t.Context(), func(tx *sql.Tx) error {
		for i := range n {
			id, at, sub := row(i)
			if _, err := tx.ExecContext(t.Context(), `INSERT INTO history
				(association_id, at, kind, actor_sub, actor_name, revision, display_name)
				VALUES (?, ?, 'edited', ?, ?, 1, ?)`, id, at, sub, "Name "+sub, fmt.Sprintf("bulk-%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// hlRaw is every entry's id, newest first, by (at, id), read straight from the table.
func hlRaw(t *testing.T, s *Store, where string, args ...any) []int64 {
	t.Helper()
	rows, err := s.read.Query("SELECT id FROM history "+where+" ORDER BY at DESC, id DESC", args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

func TestEachHistoryWalksEveryEntryInOrder(t *testing.T) {
	t.Parallel()
	s, _, _, _ := hlSeed(t)
	ctx := t.Context()
	// More than two batches, in runs of equal times (the id orders those) that straddle
	// the batches' ends, and from two people.
	n := 2*eachHistoryBatch + 37
	hlInsert(t, s, n, func(i int) (int64, int64, string) {
		sub := "sub-even"
		if i%2 == 1 {
			sub = "sub-odd"
		}
		return int64(10 + i%5), obT0.Add(-time.Duration(i/7) * time.Minute).UnixNano(), sub
	})
	walk := func(f HistoryFilter) []int64 {
		var ids []int64
		if err := s.EachHistory(ctx, f, func(e ActivityEntry) error {
			ids = append(ids, e.ID)
			return nil
		}); err != nil {
			t.Fatalf("EachHistory(%+v): %v", f, err)
		}
		return ids
	}
	all := walk(HistoryFilter{Limit: 3, Before: 5}) // a page's limit and start are no part of a walk
	if want := hlRaw(t, s, ""); !slices.Equal(all, want) || len(all) != n+7 {
		t.Errorf("walk of everything: %d entries, want %d in (at, id) order", len(all), len(want))
	}
	if got, want := walk(HistoryFilter{Person: "name SUB-ODD"}), hlRaw(t, s, "WHERE actor_name = 'Name sub-odd'"); !slices.Equal(got, want) || len(got) != n/2 {
		t.Errorf("walk of one person: %d entries, want %d", len(got), len(want))
	}
	from := obT0.Add(-20 * time.Minute)
	if got, want := walk(HistoryFilter{AssociationID: 12, From: from}), hlRaw(t, s, "WHERE association_id = 12 AND at >= ?", from.UnixNano()); !slices.Equal(got, want) || len(got) == 0 {
		t.Errorf("walk of one association since %v: %v, want %v", from, got, want)
	}

	// One snapshot: an entry added while the walk runs is not in it, wherever it sorts.
	seen := 0
	err := s.EachHistory(ctx, HistoryFilter{}, func(e ActivityEntry) error {
		if seen == 0 {
			if _, err := s.exec(ctx, `INSERT INTO history (association_id, at, kind, revision, display_name)
				VALUES (3, 1, 'edited', 1, 'late')`); err != nil {
				return err
			}
		}
		seen++
		if e.DisplayName == "late" {
			return errors.New("the walk saw an entry added after it started")
		}
		return nil
	})
	if err != nil || seen != n+7 {
		t.Errorf("walk while writing: %d entries, %v; want %d", seen, err, n+7)
	}

	// fn's error stops the walk and comes back unchanged.
	stop := errors.New("stop")
	seen = 0
	if err := s.EachHistory(ctx, HistoryFilter{}, func(ActivityEntry) error {
		seen++
		if seen == eachHistoryBatch+1 {
			return stop
		}
		return nil
	}); err != stop || seen != eachHistoryBatch+1 {
		t.Errorf("stopped walk: %v after %d entries, want stop after %d", err, seen, eachHistoryBatch+1)
	}
	// A cancelled context stops it too.
	cctx, cancel := context.WithCancel(ctx)
	seen = 0
	err = s.EachHistory(cctx, HistoryFilter{}, func(ActivityEntry) error {
		if seen++; seen == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || seen != 3 {
		t.Errorf("cancelled walk: %v after %d entries", err, seen)
	}
}

// Every shape of the activity query reads an index in the page's order: no scan of the
// table, and no sort but the merge of a person's two bounded branches.
func TestListHistoryQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	at := obT0
	for mask := range 32 {
		f := HistoryFilter{}
		if mask&1 != 0 {
			f.Person = "sub-1"
		}
		if mask&2 != 0 {
			f.AssociationID = 3
		}
		if mask&4 != 0 {
			f.From = at
		}
		if mask&8 != 0 {
			f.To = at
		}
		if mask&16 != 0 {
			f.Before = 5
		}
		q, args := activityQuery(f, 51)
		rows, err := s.read.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "\n")
		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN history") && !strings.Contains(line, "USING INDEX history_at") {
				t.Errorf("%+v scans the table:\n%s", f, joined)
			}
		}
		if f.Person == "" && strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%+v sorts:\n%s", f, joined)
		}
		if f.Person != "" && f.AssociationID == 0 && (!strings.Contains(joined, "history_actor_sub") || !strings.Contains(joined, "history_actor_name")) {
			t.Errorf("%+v does not read the person indexes:\n%s", f, joined)
		}
	}
}

func TestPruneHistory(t *testing.T) {
	t.Parallel()
	s, alpha, beta, gamma := hlSeed(t)
	ctx := t.Context()
	// Nothing made before the cut-off: nothing goes.
	if n, err := s.PruneHistory(ctx, time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)); err != nil || n != 0 {
		t.Fatalf("PruneHistory before the first entry = %d, %v", n, err)
	}
	// Entries before Sep 2 09:00 go, that one itself stays.
	n, err := s.PruneHistory(ctx, time.Date(2025, 9, 2, 9, 0, 0, 0, time.UTC))
	if err != nil || n != 3 {
		t.Fatalf("PruneHistory = %d, %v; want the 3 entries of Sep 1", n, err)
	}
	es, _ := hlList(t, s, HistoryFilter{})
	if got := hlDescribe(es); !slices.Equal(got, hlSeedAll[:4]) {
		t.Errorf("after pruning: %q, want %q", got, hlSeedAll[:4])
	}
	// The associations themselves are untouched.
	if a := obGet(t, s, alpha); a.DisplayName != "alpha-renamed" {
		t.Errorf("alpha after pruning: %+v", a)
	}
	obGet(t, s, beta)

	// The largest id with history is purged gamma's: its newest entry stays however old,
	// so that no new association is given gamma's id (and whatever is kept by it).
	if n, err := s.PruneHistory(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != 3 {
		t.Fatalf("PruneHistory of everything = %d, %v; want 3 (gamma's last entry kept)", n, err)
	}
	es, _ = hlList(t, s, HistoryFilter{})
	if got := hlDescribe(es); !slices.Equal(got, []string{"gamma deleted Admin"}) {
		t.Errorf("after pruning everything: %q", got)
	}
	if d := obCreate(t, s, "delta"); d.ID <= gamma {
		t.Errorf("new association got id %d, gamma (purged) had %d", d.ID, gamma)
	}
	// Once a live association has the largest id, nothing old is kept.
	if n, err := s.PruneHistory(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != 2 {
		t.Fatalf("PruneHistory with delta = %d, %v; want gamma's and delta's entries", n, err)
	}
	if ids := hlRaw(t, s, ""); len(ids) != 0 {
		t.Errorf("entries left: %v", ids)
	}
}

// A prune of more than one batch removes them all, and reports them all.
func TestPruneHistoryInBatches(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	obCreate(t, s, "alpha") // the largest id, alive: nothing old is kept for it
	old := 2*pruneBatch + 11
	hlInsert(t, s, old+5, func(i int) (int64, int64, string) {
		at := obT0.Add(-time.Hour - time.Duration(i)*time.Second)
		if i >= old {
			at = obT0.Add(time.Duration(i) * time.Second)
		}
		return 1, at.UnixNano(), ""
	})
	n, err := s.PruneHistory(t.Context(), obT0)
	if err != nil || n != int64(old) {
		t.Fatalf("PruneHistory = %d, %v; want %d", n, err, old)
	}
	// Left: alpha's created entry (made at obT0, not before it) and the 5 newer.
	if left := hlRaw(t, s, ""); len(left) != 6 {
		t.Errorf("%d entries left, want 6", len(left))
	}
	if left := hlRaw(t, s, "WHERE at < ?", obT0.UnixNano()); len(left) != 0 {
		t.Errorf("%d entries before the cut-off left", len(left))
	}
}
