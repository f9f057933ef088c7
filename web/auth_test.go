package web_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// authEnv is cartclass on an httptest server signing in through the real in-process
// OpenID Connect provider, as in -dev mode.
type authEnv struct {
	idp    *devidp.Provider
	srv    *httptest.Server
	url    string
	dbPath string
	app    *web.Server
	store  *store.Store
	cfg    web.Config
	logs   *logRecorder // every record the app logged
}

func newAuthEnv(t *testing.T, env map[string]string, opts ...web.Option) *authEnv {
	t.Helper()
	return newAuthEnvIDP(t, nil, env, opts...)
}

// newAuthEnvIDP is newAuthEnv with the identity provider's configuration adjusted by idpCfg.
func newAuthEnvIDP(t *testing.T, idpCfg func(*devidp.Config), env map[string]string, opts ...web.Option) *authEnv {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	appURL := "http://" + srv.Listener.Addr().String()
	dc := devidp.Config{
		Issuer: "http://localhost:0",
		Clients: []devidp.Client{{
			ID: "cartclass-test", Secret: "test-secret",
			RedirectURIs:           []string{appURL + "/auth/callback"},
			PostLogoutRedirectURIs: []string{appURL + "/signedout"},
		}},
		Users: devidp.DefaultUsers(),
	}
	if idpCfg != nil {
		idpCfg(&dc)
	}
	idp, err := devidp.Start(dc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	vars := map[string]string{
		"CARTCLASS_ADDR":               srv.Listener.Addr().String(),
		"CARTCLASS_OIDC_ISSUER":        idp.Issuer(),
		"CARTCLASS_OIDC_CLIENT_ID":     "cartclass-test",
		"CARTCLASS_OIDC_CLIENT_SECRET": "test-secret",
		"CARTCLASS_SESSION_KEY":        base64.StdEncoding.EncodeToString(key),
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := web.LoadConfig(func(k string) string { return vars[k] }, false)
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "cartclass.db")
	st, err := store.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &logRecorder{}
	app, err := web.New(t.Context(), cfg, st, slog.New(logs), opts...)
	if err != nil {
		t.Fatal(err)
	}
	pushCtx, stopPush := context.WithCancel(context.Background())
	pushed := make(chan struct{})
	go func() { defer close(pushed); app.RunPusher(pushCtx) }()
	t.Cleanup(func() { stopPush(); <-pushed })
	srv.Config.Handler = app
	srv.Start()
	t.Cleanup(srv.Close)
	return &authEnv{idp: idp, srv: srv, url: appURL, dbPath: dbPath, store: st, app: app, cfg: cfg, logs: logs}
}

// browser is an HTTP client with a cookie jar that does not follow redirects, so each
// hop can be checked.
func (e *authEnv) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type hop struct {
	status   int
	location string
	header   http.Header
	body     string
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, header map[string]string) hop {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	loc := res.Header.Get("Location")
	if loc != "" {
		if l, err := res.Request.URL.Parse(loc); err == nil {
			loc = l.String()
		}
	}
	return hop{status: res.StatusCode, location: loc, header: res.Header, body: string(b)}
}

// startLogin posts the sign-in form and returns the provider's authorize URL.
func (e *authEnv) startLogin(t *testing.T, c *http.Client, next string) string {
	t.Helper()
	h := do(t, c, "POST", e.url+"/auth/login", url.Values{"next": {next}}, nil)
	if h.status != http.StatusSeeOther || !strings.HasPrefix(h.location, e.idp.Issuer()+"/authorize") {
		t.Fatalf("POST /auth/login = %d %q, want 303 to the provider's authorize endpoint", h.status, h.location)
	}
	return h.location
}

// callbackURL runs the provider's side of a login as subject (auto-login) and returns the
// callback URL the provider sends the browser to, without visiting it.
func (e *authEnv) callbackURL(t *testing.T, c *http.Client, authorize, subject string) string {
	t.Helper()
	if err := e.idp.SetAutoLogin(subject); err != nil {
		t.Fatal(err)
	}
	u := authorize
	for range 10 {
		h := do(t, c, "GET", u, nil, nil)
		if h.location == "" {
			t.Fatalf("provider answered %d without redirect at %s: %.300s", h.status, u, h.body)
		}
		if strings.HasPrefix(h.location, e.url+"/auth/callback") {
			return h.location
		}
		u = h.location
	}
	t.Fatal("provider never redirected to the callback")
	return ""
}

// login signs c in as subject and returns where the callback sent it.
func (e *authEnv) login(t *testing.T, c *http.Client, subject, next string) hop {
	t.Helper()
	cb := e.callbackURL(t, c, e.startLogin(t, c, next), subject)
	return do(t, c, "GET", cb, nil, nil)
}

func (e *authEnv) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(e.url)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "cartclass_session" {
			return ck
		}
	}
	return nil
}

