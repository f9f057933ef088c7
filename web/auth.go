package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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

	mu         sync.Mutex
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	endSession string
	origins    []string // origins forms may post to (CSP form-action): authorize and end_session
}

// newOIDCClient discovers the provider. A wrong issuer (no such host, not an OIDC issuer,
// issuer mismatch) fails fast; a provider that is merely unreachable is logged and retried
// lazily.
func newOIDCClient(ctx context.Context, cfg Config, client *http.Client) (*oidcClient, error) {
	c := &oidcClient{cfg: cfg, baseCtx: oidc.ClientContext(ctx, client)}
	err := c.discover()
	if err != nil && !transient(err) {
		return nil, fmt.Errorf("OIDC issuer %s: %w (check CARTCLASS_OIDC_ISSUER)", cfg.OIDCIssuer, err)
	}
	return c, err
}

// transient reports whether a discovery error means "down right now" rather than "wrong".
func transient(err error) bool {
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

func (c *oidcClient) discover() error {
	p, err := oidc.NewProvider(c.baseCtx, c.cfg.OIDCIssuer)
	if err != nil {
		return err
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&extra); err != nil {
		return err
	}
	origins := []string{originOf(p.Endpoint().AuthURL)}
	if extra.EndSession != "" {
		origins = append(origins, originOf(extra.EndSession))
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
	c.endSession = extra.EndSession
	c.origins = origins
	return nil
}

// ready returns the discovered provider's settings, discovering now if start-up could not.
func (c *oidcClient) ready() (oauth2.Config, *oidc.IDTokenVerifier, error) {
	c.mu.Lock()
	ok := c.provider != nil
	c.mu.Unlock()
	if !ok {
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
