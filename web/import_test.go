package web_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// Tests of CSV import as an admin uses it: upload a file, read the preview (counts, change
// lines, row errors), apply it; and what the store holds afterwards. Every app here runs
// its server on the store's fake clock, so that a preview's expiry is judged on one clock.

// signInMu serialises sign-ins: the dev provider's auto-login subject and its ID token
// overrides are shared by every test.
var signInMu sync.Mutex

func signInAs(t testing.TB, app *testApp, subject string) {
	t.Helper()
	signInMu.Lock()
	defer signInMu.Unlock()
	app.signIn(t, subject)
}

// newImportApp is the app on a database file the test can also open raw, its server on the
// store's fake clock, with subject signed in.
func newImportApp(t testing.TB, subject string) (*testApp, *sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cartclass.db")
	app := newClockedApp(t, path)
	signInAs(t, app, subject)
	return app, rawDB(t, path), path
}

// newClockedApp is newSignedOutApp whose server reads the store's fake clock.
func newClockedApp(t testing.TB, path string) *testApp {
	t.Helper()
	var clock *fakeClock
	app := newSignedOutApp(t, path, web.WithClock(func() time.Time { return clock.Now() }))
	clock = app.clock
	return app
}

// multipartBody is the import form as a browser sends it: the file field holding data
// under the file name name (an empty name and no data: no file chosen).
func multipartBody(t testing.TB, name string, data []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	w, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

// upload posts data as the file named name to the import form.
func (a *testApp) upload(t testing.TB, name string, data []byte) *response {
	t.Helper()
	body, ctype := multipartBody(t, name, data)
	return a.request(t, http.MethodPost, "/imports", bytes.NewReader(body), http.Header{"Content-Type": {ctype}})
}

// preview uploads data and follows the redirect to its preview, returning the page and
// the preview's id.
func (a *testApp) preview(t testing.TB, name string, data []byte) (*response, string) {
	t.Helper()
	r := a.upload(t, name, data)
	if r.status != http.StatusSeeOther {
		t.Fatalf("upload of %s: status %d, want 303 to the preview; file error %q", name, r.status, text(r.testid("error-file")))
	}
	loc := r.header.Get("Location")
	id, ok := strings.CutPrefix(loc, "/imports/")
	if !ok || id == "" || strings.Contains(id, "/") {
		t.Fatalf("upload redirected to %q, want /imports/{id}", loc)
	}
	p := a.follow(t, r)
	p.wantStatus(t, http.StatusOK)
	return p, id
}

// apply presses Apply on preview id.
func (a *testApp) apply(t testing.TB, id string) *response {
	t.Helper()
	return a.request(t, http.MethodPost, "/imports/"+id+"/apply", strings.NewReader(""),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
}

// counts is the preview's four counts: "new/changed/unchanged/invalid".
func counts(r *response) string {
	return strings.Join([]string{text(r.testid("count-new")), text(r.testid("count-changed")),
		text(r.testid("count-unchanged")), text(r.testid("count-invalid"))}, "/")
}

// previewChange is a row of the preview's table of changes.
type previewChange struct {
	row, name, kind string
	lines           []string
}

func previewChanges(r *response) []previewChange {
	var out []previewChange
	r.testid("import-change").Each(func(_ int, s *goquery.Selection) {
		c := previewChange{row: text(s.Find("td").First()), name: text(s.Find(`[data-testid="import-change-name"]`)),
			kind: text(s.Find(`[data-testid="import-kind"]`))}
		s.Find(`[data-testid="import-change-lines"] li`).Each(func(_ int, l *goquery.Selection) { c.lines = append(c.lines, text(l)) })
		out = append(out, c)
	})
	return out
}

// changeByName is the change row named name, failing when there is not exactly one.
func changeByName(t testing.TB, r *response, name string) previewChange {
	t.Helper()
	var found []previewChange
	for _, c := range previewChanges(r) {
		if c.name == name {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d change rows named %q; the changes are %+v", len(found), name, previewChanges(r))
	}
	return found[0]
}

// previewError is one line of the preview's errors table: the row (carried over the
// rowspan), the column as shown and the message.
type previewError struct{ row, column, message string }

func previewErrors(r *response) []previewError {
	var out []previewError
	row := ""
	r.testid("import-error").Each(func(_ int, s *goquery.Selection) {
		if c := s.Find(`[data-testid="import-error-row"]`); c.Length() > 0 {
			row = text(c)
		}
		out = append(out, previewError{row: row, column: text(s.Find(`[data-testid="import-error-column"]`)),
			message: text(s.Find(`[data-testid="import-error-message"]`))})
	})
	return out
}

// dbState is what a test compares to see that nothing was saved: every association's id,
// revision, name and deletion, and the numbers of history entries, outbox rows and
// previews.
type dbState struct {
	associations              string
	history, outbox, previews int
}

func stateOf(t testing.TB, db *sql.DB) dbState {
	t.Helper()
	var s dbState
	if err := db.QueryRow(`SELECT coalesce(group_concat(id || ':' || revision || ':' || display_name || ':' || coalesce(deleted_at, ''), '|'), '')
		FROM (SELECT * FROM associations ORDER BY id)`).Scan(&s.associations); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dst   *int
		table string
	}{{&s.history, "history"}, {&s.outbox, "outbox"}, {&s.previews, "import_previews"}} {
		if err := db.QueryRow("SELECT count(*) FROM " + c.table).Scan(c.dst); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func wantState(t testing.TB, db *sql.DB, want dbState, what string) {
	t.Helper()
	if got := stateOf(t, db); got != want {
		t.Errorf("%s: the database changed:\n got %+v\nwant %+v", what, got, want)
	}
}

// fromIntune inserts an association as a read of Intune would have left it (synced, linked
// to graphID), with values the form would refuse.
func fromIntune(t testing.TB, db *sql.DB, graphID string, f store.Fields) {
	t.Helper()
	ids := func(l []string) string {
		if l == nil {
			l = []string{}
		}
		b, _ := json.Marshal(l)
		return string(b)
	}
	at := clockStart.UnixNano()
	mustExec(t, db, `INSERT INTO associations (graph_id, display_name, description, version, device_cart_ids, classroom_ids,
		created_at, updated_at, search_text, sync_state, synced_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'synced', 1)`,
		graphID, f.DisplayName, f.Description, f.Version, ids(f.DeviceCartIDs), ids(f.ClassroomIDs), at, at,
		strings.ToLower(f.DisplayName+"\n"+f.Description))
}

// wantNothingToApply fails unless the preview r says every row is unchanged and offers no
// Apply.
func wantNothingToApply(t testing.TB, r *response, unchanged int) {
	t.Helper()
	if got, want := counts(r), fmt.Sprintf("0/0/%d/0", unchanged); got != want {
		t.Errorf("counts new/changed/unchanged/invalid = %s, want %s; changes %+v, errors %+v", got, want, previewChanges(r), previewErrors(r))
	}
	if r.testid("import-nothing").Length() != 1 || r.testid("import-apply").Length() != 0 {
		t.Errorf("preview shows %d import-nothing and %d Apply buttons, want 1 and 0", r.testid("import-nothing").Length(), r.testid("import-apply").Length())
	}
}

// Hostile and odd values survive export and import unchanged: the exported file, uploaded
// as it is, re-encoded with semicolons, or without its byte-order mark, changes nothing.
func TestImportRoundTripOfExportIsUnchanged(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	for _, f := range []store.Fields{
		{DisplayName: `=HYPERLINK("http://x")`, Description: `=HYPERLINK("http://x","click")`, Version: 1},
		{DisplayName: "@SUM(A1)", Description: "@", Version: 2},
		{DisplayName: "+1", Description: "+", Version: 0, DeviceCartIDs: []string{"-CART", "=1", "cart;2"}, ClassroomIDs: []string{"+R1", "@R2"}},
		{DisplayName: "-2", Description: "-", Version: 3},
		{DisplayName: "'=x", Description: "'-", Version: 1},
		{DisplayName: "''", Description: "'", Version: 1},
		{DisplayName: "'s-Hertogenbosch", Description: "x=1+1", Version: 1},
		{DisplayName: "<script>alert(1)</script>", Description: `"><img src=x onerror=alert(1)>`, Version: 1},
		{DisplayName: `He said "hi", then left`, Description: `"quoted" and ""doubled""`, Version: 1},
		{DisplayName: "Multi-line", Description: "first line\nsecond line\n=third\n\nfifth", Version: 1},
		{DisplayName: "Commas, and; semicolons", Description: "a, b; c,d;e", Version: 1, DeviceCartIDs: []string{"c1", "c2"}},
		{DisplayName: "Ünïcødé 教室 🚀", Description: "Ελληνικά — “quotes” ‘single’ \u00a0nbsp", Version: 9, ClassroomIDs: []string{"Zimmer ä", "教室-1"}},
		{DisplayName: "Tabbed description", Description: "\tindented\tcells", Version: 1},
	} {
		app.create(t, f)
	}
	// Read from Intune, beyond what the form accepts: left as they are when a file holds
	// exactly what was exported.
	fromIntune(t, db, "6f1c9a52-0000-4000-8000-000000000001", store.Fields{DisplayName: " Leading space", Description: "bell\x07 and escape\x1b", Version: -2})
	fromIntune(t, db, "6f1c9a52-0000-4000-8000-000000000002", store.Fields{DisplayName: strings.Repeat("Long name ", 30), Description: strings.Repeat("é", 1500), Version: 5})
	fromIntune(t, db, "6f1c9a52-0000-4000-8000-000000000003", store.Fields{DisplayName: "Trailing space ", Description: "windows\r\nline breaks\r\n",
		Version: 2147483647, DeviceCartIDs: []string{strings.Repeat("x", 200), " spaced "}, ClassroomIDs: []string{"a\u200bb"}})
	fromIntune(t, db, "6f1c9a52-0000-4000-8000-000000000004", store.Fields{DisplayName: "=Formula from Intune", Description: "\r\rcarriage", Version: 1})
	const n = 17
	before := stateOf(t, db)

	exp := app.get(t, "/associations/export.csv", false)
	exp.wantStatus(t, http.StatusOK)
	if rows := readCSV(t, exp.body); len(rows) != n {
		t.Fatalf("export has %d rows, want %d", len(rows), n)
	}

	t.Run("as exported", func(t *testing.T) {
		p, _ := app.preview(t, "cartclass-associations-2025-03-14.csv", []byte(exp.body))
		wantNothingToApply(t, p, n)
		if got := text(p.testid("import-summary")); got != fmt.Sprintf("0 new, 0 changed, %d unchanged", n) {
			t.Errorf("summary = %q", got)
		}
		if got := text(p.testid("import-title")); got != "Import “cartclass-associations-2025-03-14.csv”" {
			t.Errorf("title = %q", got)
		}
	})
	t.Run("semicolons", func(t *testing.T) {
		recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(exp.body, bom))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.WriteString(bom)
		w := csv.NewWriter(&b)
		w.Comma = ';'
		if err := w.WriteAll(recs); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(b.String(), bom+"displayName;description;") {
			t.Fatalf("re-encoded file starts %q", b.String()[:40])
		}
		p, _ := app.preview(t, "semicolons.csv", b.Bytes())
		wantNothingToApply(t, p, n)
	})
	t.Run("without byte-order mark", func(t *testing.T) {
		p, _ := app.preview(t, "no-bom.csv", []byte(strings.TrimPrefix(exp.body, bom)))
		wantNothingToApply(t, p, n)
	})

	after := stateOf(t, db)
	before.previews = 3 // the three previews, and nothing else
	if after != before {
		t.Errorf("previewing changed the database:\n got %+v\nwant %+v", after, before)
	}
}

// An edited export: the preview lists each change in words; Apply saves them all, queued
// for Intune and recorded as imported from the file; a second Apply saves nothing more.
func TestImportEditedFileThenApply(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	ctx := context.Background()
	science := app.create(t, store.Fields{DisplayName: "Science block iPads", Description: "a", Version: 3,
		DeviceCartIDs: []string{"cart-1"}, ClassroomIDs: []string{"S1"}})
	markSynced(t, db, science.ID, "0a000000-0000-4000-8000-00000000000a")
	library := app.create(t, store.Fields{DisplayName: "Library", Version: 1})
	markSynced(t, db, library.ID, "0b000000-0000-4000-8000-00000000000b")
	untouched := app.create(t, store.Fields{DisplayName: "Untouched", Description: "same", Version: 2, DeviceCartIDs: []string{"u1", "u2"}})
	music := app.create(t, store.Fields{DisplayName: "Music room", Description: "Old", Version: 4,
		DeviceCartIDs: []string{"m1"}, ClassroomIDs: []string{"M1", "M2"}})
	// Read from Intune with values the form would refuse: a column the file leaves out keeps
	// them, unchecked.
	legacyFields := store.Fields{DisplayName: "Legacy cart", Description: "old", Version: -2,
		DeviceCartIDs: []string{strings.Repeat("L", 200)}, ClassroomIDs: []string{"bell\x07"}}
	fromIntune(t, db, "1e000000-0000-4000-8000-000000000001", legacyFields)
	before := stateOf(t, db)

	file := exportHeaderLine + "\n" +
		"Science block iPads,b,3,\"cart-1, cart-9\",S1,0A000000-0000-4000-8000-00000000000A,synced,2025-03-14T09:26:01Z\n" +
		"Library (north),,1,,,0b000000-0000-4000-8000-00000000000b,synced,2025-03-14T09:26:02Z\n" +
		"Untouched,same,2,\"u1, u2\",,,waiting,2025-03-14T09:26:03Z\n" +
		"New cart room,Fresh,,cart-20,\"R20\nR21\",,,\n"
	p, id := app.preview(t, "edited.csv", []byte(file))
	if got := counts(p); got != "1/2/1/0" {
		t.Errorf("counts = %s, want 1/2/1/0", got)
	}
	if got := text(p.testid("import-apply")); got != "Apply 3 changes" {
		t.Errorf("Apply button = %q", got)
	}
	wantChange := func(r *response, name, row, kind string, lines ...string) {
		t.Helper()
		c := changeByName(t, r, name)
		if c.row != row || c.kind != kind || !slices.Equal(c.lines, lines) {
			t.Errorf("change %q: row %s, %s, lines %q; want row %s, %s, lines %q", name, c.row, c.kind, c.lines, row, kind, lines)
		}
	}
	wantChange(p, "Science block iPads", "2", "Changed", "Description: “a” → “b”", "Device cart IDs: added cart-9")
	wantChange(p, "Library (north)", "3", "Changed", "Display name: “Library” → “Library (north)”")
	wantChange(p, "New cart room", "5", "New", "Display name: “New cart room”", "Description: “Fresh”", "Version: 1",
		"Device cart IDs: cart-20", "Classroom IDs: R20, R21")
	if len(previewChanges(p)) != 3 {
		t.Errorf("changes listed: %+v", previewChanges(p))
	}
	wantState(t, db, withPreviews(before, 1), "preview")

	applied := app.apply(t, id)
	if applied.status != http.StatusSeeOther || applied.header.Get("Location") != "/imports/"+id {
		t.Fatalf("apply = %d → %q, want 303 to the preview", applied.status, applied.header.Get("Location"))
	}
	done := app.follow(t, applied)
	wantFlash(t, done, "Import applied. Its changes are on their way to Intune.")
	if done.testid("import-applied").Length() != 1 || done.testid("import-apply").Length() != 0 {
		t.Errorf("applied preview: %d import-applied, %d Apply buttons", done.testid("import-applied").Length(), done.testid("import-apply").Length())
	}
	if got := text(done.testid("import-applied")); !strings.Contains(got, "3 changes saved and queued for Intune") {
		t.Errorf("applied note = %q", got)
	}

	// The store holds the changes; what the file left alone stays.
	if got := app.get1(t, science.ID); !got.Fields.Equal(store.Fields{DisplayName: "Science block iPads", Description: "b", Version: 3,
		DeviceCartIDs: []string{"cart-1", "cart-9"}, ClassroomIDs: []string{"S1"}}) || got.Revision != science.Revision+1 {
		t.Errorf("science = %+v at revision %d", got.Fields, got.Revision)
	}
	if got := app.get1(t, library.ID); got.DisplayName != "Library (north)" || got.Version != 1 {
		t.Errorf("library = %+v", got.Fields)
	}
	if got := app.get1(t, untouched.ID); got.Revision != untouched.Revision {
		t.Errorf("untouched was saved again: revision %d", got.Revision)
	}
	page, err := app.store.ListAssociations(ctx, store.ListFilter{Query: "New cart room"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("new association: %+v, %v", page.Items, err)
	}
	created := page.Items[0]
	if !created.Fields.Equal(store.Fields{DisplayName: "New cart room", Description: "Fresh", Version: 1,
		DeviceCartIDs: []string{"cart-20"}, ClassroomIDs: []string{"R20", "R21"}}) {
		t.Errorf("created = %+v", created.Fields)
	}
	if href, _ := changeLink(done, "New cart room"); href != assocPath(created.ID, "") {
		t.Errorf("the applied preview links the new row to %q, want %q", href, assocPath(created.ID, ""))
	}
	// Recorded as imported from the file, by the admin, and queued for Intune.
	for _, id := range []int64{science.ID, library.ID, created.ID} {
		h, _, err := app.store.AssociationHistory(ctx, id, 0, 0)
		if err != nil || len(h) == 0 {
			t.Fatalf("history of %d: %v, %v", id, h, err)
		}
		if e := h[0]; e.Kind != store.HistoryCSV || e.Choice != "edited.csv" || e.Actor.Subject != devidp.SubjectAdmin || e.Actor.Name != "Dev Admin" {
			t.Errorf("association %d's newest history entry: kind %q, choice %q, by %+v", id, e.Kind, e.Choice, e.Actor)
		}
		var outbox int
		var state string
		if err := db.QueryRow(`SELECT (SELECT count(*) FROM outbox WHERE association_id = ?1), sync_state FROM associations WHERE id = ?1`, id).Scan(&outbox, &state); err != nil {
			t.Fatal(err)
		}
		if outbox != 1 || state != "waiting" {
			t.Errorf("association %d: %d outbox rows, state %q; want 1, waiting", id, outbox, state)
		}
	}
	d := app.get(t, assocPath(science.ID, ""), false)
	if got := historyEntries(d); len(got) == 0 || !strings.HasPrefix(got[0][0], "Dev Admin imported “edited.csv” · ") {
		t.Errorf("science's history:\n%s", joinEntries(got))
	}
	afterApply := stateOf(t, db)
	if afterApply.history != before.history+3 {
		t.Errorf("%d history entries after apply, want %d", afterApply.history, before.history+3)
	}

	// Apply again (a second press, or Back and press): nothing more.
	again := app.apply(t, id)
	if again.status != http.StatusSeeOther {
		t.Fatalf("second apply = %d", again.status)
	}
	wantFlash(t, app.follow(t, again), "This import was applied already, so nothing more was saved.")
	wantState(t, db, afterApply, "second apply")

	// A file of only some columns: the others keep what the association holds.
	p2, id2 := app.preview(t, "descriptions.csv", []byte("displayName,description\nMusic room,New description\nLegacy cart,new\n"))
	if got := counts(p2); got != "0/2/0/0" {
		t.Errorf("counts = %s, want 0/2/0/0; errors %+v", got, previewErrors(p2))
	}
	wantChange(p2, "Music room", "2", "Changed", "Description: “Old” → “New description”")
	wantChange(p2, "Legacy cart", "3", "Changed", "Description: “old” → “new”")
	app.follow(t, app.apply(t, id2)).wantStatus(t, http.StatusOK)
	if got := app.get1(t, music.ID); !got.Fields.Equal(store.Fields{DisplayName: "Music room", Description: "New description", Version: 4,
		DeviceCartIDs: []string{"m1"}, ClassroomIDs: []string{"M1", "M2"}}) {
		t.Errorf("music = %+v", got.Fields)
	}
	legacyFields.Description = "new"
	page, err = app.store.ListAssociations(ctx, store.ListFilter{Query: "Legacy cart"})
	if err != nil || len(page.Items) != 1 || !page.Items[0].Fields.Equal(legacyFields) {
		t.Errorf("legacy cart = %+v, %v; want %+v", page.Items, err, legacyFields)
	}
}

// withPreviews is s with n more previews: what an upload saves (and nothing else).
func withPreviews(s dbState, n int) dbState {
	s.previews += n
	return s
}

// changeLink is where the change row named name links.
func changeLink(r *response, name string) (string, bool) {
	var href string
	var ok bool
	r.testid("import-change-name").Each(func(_ int, s *goquery.Selection) {
		if text(s) == name {
			href, ok = s.Find("a").Attr("href")
		}
	})
	return href, ok
}

// utf16File is s as UTF-16 with a byte-order mark, as Excel's "Unicode Text" saves it.
func utf16File(s string, bigEndian bool) []byte {
	var b bytes.Buffer
	if bigEndian {
		b.Write([]byte{0xFE, 0xFF})
	} else {
		b.Write([]byte{0xFF, 0xFE})
	}
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			b.Write([]byte{byte(u >> 8), byte(u)})
		} else {
			b.Write([]byte{byte(u), byte(u >> 8)})
		}
	}
	return b.Bytes()
}

// nameRows is a file of a displayName header and n rows.
func nameRows(n int) []byte {
	var b bytes.Buffer
	b.WriteString("displayName,description\n")
	for i := range n {
		fmt.Fprintf(&b, "Row %d,d\n", i)
	}
	return b.Bytes()
}

// A file that cannot be read as a whole is refused on the form, next to the file field,
// saying what to do; nothing is saved, not even a preview.
func TestImportRefusesBadFiles(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	app.create(t, store.Fields{DisplayName: "Stored", Description: "as it was", Version: 1})
	before := stateOf(t, db)
	saveAs := "In Excel choose File → Save As → “CSV UTF-8 (Comma delimited)”"
	for _, c := range []struct {
		name, file string
		data       []byte
		want       []string // in the message, in order
	}{
		{"Windows-1252", "latin.csv", []byte("displayName,description\nStored,caf\xe9\n"),
			[]string{"The file is not UTF-8 text: line 2 holds a character in another encoding (such as Windows-1252).", saveAs}},
		{"Windows-1252 after a multi-line cell", "latin.csv", []byte("displayName,description\nA,\"one\ntwo\"\nB,na\xefve\n"),
			[]string{"line 4 holds a character in another encoding"}},
		{"PNG", "photo.csv", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"),
			[]string{"This is not a CSV file: it holds binary data.", saveAs}},
		{"NUL bytes", "nul.csv", []byte("displayName\nA\x00B\n"), []string{"it holds binary data"}},
		{"xlsx", "associations.xlsx", []byte("PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml"),
			[]string{"This is an Excel workbook (.xlsx), not a CSV file.", saveAs}},
		{"UTF-16 LE", "unicode.txt", utf16File("displayName\tdescription\r\nStored\tx\r\n", false),
			[]string{"The file is UTF-16 text (Excel's “Unicode Text”), not UTF-8.", saveAs}},
		{"UTF-16 BE", "unicode.csv", utf16File("displayName,description\nStored,x\n", true), []string{"UTF-16"}},
		{"5,001 rows", "big.csv", nameRows(5001),
			[]string{"The file has more than 5,000 rows. Import at most 5,000 at a time: split it into smaller files."}},
		{"duplicate header", "dup.csv", []byte("displayName,DisplayName\nA,B\n"),
			[]string{"The header names the column displayName twice (columns A and B). Keep one of them."}},
		{"duplicate header far apart", "dup.csv", []byte("description,displayName,version,x,y,z,DESCRIPTION\na,b,1,,,,c\n"),
			[]string{"The header names the column description twice (columns A and G)."}},
		{"no displayName column", "names.csv", []byte("name,description\nA,b\n"),
			[]string{"The file has no displayName column.", "displayName,description,version,deviceCartIds,classroomIds,graphId"}},
		{"tab-separated", "tabs.csv", []byte("displayName\tdescription\nA\tb\n"),
			[]string{"The file has no displayName column.", "This file looks tab-separated: save it as CSV instead."}},
		{"empty", "empty.csv", nil, []string{"The file is empty. Choose the CSV file to import."}},
		{"only white space", "blank.csv", []byte(bom + " \r\n\n\t\n"), []string{"The file is empty."}},
		{"header only", "header.csv", []byte(exportHeaderLine + "\n"), []string{"The file has a header row but no rows below it: there is nothing to import."}},
		{"header and empty rows", "header.csv", []byte("displayName,description\n,\n , \n"), []string{"no rows below it"}},
		{"no file chosen", "", nil, []string{"Choose the CSV file to import."}},
		{"unclosed quote", "quote.csv", []byte("displayName,description\nA,b\nB,\"never closed\n"),
			[]string{"Line 3 of the file cannot be read: a cell that starts with a quotation mark (\") does not end with one"}},
		{"bare quote", "quote.csv", []byte("displayName,description\nA,b\nB,He said \"hi\"\n"),
			[]string{"Line 3 of the file cannot be read: a quotation mark (\") is inside a cell that does not start with one."}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := app.upload(t, c.file, c.data)
			r.wantStatus(t, http.StatusUnprocessableEntity)
			msg := text(r.testid("error-file"))
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("message %q lacks %q", msg, w)
					break
				}
				rest = rest[i+len(w):]
			}
			// On the form, tied to the file field.
			in := r.testid("import-file")
			if inv, _ := in.Attr("aria-invalid"); r.testid("import-form").Length() != 1 || inv != "true" {
				t.Errorf("want the form with the file field marked invalid; body:\n%.600s", r.body)
			}
			if desc, _ := in.Attr("aria-describedby"); !strings.Contains(desc, "file-error") {
				t.Errorf("file field aria-describedby = %q", desc)
			}
			wantState(t, db, before, c.name)
		})
	}
	// A form without a file part at all, as a script might post it.
	t.Run("no file part", func(t *testing.T) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.WriteField("other", "x")
		mw.Close()
		r := app.request(t, http.MethodPost, "/imports", &b, http.Header{"Content-Type": {mw.FormDataContentType()}})
		r.wantStatus(t, http.StatusUnprocessableEntity)
		if got := text(r.testid("error-file")); got != "Choose the CSV file to import." {
			t.Errorf("message = %q", got)
		}
		wantState(t, db, before, "no file part")
	})
	// Not multipart at all.
	t.Run("urlencoded", func(t *testing.T) {
		r := app.postRaw(t, "/imports", strings.NewReader("file=displayName"), nil)
		wantErrorPage(t, r, http.StatusBadRequest, "Bad request")
		wantState(t, db, before, "urlencoded")
	})
	// The limit is on rows, not lines: 5,000 rows are read (with a multi-line cell).
	t.Run("5,000 rows", func(t *testing.T) {
		data := append(nameRows(4999), "Last,\"two\nlines\"\n"...)
		p, _ := app.preview(t, "5000.csv", data)
		if got := counts(p); got != "5000/0/0/0" {
			t.Errorf("counts = %s", got)
		}
		if got := text(p.testid("import-next-changes")); got == "" {
			t.Error("5,000 new rows, and no pager for the changes")
		}
		wantState(t, db, withPreviews(before, 1), "5,000 rows")
	})
}

