package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchSizes are the numbers of associations the listing benchmarks run against.
var benchSizes = []int{10_000, 100_000}

// benchDBs are built once per test binary and size, and only read by the benchmarks.
var benchDBs struct {
	mu  sync.Mutex
	dir string
	db  map[int]string // size → path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDBs.dir != "" {
		os.RemoveAll(benchDBs.dir)
	}
	os.Exit(code)
}

// benchRareEvery makes one association in that many carry a "RARE-i" cart. The rare
// benchmark searches "rare-1", which only the few whose i starts with 1 hold (1 at 10,000
// rows, 6 at 100,000).
const benchRareEvery = 2000

// benchFields is association i of the dataset: every second one mentions "iPads" (many
// matches), every benchRareEvery-th carries a "RARE-i" cart.
func benchFields(i int) Fields {
	f := Fields{
		DisplayName:   fmt.Sprintf("%s wing room %05d", []string{"North", "south", "East", "west", "Ärzte", "Music", "Lab"}[i%7], i),
		Description:   "Laptops on the second floor",
		Version:       int32(i % 5),
		DeviceCartIDs: []string{fmt.Sprintf("CART-%05d", i), fmt.Sprintf("CART-%05d-B", i)},
		ClassroomIDs:  []string{fmt.Sprintf("R%04d", i%3000)},
	}
	if i%2 == 0 {
		f.Description = "iPads for the whole year group"
	}
	if i%benchRareEvery == 0 {
		f.DeviceCartIDs = append(f.DeviceCartIDs, fmt.Sprintf("RARE-%d", i))
	}
	return f
}

// seedAssociations inserts n associations made by fields(i) in one transaction of raw
// multi-row INSERTs, as a seeding tool would; the triggers keep the search indexes in
// step. Rows are modified in an order unrelated to their ids (updated_at is a permutation
// of i), one in 100 is waiting for Graph (with its outbox row), the rest synced.
func seedAssociations(ctx context.Context, s *Store, n int, fields func(int) Fields) error {
	// Many rows per statement: the full-text indexes flush their pending terms at each
	// statement's savepoint, so a statement a row would make seeding 100,000 rows last
	// half a minute.
	const perStmt = 500
	const cols = 10
	t0 := time.Date(2024, 9, 1, 7, 0, 0, 0, time.UTC).UnixNano()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < n; start += perStmt {
			end := min(start+perStmt, n)
			var q strings.Builder
			q.WriteString(`INSERT INTO associations (display_name, description, version, device_cart_ids, classroom_ids,
				created_at, updated_at, search_text, sync_state, synced_revision) VALUES `)
			args := make([]any, 0, (end-start)*cols)
			for i := start; i < end; i++ {
				if i > start {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				f := fields(i)
				carts, rooms, err := encodeIDs(f)
				if err != nil {
					return err
				}
				at := t0 + int64((i*7919)%n)*int64(time.Second) // 7919 is prime: a permutation unless n is its multiple
				state := SyncSynced
				if i%100 == 0 {
					state = SyncWaiting
				}
				args = append(args, f.DisplayName, f.Description, f.Version, carts, rooms, at, at, searchText(f), state, 1)
			}
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at, next_attempt_at)
			SELECT id, updated_at, updated_at FROM associations WHERE sync_state <> 'synced'`)
		return err
	})
}

// openBenchStore opens the dataset of n associations, building it on first use.
func openBenchStore(b *testing.B, n int) *Store {
	b.Helper()
	ctx := context.Background()
	benchDBs.mu.Lock()
	path, ok := benchDBs.db[n]
	if !ok {
		if benchDBs.dir == "" {
			dir, err := os.MkdirTemp("", "cartclass-bench-")
			if err != nil {
				benchDBs.mu.Unlock()
				b.Fatal(err)
			}
			benchDBs.dir, benchDBs.db = dir, map[int]string{}
		}
		path = filepath.Join(benchDBs.dir, fmt.Sprintf("bench-%d.db", n))
		start := time.Now()
		s, err := Open(ctx, path)
		if err == nil {
			err = seedAssociations(ctx, s, n, benchFields)
			s.Close()
		}
		if err != nil {
			benchDBs.mu.Unlock()
			b.Fatalf("building the benchmark database: %v", err)
		}
		benchDBs.db[n] = path
		fmt.Fprintf(os.Stderr, "store bench: seeded %d associations in %v\n", n, time.Since(start).Round(time.Millisecond))
	}
	benchDBs.mu.Unlock()
	s, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkListAssociations(b *testing.B) {
	for _, n := range benchSizes {
		s := openBenchStore(b, n)
		// "rare-1" is in the RARE-i carts whose i starts with 1: i = 10000, 100000… at
		// most a handful at either size (counted below, not assumed).
		rare := 0
		for i := 0; i < n; i += benchRareEvery {
			if strings.HasPrefix(fmt.Sprint(i), "1") {
				rare++
			}
		}
		for _, bc := range []struct {
			name      string
			filter    ListFilter
			wantTotal int
			capped    bool
			wantItems int
		}{
			{"first-page", ListFilter{PerPage: 50}, 1000, true, 50},
			{"name-sort-page-100", ListFilter{Sort: SortNameAsc, Page: 100, PerPage: 50}, 5000, true, 50},
			{"search-common", ListFilter{Query: "IPADS", PerPage: 50}, 1000, true, 50},
			{"search-common-name-sort", ListFilter{Query: "IPADS", Sort: SortNameAsc, PerPage: 50}, 1000, true, 50},
			{"search-rare", ListFilter{Query: "rare-1", PerPage: 50}, rare, false, rare},
			{"search-1-char", ListFilter{Query: "r", PerPage: 50}, 1000, true, 50},
			{"search-2-chars", ListFilter{Query: "ca", PerPage: 50}, 1000, true, 50},
			{"not-synced", ListFilter{NotSynced: true, PerPage: 50}, n / 100, false, 50},
			// The waiting rows are the multiples of 100: all of them even, so all with iPads.
			{"not-synced-search-common", ListFilter{NotSynced: true, Query: "ipads", PerPage: 50}, n / 100, false, 50},
		} {
			if strings.HasPrefix(bc.name, "not-synced") && n/100 > 1000 {
				bc.wantTotal, bc.capped = 1000, true
			}
			b.Run(fmt.Sprintf("%d/%s", n, bc.name), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					page, err := s.ListAssociations(ctx, bc.filter)
					if err != nil {
						b.Fatal(err)
					}
					if page.Total != bc.wantTotal || page.TotalCapped != bc.capped || len(page.Items) != bc.wantItems {
						b.Fatalf("got %d items of %d (capped %v), want %d of %d (capped %v)",
							len(page.Items), page.Total, page.TotalCapped, bc.wantItems, bc.wantTotal, bc.capped)
					}
				}
			})
		}
	}
}
