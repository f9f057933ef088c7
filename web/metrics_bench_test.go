package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkInstrument is what counting and timing by route pattern adds to a request,
// against the same mux without it (run in parallel, as requests are).
func BenchmarkInstrument(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /associations/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	m := NewMetrics()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare mux", mux}, {"instrumented", m.instrument(mux, routed(mux))}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", "/associations/42", nil)
				w := httptest.NewRecorder()
				for pb.Next() {
					c.h.ServeHTTP(w, req)
				}
			})
		})
	}
}