func parseDoc(t *testing.T, body string) *goquery.Document {
	t.Helper()
	d, err := goquery.NewDocumentFromReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSignedOutVisitLeadsToSignIn(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	h := do(t, c, "GET", e.url+"/associations?q=room", nil, nil)
	if h.status != http.StatusSeeOther || h.location != e.url+"/signin?next=%2Fassociations%3Fq%3Droom" {
		t.Fatalf("signed-out GET = %d %q, want 303 to /signin with next", h.status, h.location)
	}
	h = do(t, c, "GET", h.location, nil, nil)
	d := parseDoc(t, h.body)
	if h.status != 200 || strings.TrimSpace(d.Find(`[data-testid="sign-in"]`).Text()) != "Sign in" {
		t.Fatalf("sign-in page = %d without a Sign in button", h.status)
	}
	if v, _ := d.Find(`input[name="next"]`).Attr("value"); v != "/associations?q=room" {
		t.Errorf("sign-in form keeps next = %q", v)
	}

	// htmx: no redirect the XHR would follow silently, but HX-Redirect to sign-in that returns
	// to the page the person was on.
	h = do(t, c, "GET", e.url+"/associations?q=x", nil, map[string]string{"HX-Request": "true", "HX-Current-URL": e.url + "/associations?q=room"})
	if h.status != http.StatusUnauthorized || h.header.Get("HX-Redirect") != "/signin?next=%2Fassociations%3Fq%3Droom" {
		t.Errorf("signed-out htmx GET = %d HX-Redirect %q", h.status, h.header.Get("HX-Redirect"))
	}
	h = do(t, c, "POST", e.url+"/associations", url.Values{"displayName": {"x"}}, map[string]string{"HX-Request": "true", "HX-Current-URL": e.url + "/associations/new"})
	if h.status != http.StatusUnauthorized || h.header.Get("HX-Redirect") != "/signin?next=%2Fassociations%2Fnew" {
		t.Errorf("signed-out htmx POST = %d HX-Redirect %q", h.status, h.header.Get("HX-Redirect"))
	}
}

func TestLoginAsAdmin(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)

	// A cookie planted before login (session fixation) must not survive it.
	u, _ := url.Parse(e.url)
	planted := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "cartclass_session", Value: planted, Path: "/"}})

	authorize := e.startLogin(t, c, "/associations/new")
	q, _ := url.Parse(authorize)
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if q.Query().Get(p) == "" {
			t.Errorf("authorize URL has no %s", p)
		}
	}
	if q.Query().Get("code_challenge_method") != "S256" {
		t.Errorf("code_challenge_method = %q, want S256", q.Query().Get("code_challenge_method"))
	}
	again, _ := url.Parse(e.startLogin(t, e.browser(t), "/"))
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if q.Query().Get(p) == again.Query().Get(p) {
			t.Errorf("%s is the same in two logins", p)
		}
	}

	h := do(t, c, "GET", e.callbackURL(t, c, authorize, devidp.SubjectAdmin), nil, nil)
	if h.status != http.StatusSeeOther || h.location != e.url+"/associations/new" {
		t.Fatalf("callback = %d %q, want 303 to the page first asked for", h.status, h.location)
	}
	var raw string
	for _, sc := range h.header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "cartclass_session=") {
			raw = sc
		}
		if len(sc) > 4096 {
			t.Errorf("cookie over 4 KiB: %.80s…", sc)
		}
		if strings.Contains(sc, "eyJ") {
			t.Errorf("cookie holds a JWT: %.80s…", sc)
		}
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(raw, attr) {
			t.Errorf("session cookie %q lacks %s", raw, attr)
		}
	}
	if strings.Contains(raw, "Domain=") {
		t.Errorf("session cookie sets a Domain: %q", raw)
	}
	if ck := e.sessionCookie(c); ck == nil || ck.Value == planted {
		t.Fatalf("session id did not rotate at login")
	}

	h = do(t, c, "GET", e.url+"/associations/new", nil, nil)
	d := parseDoc(t, h.body)
	if h.status != 200 || d.Find(`[data-testid="user-name"]`).Text() != "Dev Admin" || d.Find(`[data-testid="association-form"]`).Length() != 1 {
		t.Fatalf("admin on /associations/new = %d, header name %q", h.status, d.Find(`[data-testid="user-name"]`).Text())
	}

	// The audit fields record who made a change.
	h = do(t, c, "POST", e.url+"/associations", url.Values{"displayName": {"Room 12"}, "version": {"1"}}, nil)
	if h.status != http.StatusSeeOther {
		t.Fatalf("create = %d", h.status)
	}
	page, _ := e.store.ListAssociations(context.Background(), store.ListFilter{})
	if len(page.Items) != 1 || page.Items[0].CreatedBy != (store.Actor{Subject: devidp.SubjectAdmin, Name: "Dev Admin"}) {
		t.Fatalf("stored creator = %+v", page.Items)
	}

	// Tokens are kept server-side and sealed: nothing readable in the sessions table.
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var data []byte
	if err := db.QueryRow("SELECT data FROM sessions").Scan(&data); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "eyJ") || strings.Contains(string(data), "Dev Admin") {
		t.Error("session row holds readable tokens or names")
	}
}

