package devidp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	testClientID   = "cartclass-test"
	testSecret     = "test-secret"
	testRedirect   = "http://127.0.0.1:9/auth/callback" // never contacted: the client stops there
	testPostLogout = "http://127.0.0.1:9/signed-out"
)

func testConfig() Config {
	return Config{
		Clients: []Client{{
			ID:                     testClientID,
			Secret:                 testSecret,
			RedirectURIs:           []string{testRedirect},
			PostLogoutRedirectURIs: []string{testPostLogout},
		}},
		Users: DefaultUsers(),
	}
}

// startIDP runs a provider on 127.0.0.1:0 for the test.
func startIDP(t *testing.T) *Provider {
	t.Helper()
	idp, err := Start(testConfig())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := idp.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return idp
}

// relyingParty is cartclass's side of the login, built from go-oidc and
// x/oauth2 exactly as the app builds it.
type relyingParty struct {
	idp      *Provider
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
	browser  *http.Client
}

func newRelyingParty(t *testing.T, idp *Provider, authStyle oauth2.AuthStyle, scopes ...string) *relyingParty {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), idp.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = authStyle
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	return &relyingParty{
		idp:      idp,
		provider: provider,
		conf: oauth2.Config{
			ClientID:     testClientID,
			ClientSecret: testSecret,
			Endpoint:     endpoint,
			RedirectURL:  testRedirect,
			Scopes:       scopes,
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: testClientID}),
		browser: &http.Client{
			Timeout: 10 * time.Second,
			// Follow the IdP's redirects but stop at the app's callback.
			CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				if strings.HasPrefix(req.URL.String(), testRedirect) {
					return http.ErrUseLastResponse
				}
				return nil
			},
		},
	}
}

type login struct {
	state, nonce, pkce string
}

func newLogin() login {
	return login{state: "state-" + randomString(), nonce: "nonce-" + randomString(), pkce: oauth2.GenerateVerifier()}
}

func randomString() string { return strings.ToLower(oauth2.GenerateVerifier()[:16]) }

func (rp *relyingParty) authURL(l login) string {
	return rp.conf.AuthCodeURL(l.state, oidc.Nonce(l.nonce), oauth2.S256ChallengeOption(l.pkce))
}

// callback checks that resp redirects to the app's callback and returns
// that redirect's query (code and state, or error).
func (rp *relyingParty) callback(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("want a redirect to the app, got %d: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("redirected to %q, want %q", got, testRedirect)
	}
	return loc.Query()
}

func (rp *relyingParty) get(t *testing.T, u string) *http.Response {
	t.Helper()
	resp, err := rp.browser.Get(u)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// signIn runs a full auto-login and returns the code exchange's token.
func (rp *relyingParty) signIn(t *testing.T, subject string) (*oauth2.Token, login) {
	t.Helper()
	if err := rp.idp.SetAutoLogin(subject); err != nil {
		t.Fatal(err)
	}
	l := newLogin()
	q := rp.callback(t, rp.get(t, rp.authURL(l)))
	if q.Get("state") != l.state {
		t.Fatalf("state = %q, want %q", q.Get("state"), l.state)
	}
	if q.Get("code") == "" {
		t.Fatalf("no code in callback: %v", q)
	}
	tok, err := rp.conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(l.pkce))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok, l
}

func rawIDToken(t *testing.T, tok *oauth2.Token) string {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("token response has no id_token")
	}
	return raw
}