// liveServer is app behind a real HTTP server, for what a recorder cannot show (whether a
// client still sending a body gets the answer).
func liveServer(t *testing.T, app *testApp) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(app.handler)
	t.Cleanup(srv.Close)
	return srv
}

// liveUpload posts body (of content type ctype) to /imports over srv, as the signed-in
// browser of app; unknownLength sends it chunked.
func liveUpload(t *testing.T, app *testApp, srv *httptest.Server, body []byte, ctype string, unknownLength bool) (*http.Response, *goquery.Document) {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if unknownLength {
		rd = unsized{rd}
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/imports", rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range app.newRequest(http.MethodPost, "/imports", nil, nil).Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ctype)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("upload of %d bytes: %v (the server cut the connection instead of answering)", len(body), err)
	}
	defer res.Body.Close()
	page, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return res, doc
}

// A file over 5 MiB gets the form again with 413 and a message on the file field (the
// server reads the rest of the body, so the browser gets that page, not a reset); a body
// over the upload limit gets the plain 413 page at once.
func TestImportTooLarge(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	before := stateOf(t, db)
	var big bytes.Buffer
	big.WriteString("displayName,description\n")
	line := "Row,x" + strings.Repeat("y", 250) + "\n"
	for big.Len() < 6<<20 {
		big.WriteString(line)
	}
	body, ctype := multipartBody(t, "big.csv", big.Bytes())
	wantMsg := "The file is larger than 5 MiB. Import at most 5,000 rows at a time: split the file into smaller ones."

	srv := liveServer(t, app)
	for _, unknown := range []bool{false, true} {
		t.Run(fmt.Sprintf("6 MiB, unknown length %v", unknown), func(t *testing.T) {
			res, doc := liveUpload(t, app, srv, body, ctype, unknown)
			if res.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("status = %d, want 413", res.StatusCode)
			}
			// The server read the whole body before answering: it keeps the connection
			// (one that leaves megabytes unread closes it, and a browser still sending
			// them sees a reset instead of the page).
			if res.Close {
				t.Error("the server closed the connection after answering: it did not read the rest of the upload")
			}
			if doc.Find(`[data-testid="import-form"]`).Length() != 1 {
				t.Error("the answer is not the import form")
			}
			if got := text(doc.Find(`[data-testid="error-file"]`)); got != wantMsg {
				t.Errorf("file message = %q, want %q", got, wantMsg)
			}
			wantState(t, db, before, "6 MiB upload")
		})
	}

	// Past the upload limit (21 MiB): refused before anything is read.
	huge := bytes.Repeat([]byte("x"), 22<<20)
	hugeBody, hugeType := multipartBody(t, "huge.csv", huge)
	t.Run("over the body limit, declared", func(t *testing.T) {
		r := app.request(t, http.MethodPost, "/imports", bytes.NewReader(hugeBody), http.Header{"Content-Type": {hugeType}})
		wantErrorPage(t, r, http.StatusRequestEntityTooLarge, "Too much data")
		wantState(t, db, before, "huge declared upload")
	})
	t.Run("over the body limit, unknown length", func(t *testing.T) {
		r := app.request(t, http.MethodPost, "/imports", unsized{bytes.NewReader(hugeBody)}, http.Header{"Content-Type": {hugeType}})
		r.wantStatus(t, http.StatusRequestEntityTooLarge)
		if got := text(r.testid("error-file")); got != wantMsg {
			t.Errorf("file message = %q, want %q", got, wantMsg)
		}
		wantState(t, db, before, "huge chunked upload")
	})
	// The larger limit is the upload form's alone.
	t.Run("other forms keep 1 MiB", func(t *testing.T) {
		r := app.request(t, http.MethodPost, "/associations", bytes.NewReader(body[:2<<20]), http.Header{"Content-Type": {ctype}})
		wantErrorPage(t, r, http.StatusRequestEntityTooLarge, "Too much data")
	})
}

