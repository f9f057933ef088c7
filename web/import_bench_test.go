package web_test

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/web/devidp"
)

// benchImportGraphID is the Graph id the benchmark gives the association seeded as row i
// (local id i+1).
func benchImportGraphID(i int) string { return fmt.Sprintf("0b7e5c1a-0000-4000-8000-%012d", i) }

// benchImportCSV is an import file of rows rows against seedRaw's associations: the first
// half names associations 0, 2, 4… by graphId, with every cell as an export writes it but
// the description, the second half are new associations (no graphId).
func benchImportCSV(b *testing.B, rows int) []byte {
	b.Helper()
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.Write([]string{"displayName", "description", "version", "deviceCartIds", "classroomIds", "graphId"})
	for k := range rows / 2 {
		i := 2 * k
		cw.Write([]string{fmt.Sprintf("Row %05d", i), "Moved to block C over the summer", fmt.Sprint(i % 5),
			fmt.Sprintf("CART-%05d, CART-%05d-B", i, i), fmt.Sprintf("R%04d", i%3000), benchImportGraphID(i)})
	}
	for k := range rows - rows/2 {
		cw.Write([]string{fmt.Sprintf("Imported cart %05d", k), "Bought in the spring", "1",
			fmt.Sprintf("NEW-%05d\nNEW-%05d-B", k, k), fmt.Sprintf("N%04d", k%3000), ""})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchImportBody is a browser's multipart upload of file named name.
func benchImportBody(b *testing.B, name string, file []byte) (body []byte, contentType string) {
	b.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("file", name)
	if err == nil {
		_, err = part.Write(file)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// BenchmarkImportPreview is the whole upload of a 5,000-row file (the most an import
// takes; half changing associations found by graphId, half new) against a store of
// 10,000: POST /imports through the app's handler (reading the multipart body, CSV
// parsing, MatchImport, the form's checks on every row, SaveImport) and then GET of the
// preview page it redirects to. peak-heap-MiB is the most Go heap in use during one
// upload above what was in use before it (after a collection), garbage included. Run
// with -benchtime 1x (or a few).
func BenchmarkImportPreview(b *testing.B) {
	const (
		existing = 10_000
		rows     = 5_000
	)
	path := filepath.Join(b.TempDir(), "import.db")
	app := newSignedOutApp(b, path)
	db := rawDB(b, path)
	start := time.Now()
	seedRaw(b, db, existing)
	// Every second association is held by Graph, as an export of a synced store says.
	mustExec(b, db, `UPDATE associations SET graph_id = printf('0b7e5c1a-0000-4000-8000-%012d', id - 1) WHERE (id - 1) % 2 = 0`)
	b.Logf("seeded %d associations in %v", existing, time.Since(start).Round(time.Millisecond))
	app.signIn(b, devidp.SubjectAdmin)
	// The store's test clock runs in March 2025 while the handler's is the real one, which
	// would find every preview expired an hour after it was made: the store's clock reads
	// the real time instead (frozen: it ticks a second per call otherwise).
	app.clock.freeze(time.Now())
	if benchImportGraphID(4) != "0b7e5c1a-0000-4000-8000-000000000004" {
		b.Fatal("benchImportGraphID and the seeding SQL disagree")
	}
	file := benchImportCSV(b, rows)
	body, contentType := benchImportBody(b, "carts-autumn.csv", file)
	b.SetBytes(int64(len(file)))

	b.ReportAllocs()
	var peak uint64
	var upload, preview time.Duration
	samples := heapSamples()
	for b.Loop() {
		runtime.GC()
		base := heapInuseNow(samples)
		stop := samplePeak()
		t0 := time.Now()
		up := httptest.NewRecorder()
		app.handler.ServeHTTP(up, app.newRequest(http.MethodPost, "/imports", bytes.NewReader(body), http.Header{"Content-Type": {contentType}}))
		t1 := time.Now()
		loc := up.Header().Get("Location")
		if up.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/imports/") {
			b.Fatalf("upload: %d → %q; want 303 to the preview; body:\n%.2000s", up.Code, loc, up.Body)
		}
		page := httptest.NewRecorder()
		app.handler.ServeHTTP(page, app.newRequest(http.MethodGet, loc, nil, nil))
		top := stop()
		upload, preview = upload+t1.Sub(t0), preview+time.Since(t1)
		if page.Code != http.StatusOK {
			b.Fatalf("preview: %d; body:\n%.2000s", page.Code, page.Body)
		}
		html := page.Body.String()
		for _, want := range []string{`data-testid="count-new">2500<`, `data-testid="count-changed">2500<`, `data-testid="count-invalid">0<`, `data-testid="import-apply"`} {
			if !strings.Contains(html, want) {
				b.Fatalf("preview lacks %s:\n%.3000s", want, html)
			}
		}
		if top > base {
			peak = max(peak, top-base)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(upload.Milliseconds())/float64(b.N), "upload-ms")
	b.ReportMetric(float64(preview.Milliseconds())/float64(b.N), "preview-ms")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
}
