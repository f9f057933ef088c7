package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// exT0 is the export tests' "now": after the seeded rows' times (September 2024).
var exT0 = time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)

// openExportStore opens a fresh store whose clock reads what set last set (exT0 at first).
func openExportStore(t *testing.T) (s *Store, set func(time.Time)) {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "export.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	now := exT0
	s.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	return s, func(t time.Time) { mu.Lock(); defer mu.Unlock(); now = t }
}

// exportAll is everything EachAssociation gives for f, failing on an error.
func exportAll(t *testing.T, s *Store, f ListFilter) []Association {
	t.Helper()
	var out []Association
	if err := s.EachAssociation(t.Context(), f, func(a Association) error {
		out = append(out, a)
		return nil
	}); err != nil {
		t.Fatalf("EachAssociation(%+v): %v", f, err)
	}
	return out
}

// listAll reads every page of f's listing, as someone pressing Next would.
func listAll(t *testing.T, s *Store, f ListFilter) []Association {
	t.Helper()
	var out []Association
	f.PerPage = 100
	for f.Page = 1; ; f.Page++ {
		page, err := s.ListAssociations(t.Context(), f)
		if err != nil {
			t.Fatalf("ListAssociations(%+v): %v", f, err)
		}
		out = append(out, page.Items...)
		if len(page.Items) < f.PerPage {
			return out
		}
	}
}

// exportFields is row i of the export tests' dataset: queries that take each of
// ListAssociations' ways (few candidates, many, more than the count's cap, 1–2 characters)
// have matches here.
func exportFields(i int) Fields {
	f := Fields{
		DisplayName:   fmt.Sprintf("%s wing room %04d", []string{"North", "south", "Lab", "west", "Ärzte", "Music", "'s-Hertogenbosch"}[i%7], i),
		Description:   "Laptops",
		Version:       int32(i%5 - 2),
		DeviceCartIDs: []string{fmt.Sprintf("CART-%04d", i)},
		ClassroomIDs:  []string{fmt.Sprintf("R%03d", i%300)},
	}
	if i%2 == 0 {
		f.Description = "iPads for the year group"
	}
	if i%100 == 7 {
		f.DeviceCartIDs = append(f.DeviceCartIDs, fmt.Sprintf("RARE-%d", i))
	}
	return f
}

// The export holds exactly the rows, in exactly the order and with exactly the values,
// that the list's pages show, for every search, filter and sort.
func TestEachAssociationListsWhatTheListShows(t *testing.T) {
	t.Parallel()
	s, set := openExportStore(t)
	const n = 1300 // "wing" matches more than the count's cap of 1,000
	if err := seedAssociations(t.Context(), s, n, exportFields); err != nil {
		t.Fatal(err)
	}
	if got := len(exportAll(t, s, ListFilter{})); got != n {
		t.Fatalf("%d associations exported, want %d", got, n)
	}
	// Deleted ones: 10 more than 30 days ago (left out everywhere), 30 within. Row i has
	// id i+1; the waiting (i%100 == 0) and rare (i%100 == 7) rows stay live.
	deleted := 0
	for i := 1; deleted < 40; i++ {
		if i%100 == 0 || i%100 == 7 {
			continue
		}
		at := exT0.Add(-DeletedFor - time.Duration(10-deleted)*time.Hour)
		if deleted >= 10 {
			at = exT0.Add(-time.Duration(50-deleted) * time.Hour)
		}
		set(at)
		if _, err := s.DeleteAssociation(t.Context(), int64(i+1), 1, Actor{Subject: "sub-x", Name: "X"}); err != nil {
			t.Fatalf("DeleteAssociation %d: %v", i+1, err)
		}
		deleted++
	}
	set(exT0)

	queries := []string{"", "wing", "ipads", "lab", "rare-", "oom 01", "r", "ca", "12", "ä", "nothing-like-this", "%", "a\x00"}
	sorts := []string{"", SortModifiedDesc, SortModifiedAsc, SortNameAsc, SortNameDesc, "bogus"}
	states := []ListFilter{{}, {NotSynced: true}, {Deleted: true}, {Deleted: true, NotSynced: true}}
	nonEmpty := 0
	for _, q := range queries {
		for _, sort := range sorts {
			for _, st := range states {
				f := st
				f.Query, f.Sort = q, sort
				want := listAll(t, s, f)
				got := exportAll(t, s, f)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%+v: exported %d associations %v…, the list shows %d %v…",
						f, len(got), firstIDs(got), len(want), firstIDs(want))
				}
				if len(want) > 0 {
					nonEmpty++
				}
			}
		}
	}
	// The comparisons above mean something only if the filters select rows.
	if nonEmpty < len(queries)*len(sorts)*len(states)/2 {
		t.Errorf("only %d of the listings compared hold anything", nonEmpty)
	}
	for _, tc := range []struct {
		f    ListFilter
		want int
	}{
		{ListFilter{}, n - 40},
		{ListFilter{Deleted: true}, 30},
		{ListFilter{NotSynced: true}, n / 100}, // every 100th is waiting
		{ListFilter{Query: "wing"}, n - 40},
		{ListFilter{Query: "rare-"}, n / 100},
		{ListFilter{Query: "rare-", Deleted: true}, 0},
		{ListFilter{Query: "r", Deleted: true}, 30},
	} {
		if got := len(exportAll(t, s, tc.f)); got != tc.want {
			t.Errorf("%+v: %d exported, want %d", tc.f, got, tc.want)
		}
	}
}