func TestCallbackRejectsBadState(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	cb := e.callbackURL(t, c, e.startLogin(t, c, "/"), devidp.SubjectAdmin)
	u, _ := url.Parse(cb)

	for name, mutate := range map[string]func(q url.Values){
		"missing": func(q url.Values) { q.Del("state") },
		"wrong":   func(q url.Values) { q.Set("state", "not-the-state") },
	} {
		t.Run(name, func(t *testing.T) {
			q := u.Query()
			mutate(q)
			v := *u
			v.RawQuery = q.Encode()
			h := do(t, c, "GET", v.String(), nil, nil)
			if h.status != http.StatusBadRequest || !strings.Contains(h.body, "Sign-in expired") {
				t.Errorf("callback with %s state = %d", name, h.status)
			}
			if e.sessionCookie(c) != nil {
				t.Error("a session was created")
			}
		})
	}

	// A callback from another browser (no login cookie) is refused even with the right state.
	if h := do(t, e.browser(t), "GET", cb, nil, nil); h.status != http.StatusBadRequest {
		t.Errorf("callback in another browser = %d, want 400", h.status)
	}

	// The real one works once; replaying it (the same login cookie and URL) does not.
	var loginCookie *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "cartclass_login" {
			loginCookie = ck
		}
	}
	if loginCookie == nil {
		t.Fatal("no login cookie after starting the sign-in")
	}
	if h := do(t, c, "GET", cb, nil, nil); h.status != http.StatusSeeOther {
		t.Fatalf("first callback = %d %.200s", h.status, h.body)
	}
	first := e.sessionCookie(c).Value
	c.Jar.SetCookies(u, []*http.Cookie{loginCookie})
	if h := do(t, c, "GET", cb, nil, nil); h.status != http.StatusBadRequest {
		t.Errorf("replayed callback = %d, want 400", h.status)
	}
	if e.sessionCookie(c).Value != first {
		t.Error("replayed callback changed the session")
	}
}

