package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// Option configures a Server.
type Option func(*Server)

// WithGraph makes the server push every save to Microsoft Graph through gc, with a push
// worker that RunPusher runs. Without it saves stay local (tests of pages alone).
func WithGraph(gc *graph.Client, opts ...push.Option) Option {
	return func(s *Server) {
		s.graph = gc
		s.pushOpts = opts
	}
}

// RunPusher pushes the outbox to Graph until ctx is done; it returns at once when the
// server has no Graph client.
func (s *Server) RunPusher(ctx context.Context) {
	if s.pusher != nil {
		s.pusher.Run(ctx)
	}
}

// newPusher builds the push worker with the token source of the configured mode.
func (s *Server) newPusher() *push.Worker {
	var tokens push.TokenSourcer
	var mode []push.Option
	if s.cfg.GraphAuth == "app" {
		tokens = &appTokens{s: s}
		mode = append(mode, push.WithAppOnly())
	} else {
		s.delegated = &delegatedTokens{s: s, pushAs: map[string]loan{}, stale: map[string]bool{}}
		tokens = s.delegated
	}
	opts := append([]push.Option{
		push.WithLogger(s.log.With("component", "push")),
		push.WithWritesPer20s(s.cfg.GraphWritesPer20s),
		push.WithScopes(s.cfg.GraphScopes...),
	}, mode...)
	opts = append(opts, s.pushOpts...)
	return push.New(s.store, s.graph, tokens, opts...)
}

// kick tells the worker a change is waiting.
func (s *Server) kick() {
	if s.pusher != nil {
		s.pusher.Kick()
	}
}

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
	pushAs map[string]loan        // author subject → the admin who pressed Push now for them
	stale  map[string]bool        // subjects whose token Graph refused: refresh next time
	locks  map[string]*sync.Mutex // one refresh at a time per subject
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

// lock returns subject's refresh lock.
func (d *delegatedTokens) lock(subject string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.locks == nil {
		d.locks = map[string]*sync.Mutex{}
	}
	l := d.locks[subject]
	if l == nil {
		l = &sync.Mutex{}
		d.locks[subject] = l
	}
	return l
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
	l := t.d.lock(t.subject)
	l.Lock()
	defer l.Unlock()
	s := t.d.s
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
	if tok.RefreshToken == "" {
		return nil, fmt.Errorf("%w: the token of %s expired and there is no refresh token", push.ErrSignInNeeded, t.subject)
	}
	oc, _, err := s.oidc.ready()
	if err != nil {
		return nil, err
	}
	fresh, err := oc.TokenSource(oidc.ClientContext(ctx, s.httpClient), tok).Token()
	if err != nil {
		if grantRefused(err) {
			return nil, fmt.Errorf("%w: refresh for %s refused: %v", push.ErrSignInNeeded, t.subject, err)
		}
		return nil, err // the provider is down or slow: retried with backoff
	}
	if err := s.saveUserToken(ctx, t.subject, fresh); err != nil {
		return nil, err
	}
	return fresh, nil
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

// signedIn keeps the new sign-in's tokens for pushing (delegated mode) and lets the worker
// retry what waited for this person.
func (s *Server) signedIn(ctx context.Context, subject string, tok *oauth2.Token) error {
	if s.pusher == nil || s.cfg.GraphAuth != "delegated" {
		return nil
	}
	if err := s.saveUserToken(ctx, subject, tok); err != nil {
		return err
	}
	s.delegated.signedIn(subject)
	return s.pusher.SignedIn(ctx, subject)
}

// banner is the admins' notice while pushing is paused or waits for a sign-in.
func (s *Server) banner(ctx context.Context) *views.Banner {
	if s.pusher == nil {
		return nil
	}
	st := s.pusher.Status()
	switch st.Reason {
	case "throttled":
		return &views.Banner{Kind: "warning", Message: "Microsoft Graph asked cartclass to slow down: pushing is paused until " + st.Until.UTC().Format("15:04:05 UTC") + "."}
	case "permission":
		return &views.Banner{Kind: "danger", Message: "Pushing to Microsoft Graph is paused: the permission " + st.Scope + " is missing."}
	case "credentials":
		return &views.Banner{Kind: "danger", Message: "Pushing to Microsoft Graph is paused: Graph refused cartclass's own credentials. " +
			"Check CARTCLASS_GRAPH_CLIENT_ID, CARTCLASS_GRAPH_CLIENT_SECRET and the app's tenant, then press Push now."}
	case "signin":
		names := make([]string, 0, len(st.Subjects))
		for _, sub := range st.Subjects {
			names = append(names, s.nameOf(ctx, sub))
		}
		return &views.Banner{Kind: "warning", Message: "Changes by " + strings.Join(names, ", ") +
			" wait to reach Intune: their sign-in expired. They can sign in again, or any admin can press Push now."}
	}
	return nil
}

func (s *Server) handleSyncPanel(w http.ResponseWriter, r *http.Request) {
	if s.pusher == nil {
		s.fail(w, r, store.ErrNotFound)
		return
	}
	stats, err := s.pusher.Stats(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	unsynced, err := s.store.ListAssociations(r.Context(), store.ListFilter{NotSynced: true, PerPage: 1})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st := s.pusher.Status()
	o := views.SyncOverview{
		Depth: stats.Depth, OldestAge: stats.OldestAge, LastSuccess: st.LastSuccess,
		Reason: st.Reason, Until: st.Until, Scope: st.Scope, Mode: s.cfg.GraphAuth, Unsynced: unsynced.Total,
	}
	for _, sub := range st.Subjects {
		o.Waiting = append(o.Waiting, s.nameOf(r.Context(), sub))
	}
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, views.SyncStats(o))
		return
	}
	p := s.page(w, r, "Sync")
	p.Nav = "sync"
	s.render(w, r, http.StatusOK, views.SyncPage(p, o))
}