func firstIDs(as []Association) []int64 {
	return ids(as[:min(len(as), 5)])
}

// The rows come from one snapshot: what is saved while the export runs is not in it.
func TestEachAssociationReadsOneSnapshot(t *testing.T) {
	t.Parallel()
	s, set := openExportStore(t)
	var made []Association
	for i := range 5 {
		set(exT0.Add(time.Duration(i) * time.Minute))
		made = append(made, mustCreate(t, s, Fields{DisplayName: fmt.Sprintf("a%d", i), Description: "before"}))
	}
	set(exT0.Add(time.Hour))
	var got []Association
	err := s.EachAssociation(t.Context(), ListFilter{Sort: SortModifiedAsc}, func(a Association) error {
		if len(got) == 0 {
			// Oldest first: a new association, or an edit, would come last.
			mustCreate(t, s, Fields{DisplayName: "made during the export"})
			last := made[len(made)-1]
			if _, err := s.UpdateAssociation(t.Context(), last.ID, last.Revision, Fields{DisplayName: last.DisplayName, Description: "after"}, Actor{}); err != nil {
				return err
			}
		}
		got = append(got, a)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := names(made); !slices.Equal(names(got), want) {
		t.Fatalf("exported %q, want %q (the snapshot when the export began)", names(got), want)
	}
	if d := got[len(got)-1].Description; d != "before" {
		t.Errorf("last association's description = %q, want the value before the edit", d)
	}
	if n := len(exportAll(t, s, ListFilter{})); n != 6 {
		t.Errorf("a later export holds %d, want 6", n)
	}
}

func TestEachAssociationStopsAtFnsError(t *testing.T) {
	t.Parallel()
	s, _ := openExportStore(t)
	for i := range 5 {
		mustCreate(t, s, Fields{DisplayName: fmt.Sprintf("a%d", i)})
	}
	stop := errors.New("client gone")
	calls := 0
	err := s.EachAssociation(t.Context(), ListFilter{}, func(Association) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Fatalf("EachAssociation = %v after %d calls; want fn's own error after 2", err, calls)
	}
	// A query that can match nothing calls fn never.
	err = s.EachAssociation(t.Context(), ListFilter{Query: "a\xff"}, func(Association) error {
		t.Error("fn called for a query that matches nothing")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A cancelled context ends the walk with its error.
	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = s.EachAssociation(ctx, ListFilter{}, func(Association) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("after cancel: %v, %d calls; want context.Canceled after 1", err, calls)
	}
}

// The export's memory does not grow with its rows because SQLite walks an index in the
// listing's order: no sorter collects the rows first. (The Deleted filter's rows, kept 30
// days, are few: a sort of them is fine.)
func TestEachAssociationWalksAnIndexWithoutSorting(t *testing.T) {
	t.Parallel()
	s, _ := openExportStore(t)
	if err := seedAssociations(t.Context(), s, 50, exportFields); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "ipads", "ca"} {
		for _, sort := range []string{SortModifiedDesc, SortModifiedAsc, SortNameAsc, SortNameDesc} {
			for _, notSynced := range []bool{false, true} {
				f := ListFilter{Query: q, Sort: sort, NotSynced: notSynced}
				query, args, ok := exportQuery(f, exT0)
				if !ok {
					t.Fatalf("%+v: no query", f)
				}
				plan := queryPlan(t, s, query, args)
				if strings.Contains(plan, "TEMP B-TREE") || !strings.Contains(plan, "USING INDEX associations_") {
					t.Errorf("%+v: plan\n%s\nwants a walk of an associations index, without a sort", f, plan)
				}
				// A search's index is read once (a list of ids), not asked about each row.
				if q != "" && (!strings.Contains(plan, "LIST SUBQUERY") || strings.Contains(plan, "CORRELATED")) {
					t.Errorf("%+v: plan\n%s\nwants the search's candidates read once", f, plan)
				}
			}
		}
	}
}

func queryPlan(t *testing.T, s *Store, query string, args []any) string {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// heapPeak samples the Go heap in use (HeapInuse: objects and the free space of their
// spans) until stopped, and returns the highest value seen.
type heapPeak struct {
	stop chan struct{}
	done chan uint64
}

var heapInuseMetrics = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}

func heapInuse(samples []metrics.Sample) uint64 {
	metrics.Read(samples)
	var sum uint64
	for _, s := range samples {
		sum += s.Value.Uint64()
	}
	return sum
}

func startHeapPeak() *heapPeak {
	p := &heapPeak{stop: make(chan struct{}), done: make(chan uint64, 1)}
	go func() {
		samples := make([]metrics.Sample, len(heapInuseMetrics))
		for i, name := range heapInuseMetrics {
			samples[i].Name = name
		}
		peak := heapInuse(samples)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				p.done <- max(peak, heapInuse(samples))
				return
			case <-tick.C:
				peak = max(peak, heapInuse(samples))
			}
		}
	}()
	return p
}

func (p *heapPeak) end() uint64 { close(p.stop); return <-p.done }

// BenchmarkEachAssociation walks every association of the benchmark datasets (100,
// 10,000 and 100,000 rows). peak-heap-MiB is the most Go heap in use during one walk above
// what was in use before it, after a collection. It counts garbage not collected yet, so
// it sits at the collector's pace (a few MiB) once a walk allocates enough for collections
// to run, and stays there from 10,000 rows to 100,000: holding the rows would grow it with
// them. (SQLite's own memory is outside the Go heap, bounded by the page cache:
// readCacheKiB per read connection.)
func BenchmarkEachAssociation(b *testing.B) {
	for _, n := range []int{100, 10_000, 100_000} {
		s := openBenchStore(b, n)
		for _, bc := range []struct {
			name string
			f    ListFilter
		}{
			{"all", ListFilter{}},
			{"search-1-char", ListFilter{Query: "r"}}, // every row has a room R…
		} {
			benchEach(b, s, n, bc.name, bc.f)
		}
	}
}

// benchEach times EachAssociation of f over the n associations of s, all of which f selects.
func benchEach(b *testing.B, s *Store, n int, name string, f ListFilter) {
	b.Run(fmt.Sprintf("%d/%s", n, name), func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		samples := make([]metrics.Sample, len(heapInuseMetrics))
		for i, name := range heapInuseMetrics {
			samples[i].Name = name
		}
		var peak uint64
		for b.Loop() {
			runtime.GC()
			base := heapInuse(samples)
			hp := startHeapPeak()
			rows := 0
			err := s.EachAssociation(ctx, f, func(Association) error { rows++; return nil })
			top := hp.end()
			if err != nil {
				b.Fatal(err)
			}
			if rows != n {
				b.Fatalf("%d rows, want %d", rows, n)
			}
			if top > base {
				peak = max(peak, top-base)
			}
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		// Holding every row would take well over 50 MiB at 100,000.
		if peak > 32<<20 {
			b.Errorf("peak heap %d MiB above the start: the walk holds rows", peak>>20)
		}
	})
}