func TestCallbackRejectsBadIDTokens(t *testing.T) {
	e := newAuthEnv(t, nil)
	cases := map[string]func(){
		"wrong nonce":    func() { e.idp.OverrideNextIDToken(func(c map[string]any) { c["nonce"] = "someone-elses" }) },
		"wrong audience": func() { e.idp.OverrideNextIDToken(func(c map[string]any) { c["aud"] = "another-app" }) },
		"wrong issuer":   func() { e.idp.OverrideNextIDToken(func(c map[string]any) { c["iss"] = "https://evil.example" }) },
		"expired": func() {
			e.idp.OverrideNextIDToken(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
		},
		"foreign key": func() { e.idp.OverrideNextIDTokenSignature(devidp.SignatureForeignKey, nil) },
		"alg none":    func() { e.idp.OverrideNextIDTokenSignature(devidp.SignatureNone, nil) },
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			c := e.browser(t)
			cb := e.callbackURL(t, c, e.startLogin(t, c, "/"), devidp.SubjectAdmin)
			tamper()
			h := do(t, c, "GET", cb, nil, nil)
			if h.status != http.StatusUnauthorized || !strings.Contains(h.body, "could not be verified") {
				t.Errorf("callback = %d, want 401 with an explanation", h.status)
			}
			if e.sessionCookie(c) != nil {
				t.Error("a session was created")
			}
			if h := do(t, c, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther {
				t.Errorf("after a rejected token /associations = %d, want the sign-in redirect", h.status)
			}
		})
	}
}

func TestProviderDeniesAccess(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	authorize := e.startLogin(t, c, "/")
	e.idp.SetAutoLogin("")
	h := do(t, c, "GET", authorize, nil, nil)
	for h.location != "" && !strings.Contains(h.location, "/login") {
		h = do(t, c, "GET", h.location, nil, nil)
	}
	h = do(t, c, "GET", h.location, nil, nil)
	d := parseDoc(t, h.body)
	id, _ := d.Find(`input[name="authRequestID"]`).Attr("value")
	h = do(t, c, "POST", e.idp.Issuer()+"/login", url.Values{"authRequestID": {id}, "deny": {"1"}}, nil)
	if !strings.HasPrefix(h.location, e.url+"/auth/callback") || !strings.Contains(h.location, "error=access_denied") {
		t.Fatalf("deny redirected to %q", h.location)
	}
	h = do(t, c, "GET", h.location, nil, nil)
	if h.status != http.StatusForbidden || !strings.Contains(h.body, "cancelled or refused") {
		t.Errorf("access_denied callback = %d %.300s", h.status, h.body)
	}
}

