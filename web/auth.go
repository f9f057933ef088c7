package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// Role is what a signed-in person may do.
type Role int

// Roles, in increasing power.
const (
	RoleNone Role = iota
	RoleViewer
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleAdmin:
		return "Admin"
	case RoleViewer:
		return "Viewer"
	}
	return "No access"
}

// User is the signed-in person, kept in their server-side session. The tokens cartclass
// pushes to Graph with are not here: they live, sealed, in the user-token table, where
// refreshes keep them current (see signedIn).
type User struct {
	Issuer  string
	Subject string // with Issuer, the identity: never the email
	Name    string
	Email   string
	Role    Role
	IDToken string // for the provider's end_session id_token_hint
}

// Actor is the user as the audit fields record them.
func (u User) Actor() store.Actor { return store.Actor{Subject: u.Subject, Name: u.Name} }

// loginTTL bounds how long a login may take at the identity provider.
const loginTTL = 10 * time.Minute

// errProviderDown is a provider we cannot reach; it gets a clear page, not a 500.
var errProviderDown = errors.New("identity provider unreachable")

// oidcClient is the relying party. Discovery happens at start-up; when the provider is down
// then, it is retried on the next sign-in instead of keeping cartclass from starting.
type oidcClient struct {
	cfg     Config
	baseCtx context.Context // long-lived, carries the HTTP client for key fetches
	client  *http.Client    // the HTTP client for discovery

	mu         sync.Mutex
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	endSession string
	origins    []string // origins forms may post to (CSP form-action): authorize and end_session

	setupLogged time.Time // when a refresh refused for a set-up problem was last logged
}

// setupLogEvery spaces the ERROR records of refreshes the provider refuses for a set-up
// problem: every signed-in person's re-check meets the same one.
const setupLogEvery = 10 * time.Minute

// logSetupProblem logs a refresh refused because of how cartclass is set up, at ERROR, at
// most once every setupLogEvery.
func (c *oidcClient) logSetupProblem(log *slog.Logger, se *setupError, now time.Time) {
	c.mu.Lock()
	due := c.setupLogged.IsZero() || now.Sub(c.setupLogged) >= setupLogEvery
	if due {
		c.setupLogged = now
	}
	c.mu.Unlock()
	if due {
		se.log(log)
	}
}

// newOIDCClient discovers the provider. A wrong issuer (no such host, not an OIDC issuer,
// issuer mismatch) fails fast; a provider that is merely unreachable is logged and retried
// lazily.
func newOIDCClient(ctx context.Context, cfg Config, client *http.Client) (*oidcClient, error) {
	c := &oidcClient{cfg: cfg, baseCtx: oidc.ClientContext(ctx, client), client: client}
	err := c.discover()
	if err != nil && !transient(err) {
		hint := "check that it is your identity provider's issuer URL, such as https://login.microsoftonline.com/<tenant-id>/v2.0"
		var de *discoveryError
		if errors.As(err, &de) && de.hint != "" {
			hint = de.hint
		}
		return nil, fmt.Errorf("CARTCLASS_OIDC_ISSUER=%q: %w; %s", cfg.OIDCIssuer, err, hint)
	}
	return c, err
}

// transient reports whether a discovery error means "down right now" rather than "wrong".
func transient(err error) bool {
	var de *discoveryError
	if errors.As(err, &de) {
		return de.temporary
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsNotFound
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op)
}

// discoveryError is an answer at the discovery URL that is no OpenID configuration, told
// by what was fetched, the status and the content type: never the body, which may be
// a whole web page (or something the operator would not want in a log).
type discoveryError struct {
	msg       string
	hint      string // what to do, when it is not the usual check of the issuer URL
	temporary bool   // the provider is failing for now (502, 503, 504, 429), not wrong
}

func (e *discoveryError) Error() string { return e.msg }

// maxDiscoveryBytes bounds the discovery document read (Entra's is about 2 KB).
const maxDiscoveryBytes = 1 << 20

// discoveryDoc is the part of the OpenID configuration cartclass uses.
type discoveryDoc struct {
	oidc.ProviderConfig
	EndSession string `json:"end_session_endpoint"`
}