// nameOf finds a person's display name from the changes they made.
func (s *Server) nameOf(ctx context.Context, subject string) string {
	if n, err := s.store.ActorName(ctx, subject); err == nil && n != "" {
		return n
	}
	return subject
}

// handlePushNow lifts a permission pause and, in delegated mode, lends the pressing admin's
// token to the changes waiting for someone else's sign-in.
func (s *Server) handlePushNow(w http.ResponseWriter, r *http.Request) {
	if s.pusher == nil {
		s.fail(w, r, store.ErrNotFound)
		return
	}
	u, _ := s.currentUser(r)
	st := s.pusher.Status()
	if s.delegated != nil && len(st.Subjects) > 0 {
		s.delegated.lend(u.Subject, st.Subjects)
		for _, sub := range st.Subjects {
			if err := s.pusher.SignedIn(r.Context(), sub); err != nil {
				s.fail(w, r, err)
				return
			}
		}
	}
	s.pusher.Resume()
	s.setFlash(w, "pushing")
	redirect(w, r, "/sync")
}

func (s *Server) handleSyncStatus(w http.ResponseWriter, r *http.Request) {
	a, err := s.loadAssociation(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	u, _ := s.currentUser(r)
	s.render(w, r, http.StatusOK, views.SyncStatus(a, u.Role >= RoleAdmin))
}

func (s *Server) handleAssociationRetry(w http.ResponseWriter, r *http.Request) {
	s.requeue(w, r, s.store.Retry, "retrying")
}

func (s *Server) handleAssociationRecreate(w http.ResponseWriter, r *http.Request) {
	s.requeue(w, r, s.store.Recreate, "recreating")
}

func (s *Server) requeue(w http.ResponseWriter, r *http.Request, op func(context.Context, int64) error, flash string) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch err := op(r.Context(), id); {
	case errors.Is(err, store.ErrUnchanged):
		// Already back in the queue or synced (a second click): the page shows where it is.
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		s.kick()
		s.setFlash(w, flash)
	}
	redirect(w, r, views.AssociationURL(id))
}