type entraClaims struct {
	Name              string   `json:"name"`
	Email             string   `json:"email"`
	PreferredUsername string   `json:"preferred_username"`
	Roles             []string `json:"roles"`
	Groups            []string `json:"groups"`
	TenantID          string   `json:"tid"`
	ObjectID          string   `json:"oid"`
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)

	// go-oidc fails here unless the issuer matches exactly.
	provider, err := oidc.NewProvider(t.Context(), idp.Issuer())
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	var doc struct {
		Issuer             string   `json:"issuer"`
		EndSession         string   `json:"end_session_endpoint"`
		Userinfo           string   `json:"userinfo_endpoint"`
		JWKS               string   `json:"jwks_uri"`
		CodeChallenge      []string `json:"code_challenge_methods_supported"`
		AuthMethods        []string `json:"token_endpoint_auth_methods_supported"`
		Claims             []string `json:"claims_supported"`
		IDTokenSigningAlgs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != idp.Issuer() || !strings.HasPrefix(idp.Issuer(), "http://127.0.0.1:") {
		t.Errorf("issuer = %q, Issuer() = %q", doc.Issuer, idp.Issuer())
	}
	if doc.EndSession != idp.Issuer()+"/end_session" {
		t.Errorf("end_session_endpoint = %q", doc.EndSession)
	}
	if doc.Userinfo != idp.Issuer()+"/userinfo" || doc.JWKS != idp.Issuer()+"/keys" {
		t.Errorf("userinfo_endpoint = %q, jwks_uri = %q", doc.Userinfo, doc.JWKS)
	}
	if !slices.Contains(doc.CodeChallenge, "S256") {
		t.Errorf("code_challenge_methods_supported = %v", doc.CodeChallenge)
	}
	for _, m := range []string{"client_secret_basic", "client_secret_post"} {
		if !slices.Contains(doc.AuthMethods, m) {
			t.Errorf("token_endpoint_auth_methods_supported = %v, missing %s", doc.AuthMethods, m)
		}
	}
	if !slices.Contains(doc.Claims, "roles") || !slices.Equal(doc.IDTokenSigningAlgs, []string{"RS256"}) {
		t.Errorf("claims_supported = %v, id_token_signing_alg_values_supported = %v", doc.Claims, doc.IDTokenSigningAlgs)
	}
}

func TestCodeFlowWithAutoLogin(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	for _, tc := range []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader},
		{"client_secret_post", oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRelyingParty(t, idp, tc.style)
			tok, l := rp.signIn(t, SubjectAdmin)

			idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if idt.Nonce != l.nonce {
				t.Errorf("nonce = %q, want %q", idt.Nonce, l.nonce)
			}
			if idt.Issuer != idp.Issuer() || idt.Subject != SubjectAdmin || !slices.Equal(idt.Audience, []string{testClientID}) {
				t.Errorf("iss %q sub %q aud %v", idt.Issuer, idt.Subject, idt.Audience)
			}
			if d := time.Until(idt.Expiry); d < 50*time.Minute || d > 61*time.Minute {
				t.Errorf("exp in %v, want about an hour", d)
			}
			var c entraClaims
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			want := entraClaims{
				Name: "Dev Admin", Email: "dev.admin@cartclass.test", PreferredUsername: "dev.admin@cartclass.test",
				Roles: []string{"CartClass.Admin"}, TenantID: DevTenantID, ObjectID: "00000000-0000-4000-8000-00000000ad01",
			}
			if !equalClaims(c, want) {
				t.Errorf("claims = %+v, want %+v", c, want)
			}
			if tok.RefreshToken != "" {
				t.Error("refresh token issued without offline_access")
			}

			// The access token works at the userinfo endpoint.
			info, err := rp.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("UserInfo: %v", err)
			}
			var ic entraClaims
			if err := info.Claims(&ic); err != nil {
				t.Fatal(err)
			}
			if info.Subject != SubjectAdmin || info.Email != want.Email || !slices.Equal(ic.Roles, want.Roles) {
				t.Errorf("userinfo sub %q email %q roles %v", info.Subject, info.Email, ic.Roles)
			}
		})
	}
}

func equalClaims(a, b entraClaims) bool {
	return a.Name == b.Name && a.Email == b.Email && a.PreferredUsername == b.PreferredUsername &&
		slices.Equal(a.Roles, b.Roles) && slices.Equal(a.Groups, b.Groups) &&
		a.TenantID == b.TenantID && a.ObjectID == b.ObjectID
}

