package main

// Restoring cartclass from a backup, end to end: cartclass runs as `cartclass -dev` does
// (run(), its dev identity provider and Graph emulator), an admin signs in over plain HTTP
// through the provider's login form (no browser), saves go in through the real handlers, and
// `cartclass backup FILE` is taken in the middle of a burst of them. The helpers here (HTTP
// sign-in, saves, what the database holds) serve litestream_test.go too.

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web/devidp"
)

// TestRestoreBackupTakenDuringBurst takes `cartclass backup FILE` while admins save, stops
// cartclass, restores the backup exactly as the README's "Backups and restore" says, and
// starts cartclass on it. Every save answered before the backup began is in it; every save
// begun after it ended is not; each save in between is wholly there (the association at
// that revision, a history entry per revision, its change queued for Intune) or wholly
// absent. The restored file passes integrity_check, cartclass serves the list with them,
// and the changes that were waiting for Intune are sent after the start.
func TestRestoreBackupTakenDuringBurst(t *testing.T) {
	// The README's layout: the database in its folder, backups beside it.
	dir := t.TempDir()
	db := filepath.Join(dir, "cartclass.db")
	backup := filepath.Join(dir, "backups", "cartclass-20261201T020000Z.db")
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		t.Fatal(err)
	}
	// backupCommand is what `cartclass backup FILE` runs; it reads CARTCLASS_DB from the
	// process environment, as the command does (so this test cannot be parallel).
	t.Setenv("CARTCLASS_DB", db)

	a := startServer(t, db)
	admin := signIn(t, a, devidp.SubjectAdmin)
	// Intune refuses the first push with 403: cartclass pauses its whole queue (until a
	// re-check minutes away), so every change of the burst stays queued and the backup
	// must hold the outbox row of each association it holds.
	a.injectFault(t, emulator.Fault{Method: http.MethodPost, Status: http.StatusForbidden, Count: 1})

	var (
		log       saveLog
		backupErr error
		window    [2]time.Time // when the backup started and ended
	)
	burst(t, admin, &log, 6, 90, 30, func() {
		window[0] = time.Now()
		backupErr = backupCommand([]string{backup}, false)
		window[1] = time.Now()
	})
	if backupErr != nil {
		t.Fatalf("cartclass backup during the burst: %v", backupErr)
	}
	a.stop(t)

	// The README, literally: move the database and its -wal and -shm aside, copy the backup
	// into place under the database's name, 0600, start.
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(db+suffix, filepath.Join(broken, filepath.Base(db)+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	copyFile(t, backup, db, 0o600)

	checkIntegrity(t, db)
	got := readDB(t, db)
	before, racing, after := log.split(window[0], window[1])
	t.Logf("%d saves: %d answered before the backup (%s), %d racing with it, %d begun after it; the backup holds %d associations",
		len(log.saves), len(before), window[1].Sub(window[0]).Round(time.Millisecond), len(racing), len(after), len(got.assocs))
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("the backup was not taken in the middle of the burst: %d saves before it, %d after", len(before), len(after))
	}
	for _, s := range before {
		if r, ok := got.assocs[s.ID]; !ok || r.Revision < s.Revision {
			t.Errorf("%q (id %d) was answered as saved at revision %d before the backup began; the backup holds %+v", s.Fields.DisplayName, s.ID, s.Revision, r)
		}
	}
	for _, s := range after {
		if r, ok := got.assocs[s.ID]; ok && r.Revision >= s.Revision {
			t.Errorf("%q (id %d) revision %d was saved after the backup ended, but the backup holds revision %d", s.Fields.DisplayName, s.ID, s.Revision, r.Revision)
		}
	}
	got.checkWhole(t, log.saves)
	for id := range got.assocs {
		if !got.outbox[id] {
			t.Errorf("association %d is in the backup without its outbox row: its change would never reach Intune", id)
		}
	}

	// cartclass starts on the restored file; the emulator's state file, beside the
	// database, is Intune, which kept what it had (nothing: the queue was paused).
	b := startServer(t, db)
	if fi, err := os.Stat(db); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("restored database mode %v; want 0600", fi.Mode().Perm())
	}
	admin = signIn(t, b, devidp.SubjectAdmin) // the dev session key is new at each start
	admin.checkListed(t, got.assocs)

	// The changes that were waiting are sent now (the sign-in hands the pusher a token it
	// can unseal again).
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := b.missingInIntune(t, got.assocs)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the start, %d of the %d restored associations waiting for Intune are not there, e.g. %v", len(missing), len(got.assocs), missing[:min(3, len(missing))])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// injectFault has the Graph emulator answer matching requests with f. It may run on any
// goroutine: a failure is reported, and the test goes on.
func (a *app) injectFault(t *testing.T, f emulator.Fault) {
	t.Helper()
	body, _ := json.Marshal(f)
	res, err := http.Post(a.Emulator+"/_emulator/faults", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Errorf("inject fault: %v", err)
		return
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("inject fault: %s", res.Status)
	}
}