// Rows that break the form's rules, or that cannot be matched, are listed with their
// spreadsheet row, column and problem; nothing can be applied and nothing is saved.
func TestImportRowErrorsBlockApply(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	ctx := context.Background()
	science := app.create(t, store.Fields{DisplayName: "Science", Description: "s", Version: 1})
	markSynced(t, db, science.ID, "5c000000-0000-4000-8000-000000000001")
	gone := app.create(t, store.Fields{DisplayName: "Deleted one", Version: 1})
	markSynced(t, db, gone.ID, "de000000-0000-4000-8000-000000000001")
	gone = app.get1(t, gone.ID)
	if _, err := app.store.DeleteAssociation(ctx, gone.ID, gone.Revision, ada); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, db)

	longID := strings.Repeat("x", 129)
	file := "displayName,description,version,deviceCartIds,graphId\n" + // row 1
		"Short row,only two\n" + // 2
		"Long row,a,1,c,,extra\n" + // 3
		",no name,abc,,\n" + // 4: two errors
		"Bad version,x,abc,,\n" + // 5
		"Long id,x,1,\"ok, " + longID + "\",\n" + // 6
		"Unknown,x,1,,ffffffff-0000-4000-8000-000000000000\n" + // 7
		"Deleted one,x,1,,de000000-0000-4000-8000-000000000001\n" + // 8
		"Science renamed,x,1,,5c000000-0000-4000-8000-000000000001\n" + // 9: fine
		"Science,y,,,\n" + // 10: the same association by name
		"Multi-line,\"line one\nline two\",-1,,\n" + // 11 (two lines of the file)
		"Unknown again,x,1,,FFFFFFFF-0000-4000-8000-000000000000\n" + // 12
		"Fine new row,,,,\n" // 13
	p, id := app.preview(t, "errors.csv", []byte(file))
	if got := counts(p); got != "1/1/0/10" {
		t.Errorf("counts = %s, want 1/1/0/10", got)
	}
	want := []previewError{
		{"2", "whole row", "This row has 2 cells, but the header has 5: a cell was added or left out, or a cell holding the separator is not in quotation marks."},
		{"3", "whole row", "This row has 6 cells, but the header has 5: a cell was added or left out, or a cell holding the separator is not in quotation marks."},
		{"4", "displayName", "Enter a display name."},
		{"4", "version", "Enter a whole number from 0 to 2,147,483,647."},
		{"5", "version", "Enter a whole number from 0 to 2,147,483,647."},
		{"6", "deviceCartIds", "The device cart ID “xxxxxxxxxxxxxxxxxxxxxxxx…” has 129 characters; the limit is 128."},
		{"7", "graphId", "No association in cartclass has this Graph ID. If it was made in Intune since cartclass last read it, press Refresh from Intune on the Sync page and upload again; to create a new association instead, clear the cell."},
		{"8", "graphId", "This association was deleted in cartclass. Restore it first (from the Deleted filter of the list), or clear the cell to create a new one."},
		{"10", "displayName", "Row 9 changes this association already: a file may change each association once."},
		{"11", "version", "Enter a whole number from 0 to 2,147,483,647."},
		{"12", "graphId", "Row 7 has the same Graph ID, which no association in cartclass has. Clear the cells to create new associations."},
	}
	if got := previewErrors(p); !slices.Equal(got, want) {
		t.Errorf("errors table:\n got %q\nwant %q", got, want)
	}
	// The row without a name is shown as such, not as an empty cell.
	p.testid("import-error-row").Each(func(_ int, s *goquery.Selection) {
		if text(s) == "4" && text(s.Next()) != "(none)" {
			t.Errorf("row 4 (no display name) is named %q, want (none)", text(s.Next()))
		}
	})
	if p.testid("import-blocked").Length() != 1 || p.testid("import-apply").Length() != 0 {
		t.Errorf("preview shows %d import-blocked and %d Apply buttons, want 1 and 0", p.testid("import-blocked").Length(), p.testid("import-apply").Length())
	}
	if got := text(p.testid("import-blocked")); !strings.HasPrefix(got, "Nothing can be applied while 10 rows have errors; nothing has been saved.") {
		t.Errorf("blocked note = %q", got)
	}
	wantState(t, db, withPreviews(before, 1), "preview with errors")

	// Apply anyway (a forged or stale form): the preview again, nothing saved.
	r := app.apply(t, id)
	if r.status != http.StatusSeeOther {
		t.Fatalf("apply = %d", r.status)
	}
	again := app.follow(t, r)
	if again.testid("import-blocked").Length() != 1 || again.testid("flash").Length() != 0 {
		t.Errorf("after Apply: %d import-blocked, flash %q", again.testid("import-blocked").Length(), text(again.testid("flash")))
	}
	wantState(t, db, withPreviews(before, 1), "apply with errors")
	if got := app.get1(t, science.ID); got.DisplayName != "Science" {
		t.Errorf("science renamed to %q", got.DisplayName)
	}
}