func TestRolesAndGroupsClaims(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Users = append(DefaultUsers(), User{Subject: "grouped", Name: "Grouped", Email: "g@x.test", Groups: []string{"g1", "g2"}})
	idp, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)

	for _, tc := range []struct {
		subject        string
		roles, groups  []string
		name           string
		hasRolesClaim  bool
		hasGroupsClaim bool
	}{
		{SubjectViewer, []string{RoleViewer}, nil, "Dev Viewer", true, false},
		{SubjectNobody, nil, nil, "Dev Nobody", false, false},
		{"grouped", nil, []string{"g1", "g2"}, "Grouped", false, true},
	} {
		tok, _ := rp.signIn(t, tc.subject)
		idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
		if err != nil {
			t.Fatalf("%s: Verify: %v", tc.subject, err)
		}
		var raw map[string]any
		if err := idt.Claims(&raw); err != nil {
			t.Fatal(err)
		}
		var c entraClaims
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		_, hasRoles := raw["roles"]
		_, hasGroups := raw["groups"]
		if c.Name != tc.name || !slices.Equal(c.Roles, tc.roles) || !slices.Equal(c.Groups, tc.groups) ||
			hasRoles != tc.hasRolesClaim || hasGroups != tc.hasGroupsClaim {
			t.Errorf("%s: claims %v", tc.subject, raw)
		}
	}
}

func TestLoginPage(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)

	// openPage starts a login and returns the login page's form.
	openPage := func(t *testing.T, l login) (*goquery.Document, string) {
		t.Helper()
		resp := rp.get(t, rp.authURL(l))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login page status %d", resp.StatusCode)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("CSP = %q", csp)
		}
		doc, err := goquery.NewDocumentFromReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return doc, resp.Request.URL.String()
	}

	t.Run("lists the users", func(t *testing.T) {
		doc, _ := openPage(t, newLogin())
		for _, u := range DefaultUsers() {
			b := doc.Find(`[data-testid="login-as-` + u.Subject + `"]`)
			if b.Length() != 1 || !strings.Contains(b.Text(), "Sign in as "+u.Name) {
				t.Errorf("button for %s: %d found, text %q", u.Subject, b.Length(), b.Text())
			}
		}
		if doc.Find(`[data-testid="deny"]`).Text() != "Deny" {
			t.Error("no Deny button")
		}
		if n := doc.Find("script, link, img, iframe").Length(); n != 0 {
			t.Errorf("page loads %d external or script resources", n)
		}
	})

	submit := func(t *testing.T, doc *goquery.Document, pageURL, button string) *http.Response {
		t.Helper()
		form := doc.Find(`[data-testid="login-form"]`)
		action, _ := form.Attr("action")
		id, _ := form.Find(`input[name="authRequestID"]`).Attr("value")
		b := doc.Find(`[data-testid="` + button + `"]`)
		name, _ := b.Attr("name")
		value, _ := b.Attr("value")
		target, err := url.Parse(pageURL)
		if err != nil {
			t.Fatal(err)
		}
		target, _ = target.Parse(action)
		resp, err := rp.browser.PostForm(target.String(), url.Values{"authRequestID": {id}, name: {value}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("sign in as viewer", func(t *testing.T) {
		l := newLogin()
		doc, pageURL := openPage(t, l)
		q := rp.callback(t, submit(t, doc, pageURL, "login-as-"+SubjectViewer))
		if q.Get("state") != l.state || q.Get("code") == "" {
			t.Fatalf("callback %v", q)
		}
		tok, err := rp.conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(l.pkce))
		if err != nil {
			t.Fatal(err)
		}
		idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		var c entraClaims
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		if idt.Subject != SubjectViewer || c.Name != "Dev Viewer" || !slices.Equal(c.Roles, []string{RoleViewer}) {
			t.Errorf("sub %q claims %+v", idt.Subject, c)
		}

		// The same sign-in request cannot be completed twice.
		resp := submit(t, doc, pageURL, "login-as-"+SubjectAdmin)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed login form: status %d, want 400", resp.StatusCode)
		}
	})

	t.Run("deny", func(t *testing.T) {
		l := newLogin()
		doc, pageURL := openPage(t, l)
		q := rp.callback(t, submit(t, doc, pageURL, "deny"))
		if q.Get("error") != "access_denied" || q.Get("state") != l.state || q.Has("code") {
			t.Errorf("callback %v, want error=access_denied with the state and no code", q)
		}
	})

	t.Run("unknown request", func(t *testing.T) {
		resp := rp.get(t, idp.Issuer()+"/login?authRequestID=nope")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestAutoLoginToggle(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)
	if err := idp.SetAutoLogin("no-such-user"); err == nil {
		t.Error("SetAutoLogin accepted an unknown subject")
	}
	rp.signIn(t, SubjectAdmin)
	if err := idp.SetAutoLogin(""); err != nil {
		t.Fatal(err)
	}
	resp := rp.get(t, rp.authURL(newLogin()))
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" {
		t.Errorf("after SetAutoLogin(\"\"): status %d at %s, want the login page", resp.StatusCode, resp.Request.URL)
	}
}

func TestRefreshTokenRotates(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader, oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess)
	tok, _ := rp.signIn(t, SubjectAdmin)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}

	refresh := func(rt string) (*oauth2.Token, error) {
		return rp.conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt}).Token()
	}
	next, err := refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh token not rotated")
	}
	if next.AccessToken == "" || next.AccessToken == tok.AccessToken {
		t.Errorf("no new access token")
	}
	idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, next))
	if err != nil {
		t.Fatalf("Verify refreshed id_token: %v", err)
	}
	var c entraClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != SubjectAdmin || !slices.Equal(c.Roles, []string{RoleAdmin}) {
		t.Errorf("refreshed id_token sub %q roles %v", idt.Subject, c.Roles)
	}
	if _, err := rp.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(next)); err != nil {
		t.Errorf("refreshed access token at userinfo: %v", err)
	}

	// The old refresh token is spent.
	_, err = refresh(tok.RefreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("reused refresh token: err = %v, want invalid_grant", err)
	}
	// The new one still works, and rotates again.
	again, err := refresh(next.RefreshToken)
	if err != nil || again.RefreshToken == next.RefreshToken {
		t.Errorf("second refresh: %v", err)
	}
}

