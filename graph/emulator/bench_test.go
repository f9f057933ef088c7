package emulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"golang.org/x/oauth2"
)

func benchClient(b *testing.B, em *emulator.Emulator) *graph.Client {
	b.Helper()
	srv := httptest.NewServer(em)
	b.Cleanup(srv.Close)
	c, err := graph.New(srv.URL+"/beta", graph.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func benchAssociation(i int) graph.Association {
	return graph.Association{Version: 7, DisplayName: fmt.Sprintf("cart %d", i), Description: "a description of some length",
		DeviceCartIDs: []string{"cart-1", "cart-2"}, ClassroomIDs: []string{"room-1"}}
}

// BenchmarkListPages is the time the emulator alone needs to serve a full
// listing of 10,000 objects in pages of 100 to the real client's Pages: the
// baseline for a reconciliation benchmark. With 20 ms latency per request,
// 100 requests cost at least 2 s; the rest is the emulator's and the
// client's own work (see the no_latency case).
func BenchmarkListPages(b *testing.B) {
	for _, tc := range []struct {
		name    string
		latency time.Duration
	}{{"latency_20ms", 20 * time.Millisecond}, {"no_latency", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			const n, pageSize = 10000, 100
			em := emulator.New(emulator.WithPageSize(pageSize))
			for i := range n {
				em.PutObject(benchAssociation(i))
			}
			em.SetLatency(tc.latency)
			c := benchClient(b, em)
			ctx := context.Background()
			pages := 0
			for b.Loop() {
				objects := 0
				for p, err := range c.Pages(ctx) {
					if err != nil {
						b.Fatal(err)
					}
					objects += len(p.Objects)
					pages++
				}
				if objects != n {
					b.Fatalf("listed %d objects, want %d", objects, n)
				}
			}
			b.ReportMetric(float64(pages)/float64(b.N), "pages/op")
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "objects/s")
		})
	}
}

// writeState writes a state file holding n objects, in the emulator's
// on-disk form, so a benchmark can start from a grown file.
func writeState(b *testing.B, path string, n int) {
	type stored struct {
		Seq int64             `json:"seq"`
		Obj graph.Association `json:"object"`
	}
	st := struct {
		Seq     int64    `json:"seq"`
		Objects []stored `json:"objects"`
	}{Seq: int64(n)}
	now := time.Now()
	for i := range n {
		a := benchAssociation(i)
		a.ID = fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
		a.CreatedDateTime, a.LastModifiedDateTime = now, now
		st.Objects = append(st.Objects, stored{Seq: int64(i + 1), Obj: a})
	}
	data, err := json.Marshal(st)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSequentialCreatesWithStateFile is 1,000 sequential creates
// through the real client against an emulator that persists to a state
// file, from an empty file and from one that already holds 5,000 objects.
// Close (writing what is pending) is part of the measured time.
func BenchmarkSequentialCreatesWithStateFile(b *testing.B) {
	for _, existing := range []int{0, 5000} {
		b.Run(fmt.Sprintf("existing_%d", existing), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				path := filepath.Join(b.TempDir(), "graph.json")
				if existing > 0 {
					writeState(b, path, existing)
				}
				em := emulator.New(emulator.WithStateFile(path))
				c := benchClient(b, em)
				b.StartTimer()
				for i := range 1000 {
					if _, err := c.Create(ctx, benchAssociation(i)); err != nil {
						b.Fatal(err)
					}
				}
				if err := em.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