// fetchDiscovery reads issuer's OpenID configuration itself, rather than through
// oidc.NewProvider, whose errors carry the body of whatever answered.
func (c *oidcClient) fetchDiscovery() (*discoveryDoc, error) {
	issuer := c.cfg.OIDCIssuer
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(c.baseCtx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxDiscoveryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", wellKnown, err)
	}
	ct := headerText(res.Header.Get("Content-Type"))
	if ct == "" {
		ct = "no content type"
	}
	what := "GET " + wellKnown
	if final := res.Request.URL; final.String() != wellKnown {
		what += " was redirected to " + (&url.URL{Scheme: final.Scheme, Host: final.Host, Path: final.Path}).String() + " (a sign-in page?), which"
	}
	if res.StatusCode != http.StatusOK {
		// A provider failing for now: cartclass starts and tries again at sign-in (and
		// /readyz) rather than crash-looping under its service manager.
		temporary := res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests
		return nil, &discoveryError{temporary: temporary,
			msg: fmt.Sprintf("%s answered %s (%s), not an OpenID configuration", what, res.Status, ct)}
	}
	var doc discoveryDoc
	if len(body) > maxDiscoveryBytes || json.Unmarshal(body, &doc) != nil {
		return nil, &discoveryError{msg: fmt.Sprintf("%s answered %s with %s that is not an OpenID configuration (JSON)", what, res.Status, ct)}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"issuer", doc.IssuerURL}, {"authorization_endpoint", doc.AuthURL}, {"token_endpoint", doc.TokenURL}, {"jwks_uri", doc.JWKSURL},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, &discoveryError{msg: fmt.Sprintf("%s answered JSON (%s) that is not an OpenID configuration: it has no %s", what, ct, strings.Join(missing, ", "))}
	}
	if doc.IssuerURL != issuer {
		msg := fmt.Sprintf("the provider at %s calls itself %q, not %q, and ID tokens must name the issuer exactly", wellKnown, headerText(doc.IssuerURL), issuer)
		if strings.TrimSuffix(doc.IssuerURL, "/") == strings.TrimSuffix(issuer, "/") {
			msg += " (they differ in the trailing slash)"
		} else if strings.Contains(issuer, "/common/") || strings.Contains(issuer, "/organizations/") {
			msg += " (Entra ID: put your tenant's ID in place of common or organizations)"
		}
		return nil, &discoveryError{msg: msg, hint: "if that is your provider, set CARTCLASS_OIDC_ISSUER to exactly the issuer it names"}
	}
	// Only the algorithms go-oidc verifies (oidc.NewProvider keeps the same ones): a
	// provider listing "none" or HS256 must not make the verifier accept them.
	var algs []string
	for _, a := range doc.Algorithms {
		switch a {
		case oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA:
			algs = append(algs, a)
		}
	}
	doc.Algorithms = algs
	return &doc, nil
}

// headerText is s from another server, made fit for a message: printable and short.
func headerText(s string) string { return clip(s, 120) }

// clip is s without control characters, cut at n characters.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

func (c *oidcClient) discover() error {
	doc, err := c.fetchDiscovery()
	if err != nil {
		return err
	}
	p := doc.ProviderConfig.NewProvider(c.baseCtx)
	origins := []string{originOf(p.Endpoint().AuthURL)}
	if doc.EndSession != "" {
		origins = append(origins, originOf(doc.EndSession))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.provider = p
	c.verifier = p.Verifier(&oidc.Config{ClientID: c.cfg.OIDCClientID})
	c.oauth = oauth2.Config{
		ClientID:     c.cfg.OIDCClientID,
		ClientSecret: c.cfg.OIDCClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  c.cfg.RedirectURL(),
		Scopes:       c.cfg.OIDCScopes,
	}
	c.endSession = doc.EndSession
	c.origins = origins
	return nil
}

// discovered reports whether the provider's configuration has been read.
func (c *oidcClient) discovered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.provider != nil
}