func TestTokenEndpointRejects(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)
	if err := idp.SetAutoLogin(SubjectAdmin); err != nil {
		t.Fatal(err)
	}
	codeFor := func(l login) string {
		return rp.callback(t, rp.get(t, rp.authURL(l))).Get("code")
	}
	wantError := func(t *testing.T, err error, code string) {
		t.Helper()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != code {
			t.Errorf("err = %v, want %s", err, code)
		}
	}

	t.Run("code used twice", func(t *testing.T) {
		l := newLogin()
		code := codeFor(l)
		if _, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(l.pkce)); err != nil {
			t.Fatal(err)
		}
		_, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(l.pkce))
		wantError(t, err, "invalid_grant")
	})
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		code := codeFor(newLogin())
		_, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		wantError(t, err, "invalid_grant")
	})
	t.Run("wrong client secret", func(t *testing.T) {
		l := newLogin()
		code := codeFor(l)
		bad := rp.conf
		bad.ClientSecret = "wrong"
		_, err := bad.Exchange(t.Context(), code, oauth2.VerifierOption(l.pkce))
		wantError(t, err, "invalid_client")
	})
}

func TestAuthorizeRequiresS256(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)
	if err := idp.SetAutoLogin(SubjectAdmin); err != nil {
		t.Fatal(err)
	}
	l := newLogin()
	for name, u := range map[string]string{
		"no PKCE":    rp.conf.AuthCodeURL(l.state, oidc.Nonce(l.nonce)),
		"plain PKCE": rp.conf.AuthCodeURL(l.state, oidc.Nonce(l.nonce), oauth2.SetAuthURLParam("code_challenge", l.pkce), oauth2.SetAuthURLParam("code_challenge_method", "plain")),
	} {
		q := rp.callback(t, rp.get(t, u))
		if q.Get("error") != "invalid_request" || q.Get("state") != l.state || q.Has("code") {
			t.Errorf("%s: callback %v, want error=invalid_request", name, q)
		}
	}
	// An unregistered redirect_uri is never redirected to.
	bad := rp.conf
	bad.RedirectURL = "http://127.0.0.1:9/evil"
	resp := rp.get(t, bad.AuthCodeURL(l.state, oauth2.S256ChallengeOption(l.pkce)))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unregistered redirect_uri: status %d, want 400", resp.StatusCode)
	}
}