func TestRoles(t *testing.T) {
	e := newAuthEnv(t, nil)
	admin, viewer, nobody := e.browser(t), e.browser(t), e.browser(t)
	e.login(t, admin, devidp.SubjectAdmin, "/")
	e.login(t, viewer, devidp.SubjectViewer, "/")
	e.login(t, nobody, devidp.SubjectNobody, "/")
	if h := do(t, admin, "POST", e.url+"/associations", url.Values{"displayName": {"Room 12"}, "version": {"1"}}, nil); h.status != http.StatusSeeOther {
		t.Fatalf("admin create = %d", h.status)
	}
	page, _ := e.store.ListAssociations(context.Background(), store.ListFilter{})
	detail := e.url + "/associations/" + strconv.FormatInt(page.Items[0].ID, 10)

	// Viewers see everything, and no control that would fail.
	for _, p := range []string{"/associations", detail[len(e.url):]} {
		h := do(t, viewer, "GET", e.url+p, nil, nil)
		d := parseDoc(t, h.body)
		if h.status != 200 || !strings.Contains(h.body, "Room 12") {
			t.Errorf("viewer GET %s = %d", p, h.status)
		}
		if n := d.Find(`[data-testid="new-association"], [data-testid="edit"], form[method="post"]:not([action="/auth/logout"])`).Length(); n != 0 {
			t.Errorf("viewer sees %d edit controls on %s", n, p)
		}
		if d.Find(`[data-testid="user-role"]`).Text() != "Viewer" {
			t.Errorf("viewer's role pill = %q", d.Find(`[data-testid="user-role"]`).Text())
		}
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/associations/new"}, {"GET", detail[len(e.url):] + "/edit"},
		{"POST", "/associations"}, {"POST", detail[len(e.url):]}, {"POST", "/associations/validate?field=displayName"},
	} {
		form := url.Values{"displayName": {"Hacked"}, "version": {"1"}, "revision": {"1"}}
		if h := do(t, viewer, r.method, e.url+r.path, form, nil); h.status != http.StatusForbidden || !strings.Contains(h.body, "read-only") {
			t.Errorf("viewer %s %s = %d", r.method, r.path, h.status)
		}
		if h := do(t, viewer, r.method, e.url+r.path, form, map[string]string{"HX-Request": "true"}); h.status != http.StatusForbidden {
			t.Errorf("viewer htmx %s %s = %d", r.method, r.path, h.status)
		}
	}
	if a, _ := e.store.GetAssociation(context.Background(), page.Items[0].ID); a.DisplayName != "Room 12" || a.Revision != 1 {
		t.Errorf("a viewer changed the association: %+v", a)
	}

	// Signed in with no role: a friendly 403 naming the roles, on pages and fragments.
	h := do(t, nobody, "GET", e.url+"/associations", nil, nil)
	if h.status != http.StatusForbidden || !strings.Contains(h.body, "CartClass.Admin") || !strings.Contains(h.body, "CartClass.Viewer") {
		t.Errorf("no-role page = %d %.300s", h.status, h.body)
	}
	// Its button signs out (a POST with the page's form), rather than leading back to a
	// page that answers the same 403.
	d := parseDoc(t, h.body)
	if b := d.Find(`[data-testid="error-sign-out"]`); b.Length() != 1 || b.Closest("form").AttrOr("action", "") != "/auth/logout" ||
		d.Find(`[data-testid="error-page"] a[href="/associations"]`).Length() != 0 {
		t.Errorf("no-role page's action: sign-out button %d, back-to-list links %d", b.Length(), d.Find(`[data-testid="error-page"] a[href="/associations"]`).Length())
	}
	h = do(t, nobody, "GET", e.url+"/associations?q=room", nil, map[string]string{"HX-Request": "true", "HX-Target": "association-table"})
	if h.status != http.StatusForbidden || strings.Contains(h.body, "Room 12") {
		t.Errorf("no-role fragment = %d", h.status)
	}
	if h := do(t, nobody, "GET", detail, nil, nil); h.status != http.StatusForbidden || strings.Contains(h.body, "Room 12") {
		t.Errorf("no-role detail = %d", h.status)
	}
}

func TestLogout(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	old := e.sessionCookie(c)
	h := do(t, c, "POST", e.url+"/auth/logout", url.Values{}, nil)
	if h.status != http.StatusSeeOther || !strings.HasPrefix(h.location, e.idp.Issuer()+"/end_session?") {
		t.Fatalf("logout = %d %q, want 303 to the provider's end_session_endpoint", h.status, h.location)
	}
	lu, _ := url.Parse(h.location)
	if lu.Query().Get("post_logout_redirect_uri") != e.url+"/signedout" || lu.Query().Get("id_token_hint") == "" {
		t.Errorf("end_session query = %v", lu.Query())
	}
	if e.sessionCookie(c) != nil {
		t.Error("session cookie not cleared")
	}
	// Replaying the old cookie gets the sign-in page, never content.
	replay := e.browser(t)
	u, _ := url.Parse(e.url)
	replay.Jar.SetCookies(u, []*http.Cookie{old})
	if h := do(t, replay, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther || !strings.Contains(h.location, "/signin") {
		t.Errorf("replayed cookie after logout = %d %q", h.status, h.location)
	}
	if h := do(t, c, "GET", e.url+"/signedout", nil, nil); h.status != 200 || !strings.Contains(h.body, "signed out") {
		t.Errorf("/signedout = %d", h.status)
	}
}

func TestBadCookiesMeanSignedOut(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	good := e.sessionCookie(c).Value
	for name, v := range map[string]string{
		"garbage":  "%%%<script>",
		"tampered": good[:len(good)-2] + "AA",
		"too long": strings.Repeat("A", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			b := e.browser(t)
			req, _ := http.NewRequest("GET", e.url+"/associations", nil)
			req.Header.Set("Cookie", "cartclass_session="+v)
			res, err := b.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "/signin") {
				t.Errorf("%s cookie = %d %q", name, res.StatusCode, res.Header.Get("Location"))
			}
		})
	}
}