// ready returns the discovered provider's settings, discovering now if start-up could not.
func (c *oidcClient) ready() (oauth2.Config, *oidc.IDTokenVerifier, error) {
	if !c.discovered() {
		if err := c.discover(); err != nil {
			return oauth2.Config{}, nil, fmt.Errorf("%w: %v", errProviderDown, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.oauth, c.verifier, nil
}

func (c *oidcClient) formOrigins() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.origins == nil {
		return []string{originOf(c.cfg.OIDCIssuer)}
	}
	return c.origins
}

func (c *oidcClient) endSessionURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endSession
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// handleSignIn shows the sign-in page; the button posts to /auth/login.
func (s *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if u, ok := s.currentUser(r); ok && u.Role > RoleNone {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, views.SignInPage(s.page(w, r, "Sign in"), views.SignIn{Next: next}))
}

// handleLogin starts the code flow: fresh state, nonce and PKCE verifier in a sealed,
// short-lived login cookie that binds the callback to this browser. Nothing is written to
// the database before someone has signed in.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(r); err != nil {
		s.fail(w, r, err)
		return
	}
	oc, _, err := s.oidc.ready()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l := loginState{
		State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(r.PostForm.Get("next")), Expires: s.now().Add(loginTTL).Unix(),
	}
	http.SetCookie(w, s.loginCookie(s.sealLogin(l), int(loginTTL/time.Second)))
	http.Redirect(w, r, oc.AuthCodeURL(l.State, oidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.Verifier)), http.StatusSeeOther)
}

// authError is a sign-in that failed for a reason the person should be told about.
type authError struct {
	status  int
	title   string
	message string
	cause   error // logged, never shown
}

func (e *authError) Error() string { return e.title + ": " + fmt.Sprint(e.cause) }

// setupError is the identity provider refusing cartclass itself (its client id, secret,
// redirect URI or scopes) rather than the person signing in: only whoever runs cartclass
// can mend it, and signing in again will not help.
type setupError struct {
	step     string // where the provider said it: authorize (the callback), token or refresh
	code     string // the OAuth error code
	aadsts   string // Entra ID's AADSTS code from the description, if any
	desc     string // the provider's description, bounded and with the secret masked: for the log
	settings string // the settings to check, for the log
	advice   string // what to check, in words, for the page
}

func (e *setupError) Error() string {
	return "the identity provider refused cartclass itself at " + e.step + " (" + e.codes() + "): check " + e.settings
}

// log writes the one ERROR record of a set-up problem: the provider's codes and what to
// check; never a secret, token or authorization code.
//
// At the authorize step the error came back through the browser, which anyone can
// craft: it is marked unverified and its description left out.
func (e *setupError) log(l *slog.Logger) {
	if e.step == "authorize" {
		l.Error("identity provider refused cartclass: set-up problem", "step", e.step, "oauth_error", e.code,
			"aadsts", e.aadsts, "check", e.settings, "source", "the browser's return from the provider (unverified)")
		return
	}
	l.Error("identity provider refused cartclass: set-up problem", "step", e.step, "oauth_error", e.code,
		"aadsts", e.aadsts, "check", e.settings, "description", e.desc)
}

// codes is the provider's error code, and Entra's AADSTS code when there is one.
func (e *setupError) codes() string {
	if e.aadsts != "" {
		return e.code + ", " + e.aadsts
	}
	return e.code
}

var aadstsCode = regexp.MustCompile(`\bAADSTS\d{4,7}\b`)

// redirectMentioned reports whether a provider's error description is about the redirect
// URI (Entra ID: AADSTS50011 "the redirect URI … does not match", AADSTS500113 "no reply
// address is registered"; zitadel: "redirect_uri does not correspond").
func redirectMentioned(desc, aadsts string) bool {
	d := strings.ToLower(desc)
	return aadsts == "AADSTS50011" || aadsts == "AADSTS500113" || strings.Contains(d, "redirect_uri") ||
		strings.Contains(d, "redirect uri") || strings.Contains(d, "reply url") || strings.Contains(d, "reply address")
}