func TestOverrideNextIDToken(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)

	for _, tc := range []struct {
		name       string
		sig        Signature
		mutate     func(map[string]any)
		verifyFail string // substring of go-oidc's error; "" means Verify succeeds
	}{
		{"wrong audience", SignatureValid, func(c map[string]any) { c["aud"] = "someone-else" }, "audience"},
		{"wrong issuer", SignatureValid, func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" }, "different provider"},
		{"expired", SignatureValid, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, "expired"},
		{"foreign key", SignatureForeignKey, nil, "signature"},
		{"alg none", SignatureNone, nil, "malformed"},
		{"wrong nonce passes Verify", SignatureValid, func(c map[string]any) { c["nonce"] = "wrong" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp.OverrideNextIDTokenSignature(tc.sig, tc.mutate)
			tok, l := rp.signIn(t, SubjectAdmin)
			idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
			switch {
			case tc.verifyFail == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.verifyFail == "":
				// go-oidc does not check the nonce; the app must.
				if idt.Nonce == l.nonce || idt.Nonce != "wrong" {
					t.Errorf("nonce = %q", idt.Nonce)
				}
			case err == nil:
				t.Fatal("Verify accepted a tampered id_token")
			case !strings.Contains(err.Error(), tc.verifyFail):
				t.Errorf("Verify error %q, want it to mention %q", err, tc.verifyFail)
			}
		})
	}

	t.Run("override is consumed once", func(t *testing.T) {
		idp.OverrideNextIDToken(func(c map[string]any) { c["name"] = "Mallory" })
		tok, _ := rp.signIn(t, SubjectAdmin)
		idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
		if err != nil {
			t.Fatalf("re-signed token must verify: %v", err)
		}
		var c entraClaims
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		if c.Name != "Mallory" || !slices.Equal(c.Roles, []string{RoleAdmin}) {
			t.Errorf("claims %+v", c)
		}
		tok, _ = rp.signIn(t, SubjectAdmin)
		idt, err = rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		if err := idt.Claims(&c); err != nil || c.Name != "Dev Admin" {
			t.Errorf("second token name %q, err %v", c.Name, err)
		}
	})

	t.Run("failed token request keeps the override", func(t *testing.T) {
		idp.OverrideNextIDToken(func(c map[string]any) { c["aud"] = "someone-else" })
		if _, err := rp.conf.Exchange(t.Context(), "bogus-code", oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Fatal("bogus code exchanged")
		}
		tok, _ := rp.signIn(t, SubjectAdmin)
		if _, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok)); err == nil {
			t.Error("override was lost on a failed token request")
		}
	})
}

func TestSignIDToken(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)
	claims, err := idp.Claims(SubjectViewer, testClientID, "n-1")
	if err != nil {
		t.Fatal(err)
	}

	good, err := idp.SignIDToken(claims)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := rp.verifier.Verify(t.Context(), good)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	var c entraClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != SubjectViewer || idt.Nonce != "n-1" || c.Name != "Dev Viewer" || !slices.Equal(c.Roles, []string{RoleViewer}) {
		t.Errorf("sub %q nonce %q claims %+v", idt.Subject, idt.Nonce, c)
	}

	for _, sig := range []Signature{SignatureForeignKey, SignatureNone} {
		bad, err := idp.SignIDTokenWith(sig, claims)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.verifier.Verify(t.Context(), bad); err == nil {
			t.Errorf("signature %d: Verify accepted it", sig)
		}
	}

	// A second provider has its own key: tokens do not cross over.
	other := startIDP(t)
	foreign, err := other.SignIDToken(claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.verifier.Verify(t.Context(), foreign); err == nil {
		t.Error("token signed by another provider verified")
	}
}

