package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// logRecorder is a slog.Handler that keeps every record, so tests can say what was (not)
// logged.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// at returns the messages logged at level or above.
func (l *logRecorder) at(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level >= level {
			out = append(out, r.Level.String()+" "+r.Message)
		}
	}
	return out
}

// reset forgets every record so far.
func (l *logRecorder) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = nil
}

// text is every record as a text handler would write it, attributes included, for tests
// that a log names (or never shows) something.
func (l *logRecorder) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	for _, r := range l.records {
		h.Handle(context.Background(), r)
	}
	return b.String()
}

// movableClock is a server clock tests move forward; it starts at the real time so the
// provider's tokens (on the real clock) stay valid.
type movableClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *movableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *movableClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

func loginCookieOf(t *testing.T, e *authEnv, c *http.Client) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(e.url)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "cartclass_login" {
			return ck
		}
	}
	t.Fatal("no login cookie")
	return nil
}

// The sign-in in progress lives in a sealed cookie: readable by nobody, HttpOnly and Lax,
// refused when tampered with, too old, replayed or brought by another browser.
func TestLoginCookie(t *testing.T) {
	clock := &movableClock{}
	e := newAuthEnv(t, nil, web.WithClock(clock.Now))

	c := e.browser(t)
	res, err := c.PostForm(e.url+"/auth/login", url.Values{"next": {"/associations?q=room"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var set *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "cartclass_login" {
			set = ck
		}
	}
	if set == nil {
		t.Fatal("POST /auth/login set no login cookie")
	}
	authorize, _ := url.Parse(res.Header.Get("Location"))
	state, nonce := authorize.Query().Get("state"), authorize.Query().Get("nonce")
	if !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Path != "/" || set.MaxAge != 600 {
		t.Errorf("login cookie HttpOnly=%v SameSite=%v Path=%q MaxAge=%d, want HttpOnly, Lax, /, 600", set.HttpOnly, set.SameSite, set.Path, set.MaxAge)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(set.Value)
	if len(set.Value) > 1024 || strings.Contains(set.Value, state) || strings.Contains(string(raw), state) || strings.Contains(string(raw), nonce) {
		t.Errorf("login cookie (%d bytes) shows its state or nonce: it must be sealed", len(set.Value))
	}

	t.Run("tampered", func(t *testing.T) {
		c := e.browser(t)
		cb := e.callbackURL(t, c, e.startLogin(t, c, "/"), devidp.SubjectAdmin)
		ck := loginCookieOf(t, e, c)
		b, err := base64.RawURLEncoding.DecodeString(ck.Value)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1 // one bit of the sealed text
		u, _ := url.Parse(e.url)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "cartclass_login", Value: base64.RawURLEncoding.EncodeToString(b), Path: "/"}})
		if h := do(t, c, "GET", cb, nil, nil); h.status != http.StatusBadRequest || e.sessionCookie(c) != nil {
			t.Errorf("callback with a tampered login cookie = %d (session %v), want 400 and no session", h.status, e.sessionCookie(c) != nil)
		}
	})
	t.Run("another browser's cookie", func(t *testing.T) {
		a, b := e.browser(t), e.browser(t)
		e.startLogin(t, a, "/")
		cb := e.callbackURL(t, b, e.startLogin(t, b, "/"), devidp.SubjectAdmin)
		u, _ := url.Parse(e.url)
		a.Jar.SetCookies(u, []*http.Cookie{loginCookieOf(t, e, a)})
		if h := do(t, a, "GET", cb, nil, nil); h.status != http.StatusBadRequest {
			t.Errorf("callback for b's sign-in with a's login cookie = %d, want 400", h.status)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c := e.browser(t)
		cb := e.callbackURL(t, c, e.startLogin(t, c, "/"), devidp.SubjectAdmin)
		clock.advance(11 * time.Minute)
		defer clock.advance(-11 * time.Minute)
		h := do(t, c, "GET", cb, nil, nil)
		if h.status != http.StatusBadRequest || !strings.Contains(h.body, "took too long") || e.sessionCookie(c) != nil {
			t.Errorf("callback 11 minutes after starting = %d, want 400 “took too long” and no session", h.status)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		c := e.browser(t)
		cb := e.callbackURL(t, c, e.startLogin(t, c, "/"), devidp.SubjectAdmin)
		ck := loginCookieOf(t, e, c)
		if h := do(t, c, "GET", cb, nil, nil); h.status != http.StatusSeeOther {
			t.Fatalf("first callback = %d", h.status)
		}
		thief := e.browser(t)
		u, _ := url.Parse(e.url)
		thief.Jar.SetCookies(u, []*http.Cookie{ck})
		h := do(t, thief, "GET", cb, nil, nil)
		if h.status != http.StatusBadRequest || !strings.Contains(h.body, "already used") || e.sessionCookie(thief) != nil {
			t.Errorf("replayed callback = %d, want 400 “already used” and no session", h.status)
		}
	})
}

// fileState is what a test compares to prove nothing was written to the database.
func fileState(t *testing.T, dbPath string) string {
	t.Helper()
	var out []string
	for _, p := range []string{dbPath, dbPath + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			out = append(out, p+": missing")
			continue
		}
		out = append(out, fmt.Sprintf("%s: %d bytes, modified %s", filepath.Base(p), fi.Size(), fi.ModTime().Format(time.RFC3339Nano)))
	}
	return strings.Join(out, "; ")
}

func rowCounts(t *testing.T, dbPath string) string {
	t.Helper()
	db, err := openRaw(t, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	for _, table := range []string{"sessions", "user_tokens", "associations", "outbox"} {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", table, n))
	}
	return strings.Join(out, " ")
}

// Nothing a signed-out client can reach writes to the database: 1,000 anonymous visitors
// starting sign-ins, posting garbage callbacks and signing out leave the files untouched.
func TestSignedOutClientsWriteNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cartclass.db")
	a := newSignedOutApp(t, path)
	beforeRows, beforeFiles := rowCounts(t, path), fileState(t, path)
	time.Sleep(20 * time.Millisecond) // a write now would show in the modification time
	for i := range 1000 {
		addr := fmt.Sprintf("10.%d.%d.%d:4000", i/65536, (i/256)%256, i%256)
		for _, req := range []*http.Request{
			httptest.NewRequest("POST", testOrigin+"/auth/login", strings.NewReader("next=%2Fassociations")),
			httptest.NewRequest("GET", testOrigin+"/auth/callback?state=x&code=y", nil),
			httptest.NewRequest("GET", testOrigin+"/signin?next=/associations", nil),
			httptest.NewRequest("GET", testOrigin+"/associations", nil),
			httptest.NewRequest("POST", testOrigin+"/auth/logout", nil),
			httptest.NewRequest("GET", testOrigin+"/healthz", nil),
		} {
			req.RemoteAddr = addr
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			// A cookie that looks like a session id but names none.
			req.AddCookie(&http.Cookie{Name: "cartclass_session", Value: base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%032d", i)))})
			rec := httptest.NewRecorder()
			a.handler.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s = %d", req.Method, req.URL.Path, rec.Code)
			}
		}
	}
	if got := rowCounts(t, path); got != beforeRows {
		t.Errorf("rows after 1,000 anonymous visitors: %s, before: %s", got, beforeRows)
	}
	if got := fileState(t, path); got != beforeFiles {
		t.Errorf("database files after 1,000 anonymous visitors:\n  %s\nbefore:\n  %s", got, beforeFiles)
	}
}

// One address hammering the sign-in endpoints gets 429 with Retry-After and a page that
// says what to do; other addresses are not held up.
func TestSignInRateLimited(t *testing.T) {
	// A stopped clock: an empty budget stays empty, whatever the test's own pace.
	stopped := time.Now()
	a := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"), web.WithClock(func() time.Time { return stopped }))
	send := func(path, addr string) *httptest.ResponseRecorder {
		method := "GET"
		if path == "/auth/login" {
			method = "POST"
		}
		req := httptest.NewRequest(method, testOrigin+path, strings.NewReader("next=%2F"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		a.handler.ServeHTTP(rec, req)
		return rec
	}
	var limited *httptest.ResponseRecorder
	var limitedAfter time.Duration
	for i := range 200 {
		path := "/auth/login"
		if i%2 == 1 {
			path = "/auth/callback?state=x&code=y"
		}
		start := time.Now()
		if rec := send(path, "203.0.113.7:5555"); rec.Code == http.StatusTooManyRequests {
			limited, limitedAfter = rec, time.Since(start)
			if i < 20 {
				t.Errorf("limited after only %d requests: a staff room behind one address must be able to sign in", i)
			}
			break
		}
	}
	if limited == nil {
		t.Fatal("200 sign-in requests from one address in a moment were never limited")
	}
	// The answer past the budget was held back (so a flood paces itself), but not for long.
	if limitedAfter < 100*time.Millisecond || limitedAfter > 3*time.Second {
		t.Errorf("the 429 took %v, want it held back up to about a second", limitedAfter)
	}
	if s, err := strconv.Atoi(limited.Header().Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After = %q, want whole seconds", limited.Header().Get("Retry-After"))
	}
	body := limited.Body.String()
	if !strings.Contains(body, "Too many sign-in attempts") || !strings.Contains(body, "seconds, then sign in again") {
		t.Errorf("429 page does not explain itself:\n%.600s", body)
	}
	if rec := send("/auth/login", "203.0.113.8:5555"); rec.Code != http.StatusSeeOther {
		t.Errorf("another address = %d, want 303 to the provider", rec.Code)
	}
	// The same /64 is one client; another /64 is not.
	for i := 0; send("/auth/login", "[2001:db8:1:2::1]:443").Code != http.StatusTooManyRequests; i++ {
		if i > 100 {
			t.Fatal("an IPv6 client was never limited")
		}
	}
	if rec := send("/auth/login", "[2001:db8:1:2::ffff]:443"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("same IPv6 /64 = %d, want 429", rec.Code)
	}
	if rec := send("/auth/login", "[2001:db8:1:3::1]:443"); rec.Code != http.StatusSeeOther {
		t.Errorf("other IPv6 /64 = %d, want 303", rec.Code)
	}
}

// Roles follow the provider: an admin removed from the role loses it within one re-check
// (the next request after CARTCLASS_ROLE_RECHECK), a viewer given it gains it, and someone
// whose refresh the provider refuses is signed out.
func TestRolesFollowTheProvider(t *testing.T) {
	clock := &movableClock{}
	e := newAuthEnv(t, nil, web.WithClock(clock.Now))
	admin, viewer := e.browser(t), e.browser(t)
	e.login(t, admin, devidp.SubjectAdmin, "/")
	e.login(t, viewer, devidp.SubjectViewer, "/")
	t.Cleanup(func() {
		e.idp.SetRoles(devidp.SubjectAdmin, []string{devidp.RoleAdmin}, nil)
		e.idp.SetRoles(devidp.SubjectViewer, []string{devidp.RoleViewer}, nil)
	})
	status := func(c *http.Client, path string) int { return do(t, c, "GET", e.url+path, nil, nil).status }
	if got := status(admin, "/associations/new"); got != http.StatusOK {
		t.Fatalf("admin before = %d", got)
	}

	if err := e.idp.SetRoles(devidp.SubjectAdmin, []string{devidp.RoleViewer}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.idp.SetRoles(devidp.SubjectViewer, []string{devidp.RoleAdmin}, nil); err != nil {
		t.Fatal(err)
	}
	clock.advance(9 * time.Minute)
	if got := status(admin, "/associations/new"); got != http.StatusOK {
		t.Errorf("9 minutes later (re-check every 10) admin = %d, want 200 still", got)
	}
	clock.advance(2 * time.Minute)
	if got := status(admin, "/associations/new"); got != http.StatusForbidden {
		t.Errorf("after the re-check, the former admin's form = %d, want 403", got)
	}
	if got := do(t, admin, "POST", e.url+"/associations", url.Values{"displayName": {"x"}, "version": {"1"}}, nil).status; got != http.StatusForbidden {
		t.Errorf("after the re-check, the former admin's save = %d, want 403", got)
	}
	if got := status(admin, "/associations"); got != http.StatusOK {
		t.Errorf("now a viewer, the list = %d, want 200", got)
	}
	if got := status(viewer, "/associations/new"); got != http.StatusOK {
		t.Errorf("the promoted viewer's form = %d, want 200", got)
	}
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var role int
	if err := db.QueryRow("SELECT role FROM sessions WHERE subject = ?", devidp.SubjectAdmin).Scan(&role); err != nil || role != int(web.RoleViewer) {
		t.Errorf("stored role of the former admin = %d (%v), want viewer", role, err)
	}

	// A refresh the provider refuses signs the person out: every session of theirs ends.
	e.idp.RevokeRefreshTokens(devidp.SubjectViewer)
	clock.advance(11 * time.Minute)
	if h := do(t, viewer, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther || !strings.Contains(h.location, "/signin") {
		t.Errorf("after a refused refresh = %d → %q, want sign-in", h.status, h.location)
	}
	var n int
	db.QueryRow("SELECT count(*) FROM sessions WHERE subject = ?", devidp.SubjectViewer).Scan(&n)
	if n != 0 {
		t.Errorf("%d sessions left for the person whose refresh was refused", n)
	}
	for _, m := range e.logs.at(slog.LevelError) {
		t.Errorf("logged %s", m)
	}
}

// An identity provider that cannot be reached at re-check time does not sign anyone out:
// the role last confirmed stays until the provider answers again.
func TestRoleRecheckWithProviderDown(t *testing.T) {
	clock := &movableClock{}
	e := newAuthEnv(t, nil, web.WithClock(clock.Now))
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	e.idp.Close()
	clock.advance(11 * time.Minute)
	if got := do(t, c, "GET", e.url+"/associations/new", nil, nil).status; got != http.StatusOK {
		t.Errorf("admin with the provider down at re-check = %d, want 200", got)
	}
	// But not for good: unconfirmed for three re-check intervals, the person is signed out
	// (a removed admin must not keep the role for the rest of a 24 h session).
	clock.advance(20 * time.Minute)
	if h := do(t, c, "GET", e.url+"/associations/new", nil, nil); h.status != http.StatusSeeOther || !strings.Contains(h.location, "/signin") {
		t.Errorf("31 minutes unconfirmed = %d → %q, want sign-in", h.status, h.location)
	}
}

// Lifetimes are computed at each request from the sign-in time and the limits configured
// now: restarting with a lower CARTCLASS_SESSION_MAX ends sessions older than it at once.
func TestLoweredSessionMaxEndsOlderSessions(t *testing.T) {
	clock := &movableClock{}
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	e := newAuthEnv(t, map[string]string{"CARTCLASS_SESSION_KEY": key}, web.WithClock(clock.Now))
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	clock.advance(2 * time.Hour)
	if got := do(t, c, "GET", e.url+"/associations", nil, nil).status; got != http.StatusOK {
		t.Fatalf("2 h after sign-in with a 24 h limit = %d", got)
	}

	// The same database and key, now with an 1 h limit.
	cfg := e.cfg
	cfg.SessionMax = time.Hour
	app, err := web.New(t.Context(), cfg, e.store, slog.New(slog.DiscardHandler), web.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{e.sessionCookie(c)})
	if h := do(t, c, "GET", srv.URL+"/associations", nil, nil); h.status != http.StatusSeeOther || !strings.Contains(h.location, "/signin") {
		t.Errorf("a 2 h old session with the limit lowered to 1 h = %d → %q, want sign-in", h.status, h.location)
	}
}

// A body cut off in the middle is the client's problem: 400 (or nothing, if it is gone),
// never a 500 and never an ERROR line.
func TestCutOffBodyIsNotAnError(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	u, _ := url.Parse(e.url)
	for _, path := range []string{"/associations", "/auth/login"} {
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		body := "displayName=Room+1&description=half"
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\nCookie: %s=%s\r\n\r\n%s",
			path, u.Host, e.sessionCookie(c).Name, e.sessionCookie(c).Value, body)
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s with a cut-off body = %d, want 400", path, res.StatusCode)
			}
		}
		conn.Close()
	}
	time.Sleep(50 * time.Millisecond) // let the handler finish logging
	for _, m := range e.logs.at(slog.LevelWarn) {
		t.Errorf("a cut-off body logged %s", m)
	}
	if n := e.count(t); n != 0 {
		t.Errorf("%d associations saved from a cut-off body", n)
	}
}

func (e *authEnv) count(t *testing.T) int {
	t.Helper()
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM associations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Behind a TLS proxy (CARTCLASS_TRUSTED_PROXIES) each client has its own sign-in budget,
// named by X-Forwarded-For; from anyone else that header is ignored, so a client cannot
// escape its budget by writing one.
func TestSignInLimitBehindAProxy(t *testing.T) {
	stopped := time.Now()
	path := filepath.Join(t.TempDir(), "cartclass.db")
	st, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testEnv(path)
	env["CARTCLASS_TRUSTED_PROXIES"] = "10.9.0.0/16, 192.0.2.1"
	cfg, err := web.LoadConfig(func(k string) string { return env[k] }, false)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(t.Context(), cfg, st, slog.New(slog.DiscardHandler), web.WithClock(func() time.Time { return stopped }))
	if err != nil {
		t.Fatal(err)
	}
	send := func(peer, xff string) int {
		req := httptest.NewRequest("POST", testOrigin+"/auth/login", strings.NewReader("next=%2F"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = peer
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec.Code
	}
	exhaust := func(peer, xff string) {
		for i := 0; send(peer, xff) != http.StatusTooManyRequests; i++ {
			if i > 100 {
				t.Fatalf("%s (X-Forwarded-For %q) was never limited", peer, xff)
			}
		}
	}
	// Through the proxy: a forged left-most entry does not count, the proxy's own right one does.
	exhaust("10.9.0.5:443", "6.6.6.6, 198.51.100.7")
	if got := send("10.9.0.5:443", "7.7.7.7, 198.51.100.7"); got != http.StatusTooManyRequests {
		t.Errorf("the same client with another forged entry = %d, want 429", got)
	}
	if got := send("10.9.0.5:443", "198.51.100.8"); got != http.StatusSeeOther {
		t.Errorf("another client behind the proxy = %d, want 303", got)
	}
	if got := send("192.0.2.1:443", "198.51.100.9, 10.9.0.7"); got != http.StatusSeeOther {
		t.Errorf("a client behind two trusted proxies = %d, want 303", got)
	}
	// Not through a trusted proxy: the header is ignored.
	exhaust("203.0.113.50:1000", "198.51.100.10")
	if got := send("203.0.113.50:1000", "198.51.100.11"); got != http.StatusTooManyRequests {
		t.Errorf("an untrusted peer escaped its budget with X-Forwarded-For: %d", got)
	}

	env["CARTCLASS_TRUSTED_PROXIES"] = "proxy.school.example"
	if _, err := web.LoadConfig(func(k string) string { return env[k] }, false); err == nil || !strings.Contains(err.Error(), `"proxy.school.example" is not an address`) {
		t.Errorf("a host name as trusted proxy: %v", err)
	}
}