func TestSessionLifetimesEnforcedOnServer(t *testing.T) {
	e := newAuthEnv(t, nil)
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, stmt := range map[string]string{
		"idle":     "UPDATE sessions SET last_seen_at = ?", // last seen 9 h ago (idle 8 h)
		"absolute": "UPDATE sessions SET created_at = ?",   // signed in 25 h ago (limit 24 h)
	} {
		t.Run(name, func(t *testing.T) {
			c := e.browser(t)
			e.login(t, c, devidp.SubjectAdmin, "/")
			if h := do(t, c, "GET", e.url+"/associations", nil, nil); h.status != 200 {
				t.Fatalf("fresh session = %d", h.status)
			}
			past := time.Now().Add(-9 * time.Hour).UnixNano()
			if name == "absolute" {
				past = time.Now().Add(-25 * time.Hour).UnixNano()
			}
			args := []any{past}
			if _, err := db.Exec(stmt, args...); err != nil {
				t.Fatal(err)
			}
			if h := do(t, c, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther {
				t.Errorf("%s-expired session = %d, want sign-in redirect", name, h.status)
			}
			var n int
			db.QueryRow("SELECT count(*) FROM sessions").Scan(&n)
			if n != 0 {
				t.Errorf("%d expired sessions left in the database", n)
			}
		})
	}
}

func TestOpenRedirectRefused(t *testing.T) {
	e := newAuthEnv(t, nil)
	for _, next := range []string{"//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "/auth/logout"} {
		c := e.browser(t)
		h := e.login(t, c, devidp.SubjectAdmin, next)
		if h.location != e.url+"/associations" {
			t.Errorf("next=%q sent the browser to %q", next, h.location)
		}
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	for name, hdr := range map[string]map[string]string{
		"foreign origin":   {"Origin": "https://evil.example"},
		"cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
	} {
		h := do(t, c, "POST", e.url+"/associations", url.Values{"displayName": {"Evil"}, "version": {"1"}}, hdr)
		if h.status != http.StatusForbidden {
			t.Errorf("%s POST = %d, want 403", name, h.status)
		}
	}
	if page, _ := e.store.ListAssociations(context.Background(), store.ListFilter{}); page.Total != 0 {
		t.Errorf("cross-origin POST stored %d associations", page.Total)
	}
}

func TestSecurityHeadersSignedIn(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	a := do(t, c, "GET", e.url+"/associations", nil, nil)
	b := do(t, c, "GET", e.url+"/associations", nil, nil)
	nonce := func(h hop) string {
		csp := h.header.Get("Content-Security-Policy")
		i := strings.Index(csp, "'nonce-")
		if i < 0 {
			t.Fatalf("no nonce in CSP %q", csp)
		}
		return csp[i+7 : i+7+strings.Index(csp[i+7:], "'")]
	}
	if nonce(a) == nonce(b) {
		t.Error("CSP nonce repeats between responses")
	}
	d := parseDoc(t, a.body)
	d.Find("script").Each(func(_ int, s *goquery.Selection) {
		if n, _ := s.Attr("nonce"); n != nonce(a) {
			t.Errorf("script %v has nonce %q, CSP has %q", s.AttrOr("src", "inline"), n, nonce(a))
		}
	})
	csp := a.header.Get("Content-Security-Policy")
	for _, want := range []string{"object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self' " + e.idp.Issuer()} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP lacks %q: %s", want, csp)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows unsafe script: %s", csp)
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "same-origin"} {
		if a.header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, a.header.Get(k), v)
		}
	}
	if a.header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain http")
	}
	meta, _ := d.Find(`meta[name="htmx-config"]`).Attr("content")
	for _, want := range []string{`"allowEval":false`, `"allowScriptTags":false`, `"historyCacheSize":0`, `"selfRequestsOnly":true`} {
		if !strings.Contains(meta, want) {
			t.Errorf("htmx config lacks %s", want)
		}
	}
}