func TestEndSession(t *testing.T) {
	t.Parallel()
	idp := startIDP(t)
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader, oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess)
	var doc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := rp.provider.Claims(&doc); err != nil || doc.EndSession == "" {
		t.Fatalf("end_session_endpoint %q, err %v", doc.EndSession, err)
	}
	tok, _ := rp.signIn(t, SubjectAdmin)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := doc.EndSession + "?" + url.Values{
		"id_token_hint":            {rawIDToken(t, tok)},
		"post_logout_redirect_uri": {testPostLogout},
		"state":                    {"bye"},
	}.Encode()
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != testPostLogout+"?state=bye" {
		t.Errorf("end_session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Ending the session revokes the client's tokens.
	if _, err := rp.conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Error("refresh token still works after end_session")
	}

	// An unregistered post_logout_redirect_uri is refused.
	u = doc.EndSession + "?" + url.Values{"client_id": {testClientID}, "post_logout_redirect_uri": {"http://evil.test/"}}.Encode()
	resp, err = noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unregistered post_logout_redirect_uri: status %d", resp.StatusCode)
	}
}

// TestHTTPTestServer shows the httptest pattern: the listener exists before
// the provider, so the issuer can be its URL.
func TestHTTPTestServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(nil)
	cfg := testConfig()
	cfg.Issuer = "http://" + srv.Listener.Addr().String()
	idp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp.Handler()
	srv.Start()
	t.Cleanup(srv.Close)

	if srv.URL != idp.Issuer() {
		t.Fatalf("server URL %q, issuer %q", srv.URL, idp.Issuer())
	}
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)
	tok, _ := rp.signIn(t, SubjectNobody)
	if _, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok)); err != nil {
		t.Fatal(err)
	}
}

func TestCloseStopsServing(t *testing.T) {
	t.Parallel()
	idp, err := Start(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(idp.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := idp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := (&http.Client{Timeout: 2 * time.Second}).Get(idp.Issuer() + "/.well-known/openid-configuration"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	base := testConfig()
	base.Issuer = "http://127.0.0.1:1"
	for name, mutate := range map[string]func(*Config){
		"no issuer":         func(c *Config) { c.Issuer = "" },
		"issuer with path":  func(c *Config) { c.Issuer = "http://127.0.0.1:1/idp" },
		"trailing slash":    func(c *Config) { c.Issuer = "http://127.0.0.1:1/" },
		"no clients":        func(c *Config) { c.Clients = nil },
		"no redirect URI":   func(c *Config) { c.Clients = []Client{{ID: "x", Secret: "y"}} },
		"no users":          func(c *Config) { c.Users = nil },
		"duplicate subject": func(c *Config) { c.Users = append(DefaultUsers(), DefaultUsers()[0]) },
	} {
		cfg := base
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(base); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// A host name survives port 0, so tests can put the IdP on localhost and the
// app on 127.0.0.1: different sites, as Entra is for the real app.
func TestStartKeepsHostName(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Issuer = "http://localhost:0"
	idp, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	if !strings.HasPrefix(idp.Issuer(), "http://localhost:") || strings.HasSuffix(idp.Issuer(), ":0") {
		t.Fatalf("issuer %q", idp.Issuer())
	}
	rp := newRelyingParty(t, idp, oauth2.AuthStyleInHeader)
	tok, _ := rp.signIn(t, SubjectAdmin)
	idt, err := rp.verifier.Verify(t.Context(), rawIDToken(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	if idt.Issuer != idp.Issuer() {
		t.Errorf("iss %q", idt.Issuer)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Issuer = "http://0.0.0.0:0"
	if idp, err := Start(cfg); err == nil {
		idp.Close()
		t.Fatal("Start listened on all interfaces")
	}
}