// Without a graphId a row changes the one association with exactly its display name;
// when several (or none) have it, the row is a new association. An empty version cell
// keeps the version; a new row's is 1.
func TestImportMatchesByDisplayName(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	solo := app.create(t, store.Fields{DisplayName: "Solo", Description: "solo", Version: 4, DeviceCartIDs: []string{"c1"}})
	twin1 := app.create(t, store.Fields{DisplayName: "Twin", Description: "one", Version: 2})
	twin2 := app.create(t, store.Fields{DisplayName: "Twin", Description: "two", Version: 3})
	app.create(t, store.Fields{DisplayName: "Other", Version: 1})
	// A version the form refuses, read from Intune: an empty cell keeps it, unchecked.
	fromIntune(t, db, "2e000000-0000-4000-8000-000000000001", store.Fields{DisplayName: "Negative", Description: "n", Version: -2})
	total := app.count(t)

	p, id := app.preview(t, "names.csv", []byte("displayName,description,version\n"+
		"Solo,changed,\n"+
		"Twin,three,\n"+
		"SOLO,case differs,\n"+
		"Brand new,, \n"+
		"Negative,n2,\n"))
	if got := counts(p); got != "3/2/0/0" {
		t.Errorf("counts = %s, want 3/2/0/0; changes %+v, errors %+v", got, previewChanges(p), previewErrors(p))
	}
	if c := changeByName(t, p, "Negative"); c.kind != "Changed" || !slices.Equal(c.lines, []string{"Description: “n” → “n2”"}) {
		t.Errorf("Negative: %+v", c)
	}
	if c := changeByName(t, p, "Solo"); c.kind != "Changed" || !slices.Equal(c.lines, []string{"Description: “solo” → “changed”"}) {
		t.Errorf("Solo: %+v", c)
	}
	if c := changeByName(t, p, "Twin"); c.kind != "New" || !slices.Equal(c.lines, []string{"Display name: “Twin”", "Description: “three”", "Version: 1"}) {
		t.Errorf("Twin: %+v", c)
	}
	if c := changeByName(t, p, "SOLO"); c.kind != "New" {
		t.Errorf("SOLO: %+v", c)
	}
	if c := changeByName(t, p, "Brand new"); c.kind != "New" || !slices.Equal(c.lines, []string{"Display name: “Brand new”", "Version: 1"}) {
		t.Errorf("Brand new: %+v", c)
	}
	app.follow(t, app.apply(t, id)).wantStatus(t, http.StatusOK)

	if got := app.get1(t, solo.ID); !got.Fields.Equal(store.Fields{DisplayName: "Solo", Description: "changed", Version: 4, DeviceCartIDs: []string{"c1"}}) {
		t.Errorf("solo = %+v", got.Fields)
	}
	for _, tw := range []store.Association{twin1, twin2} {
		if got := app.get1(t, tw.ID); got.Revision != tw.Revision {
			t.Errorf("twin %d was changed: %+v", tw.ID, got.Fields)
		}
	}
	if n := app.count(t); n != total+3 {
		t.Errorf("%d associations, want %d", n, total+3)
	}
	page, err := app.store.ListAssociations(context.Background(), store.ListFilter{Query: "Brand new"})
	if err != nil || len(page.Items) != 1 || page.Items[0].Version != 1 {
		t.Errorf("Brand new: %+v, %v", page.Items, err)
	}
	page, err = app.store.ListAssociations(context.Background(), store.ListFilter{Query: "Negative"})
	if err != nil || len(page.Items) != 1 || !page.Items[0].Fields.Equal(store.Fields{DisplayName: "Negative", Description: "n2", Version: -2}) {
		t.Errorf("Negative: %+v, %v", page.Items, err)
	}
}

