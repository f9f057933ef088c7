package web_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// The identity provider refusing cartclass itself (a wrong or expired client secret, an
// application it does not know, a redirect URI not registered) is a set-up problem: the
// page says so and names the setting to check, without telling the admin to try again,
// and one ERROR record carries the provider's codes, never a secret, token or code.

// setupPage checks h is the set-up problem page naming every one of settings.
func setupPage(t *testing.T, h hop, settings ...string) {
	t.Helper()
	if h.status != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", h.status)
	}
	page := parseDoc(t, h.body).Find(`[data-testid="error-page"]`)
	text := strings.Join(strings.Fields(page.Text()), " ")
	for _, want := range append([]string{
		"cartclass is not set up correctly",
		"refused cartclass itself, not your account",
		"This is a set-up problem that only the person who runs cartclass can fix, so signing in again will not help.",
	}, settings...) {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q:\n%s", want, text)
		}
	}
	if lower := strings.ToLower(text); strings.Contains(lower, "try again") || strings.Contains(lower, "sign in again") {
		t.Errorf("page tells the admin to try again:\n%s", text)
	}
	if n := page.Find("a, button").Length(); n != 0 {
		t.Errorf("page offers %d buttons or links, none of which can help: %s", n, text)
	}
}

// oneSetupRecord checks the log holds exactly one ERROR record, the set-up problem with
// the given codes, and none of the values that must never be logged.
func oneSetupRecord(t *testing.T, logs *logRecorder, want []string, never ...string) {
	t.Helper()
	errs := logs.at(slog.LevelError)
	if len(errs) != 1 || errs[0] != "ERROR identity provider refused cartclass: set-up problem" {
		t.Errorf("ERROR records = %q, want the one set-up problem", errs)
	}
	text := logs.text()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("log lacks %s:\n%s", w, text)
		}
	}
	for _, v := range never {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("log shows %q:\n%s", v, text)
		}
	}
}

// With a wrong client secret, the sign-in through the real provider ends on the set-up
// page; the provider's invalid_client is logged, the secret is not.
func TestWrongClientSecret(t *testing.T) {
	const wrong = "not-the-secret-3b7d01"
	e := newAuthEnv(t, map[string]string{"CARTCLASS_OIDC_CLIENT_SECRET": wrong})
	c := e.browser(t)
	cb := e.callbackURL(t, c, e.startLogin(t, c, "/associations"), devidp.SubjectAdmin)
	cbURL, _ := url.Parse(cb)
	code := cbURL.Query().Get("code")
	if code == "" {
		t.Fatalf("provider's callback has no code: %s", cb)
	}
	h := do(t, c, "GET", cb, nil, nil)
	setupPage(t, h, "CARTCLASS_OIDC_CLIENT_SECRET", "(The identity provider answered invalid_client.)")
	if e.sessionCookie(c) != nil {
		t.Error("a session was created")
	}
	oneSetupRecord(t, e.logs, []string{"step=token", "oauth_error=invalid_client", "CARTCLASS_OIDC_CLIENT_SECRET"}, wrong, "test-secret", code)
}

// fakeProvider is an identity provider whose discovery is right and whose token endpoint
// answers tokenStatus with tokenBody, for the refusals the dev provider cannot give
// (Entra ID's AADSTS codes).
func fakeProvider(t *testing.T, tokenStatus int, tokenBody map[string]string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize",
				"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/keys"})
		case "/token":
			w.WriteHeader(tokenStatus)
			json.NewEncoder(w).Encode(tokenBody)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// loginState starts a sign-in in c and returns its state, as the provider would send it
// back to the callback.
func loginState(t *testing.T, e *authEnv, c *http.Client) string {
	t.Helper()
	h := do(t, c, "POST", e.url+"/auth/login", url.Values{"next": {"/"}}, nil)
	u, err := url.Parse(h.location)
	if h.status != http.StatusSeeOther || err != nil || u.Query().Get("state") == "" {
		t.Fatalf("POST /auth/login = %d %q, want a redirect with a state", h.status, h.location)
	}
	return u.Query().Get("state")
}

