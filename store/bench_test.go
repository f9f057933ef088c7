package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// benchAssociations is the size of the listing benchmark's dataset.
const benchAssociations = 10_000

// benchDB is built once per test binary: creating 10,000 associations one transaction at a
// time (synchronous=FULL) takes seconds, and every benchmark only reads it.
var benchDB struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDB.dir != "" {
		os.RemoveAll(benchDB.dir)
	}
	os.Exit(code)
}

// benchFields is association i of the dataset: every second one mentions "iPads" (many
// matches), every thousandth carries a "RARE" cart (10 matches).
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
	if i%1000 == 0 {
		f.DeviceCartIDs = append(f.DeviceCartIDs, fmt.Sprintf("RARE-%d", i))
	}
	return f
}

func openBenchStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	benchDB.once.Do(func() {
		start := time.Now()
		benchDB.dir, benchDB.err = os.MkdirTemp("", "cartclass-bench-")
		if benchDB.err != nil {
			return
		}
		benchDB.path = filepath.Join(benchDB.dir, "bench.db")
		s, err := Open(ctx, benchDB.path)
		if err != nil {
			benchDB.err = err
			return
		}
		defer s.Close()
		t := time.Date(2024, 9, 1, 7, 0, 0, 0, time.UTC)
		s.Now = func() time.Time { t = t.Add(time.Second); return t }
		for i := range benchAssociations {
			if _, err := s.CreateAssociation(ctx, benchFields(i), Actor{Subject: "bench", Name: "Bench"}); err != nil {
				benchDB.err = err
				return
			}
		}
		fmt.Fprintf(os.Stderr, "store bench: created %d associations in %v\n", benchAssociations, time.Since(start).Round(time.Millisecond))
	})
	if benchDB.err != nil {
		b.Fatalf("building the benchmark database: %v", benchDB.err)
	}
	s, err := Open(ctx, benchDB.path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkListAssociations(b *testing.B) {
	s := openBenchStore(b)
	for _, bc := range []struct {
		name      string
		filter    ListFilter
		wantTotal int
		wantItems int
	}{
		{"first-page-default-sort", ListFilter{PerPage: 50}, benchAssociations, 50},
		{"search-few", ListFilter{Query: "rare", PerPage: 50}, 10, 10},
		{"search-many", ListFilter{Query: "IPADS", PerPage: 50}, benchAssociations / 2, 50},
		{"name-sort-page-100", ListFilter{Sort: SortNameAsc, Page: 100, PerPage: 50}, benchAssociations, 50},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				page, err := s.ListAssociations(ctx, bc.filter)
				if err != nil {
					b.Fatal(err)
				}
				if page.Total != bc.wantTotal || len(page.Items) != bc.wantItems {
					b.Fatalf("got %d items of %d, want %d of %d", len(page.Items), page.Total, bc.wantItems, bc.wantTotal)
				}
			}
		})
	}
}