// Apply finds that an association changed after the preview (or that a new row's name was
// taken): 409, naming the rows, and nothing of the import is saved.
func TestImportStalePreviewSavesNothing(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	ctx := context.Background()
	alpha := app.create(t, store.Fields{DisplayName: "Alpha", Description: "a", Version: 1})
	beta := app.create(t, store.Fields{DisplayName: "Beta", Description: "b", Version: 1})
	p, id := app.preview(t, "stale.csv", []byte("displayName,description\nAlpha,a2\nBeta,b2\nGamma,new\n"))
	if got := counts(p); got != "1/2/0/0" {
		t.Fatalf("counts = %s", got)
	}
	// Within the preview's hour (and the session's role check).
	app.clock.freeze(time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC))
	alpha = app.get1(t, alpha.ID)
	f := alpha.Fields
	f.Description = "changed meanwhile"
	if _, err := app.store.UpdateAssociation(ctx, alpha.ID, alpha.Revision, f, ada); err != nil {
		t.Fatal(err)
	}
	if _, err := app.store.CreateAssociation(ctx, store.Fields{DisplayName: "Gamma", Version: 1}, ada); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, db)

	r := app.apply(t, id)
	r.wantStatus(t, http.StatusConflict)
	stale := r.testid("import-stale")
	if stale.Length() != 1 {
		t.Fatalf("no import-stale on the 409 page; body:\n%s", r.body)
	}
	if got := text(stale.Find("h2")); got != "Nothing was saved: 2 rows changed since this preview" {
		t.Errorf("stale heading = %q", got)
	}
	var items []string
	stale.Find("li").Each(func(_ int, s *goquery.Selection) { items = append(items, text(s)) })
	if want := []string{
		"Row 2 (“Alpha”): its association was changed by Ada Lovelace at 14 Mar 2025, 09:30 UTC.",
		"Row 4 (“Gamma”): an association with this display name was created or renamed by Ada Lovelace at 14 Mar 2025, 09:30 UTC.",
	}; !slices.Equal(items, want) {
		t.Errorf("stale rows:\n got %q\nwant %q", items, want)
	}
	if got := counts(r); got != "1/2/0/0" {
		t.Errorf("the 409 page's counts = %s", got)
	}
	wantState(t, db, before, "stale apply")
	if got := app.get1(t, beta.ID); got.Description != "b" || got.Revision != beta.Revision {
		t.Errorf("beta = %+v at revision %d: part of the import was saved", got.Fields, got.Revision)
	}
	var applied bool
	if err := db.QueryRow("SELECT applied_at IS NOT NULL FROM import_previews WHERE id = ?", id).Scan(&applied); err != nil || applied {
		t.Errorf("preview applied = %v, %v", applied, err)
	}
}

