package web

// The Graph credential broker: app-only client credentials, and in delegated mode each
// admin's stored tokens, refreshed under a per-person lock and lent by Push now.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
)

// appTokens is app-only mode: client credentials against the provider's token endpoint
// (or CARTCLASS_GRAPH_TOKEN_URL), built once discovery has happened.
type appTokens struct {
	s    *Server
	once sync.Mutex
	ts   oauth2.TokenSource
}

func (a *appTokens) TokenSource(ctx context.Context, _ string) (oauth2.TokenSource, error) {
	a.once.Lock()
	defer a.once.Unlock()
	if a.ts != nil {
		return a.ts, nil
	}
	cfg := a.s.cfg
	tokenURL := cfg.GraphTokenURL
	if tokenURL == "" {
		oc, _, err := a.s.oidc.ready()
		if err != nil {
			return nil, err
		}
		tokenURL = oc.Endpoint.TokenURL
	}
	id, secret := cfg.GraphClient()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL, Scopes: []string{cfg.GraphAppScope}}
	a.ts = cc.TokenSource(oidc.ClientContext(a.s.baseCtx, a.s.httpClient))
	return a.ts, nil
}

// Invalidate drops the cached token after Graph refused it, so the next push fetches a
// new one instead of presenting the refused token until it expires.
func (a *appTokens) Invalidate(string) {
	a.once.Lock()
	defer a.once.Unlock()
	a.ts = nil
}

// delegatedTokens pushes each change with its author's token, refreshed with their
// refresh token; rotated tokens are saved back, sealed. An admin's "Push now" lends their
// own token to changes whose authors need to sign in again.
type delegatedTokens struct {
	s      *Server
	mu     sync.Mutex
	pushAs map[string]loan // author subject → the admin who pressed Push now for them
	stale  map[string]bool // subjects whose token Graph refused: refresh next time
}

func (d *delegatedTokens) TokenSource(ctx context.Context, subject string) (oauth2.TokenSource, error) {
	ts, err := d.source(ctx, subject)
	if errors.Is(err, push.ErrSignInNeeded) {
		d.mu.Lock()
		l, ok := d.pushAs[subject]
		if ok && !d.s.now().Before(l.until) {
			delete(d.pushAs, subject)
			ok = false
		}
		d.mu.Unlock()
		if ok && l.admin != subject {
			return d.source(ctx, l.admin)
		}
	}
	return ts, err
}

// ReadTokenSource picks whose token reads Intune (push.ReadTokenSourcer): preferred, the
// admin who pressed Refresh, when cartclass holds their token; otherwise, for a scheduled
// read, the signed-in admin seen most recently who has one. A read changes nothing in
// Intune, so anyone with the admin role may read on everyone's behalf.
func (d *delegatedTokens) ReadTokenSource(ctx context.Context, preferred string) (oauth2.TokenSource, error) {
	if preferred != "" {
		if ts, err := d.source(ctx, preferred); err == nil {
			return ts, nil
		}
	}
	sessions, err := d.s.store.ListSessions(ctx) // most recently seen first
	if err != nil {
		return nil, err
	}
	tried := map[string]bool{preferred: true}
	for _, sess := range sessions {
		if Role(sess.Role) < RoleAdmin || tried[sess.Subject] {
			continue
		}
		tried[sess.Subject] = true
		ts, err := d.source(ctx, sess.Subject)
		if err == nil {
			return ts, nil
		}
		if !errors.Is(err, push.ErrSignInNeeded) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: no signed-in admin's token to read Intune with", push.ErrSignInNeeded)
}

// loan is an admin's Push now for someone else's waiting changes: their token pushes that
// person's changes for a short while (the changes waiting now), not for good.
type loan struct {
	admin string
	until time.Time
}

// loanTTL bounds a Push now: long enough to drain what waited when it was pressed.
const loanTTL = 15 * time.Minute

// Invalidate makes the next token for subject a refreshed one (Graph refused the last).
func (d *delegatedTokens) Invalidate(subject string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stale[subject] = true
}

// lend makes admin's token push the changes of the given authors.
func (d *delegatedTokens) lend(admin string, authors []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range authors {
		d.pushAs[a] = loan{admin: admin, until: d.s.now().Add(loanTTL)}
	}
}

// signedIn ends any loan for subject: their own token pushes their changes again.
func (d *delegatedTokens) signedIn(subject string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pushAs, subject)
}

// source checks that subject has a token at all, so a change without one waits at once,
// and returns the source that hands it out.
func (d *delegatedTokens) source(ctx context.Context, subject string) (oauth2.TokenSource, error) {
	if _, err := d.s.loadUserToken(ctx, subject); err != nil {
		return nil, err
	}
	return subjectTokens{d: d, subject: subject}, nil
}

// subjectLock returns subject's refresh lock: one refresh at a time per person, whoever
// asks (a push, or a role re-check), since the provider may rotate the refresh token and
// refuse its second use.
func (s *Server) subjectLock(subject string) *sync.Mutex {
	l, _ := s.refreshLocks.LoadOrStore(subject, &sync.Mutex{})
	return l.(*sync.Mutex)
}

// subjectTokens hands out one person's stored access token, refreshing and saving it back
// when it has expired or Graph refused it.
type subjectTokens struct {
	d       *delegatedTokens
	subject string
}