// Entra ID's refusals at the token endpoint, by their AADSTS codes.
func TestProviderRefusesCartclassAtTheTokenEndpoint(t *testing.T) {
	const secret, code = "the-configured-secret-91c2", "authorization-code-77e1"
	for _, c := range []struct {
		name     string
		status   int
		body     map[string]string
		page     []string
		logWants []string
	}{
		{"expired secret", http.StatusUnauthorized, map[string]string{"error": "invalid_client",
			"error_description": "AADSTS7000222: The provided client secret keys for app '1111' are expired.\r\nTrace ID: 9f0e\r\nCorrelation ID: 77aa"},
			[]string{"cartclass's client secret has expired", "put its Value in CARTCLASS_OIDC_CLIENT_SECRET", "(The identity provider answered invalid_client, AADSTS7000222.)"},
			[]string{"aadsts=AADSTS7000222", "oauth_error=invalid_client", "Trace ID: 9f0e"}},
		{"secret ID given for the secret", http.StatusUnauthorized, map[string]string{"error": "invalid_client",
			"error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '1111'. The secret sent was " + secret},
			[]string{"CARTCLASS_OIDC_CLIENT_SECRET must be the secret's Value, not its Secret ID"},
			[]string{"aadsts=AADSTS7000215", "[masked]"}},
		{"unknown application", http.StatusBadRequest, map[string]string{"error": "unauthorized_client",
			"error_description": "AADSTS700016: Application with identifier 'x' was not found in the directory 'School'."},
			[]string{"the provider does not know cartclass's application: check CARTCLASS_OIDC_CLIENT_ID", "CARTCLASS_OIDC_ISSUER"},
			[]string{"aadsts=AADSTS700016", "oauth_error=unauthorized_client"}},
		{"redirect URI mismatch", http.StatusBadRequest, map[string]string{"error": "invalid_grant",
			"error_description": "AADSTS50011: The redirect URI 'http://x/auth/callback' specified in the request does not match the redirect URIs configured for the application."},
			[]string{"/auth/callback must be registered, exactly, in cartclass's app registration", "CARTCLASS_PUBLIC_URL must be the address people open cartclass at"},
			[]string{"aadsts=AADSTS50011", "oauth_error=invalid_grant"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := fakeProvider(t, c.status, c.body)
			e := newAuthEnv(t, map[string]string{"CARTCLASS_OIDC_ISSUER": p.URL, "CARTCLASS_OIDC_CLIENT_SECRET": secret})
			b := e.browser(t)
			state := loginState(t, e, b)
			h := do(t, b, "GET", e.url+"/auth/callback?"+url.Values{"state": {state}, "code": {code}}.Encode(), nil, nil)
			setupPage(t, h, c.page...)
			if c.name == "redirect URI mismatch" && !strings.Contains(h.body, e.url+"/auth/callback must be registered") {
				t.Errorf("the page does not give the redirect URI to register (%s/auth/callback)", e.url)
			}
			oneSetupRecord(t, e.logs, append([]string{"step=token"}, c.logWants...), secret, code)
		})
	}
}

// A used or expired code (invalid_grant about the grant, not the redirect URI) is still
// the person's to retry, not a set-up problem.
func TestExpiredCodeIsNoSetUpProblem(t *testing.T) {
	p := fakeProvider(t, http.StatusBadRequest, map[string]string{"error": "invalid_grant",
		"error_description": "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code."})
	e := newAuthEnv(t, map[string]string{"CARTCLASS_OIDC_ISSUER": p.URL})
	b := e.browser(t)
	h := do(t, b, "GET", e.url+"/auth/callback?"+url.Values{"state": {loginState(t, e, b)}, "code": {"used"}}.Encode(), nil, nil)
	if h.status != http.StatusBadRequest || strings.Contains(h.body, "set-up problem") {
		t.Errorf("an already redeemed code = %d, want the 400 sign-in failure, not the set-up page", h.status)
	}
	if errs := e.logs.at(slog.LevelError); len(errs) != 0 {
		t.Errorf("a redeemed code logged %q", errs)
	}
}