// Only admins import; each admin sees and applies only their own previews, and only
// until they expire.
func TestImportAccess(t *testing.T) {
	// Not parallel: it signs in a second admin by rewriting the provider's next ID token.
	app, db, path := newImportApp(t, devidp.SubjectAdmin)
	a := app.create(t, store.Fields{DisplayName: "Alpha", Description: "a", Version: 1})
	file := []byte("displayName,description\nAlpha,a2\nNew one,n\n")
	p, id := app.preview(t, "mine.csv", file)
	if p.testid("import-apply").Length() != 1 {
		t.Fatal("the owner's preview offers no Apply")
	}
	before := stateOf(t, db)
	body, ctype := multipartBody(t, "x.csv", file)

	t.Run("viewer", func(t *testing.T) {
		viewer := newClockedApp(t, path)
		signInAs(t, viewer, devidp.SubjectViewer)
		for _, req := range []struct {
			method, path string
			body         []byte
			ctype        string
		}{
			{http.MethodGet, "/imports", nil, ""},
			{http.MethodPost, "/imports", body, ctype},
			{http.MethodGet, "/imports/" + id, nil, ""},
			{http.MethodPost, "/imports/" + id + "/apply", []byte{}, "application/x-www-form-urlencoded"},
		} {
			var rd io.Reader
			if req.body != nil {
				rd = bytes.NewReader(req.body)
			}
			r := viewer.request(t, req.method, req.path, rd, http.Header{"Content-Type": {req.ctype}})
			wantErrorPage(t, r, http.StatusForbidden, "You don't have access to this")
			if strings.Contains(r.body, "Alpha") || strings.Contains(r.body, "mine.csv") {
				t.Errorf("%s %s: the 403 page shows the preview", req.method, req.path)
			}
		}
		wantState(t, db, before, "viewer")
	})

	t.Run("another admin", func(t *testing.T) {
		other := newClockedApp(t, path)
		func() {
			signInMu.Lock()
			defer signInMu.Unlock()
			idp.OverrideNextIDToken(func(c map[string]any) { c["sub"], c["name"] = "dev-admin-2", "Second Admin" })
			other.signIn(t, devidp.SubjectAdmin)
		}()
		if r := other.get(t, "/imports", false); r.status != http.StatusOK || text(r.testid("user-name")) != "Second Admin" {
			t.Fatalf("second admin's import form: %d, signed in as %q", r.status, text(r.testid("user-name")))
		}
		r := other.get(t, "/imports/"+id, false)
		wantErrorPage(t, r, http.StatusNotFound, "This import preview is not kept")
		if strings.Contains(r.body, "mine.csv") {
			t.Error("the 404 page names the preview's file")
		}
		wantErrorPage(t, other.apply(t, id), http.StatusNotFound, "This import preview is not kept")
		wantState(t, db, before, "another admin")
		// The owner still can (a check that the refusal was about the owner).
		if r := app.get(t, "/imports/"+id, false); r.testid("import-apply").Length() != 1 {
			t.Error("after another admin's attempt the owner's preview offers no Apply")
		}
	})

	t.Run("cross-site", func(t *testing.T) {
		r := app.request(t, http.MethodPost, "/imports/"+id+"/apply", strings.NewReader(""),
			http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}, "Content-Type": {"application/x-www-form-urlencoded"}})
		wantErrorPage(t, r, http.StatusForbidden, "Request refused")
		wantState(t, db, before, "cross-site apply")
	})

	t.Run("expired", func(t *testing.T) {
		pv, err := app.store.GetImport(context.Background(), id, devidp.SubjectAdmin)
		if err != nil {
			t.Fatal(err)
		}
		if pv.ExpiresAt.Sub(pv.CreatedAt) != store.ImportFor {
			t.Errorf("preview lives %v, want %v", pv.ExpiresAt.Sub(pv.CreatedAt), store.ImportFor)
		}
		app.clock.freeze(pv.CreatedAt.Add(store.ImportFor))
		// The session's roles are an hour old too: sign in again (the test provider gives
		// no refresh token to re-read them with).
		signInAs(t, app, devidp.SubjectAdmin)
		r := app.get(t, "/imports/"+id, false)
		r.wantStatus(t, http.StatusOK)
		if r.testid("import-expired").Length() != 1 || r.testid("import-apply").Length() != 0 {
			t.Fatalf("at expiry: %d import-expired, %d Apply buttons", r.testid("import-expired").Length(), r.testid("import-apply").Length())
		}
		if href, _ := r.testid("import-again").Attr("href"); href != "/imports" {
			t.Errorf("Upload again links to %q", href)
		}
		ap := app.apply(t, id)
		if ap.status != http.StatusSeeOther {
			t.Fatalf("apply of an expired preview = %d", ap.status)
		}
		after := app.follow(t, ap)
		if after.testid("import-expired").Length() != 1 || after.testid("flash").Length() != 0 {
			t.Errorf("after Apply: %d import-expired, flash %q", after.testid("import-expired").Length(), text(after.testid("flash")))
		}
		wantState(t, db, before, "expired apply")
		if got := app.get1(t, a.ID); got.Description != "a" {
			t.Errorf("alpha = %+v", got.Fields)
		}
	})
}