// providerRefusal is the set-up problem an OAuth error from the provider means, or nil when
// the error is about the person or the moment (access_denied, a used or expired code, the
// provider failing): step is authorize (an error the provider sent to the callback), token
// (the code exchange) or refresh. secrets are masked in the description kept for the log.
func (s *Server) providerRefusal(step, code, desc string, secrets ...string) *setupError {
	e := &setupError{step: step, code: code, aadsts: aadstsCode.FindString(desc)}
	redirect := redirectMentioned(desc, e.aadsts)
	switch {
	case redirect && step != "refresh" && (code == "invalid_request" || code == "invalid_grant" || code == "unauthorized_client" || code == "invalid_client"):
		e.settings = "the redirect URI " + s.cfg.RedirectURL() + " registered at the provider, CARTCLASS_PUBLIC_URL"
		e.advice = "the redirect URI " + s.cfg.RedirectURL() + " must be registered, exactly, in cartclass's app registration " +
			"(Entra ID: Authentication → Web), and CARTCLASS_PUBLIC_URL must be the address people open cartclass at"
	case code == "invalid_client" || (code == "unauthorized_client" && e.aadsts == "AADSTS700016"):
		e.settings = "CARTCLASS_OIDC_CLIENT_SECRET, CARTCLASS_OIDC_CLIENT_ID"
		switch e.aadsts {
		case "AADSTS7000222":
			e.advice = "cartclass's client secret has expired: make a new one in the app registration (Certificates & secrets) and put its Value in CARTCLASS_OIDC_CLIENT_SECRET"
		case "AADSTS7000215":
			e.advice = "cartclass's client secret is wrong: CARTCLASS_OIDC_CLIENT_SECRET must be the secret's Value, not its Secret ID"
		case "AADSTS700016":
			e.settings = "CARTCLASS_OIDC_CLIENT_ID, CARTCLASS_OIDC_ISSUER"
			e.advice = "the provider does not know cartclass's application: check CARTCLASS_OIDC_CLIENT_ID (the Application (client) ID) and the tenant in CARTCLASS_OIDC_ISSUER"
		default:
			e.advice = "the provider does not accept cartclass's client credentials: check CARTCLASS_OIDC_CLIENT_SECRET (wrong, or expired) and CARTCLASS_OIDC_CLIENT_ID"
		}
	case code == "unauthorized_client":
		e.settings = "CARTCLASS_OIDC_CLIENT_ID"
		e.advice = "the provider does not let cartclass's application sign people in this way: check CARTCLASS_OIDC_CLIENT_ID " +
			"(the Application (client) ID of a Web app registration in your tenant) and CARTCLASS_OIDC_ISSUER"
	case code == "invalid_scope" && step != "refresh":
		e.settings = "CARTCLASS_OIDC_SCOPES, CARTCLASS_GRAPH_SCOPES"
		e.advice = "the provider refused a scope cartclass asks for: check CARTCLASS_OIDC_SCOPES and CARTCLASS_GRAPH_SCOPES, and the API permissions of the app registration"
	case code == "unsupported_response_type" && step == "authorize":
		e.settings = "CARTCLASS_OIDC_CLIENT_ID"
		e.advice = "the app registration does not allow the authorization code flow cartclass uses: check CARTCLASS_OIDC_CLIENT_ID, and that the app is registered as a Web app"
	case code == "invalid_request" && step == "authorize":
		e.settings = "CARTCLASS_OIDC_CLIENT_ID, the redirect URI " + s.cfg.RedirectURL() + ", CARTCLASS_OIDC_SCOPES"
		e.advice = "the provider refused cartclass's sign-in request: check CARTCLASS_OIDC_CLIENT_ID, that the redirect URI " +
			s.cfg.RedirectURL() + " is registered for it, and CARTCLASS_OIDC_SCOPES"
	default:
		return nil
	}
	for _, secret := range append(secrets, s.cfg.OIDCClientSecret) {
		if len(secret) >= 4 {
			desc = strings.ReplaceAll(desc, secret, "[masked]")
		}
	}
	e.desc = clip(strings.Join(strings.Fields(desc), " "), 400)
	return e
}