// missingInIntune is the display names of want that the emulator does not hold with the
// same fields.
func (a *app) missingInIntune(t *testing.T, want map[int64]dbAssoc) []string {
	t.Helper()
	var objs []struct {
		DisplayName   string   `json:"displayName"`
		Description   string   `json:"description"`
		Version       int32    `json:"version"`
		DeviceCartIDs []string `json:"deviceCartIds"`
		ClassroomIDs  []string `json:"classroomIds"`
	}
	a.emulatorGet(t, "/_emulator/objects", &objs)
	have := map[string]store.Fields{}
	for _, o := range objs {
		have[o.DisplayName] = store.Fields{DisplayName: o.DisplayName, Description: o.Description, Version: o.Version, DeviceCartIDs: o.DeviceCartIDs, ClassroomIDs: o.ClassroomIDs}
	}
	var missing []string
	for _, w := range want {
		if f, ok := have[w.Fields.DisplayName]; !ok || !f.Equal(w.Fields) {
			missing = append(missing, w.Fields.DisplayName)
		}
	}
	sort.Strings(missing)
	return missing
}

// client is one signed-in person's HTTP client: a cookie jar, like a browser's, that
// follows no redirects (the tests read them).
type client struct {
	app  *app
	http *http.Client
}

var authRequestIDField = regexp.MustCompile(`name="authRequestID" value="([^"]*)"`)