// The list offers Import CSV to admins, not to viewers, with associations or without.
func TestImportLinkOnList(t *testing.T) {
	t.Parallel()
	admin, _, path := newImportApp(t, devidp.SubjectAdmin)
	viewer := newClockedApp(t, path)
	signInAs(t, viewer, devidp.SubjectViewer)
	check := func(state string) {
		t.Helper()
		l := admin.get(t, "/associations", false)
		l.wantStatus(t, http.StatusOK)
		if href, _ := l.testid("import-csv").Attr("href"); l.testid("import-csv").Length() != 1 || href != "/imports" || text(l.testid("import-csv")) != "Import CSV" {
			t.Errorf("%s: admin's list has %d import-csv links to %q", state, l.testid("import-csv").Length(), href)
		}
		v := viewer.get(t, "/associations", false)
		v.wantStatus(t, http.StatusOK)
		if v.testid("import-csv").Length() != 0 {
			t.Errorf("%s: viewer's list offers Import CSV", state)
		}
	}
	check("empty")
	admin.create(t, store.Fields{DisplayName: "Alpha", Version: 1})
	check("with an association")

	f := admin.get(t, "/imports", false)
	f.wantStatus(t, http.StatusOK)
	if in := f.testid("import-file"); in.Length() != 1 || in.AttrOr("name", "") != "file" || in.AttrOr("type", "") != "file" {
		t.Errorf("import form's file field: %d, name %q", in.Length(), in.AttrOr("name", ""))
	}
	if f.testid("error-file").Length() != 0 {
		t.Error("a fresh form shows a file error")
	}
	if enc := f.testid("import-form").Find("form").AttrOr("enctype", ""); enc != "multipart/form-data" {
		t.Errorf("form enctype = %q", enc)
	}
}