func TestHTTPSPublicURLHardensCookies(t *testing.T) {
	cfg, err := web.LoadConfig(func(k string) string {
		return map[string]string{
			"CARTCLASS_PUBLIC_URL": "https://cartclass.school.example", "CARTCLASS_OIDC_ISSUER": "https://login.example/t/v2.0",
			"CARTCLASS_OIDC_CLIENT_ID": "id", "CARTCLASS_OIDC_CLIENT_SECRET": "s",
			"CARTCLASS_SESSION_KEY": strings.Repeat("ab", 32),
		}[k]
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Secure() || cfg.RedirectURL() != "https://cartclass.school.example/auth/callback" {
		t.Errorf("https config: secure=%v redirect=%q", cfg.Secure(), cfg.RedirectURL())
	}
}

func TestProviderDownOrWrong(t *testing.T) {
	key := strings.Repeat("ab", 32)
	newApp := func(t *testing.T, issuer string) (*web.Server, error) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		cfg, err := web.LoadConfig(func(k string) string {
			return map[string]string{"CARTCLASS_ADDR": addr, "CARTCLASS_OIDC_ISSUER": issuer,
				"CARTCLASS_OIDC_CLIENT_ID": "id", "CARTCLASS_OIDC_CLIENT_SECRET": "s", "CARTCLASS_SESSION_KEY": key}[k]
		}, false)
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return web.New(t.Context(), cfg, st, slog.New(slog.DiscardHandler))
	}

	t.Run("wrong issuer fails fast", func(t *testing.T) {
		notOIDC := httptest.NewServer(http.NotFoundHandler())
		defer notOIDC.Close()
		_, err := newApp(t, notOIDC.URL)
		if err == nil || !strings.Contains(err.Error(), "CARTCLASS_OIDC_ISSUER") {
			t.Errorf("New with a non-OIDC issuer = %v, want an error naming CARTCLASS_OIDC_ISSUER", err)
		}
	})

	t.Run("down provider gives a clear page", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		down := "http://" + ln.Addr().String()
		ln.Close() // nothing listens there now
		app, err := newApp(t, down)
		if err != nil {
			t.Fatalf("New with an unreachable provider = %v, want start-up to go on", err)
		}
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, httptest.NewRequest("POST", "/auth/login", strings.NewReader("next=/")))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Sign-in is unavailable") {
			t.Errorf("login with the provider down = %d %.200s", rec.Code, rec.Body.String())
		}
	})
}

