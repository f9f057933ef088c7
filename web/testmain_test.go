package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// Every handler test goes through testApp: newTestApp builds the real handler on a fresh
// SQLite file and signs in through the real OpenID Connect flow against the in-process dev
// provider, so each test's requests carry a session cookie exactly as a browser's would.

// testOrigin is the scheme and host of every test request; it is also the public URL
// cartclass is configured with (http is allowed for localhost only).
const testOrigin = "http://localhost"

const (
	testClientID = "cartclass-test"
	testSecret   = "test-client-secret"
)

// idp is the identity provider every test signs in with, started once in TestMain.
var idp *devidp.Provider

func TestMain(m *testing.M) {
	var err error
	idp, err = devidp.Start(devidp.Config{
		Clients: []devidp.Client{{
			ID: testClientID, Secret: testSecret,
			RedirectURIs:           []string{testOrigin + "/auth/callback"},
			PostLogoutRedirectURIs: []string{testOrigin + "/signedout"},
		}},
		Users: devidp.DefaultUsers(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start dev identity provider:", err)
		os.Exit(1)
	}
	code := m.Run()
	idp.Close()
	if benchDB.dir != "" {
		os.RemoveAll(benchDB.dir)
	}
	os.Exit(code)
}

// testEnv is the environment cartclass runs with in tests.
func testEnv(dbPath string) map[string]string {
	return map[string]string{
		"CARTCLASS_ADDR":               "127.0.0.1:8080",
		"CARTCLASS_PUBLIC_URL":         testOrigin,
		"CARTCLASS_DB":                 dbPath,
		"CARTCLASS_OIDC_ISSUER":        idp.Issuer(),
		"CARTCLASS_OIDC_CLIENT_ID":     testClientID,
		"CARTCLASS_OIDC_CLIENT_SECRET": testSecret,
		"CARTCLASS_OIDC_SCOPES":        "openid profile email",
		"CARTCLASS_SESSION_KEY":        strings.Repeat("ab", 32),
		"CARTCLASS_TIMEZONE":           "UTC", // the pages' times, whatever the machine's zone
		// Class names off unless a test is about them: a read of the classes is some sixty
		// GETs at the emulator's page size, which would take faults a test injects for its
		// own requests.
		"CARTCLASS_EDU_CLASSES": "off",
	}
}

// testApp is the real handler on a fresh temporary SQLite store, with a cookie jar that
// behaves like a browser's.
type testApp struct {
	store   *store.Store
	clock   *fakeClock
	handler http.Handler
	jar     *cookiejar.Jar
}

// response is what came back: status, headers, body and the parsed document.
type response struct {
	status int
	header http.Header
	body   string
	doc    *goquery.Document
}

// fakeClock moves on by step (one second unless frozen) every time the store asks it.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	frozen bool
}

var clockStart = time.Date(2025, 3, 14, 9, 26, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen {
		c.t = c.t.Add(time.Second)
	}
	return c.t
}

// freeze stops the clock at t, so every save until the next freeze happens at t.
func (c *fakeClock) freeze(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t, c.frozen = t, true
}

// newTestApp is the app with an admin signed in.
func newTestApp(t testing.TB) *testApp {
	t.Helper()
	a := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"))
	a.signIn(t, devidp.SubjectAdmin)
	return a
}

// newSignedOutApp builds the app on the database file at path (created if missing), with
// nobody signed in.
func newSignedOutApp(t testing.TB, path string, opts ...web.Option) *testApp {
	t.Helper()
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	clock := &fakeClock{t: clockStart}
	st.Now = clock.Now
	env := testEnv(path)
	cfg, err := web.LoadConfig(func(k string) string { return env[k] }, false)
	if err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	srv, err := web.New(context.Background(), cfg, st, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatalf("web.New: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	return &testApp{store: st, clock: clock, handler: srv, jar: jar}
}

// signIn goes through the sign-in flow as the dev provider's user subject: the sign-in
// button, the provider (which signs the user in at once), and the callback.
func (a *testApp) signIn(t testing.TB, subject string) {
	t.Helper()
	if err := idp.SetAutoLogin(subject); err != nil {
		t.Fatal(err)
	}
	start := a.postForm(t, "/auth/login", url.Values{"next": {"/associations"}}, false)
	if start.status != http.StatusSeeOther || !strings.HasPrefix(start.header.Get("Location"), idp.Issuer()) {
		t.Fatalf("sign-in did not go to the provider: %d %q", start.status, start.header.Get("Location"))
	}
	// Follow the provider's redirects until it sends the browser back to cartclass.
	client := &http.Client{CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "localhost" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	res, err := client.Get(start.header.Get("Location"))
	if err != nil {
		t.Fatalf("provider: %v", err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if err != nil || back.Host != "localhost" || back.Path != "/auth/callback" {
		t.Fatalf("provider answered %d, Location %q; want a redirect to the callback", res.StatusCode, res.Header.Get("Location"))
	}
	done := a.get(t, back.RequestURI(), false)
	if done.status != http.StatusSeeOther || done.header.Get("Location") != "/associations" {
		t.Fatalf("callback answered %d → %q; body:\n%s", done.status, done.header.Get("Location"), done.body)
	}
}

// newRequest builds a request the way a signed-in, same-origin browser sends it: cookies
// from the jar and a same-origin Sec-Fetch-Site and Origin on writes. Headers in hdr replace
// the defaults; an empty value removes a default header.
func (a *testApp) newRequest(method, path string, body io.Reader, hdr http.Header) *http.Request {
	req := httptest.NewRequest(method, testOrigin+path, body)
	for _, c := range a.jar.Cookies(originURL) {
		req.AddCookie(c)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", testOrigin)
	}
	for k, vs := range hdr {
		req.Header.Del(k)
		for _, v := range vs {
			if v != "" {
				req.Header.Add(k, v)
			}
		}
	}
	return req
}

var originURL, _ = url.Parse(testOrigin + "/")

// request sends one request (see newRequest), keeps the cookies it sets, and parses the
// answer.
func (a *testApp) request(t testing.TB, method, path string, body io.Reader, hdr http.Header) *response {
	t.Helper()
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, a.newRequest(method, path, body, hdr))
	res := rec.Result()
	defer res.Body.Close()
	a.jar.SetCookies(originURL, res.Cookies())
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("%s %s: parsing body: %v", method, path, err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: string(b), doc: doc}
}

func htmxHeaders(htmx bool) http.Header {
	h := http.Header{}
	if htmx {
		h.Set("HX-Request", "true")
	}
	return h
}

// get fetches path, as htmx would when htmx is true.
func (a *testApp) get(t testing.TB, path string, htmx bool) *response {
	t.Helper()
	return a.request(t, http.MethodGet, path, nil, htmxHeaders(htmx))
}

// getTable fetches path as the list page's htmx search, sort and paging controls do.
func (a *testApp) getTable(t testing.TB, path string) *response {
	t.Helper()
	h := htmxHeaders(true)
	h.Set("HX-Target", "association-table")
	return a.request(t, http.MethodGet, path, nil, h)
}

// postForm submits form to path, as htmx would when htmx is true.
func (a *testApp) postForm(t testing.TB, path string, form url.Values, htmx bool) *response {
	t.Helper()
	h := htmxHeaders(htmx)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	return a.request(t, http.MethodPost, path, strings.NewReader(form.Encode()), h)
}

// postRaw submits body as-is with extra headers, for malformed and hostile requests. A
// *strings.Reader or *bytes.Reader body declares its length; any other reader is sent
// with an unknown length, as a chunked upload would be.
func (a *testApp) postRaw(t testing.TB, path string, body io.Reader, hdr http.Header) *response {
	t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	for k, v := range hdr {
		h[k] = v
	}
	return a.request(t, http.MethodPost, path, body, h)
}

// follow GETs the Location of a redirect, failing unless r is one.
func (a *testApp) follow(t testing.TB, r *response) *response {
	t.Helper()
	if r.status != http.StatusSeeOther {
		t.Fatalf("status = %d, want 303 See Other; body:\n%s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/") {
		t.Fatalf("Location = %q, want a path on this site", loc)
	}
	return a.get(t, loc, false)
}

// create stores an association directly, bypassing HTTP, for tests about what is shown.
func (a *testApp) create(t testing.TB, f store.Fields) store.Association {
	t.Helper()
	as, err := a.store.CreateAssociation(context.Background(), f, store.Actor{})
	if err != nil {
		t.Fatalf("create %q: %v", f.DisplayName, err)
	}
	return as
}

// count is how many associations the store holds.
func (a *testApp) count(t testing.TB) int {
	t.Helper()
	p, err := a.store.ListAssociations(context.Background(), store.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Total
}

// wantStatus fails the test unless r has the given status.
func (r *response) wantStatus(t testing.TB, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body:\n%s", r.status, want, r.body)
	}
}

// testid selects the elements with data-testid=id.
func (r *response) testid(id string) *goquery.Selection {
	return r.doc.Find(`[data-testid="` + id + `"]`)
}

// text is the visible text of the selection with runs of white space collapsed.
func text(s *goquery.Selection) string { return strings.Join(strings.Fields(s.Text()), " ") }

// validForm is a complete, valid association form.
func validForm() url.Values {
	return url.Values{
		"displayName":   {"Science block iPads"},
		"description":   {"Two carts on the second floor"},
		"version":       {"3"},
		"deviceCartIds": {"CART-001\nCART-002"},
		"classroomIds":  {"S201\nS202"},
	}
}

// with returns a copy of v with key set to value.
func with(v url.Values, key, value string) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	c.Set(key, value)
	return c
}