// handleCallback completes the code flow: compare state with the cookie, take the login
// record (single use), exchange the code with the PKCE verifier, verify the ID token and
// its nonce, then rotate the session and go to the saved relative path.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	expired := func(message string, cause error) {
		s.fail(w, r, &authError{status: http.StatusBadRequest, title: "Sign-in expired", message: message, cause: cause})
	}
	var rec loginState
	c, err := r.Cookie(s.loginCookieName())
	if err == nil {
		rec, err = s.openLogin(c.Value)
	}
	state := q.Get("state")
	if err == nil && (state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(rec.State)) != 1) {
		err = errors.New("state does not match this browser's sign-in")
	}
	if err != nil {
		expired("This sign-in was not started in this browser, took too long, or was already used. Please sign in again.", err)
		return
	}
	http.SetCookie(w, s.loginCookie("", -1))
	if !s.now().Before(time.Unix(rec.Expires, 0)) {
		expired("This sign-in took too long. Please sign in again.", errors.New("login cookie expired"))
		return
	}
	if s.spentLogins.used(rec.State) {
		expired("This sign-in was already used. Please sign in again.", errors.New("login state replayed"))
		return
	}

	if e := q.Get("error"); e != "" {
		if se := s.providerRefusal("authorize", e, q.Get("error_description")); se != nil {
			s.fail(w, r, se)
			return
		}
		msg := "The identity provider did not sign you in"
		if e == "access_denied" {
			msg = "Sign-in was cancelled or refused at the identity provider"
		}
		s.fail(w, r, &authError{status: http.StatusForbidden, title: "Not signed in",
			message: msg + ". If you expected to get in, ask your IT lead to check your access to cartclass.",
			cause:   fmt.Errorf("provider error %q", e)})
		return
	}

	oc, verifier, err := s.oidc.ready()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := oidc.ClientContext(r.Context(), s.httpClient)
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(rec.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			if se := s.providerRefusal("token", re.ErrorCode, re.ErrorDescription, q.Get("code"), rec.Verifier); se != nil {
				s.fail(w, r, se)
				return
			}
		}
		status := http.StatusBadGateway // the provider failed
		if grantRefused(err) {
			status = http.StatusBadRequest // a used or expired code: the request, not the provider
		}
		s.fail(w, r, &authError{status: status, title: "Sign-in failed",
			message: "The identity provider did not accept the sign-in. Please try again.", cause: err})
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := verifier.Verify(ctx, rawID)
	if err == nil && idt.Nonce != rec.Nonce {
		err = errors.New("nonce does not match the login request")
	}
	if err != nil {
		s.fail(w, r, &authError{status: http.StatusUnauthorized, title: "Sign-in could not be verified",
			message: "The identity provider's answer did not pass cartclass's checks, so you were not signed in. Please try again.", cause: err})
		return
	}
	// Only a sign-in that passed every check is remembered as used: garbage callbacks
	// cannot fill the set.
	if !s.spentLogins.spend(rec.State, time.Unix(rec.Expires, 0), s.now()) {
		expired("This sign-in was already used. Please sign in again.", errors.New("login state replayed"))
		return
	}
	u, err := s.userFromIDToken(idt, rawID)
	if err != nil {
		s.fail(w, r, &authError{status: http.StatusUnauthorized, title: "Sign-in could not be verified",
			message: "The identity provider's answer could not be read. Please try again.", cause: err})
		return
	}
	// Keep the tokens before the session exists, so a failure here leaves nobody half
	// signed in: the refresh token re-reads roles later, and pushes an admin's changes.
	if err := s.signedIn(r.Context(), u, tok); err != nil {
		s.fail(w, r, err)
		return
	}

	// Rotate: whatever session this browser had ends, and a new id is issued.
	sess, _ := s.sessions.Get(r, s.sessions.cookieName())
	if !sess.IsNew {
		if id, ok := decodeID(sess.ID); ok {
			if err := s.store.DeleteSession(r.Context(), hashID(id)); err != nil {
				s.fail(w, r, err)
				return
			}
		}
	}
	sess.ID, sess.IsNew = "", true
	clear(sess.Values)
	sess.Values[keyUser] = u
	sess.Values[keyRolesChecked] = s.now()
	if err := sess.Save(r, w); err != nil {
		s.fail(w, r, err)
		return
	}
	// The roles just read hold for this person's other sessions too.
	if _, err := s.store.SetSubjectRole(r.Context(), u.Subject, int(u.Role), s.now()); err != nil {
		s.log.Warn("role not copied to the other sessions", "sub", u.Subject, "err", err)
	}
	s.log.Info("signed in", "sub", u.Subject, "iss", u.Issuer, "role", u.Role.String())
	http.Redirect(w, r, rec.Next, http.StatusSeeOther)
}