// signIn signs subject in over HTTP as a browser does: cartclass's sign-in button (POST
// /auth/login), the dev provider's redirects to its login form, the "Sign in as" button,
// and the redirects back through /auth/callback to the list.
func signIn(t *testing.T, a *app, subject string) *client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	follow := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	res, body := mustSend(t, follow, http.MethodPost, a.URL+"/auth/login", url.Values{"next": {"/associations"}}, a.URL)
	m := authRequestIDField.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Request.URL.String(), a.IdP) || m == nil {
		t.Fatalf("sign-in ended at %s (%s), not at the provider's login form", res.Request.URL, res.Status)
	}
	login := res.Request.URL.ResolveReference(&url.URL{Path: "/login"})
	res, body = mustSend(t, follow, http.MethodPost, login.String(), url.Values{"authRequestID": {m[1]}, "subject": {subject}}, a.IdP)
	if res.StatusCode != http.StatusOK || res.Request.URL.String() != a.URL+"/associations" || !strings.Contains(body, `data-testid="sign-out"`) {
		t.Fatalf("signing in as %s ended at %s (%s), not at the list", subject, res.Request.URL, res.Status)
	}
	return &client{app: a, http: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// send sends one request, a form POST when form is not nil, from a page of origin (so
// that cross-origin protection lets it through), and reads the answer. It may run on any
// goroutine.
func send(c *http.Client, method, rawURL string, form url.Values, origin string) (*http.Response, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	return res, string(b), nil
}

// mustSend is send on the test's goroutine, failing the test on an error.
func mustSend(t *testing.T, c *http.Client, method, rawURL string, form url.Values, origin string) (*http.Response, string) {
	t.Helper()
	res, body, err := send(c, method, rawURL, form, origin)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// associationForm is the association form filled in with f.
func associationForm(f store.Fields) url.Values {
	return url.Values{
		"displayName":   {f.DisplayName},
		"description":   {f.Description},
		"version":       {strconv.Itoa(int(f.Version))},
		"deviceCartIds": {strings.Join(f.DeviceCartIDs, "\n")},
		"classroomIds":  {strings.Join(f.ClassroomIDs, "\n")},
	}
}

var associationPath = regexp.MustCompile(`^/associations/([0-9]+)$`)

// create submits the new-association form; it returns the new association's id, or an
// error saying what cartclass answered instead of saving.
func (c *client) create(f store.Fields) (int64, error) {
	res, body, err := send(c.http, http.MethodPost, c.app.URL+"/associations", associationForm(f), c.app.URL)
	if err != nil {
		return 0, err
	}
	m := associationPath.FindStringSubmatch(res.Header.Get("Location"))
	if res.StatusCode != http.StatusSeeOther || m == nil {
		return 0, fmt.Errorf("create %q: %s, Location %q: %.200s", f.DisplayName, res.Status, res.Header.Get("Location"), body)
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	return id, nil
}

// edit submits the edit form of association id, seen at revision, with f.
func (c *client) edit(id, revision int64, f store.Fields) error {
	form := associationForm(f)
	form.Set("revision", strconv.FormatInt(revision, 10))
	res, body, err := send(c.http, http.MethodPost, fmt.Sprintf("%s/associations/%d", c.app.URL, id), form, c.app.URL)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != fmt.Sprintf("/associations/%d", id) {
		return fmt.Errorf("edit %q: %s, Location %q: %.200s", f.DisplayName, res.Status, res.Header.Get("Location"), body)
	}
	return nil
}

// checkListed fails the test unless cartclass serves the list page, and its CSV export
// (every page of the list) holds each of want with its fields.
func (c *client) checkListed(t *testing.T, want map[int64]dbAssoc) {
	t.Helper()
	res, body := mustSend(t, c.http, http.MethodGet, c.app.URL+"/associations", nil, "")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `association-table`) {
		t.Fatalf("GET /associations: %s", res.Status)
	}
	if len(want) <= 50 { // one page
		for _, w := range want {
			if !strings.Contains(body, w.Fields.DisplayName) {
				t.Errorf("the list page does not show %q", w.Fields.DisplayName)
			}
		}
	}
	res, body = mustSend(t, c.http, http.MethodGet, c.app.URL+"/associations/export.csv", nil, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /associations/export.csv: %s", res.Status)
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\ufeff"))).ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("export.csv: %v", err)
	}
	listed := map[string][]string{}
	for _, r := range rows[1:] {
		listed[r[0]] = r
	}
	for _, w := range want {
		f := w.Fields
		r, ok := listed[f.DisplayName]
		wantRow := []string{f.DisplayName, f.Description, strconv.Itoa(int(f.Version)), strings.Join(f.DeviceCartIDs, ", "), strings.Join(f.ClassroomIDs, ", ")}
		if !ok || !slices.Equal(r[:5], wantRow) {
			t.Errorf("export.csv row for %q: %q, want %q", f.DisplayName, r, wantRow)
		}
	}
}

// save is one save cartclass answered as done: the association, the revision the save
// made, the values it saved, and when the request was sent and answered.
type save struct {
	ID       int64
	Revision int64
	Fields   store.Fields
	Sent     time.Time
	Answered time.Time
}

// saveLog is every save answered, safe for concurrent use.
type saveLog struct {
	mu    sync.Mutex
	saves []save
}

func (l *saveLog) add(s save) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.saves = append(l.saves, s)
	return len(l.saves)
}

// split sorts the saves by when they were answered and sent relative to [start, end]:
// answered before start, racing with it, sent after end.
func (l *saveLog) split(start, end time.Time) (before, racing, after []save) {
	for _, s := range l.saves {
		switch {
		case s.Answered.Before(start):
			before = append(before, s)
		case s.Sent.After(end):
			after = append(after, s)
		default:
			racing = append(racing, s)
		}
	}
	return before, racing, after
}

// latest is each association's last answered save.
func (l *saveLog) latest() map[int64]save {
	m := map[int64]save{}
	for _, s := range l.saves {
		if s.Revision > m[s.ID].Revision {
			m[s.ID] = s
		}
	}
	return m
}

// burst has workers admins' worth of concurrent saves made through c, n of them: each
// worker creates associations with names of its own and edits every other one right after
// creating it. Once at saves are answered, during runs beside the saves, which go on while
// it runs and, after it returns, for at least 10 more. Any save cartclass does not answer
// as done fails the test.
func burst(t *testing.T, c *client, log *saveLog, workers, n, at int, during func()) {
	t.Helper()
	var (
		mu                  sync.Mutex
		started, afterwards int
		triggered, done     bool
		duringDone          = make(chan struct{})
	)
	if during == nil {
		close(duringDone)
		done, triggered = true, true
	}
	next := func() bool { // claims one more save
		mu.Lock()
		defer mu.Unlock()
		switch {
		case triggered && !done:
		case done && afterwards < 10:
			afterwards++
		case started >= n:
			return false
		}
		started++
		return true
	}
	record := func(s save) {
		k := log.add(s)
		mu.Lock()
		defer mu.Unlock()
		if k >= at && !triggered {
			triggered = true
			go func() {
				during()
				mu.Lock()
				done = true
				mu.Unlock()
				close(duringDone)
			}()
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; next(); i++ {
				f := store.Fields{
					DisplayName:   fmt.Sprintf("Cart w%d-%03d", w, i),
					Description:   fmt.Sprintf("made by worker %d", w),
					Version:       int32(i),
					DeviceCartIDs: []string{fmt.Sprintf("cart-%d-%d", w, i)},
					ClassroomIDs:  []string{fmt.Sprintf("room-%d", i%7), fmt.Sprintf("room-w%d", w)},
				}
				sent := time.Now()
				id, err := c.create(f)
				if err != nil {
					t.Error(err)
					return
				}
				record(save{ID: id, Revision: 1, Fields: f, Sent: sent, Answered: time.Now()})
				if i%2 == 1 || !next() {
					continue
				}
				f.Description += ", edited"
				f.ClassroomIDs = append(f.ClassroomIDs, "room-edited")
				sent = time.Now()
				if err := c.edit(id, 1, f); err != nil {
					t.Error(err)
					return
				}
				record(save{ID: id, Revision: 2, Fields: f, Sent: sent, Answered: time.Now()})
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	wait := triggered
	mu.Unlock()
	if wait {
		<-duringDone
	}
	if t.Failed() {
		t.FailNow()
	}
}

// dbAssoc is an association as the database file holds it.
type dbAssoc struct {
	Revision  int64
	Fields    store.Fields
	SyncState string
}

// dbState is what a database file holds, read with plain SQL.
type dbState struct {
	assocs  map[int64]dbAssoc
	history map[int64][]int64 // revision of each history entry, by association, ascending
	outbox  map[int64]bool
	// tables is every row of every table of cartclass's, as text, sorted, by table (not
	// SQLite's own, nor Litestream's _litestream_* bookkeeping).
	tables map[string][]string
}

// readDB reads what the database file at path holds. It opens it as any SQLite client
// would, which changes nothing stored.
func readDB(t *testing.T, path string) dbState {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := dbState{assocs: map[int64]dbAssoc{}, history: map[int64][]int64{}, outbox: map[int64]bool{}, tables: map[string][]string{}}
	rows, err := db.QueryContext(ctx, `SELECT id, revision, display_name, description, version, device_cart_ids, classroom_ids, sync_state FROM associations`)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	for rows.Next() {
		var (
			id        int64
			a         dbAssoc
			carts, rm string
		)
		if err := rows.Scan(&id, &a.Revision, &a.Fields.DisplayName, &a.Fields.Description, &a.Fields.Version, &carts, &rm, &a.SyncState); err != nil {
			t.Fatal(err)
		}
		if json.Unmarshal([]byte(carts), &a.Fields.DeviceCartIDs) != nil || json.Unmarshal([]byte(rm), &a.Fields.ClassroomIDs) != nil {
			t.Fatalf("association %d: id lists %s, %s", id, carts, rm)
		}
		st.assocs[id] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = db.QueryContext(ctx, `SELECT association_id, revision FROM history ORDER BY association_id, revision`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, rev int64
		if err := rows.Scan(&id, &rev); err != nil {
			t.Fatal(err)
		}
		st.history[id] = append(st.history[id], rev)
	}
	rows, err = db.QueryContext(ctx, `SELECT association_id FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		st.outbox[id] = true
	}
	var names []string
	rows, err = db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table'
		AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_litestream\_%' ESCAPE '\'
		AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	for _, n := range names {
		st.tables[n] = dumpTable(t, db, n)
	}
	return st
}

// dumpTable is every row of table name as text, sorted.
func dumpTable(t *testing.T, db *sql.DB, name string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM "` + name + `"`)
	if err != nil {
		t.Fatalf("dump %s: %v", name, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = "x'" + hex.EncodeToString(b) + "'"
			}
			cells[i] = fmt.Sprintf("%v", v)
		}
		out = append(out, strings.Join(cells, " | "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkWhole fails the test unless each association of saves is wholly in the database or
// wholly absent: there, at a revision one of saves made, with that save's values and a
// history entry for each revision up to it; absent, with no history entry and no outbox
// row either.
func (st dbState) checkWhole(t *testing.T, saves []save) {
	t.Helper()
	byRevision := map[[2]int64]save{}
	for _, s := range saves {
		byRevision[[2]int64{s.ID, s.Revision}] = s
	}
	checked := map[int64]bool{}
	for _, s := range saves {
		if checked[s.ID] {
			continue
		}
		checked[s.ID] = true
		a, ok := st.assocs[s.ID]
		if !ok {
			if len(st.history[s.ID]) > 0 || st.outbox[s.ID] {
				t.Errorf("association %d is absent but left history %v, outbox row %v", s.ID, st.history[s.ID], st.outbox[s.ID])
			}
			continue
		}
		want, ok := byRevision[[2]int64{s.ID, a.Revision}]
		if !ok || !a.Fields.Equal(want.Fields) {
			t.Errorf("association %d at revision %d holds %+v; the save of that revision was %+v", s.ID, a.Revision, a.Fields, want.Fields)
		}
		var revs []int64
		for r := int64(1); r <= a.Revision; r++ {
			revs = append(revs, r)
		}
		if !slices.Equal(st.history[s.ID], revs) {
			t.Errorf("association %d at revision %d has history entries for revisions %v, want %v", s.ID, a.Revision, st.history[s.ID], revs)
		}
	}
}

// checkIntegrity fails the test unless SQLite's integrity_check finds the file sound.
func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res []string
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check of %s: %v", path, err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		res = append(res, s)
	}
	if !slices.Equal(res, []string{"ok"}) {
		t.Fatalf("integrity_check of %s: %q", path, res)
	}
}

// copyFile copies src to a new file dst with mode perm, as cp and chmod would.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, perm); err != nil {
		t.Fatal(err)
	}
}