// Behaviour a first version got wrong, found by these tests: each subtest states what is
// right.
func TestImportRegressions(t *testing.T) {
	t.Parallel()
	app, _, _ := newImportApp(t, devidp.SubjectAdmin)
	t.Run("unclosed quote names the line where the cell starts", func(t *testing.T) {
		r := app.upload(t, "quote.csv", []byte("displayName,description\nA,b\nB,\"never closed\nC,d\nE,f\n"))
		r.wantStatus(t, http.StatusUnprocessableEntity)
		if got := text(r.testid("error-file")); !strings.HasPrefix(got, "Line 3 of the file cannot be read") {
			t.Errorf("message = %q, want it to name line 3, where the open cell starts", got)
		}
	})
	t.Run("row numbers count blank lines", func(t *testing.T) {
		p, _ := app.preview(t, "blank.csv", []byte("displayName,version\nA,1\n\nB,abc\n"))
		if got := previewErrors(p); len(got) != 1 || got[0].row != "4" {
			t.Errorf("errors %+v, want one on row 4 (a spreadsheet shows the blank line as row 3)", got)
		}
	})
	t.Run("a preview with nothing to apply is not applied", func(t *testing.T) {
		app.create(t, store.Fields{DisplayName: "Same", Version: 1})
		_, id := app.preview(t, "same.csv", []byte("displayName\nSame\n"))
		r := app.follow(t, app.apply(t, id))
		if r.testid("import-nothing").Length() != 1 || r.testid("flash").Length() != 0 {
			t.Errorf("after Apply: import-nothing %d, flash %q", r.testid("import-nothing").Length(), text(r.testid("flash")))
		}
	})
	t.Run("a stale preview offers no Apply", func(t *testing.T) {
		a := app.create(t, store.Fields{DisplayName: "Stale", Description: "a", Version: 1})
		_, id := app.preview(t, "stale.csv", []byte("displayName,description\nStale,b\n"))
		f := a.Fields
		f.Description = "meanwhile"
		if _, err := app.store.UpdateAssociation(context.Background(), a.ID, a.Revision, f, ada); err != nil {
			t.Fatal(err)
		}
		r := app.apply(t, id)
		r.wantStatus(t, http.StatusConflict)
		if r.testid("import-apply").Length() != 0 {
			t.Error("the stale preview offers Apply again")
		}
	})
	t.Run("the upload's 413 page names the upload's limit", func(t *testing.T) {
		body, ctype := multipartBody(t, "huge.csv", bytes.Repeat([]byte("x"), 22<<20))
		r := app.request(t, http.MethodPost, "/imports", bytes.NewReader(body), http.Header{"Content-Type": {ctype}})
		r.wantStatus(t, http.StatusRequestEntityTooLarge)
		if got := text(r.testid("error-page")); strings.Contains(got, "1 MiB") {
			t.Errorf("413 page says %q", got)
		}
	})
}

// The same file imported twice: the second preview says 0 changes. Two new rows of one
// file with the same name would break that (neither has a graphId to be told apart by),
// so the second is an error; and what the file did not read, or what will wait for a
// choice, is said on the preview.
func TestImportTwiceAndWhatThePreviewSays(t *testing.T) {
	t.Parallel()
	app, db, _ := newImportApp(t, devidp.SubjectAdmin)
	file := []byte("displayName,Device Cart IDs,deviceCartIds\nArt,x,cart-1\nMusic,y,cart-2\n")
	p, id := app.preview(t, "term.csv", file)
	if got := counts(p); got != "2/0/0/0" {
		t.Fatalf("first preview counts %s, want 2/0/0/0", got)
	}
	if got := text(p.testid("import-ignored")); !strings.HasPrefix(got, "Columns not read: “Device Cart IDs”.") {
		t.Errorf("ignored columns note = %q", got)
	}
	app.follow(t, app.apply(t, id)).wantStatus(t, http.StatusOK)
	again, _ := app.preview(t, "term.csv", file)
	wantNothingToApply(t, again, 2)

	dup, _ := app.preview(t, "dup.csv", []byte("displayName\nDrama\nDrama\n"))
	if got := previewErrors(dup); len(got) != 1 || got[0].row != "3" || got[0].column != "displayName" ||
		got[0].message != "Row 2 gives an association this display name already. Give each its own name: a later import could not tell two new associations with one name apart." {
		t.Errorf("two new rows with one name: errors %+v", got)
	}
	// A rename onto a new row's name is the same problem.
	mustExec(t, db, `UPDATE associations SET graph_id = 'g-music' WHERE display_name = 'Music'`)
	ren, _ := app.preview(t, "ren.csv", []byte("displayName,graphId\nTheatre,\nTheatre,g-music\n"))
	if got := previewErrors(ren); len(got) != 1 || got[0].row != "3" || got[0].column != "displayName" {
		t.Errorf("a rename onto a new row's name: errors %+v", got)
	}
	mustExec(t, db, `UPDATE associations SET graph_id = 'g-art', sync_state = 'changed' WHERE display_name = 'Art'`)
	held, _ := app.preview(t, "held.csv", []byte("displayName,graphId,deviceCartIds\nArt,g-art,cart-9\n"))
	if got := text(held.testid("import-held")); got != "Also changed in Intune: this change waits until you choose a version on its page." {
		t.Errorf("held row note = %q", got)
	}
	if got := text(held.testid("import-ready")); !strings.Contains(got, "1 of them waits for your choice on its page") {
		t.Errorf("Apply note = %q, want it to say one change waits", got)
	}
}

// Row numbers are the spreadsheet's: empty lines before the header count too, and a file
// name sent with its folder (as some browsers do) is shown as the file's name alone.
func TestImportRowNumbersAndFileName(t *testing.T) {
	t.Parallel()
	app, _, _ := newImportApp(t, devidp.SubjectAdmin)
	p, _ := app.preview(t, `C:\Users\ada\Desktop\carts.csv`, []byte("\n\ndisplayName,version\nA,1\n\nB,abc\n"))
	if got := previewErrors(p); len(got) != 1 || got[0].row != "6" {
		t.Errorf("errors %+v, want one on row 6", got)
	}
	if got := text(p.testid("import-title")); got != "Import “carts.csv”" {
		t.Errorf("title = %q", got)
	}
}
