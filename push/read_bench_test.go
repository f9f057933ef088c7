package push_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
)

const (
	reconcileObjects  = 10000
	reconcilePageSize = 100
	reconcileLatency  = 20 * time.Millisecond
)

// reconcileGraph is an emulator holding reconcileObjects objects (made "as someone else in
// Intune"), served in pages of reconcilePageSize with reconcileLatency on every request,
// and a client for it.
func reconcileGraph(b *testing.B) *graph.Client {
	b.Helper()
	emu := emulator.New(emulator.WithPageSize(reconcilePageSize))
	for i := range reconcileObjects {
		name := fmt.Sprintf("bench-%05d", i)
		emu.PutObject(graph.Association{DisplayName: "Cart set " + name, Description: "Made in PowerShell for " + name,
			Version: 7, DeviceCartIDs: []string{"cart-" + name + "-1", "cart-" + name + "-2"}, ClassroomIDs: []string{"room-" + name}})
	}
	emu.SetLatency(reconcileLatency)
	srv := httptest.NewServer(emu)
	b.Cleanup(srv.Close)
	gc, err := graph.New(srv.URL+emulator.BasePath, graph.WithTokenSource(appToken))
	if err != nil {
		b.Fatal(err)
	}
	return gc
}

// reconcileWorker runs a worker on a new store in dir until the benchmark ends. Pacing is
// off so that the figures are the work itself. With the default pacing (1,800 requests per
// 20 s, a burst of 180) a read of these 100 pages would wait for nothing: the burst holds
// all 100, and at 20 ms a page the read asks for at most 50 pages a second, under the
// 90 a second the limiter refills.
func reconcileWorker(b *testing.B, gc *graph.Client) (*store.Store, *push.Worker) {
	b.Helper()
	st, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	w := push.New(st, gc, appTokens{appToken}, push.WithReadEvery(0), push.WithRequestsPer20s(0),
		push.WithWritesPer20s(0), push.WithLogger(slog.New(slog.DiscardHandler)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return st, w
}

// timedRead runs one read of Intune and returns how long it took, from RequestRead until
// ReadStatus shows it finished.
func timedRead(b *testing.B, w *push.Worker) time.Duration {
	b.Helper()
	start := time.Now()
	if !w.RequestRead("") {
		b.Fatal("RequestRead refused")
	}
	for w.ReadStatus().Running {
		time.Sleep(time.Millisecond)
	}
	d := time.Since(start)
	if rs := w.ReadStatus(); !rs.Last.Complete || rs.Last.Objects != reconcileObjects {
		b.Fatalf("read: %+v", rs.Last)
	}
	return d
}

func reportRead(b *testing.B, total time.Duration, reads int) {
	per := total.Seconds() / float64(reads)
	b.ReportMetric(per, "s/read")
	b.ReportMetric(reconcileObjects/per, "objects/s")
}

// BenchmarkReconcile reads 10,000 objects from Intune (pages of 100, 20 ms a request) and
// reconciles them: into an empty database (all imported), into one that already holds them
// (all in step), and, for comparison, the emulator serving the same pages to a client that
// applies nothing. Run it with -benchtime 1x: each iteration is one full read.
func BenchmarkReconcile(b *testing.B) {
	gc := reconcileGraph(b) // shared by the sub-benchmarks, and not measured
	ctx := context.Background()

	b.Run("empty", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			b.StopTimer()
			_, w := reconcileWorker(b, gc)
			b.StartTimer()
			total += timedRead(b, w)
		}
		reportRead(b, total, b.N)
	})

	b.Run("populated", func(b *testing.B) {
		st, w := reconcileWorker(b, gc)
		timedRead(b, w) // the import, not measured
		b.ResetTimer()
		var total time.Duration
		for range b.N {
			total += timedRead(b, w)
		}
		reportRead(b, total, b.N)
		p, err := st.ListAssociations(ctx, store.ListFilter{PerPage: reconcileObjects})
		if err != nil || p.Total != reconcileObjects || len(p.Items) != reconcileObjects {
			b.Fatalf("after reading: %d listed (%v)", p.Total, err)
		}
		for _, a := range p.Items {
			if a.Revision != 1 || a.Sync.State != store.SyncSynced {
				b.Fatalf("an in-step read changed %+v", a)
			}
		}
	})

	b.Run("emulator-alone", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			start := time.Now()
			n := 0
			for page, err := range gc.Pages(ctx) {
				if err != nil {
					b.Fatal(err)
				}
				n += len(page.Objects)
			}
			total += time.Since(start)
			if n != reconcileObjects {
				b.Fatalf("listed %d objects", n)
			}
		}
		reportRead(b, total, b.N)
	})
}