// Token reads the stored token under the subject's lock: two pushes of the same admin's
// changes must not both spend the refresh token, since the provider may rotate it and
// refuse the second use (which would wrongly ask the admin to sign in again).
func (t subjectTokens) Token() (*oauth2.Token, error) {
	s := t.d.s
	l := s.subjectLock(t.subject)
	l.Lock()
	defer l.Unlock()
	ctx := s.baseCtx
	tok, err := s.loadUserToken(ctx, t.subject)
	if err != nil {
		return nil, err
	}
	t.d.mu.Lock()
	if t.d.stale[t.subject] {
		delete(t.d.stale, t.subject)
		tok.Expiry = time.Unix(1, 0) // force a refresh
	}
	t.d.mu.Unlock()
	if tok.Valid() {
		return tok, nil
	}
	fresh, _, err := s.refreshUser(ctx, t.subject, tok)
	return fresh, err
}

// refreshUser spends subject's refresh token, saves the rotated tokens and, when the
// provider sent a new ID token (Entra does when openid is asked), re-reads the person's
// roles from it for every session they have. Caller holds subjectLock(subject). A refresh
// the provider will never accept (or no refresh token) is push.ErrSignInNeeded; confirmed
// is false when no ID token came back.
func (s *Server) refreshUser(ctx context.Context, subject string, tok *oauth2.Token) (fresh *oauth2.Token, confirmed *User, err error) {
	if tok.RefreshToken == "" {
		return nil, nil, fmt.Errorf("%w: the token of %s expired and there is no refresh token", push.ErrSignInNeeded, subject)
	}
	oc, verifier, err := s.oidc.ready()
	if err != nil {
		return nil, nil, err
	}
	ctx = oidc.ClientContext(ctx, s.httpClient)
	old := *tok
	old.Expiry = time.Unix(1, 0) // the source refreshes only an expired token
	fresh, err = oc.TokenSource(ctx, &old).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The provider refusing cartclass itself (a wrong or expired client secret) is
			// no reason to sign this person out as if their grant were refused: it is
			// retried like a provider that is down, and the one who runs cartclass is told.
			if se := s.providerRefusal("refresh", re.ErrorCode, re.ErrorDescription, tok.RefreshToken); se != nil {
				s.oidc.logSetupProblem(s.log, se, s.now())
				return nil, nil, se
			}
		}
		if grantRefused(err) {
			return nil, nil, fmt.Errorf("%w: refresh for %s refused: %v", push.ErrSignInNeeded, subject, err)
		}
		return nil, nil, err // the provider is down or slow: retried
	}
	if err := s.saveUserToken(ctx, subject, fresh); err != nil {
		return nil, nil, err
	}
	rawID, _ := fresh.Extra("id_token").(string)
	if rawID == "" {
		return fresh, nil, nil
	}
	idt, err := verifier.Verify(ctx, rawID)
	if err == nil && idt.Subject != subject {
		err = fmt.Errorf("refreshed ID token is for %q", idt.Subject)
	}
	var u User
	if err == nil {
		u, err = s.userFromIDToken(idt, rawID)
	}
	if err != nil {
		// A token that fails verification confirms nothing; the tokens are still good for
		// Graph, which checks them itself.
		s.log.Warn("refreshed ID token refused", "sub", subject, "err", err)
		return fresh, nil, nil
	}
	if _, err := s.store.SetSubjectRole(ctx, subject, int(u.Role), s.now()); err != nil {
		return fresh, nil, err
	}
	return fresh, &u, nil
}

// grantRefused tells a grant (refresh token or authorization code) the provider will never
// accept again (the person must sign in) from a provider that failed for now.
func grantRefused(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	switch re.ErrorCode {
	case "invalid_grant", "interaction_required", "login_required", "consent_required":
		return true
	}
	return false
}

type storedToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
}

func (s *Server) saveUserToken(ctx context.Context, subject string, t *oauth2.Token) error {
	b, _ := json.Marshal(storedToken{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: t.Expiry})
	ad := []byte("user-token\x00" + subject)
	return s.store.PutUserToken(ctx, subject, s.seal.seal(b, ad))
}

func (s *Server) loadUserToken(ctx context.Context, subject string) (*oauth2.Token, error) {
	sealed, err := s.store.GetUserToken(ctx, subject)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no token stored for %s", push.ErrSignInNeeded, subject)
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.seal.open(sealed, []byte("user-token\x00"+subject))
	if err != nil {
		return nil, fmt.Errorf("%w: stored token for %s is unreadable (session key rotated?)", push.ErrSignInNeeded, subject)
	}
	var st storedToken
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: st.AccessToken, RefreshToken: st.RefreshToken, Expiry: st.Expiry, TokenType: "Bearer"}, nil
}

// signedIn keeps the new sign-in's tokens, so that roles can be re-read with its refresh
// token and, in delegated mode, an admin's changes pushed with it; then it lets the worker
// retry what waited for this person.
func (s *Server) signedIn(ctx context.Context, u User, tok *oauth2.Token) error {
	if err := s.saveUserToken(ctx, u.Subject, tok); err != nil {
		return err
	}
	if s.pusher == nil || s.delegated == nil || u.Role < RoleAdmin {
		return nil
	}
	s.delegated.signedIn(u.Subject)
	return s.pusher.SignedIn(ctx, u.Subject)
}