func TestConfigReportsEveryProblem(t *testing.T) {
	_, err := web.LoadConfig(func(k string) string {
		return map[string]string{"CARTCLASS_SESSION_KEY": "c2hvcnQ=", "CARTCLASS_SESSION_IDLE": "soon"}[k]
	}, false)
	if err == nil {
		t.Fatal("config without issuer, client or a usable key was accepted")
	}
	for _, name := range []string{"CARTCLASS_OIDC_ISSUER", "CARTCLASS_OIDC_CLIENT_ID", "CARTCLASS_OIDC_CLIENT_SECRET", "CARTCLASS_SESSION_KEY", "CARTCLASS_SESSION_IDLE"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	if strings.Contains(err.Error(), "c2hvcnQ=") {
		t.Error("error message echoes the session key")
	}
}

// openRaw opens a second connection to a test database, for looking past the store's API.
// It waits for locks like the store does: the pusher may be writing at the same moment.
func openRaw(t *testing.T, path string) (*sql.DB, error) {
	t.Helper()
	return sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
}

// Timed refreshes (the sync panel, a detail page's sync state) are not activity: an open
// tab must not keep a session alive past the idle timeout. A click is activity.
func TestPollingDoesNotKeepSessionAlive(t *testing.T) {
	g := newGraphEnv(t) // the sync panel exists when pushing to Graph
	e, c := g.authEnv, g.admin
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := e.store.CreateAssociation(t.Context(), store.Fields{DisplayName: "Room 1", Version: 1}, store.Actor{Subject: devidp.SubjectAdmin})
	if err != nil {
		t.Fatal(err)
	}
	lastSeen := func() int64 {
		var v int64
		if err := db.QueryRow("SELECT last_seen_at FROM sessions").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	tenMinAgo := time.Now().Add(-10 * time.Minute).UnixNano()
	for _, page := range []string{"/associations/" + strconv.FormatInt(a.ID, 10), "/sync"} {
		// The poller's id and URL, as the page renders them.
		doc := parseDoc(t, do(t, c, "GET", e.url+page, nil, nil).body)
		poller := doc.Find(`[hx-trigger^="every"]`)
		pollerID, _ := poller.Attr("id")
		pollURL, _ := poller.Attr("hx-get")
		if pollerID == "" || pollURL == "" {
			t.Fatalf("%s has no timed refresh with an id: %q %q", page, pollerID, pollURL)
		}
		if _, err := db.Exec("UPDATE sessions SET last_seen_at = ?", tenMinAgo); err != nil {
			t.Fatal(err)
		}
		h := do(t, c, "GET", e.url+pollURL, nil, map[string]string{"HX-Request": "true", "HX-Trigger": pollerID})
		if h.status != http.StatusOK {
			t.Fatalf("poll of %s = %d", pollURL, h.status)
		}
		if got := lastSeen(); got != tenMinAgo {
			t.Errorf("the timed refresh of %s counted as activity (last seen moved %v)", page, time.Duration(got-tenMinAgo))
		}
	}
	do(t, c, "GET", e.url+"/associations", nil, nil)
	if got := lastSeen(); got == tenMinAgo {
		t.Error("opening a page did not count as activity")
	}
}

// Sessions nobody comes back to are deleted by the periodic clean-up, not only on use.
func TestSessionCleanupDeletesAbandonedSessions(t *testing.T) {
	e := newAuthEnv(t, nil)
	for range 2 {
		e.login(t, e.browser(t), devidp.SubjectAdmin, "/")
	}
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// One session idle for 9 hours (the idle limit is 8), one fresh.
	if _, err := db.Exec("UPDATE sessions SET last_seen_at = ? WHERE id_hash = (SELECT min(id_hash) FROM sessions)", time.Now().Add(-9*time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); e.app.RunSessionCleanup(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM sessions").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left, want the fresh one only", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A storage failure while reading the session is a server error, not a reason to send a
// signed-in admin (with whatever they just posted) back to sign-in.
func TestSessionStorageFailureIsNotSignOut(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	e.store.Close() // every query now fails
	h := do(t, c, "POST", e.url+"/associations", url.Values{"displayName": {"Room 1"}, "version": {"1"}}, nil)
	if h.status != http.StatusInternalServerError || strings.Contains(h.location, "/signin") {
		t.Errorf("save with the database failing = %d → %q, want the 500 page, not sign-in", h.status, h.location)
	}
}

// Signing in again in the same browser ends the session it had: its cookie, replayed
// elsewhere, no longer signs anyone in.
func TestSignInAgainEndsTheOldSession(t *testing.T) {
	e := newAuthEnv(t, nil)
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	u, _ := url.Parse(e.url)
	old := c.Jar.Cookies(u)
	e.login(t, c, devidp.SubjectAdmin, "/")

	replay := e.browser(t)
	replay.Jar.SetCookies(u, old)
	if h := do(t, replay, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther || !strings.Contains(h.location, "/signin") {
		t.Errorf("the replaced session's cookie = %d → %q, want sign-in", h.status, h.location)
	}
	db, err := openRaw(t, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM sessions").Scan(&n); err != nil || n != 1 {
		t.Errorf("sessions after signing in twice = %d (%v), want 1", n, err)
	}
}