// Errors the provider sends back to the callback instead of a code.
func TestProviderRefusesCartclassAtTheCallback(t *testing.T) {
	clock := &movableClock{}
	e := newAuthEnv(t, nil, web.WithClock(clock.Now))
	for _, c := range []struct {
		query    url.Values
		page     []string
		logWants []string
	}{
		{url.Values{"error": {"unauthorized_client"}, "error_description": {"AADSTS700016: Application with identifier 'cartclass-test' was not found in the directory."}},
			[]string{"check CARTCLASS_OIDC_CLIENT_ID", "(The identity provider answered unauthorized_client, AADSTS700016.)"},
			[]string{"step=authorize", "oauth_error=unauthorized_client", "aadsts=AADSTS700016"}},
		{url.Values{"error": {"unauthorized_client"}, "error_description": {"The client is not authorized to request an authorization code using this method."}},
			[]string{"the provider does not let cartclass's application sign people in this way: check CARTCLASS_OIDC_CLIENT_ID", "(The identity provider answered unauthorized_client.)"},
			[]string{"step=authorize", "oauth_error=unauthorized_client", `check=CARTCLASS_OIDC_CLIENT_ID`}},
		{url.Values{"error": {"invalid_request"}, "error_description": {"AADSTS50011: The redirect URI 'http://x/auth/callback' specified in the request does not match the redirect URIs configured for the application 'y'."}},
			[]string{e.url + "/auth/callback must be registered, exactly", "CARTCLASS_PUBLIC_URL must be the address people open cartclass at", "(The identity provider answered invalid_request, AADSTS50011.)"},
			[]string{"step=authorize", "oauth_error=invalid_request", "aadsts=AADSTS50011"}},
		{url.Values{"error": {"invalid_client"}},
			[]string{"check CARTCLASS_OIDC_CLIENT_SECRET (wrong, or expired) and CARTCLASS_OIDC_CLIENT_ID"},
			[]string{"oauth_error=invalid_client"}},
		{url.Values{"error": {"invalid_scope"}, "error_description": {"AADSTS70011: The provided value for the input parameter 'scope' is not valid."}},
			[]string{"check CARTCLASS_OIDC_SCOPES and CARTCLASS_GRAPH_SCOPES"},
			[]string{"oauth_error=invalid_scope", "aadsts=AADSTS70011"}},
	} {
		t.Run(c.query.Get("error"), func(t *testing.T) {
			clock.advance(11 * time.Minute) // past the previous case's record
			e.logs.reset()
			b := e.browser(t)
			q := c.query
			q.Set("state", loginState(t, e, b))
			h := do(t, b, "GET", e.url+"/auth/callback?"+q.Encode(), nil, nil)
			setupPage(t, h, c.page...)
			if e.sessionCookie(b) != nil {
				t.Error("a session was created")
			}
			// Anyone who starts a sign-in can send such a callback: the record says it is
			// unverified, and keeps none of the text that came with it.
			oneSetupRecord(t, e.logs, append(c.logWants, `source="the browser's return from the provider (unverified)"`),
				"test-secret", "description=", "was not found in the directory", "specified in the request")
		})
	}
	// Again within ten minutes: the page, but no second record for an operator to chase.
	e.logs.reset()
	b := e.browser(t)
	h := do(t, b, "GET", e.url+"/auth/callback?"+url.Values{"state": {loginState(t, e, b)}, "error": {"invalid_client"}}.Encode(), nil, nil)
	setupPage(t, h)
	if errs := e.logs.at(slog.LevelError); len(errs) != 0 {
		t.Errorf("a second browser-sent set-up error within 10 minutes logged %q", errs)
	}
	// A callback error without a valid state is still just an expired sign-in: anybody
	// can craft that URL.
	h = do(t, e.browser(t), "GET", e.url+"/auth/callback?error=invalid_client&state=forged", nil, nil)
	if h.status != http.StatusBadRequest || strings.Contains(h.body, "set-up problem") {
		t.Errorf("an error callback with a forged state = %d, want 400 Sign-in expired", h.status)
	}
}

// A refresh refused because of cartclass's own credentials (the secret changed or expired
// since sign-in) does not sign anyone out as a refused grant would: the person keeps
// working on the role last confirmed, and the set-up problem is logged.
func TestRefreshRefusedForCartclassItself(t *testing.T) {
	clock := &movableClock{}
	e := newAuthEnv(t, nil, web.WithClock(clock.Now))
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")

	// The same database, restarted with a secret the provider does not accept.
	const wrong = "rotated-away-secret-5a9e"
	cfg := e.cfg
	cfg.OIDCClientSecret = wrong
	logs := &logRecorder{}
	app, err := web.New(t.Context(), cfg, e.store, slog.New(logs), web.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{e.sessionCookie(c)})

	clock.advance(11 * time.Minute) // past CARTCLASS_ROLE_RECHECK: this request refreshes
	if h := do(t, c, "GET", srv.URL+"/associations/new", nil, nil); h.status != http.StatusOK {
		t.Errorf("admin after a refresh refused for invalid_client = %d → %q, want 200 (still signed in)", h.status, h.location)
	}
	clock.advance(2 * time.Minute) // the re-check is tried again
	do(t, c, "GET", srv.URL+"/associations", nil, nil)
	oneSetupRecord(t, logs, []string{"step=refresh", "oauth_error=invalid_client", "CARTCLASS_OIDC_CLIENT_SECRET"}, wrong, "test-secret")
	for _, m := range logs.at(slog.LevelInfo) {
		if strings.Contains(m, "signed out") {
			t.Errorf("logged %q", m)
		}
	}
}