// handleLogout ends the local session and, when the provider supports it, the provider's.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.sessions.Get(r, s.sessions.cookieName())
	u, _ := sess.Values[keyUser].(User)
	sess.Options.MaxAge = -1
	if err := sess.Save(r, w); err != nil {
		s.fail(w, r, err)
		return
	}
	dest := "/signedout"
	if end := s.oidc.endSessionURL(); end != "" {
		if eu, err := url.Parse(end); err == nil {
			q := eu.Query()
			q.Set("post_logout_redirect_uri", strings.TrimSuffix(s.cfg.PublicURL.String(), "/")+"/signedout")
			q.Set("client_id", s.cfg.OIDCClientID)
			if u.IDToken != "" {
				q.Set("id_token_hint", u.IDToken)
			}
			eu.RawQuery = q.Encode()
			dest = eu.String()
		}
	}
	redirect(w, r, dest)
}

func (s *Server) handleSignedOut(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, views.SignedOutPage(s.page(w, r, "Signed out")))
}

// roleOf maps ID token claims onto a role using the configured roles, groups and subjects.
func (s *Server) roleOf(sub string, roles, groups []string) Role {
	switch {
	case overlaps(roles, s.cfg.AdminRoles), overlaps(groups, s.cfg.AdminGroups), contains(s.cfg.AdminSubjects, sub):
		return RoleAdmin
	case overlaps(roles, s.cfg.ViewerRoles), overlaps(groups, s.cfg.ViewerGroups):
		return RoleViewer
	}
	return RoleNone
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if contains(b, x) {
			return true
		}
	}
	return false
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// safeNext keeps only same-site relative paths, so sign-in can never redirect elsewhere.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/associations"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/associations"
	}
	if strings.HasPrefix(u.Path, "/auth/") || u.Path == "/signin" {
		return "/associations"
	}
	return next
}

type userKey struct{}

// currentUser returns the signed-in user of this request, if any.
func (s *Server) currentUser(r *http.Request) (User, bool) {
	u, ok, _ := s.sessionUser(r)
	return u, ok
}

// sessionUser is currentUser that also reports a storage failure, which is no reason to
// send a signed-in person back to sign-in.
func (s *Server) sessionUser(r *http.Request) (User, bool, error) {
	if u, ok := r.Context().Value(userKey{}).(User); ok {
		return u, true, nil
	}
	sess, err := s.sessions.Get(r, s.sessions.cookieName())
	if err != nil {
		return User{}, false, err
	}
	u, ok := sess.Values[keyUser].(User)
	if !ok {
		return User{}, false, nil
	}
	return s.recheckRole(r, sess, u)
}

// require wraps a handler so that only people with at least role min reach it. Signed-out
// browsers go to sign-in (htmx: HX-Redirect, so an XHR does not follow a redirect
// silently); signed-in people without the role get the 403 page, fragment or not.
func (s *Server) require(min Role, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok, err := s.sessionUser(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !ok {
			s.signInFirst(w, r)
			return
		}
		if u.Role < min {
			s.fail(w, r, &forbiddenError{need: min, have: u.Role})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	}
}

func (s *Server) signInFirst(w http.ResponseWriter, r *http.Request) {
	next := r.URL.RequestURI()
	if r.Header.Get("HX-Request") == "true" {
		// Return to the page the person is on, not the fragment URL.
		if cur, err := url.Parse(r.Header.Get("HX-Current-URL")); err == nil {
			next = cur.RequestURI()
		}
		w.Header().Set("HX-Redirect", "/signin?next="+url.QueryEscape(safeNext(next)))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		next = "/associations"
	}
	http.Redirect(w, r, "/signin?next="+url.QueryEscape(safeNext(next)), http.StatusSeeOther)
}

// forbiddenError is a signed-in person without the role a page needs.
type forbiddenError struct {
	need, have Role
}

func (e *forbiddenError) Error() string { return "forbidden: need " + e.need.String() }
