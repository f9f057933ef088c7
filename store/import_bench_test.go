package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// benchImportAdmin is who uploads and applies the benchmark's imports.
var benchImportAdmin = Actor{Subject: "sub-bench-importer", Name: "Bench Importer"}

// BenchmarkApplyImport applies one import of 5,000 rows, 2,500 changing an existing
// association's description and 2,500 creating new ones, to a store of 10,000
// associations: the Apply button's transaction (re-reading every row's association, the
// writes, their outbox rows and history entries). Each iteration starts from a freshly
// seeded store and saves its preview outside the timer. Run with -benchtime 1x (or a few).
func BenchmarkApplyImport(b *testing.B) {
	const (
		existing = 10_000
		changed  = 2_500
		created  = 2_500
	)
	ctx := context.Background()
	b.ReportAllocs()
	var applied time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, id := benchImportPreview(b, existing, changed, created)
		b.StartTimer()
		start := time.Now()
		p, err := s.ApplyImport(ctx, id, benchImportAdmin)
		applied += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if p.New != created || p.Changed != changed || p.AppliedAt.IsZero() {
			b.Fatalf("applied %d new, %d changed (applied at %v); want %d and %d", p.New, p.Changed, p.AppliedAt, created, changed)
		}
		var n int
		if err := s.read.QueryRowContext(ctx, "SELECT count(*) FROM associations").Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n != existing+created {
			b.Fatalf("%d associations after the import, want %d", n, existing+created)
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(applied.Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(applied.Microseconds())/float64(b.N)/float64(changed+created), "µs/row")
}

// benchImportPreview is a fresh store of n associations (benchFields) and the saved
// preview of a file that changes the description of the first changed of them and
// creates created new ones.
func benchImportPreview(b *testing.B, n, changed, created int) (*Store, string) {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "import.db"))
	if err != nil {
		b.Fatal(err)
	}
	if err := seedAssociations(ctx, s, n, benchFields); err != nil {
		s.Close()
		b.Fatal(err)
	}
	rows := make([]ImportRow, 0, changed+created)
	err = s.EachAssociation(ctx, ListFilter{Sort: SortNameAsc}, func(a Association) error {
		if len(rows) == changed {
			return nil
		}
		f := a.Fields.Clone()
		f.Description = fmt.Sprintf("Moved to block C (%s)", a.DisplayName)
		rows = append(rows, ImportRow{Row: len(rows) + 2, AssociationID: a.ID, Revision: a.Revision, Base: a.Fields.Clone(), Fields: f})
		return nil
	})
	if err != nil {
		s.Close()
		b.Fatal(err)
	}
	for i := range created {
		f := benchFields(n + i) // names no seeded association has
		f.DisplayName = fmt.Sprintf("Imported cart %05d", i)
		rows = append(rows, ImportRow{Row: len(rows) + 2, Fields: f})
	}
	p, err := s.SaveImport(ctx, benchImportAdmin, "bench.csv", rows)
	if err != nil {
		s.Close()
		b.Fatal(err)
	}
	if p.New != created || p.Changed != changed || p.Invalid+p.Unchanged != 0 {
		s.Close()
		b.Fatalf("preview: %d new, %d changed, %d unchanged, %d invalid; want %d and %d", p.New, p.Changed, p.Unchanged, p.Invalid, created, changed)
	}
	return s, p.ID
}
