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
	if s.cfg.GraphAuth == "app" {
		tokens = &appTokens{s: s}
	} else {
		s.delegated = &delegatedTokens{s: s, pushAs: map[string]string{}, stale: map[string]bool{}}
		tokens = s.delegated
	}
	opts := append([]push.Option{
		push.WithLogger(s.log.With("component", "push")),
		push.WithWritesPer20s(s.cfg.GraphWritesPer20s),
		push.WithScopes(s.cfg.GraphScopes...),
	}, s.pushOpts...)
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
	cc := clientcredentials.Config{ClientID: cfg.GraphClientID, ClientSecret: cfg.GraphClientSecret, TokenURL: tokenURL, Scopes: []string{cfg.GraphAppScope}}
	a.ts = cc.TokenSource(oidc.ClientContext(a.s.baseCtx, a.s.httpClient))
	return a.ts, nil
}

// delegatedTokens pushes each change with its author's token, refreshed with their
// refresh token; rotated tokens are saved back, sealed. An admin's "Push now" lends their
// own token to changes whose authors need to sign in again.
type delegatedTokens struct {
	s      *Server
	mu     sync.Mutex
	pushAs map[string]string // author subject → subject of the admin who pressed Push now
	stale  map[string]bool   // subjects whose token Graph refused: refresh next time
}

func (d *delegatedTokens) TokenSource(ctx context.Context, subject string) (oauth2.TokenSource, error) {
	ts, err := d.source(ctx, subject)
	if errors.Is(err, push.ErrSignInNeeded) {
		d.mu.Lock()
		lender := d.pushAs[subject]
		d.mu.Unlock()
		if lender != "" && lender != subject {
			return d.source(ctx, lender)
		}
	}
	return ts, err
}

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
		d.pushAs[a] = admin
	}
}

func (d *delegatedTokens) source(ctx context.Context, subject string) (oauth2.TokenSource, error) {
	tok, err := d.s.loadUserToken(ctx, subject)
	if err != nil {
		return nil, err
	}
	oc, _, err := d.s.oidc.ready()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.stale[subject] {
		delete(d.stale, subject)
		tok.Expiry = time.Unix(1, 0) // force a refresh
	}
	d.mu.Unlock()
	src := oc.TokenSource(oidc.ClientContext(d.s.baseCtx, d.s.httpClient), tok)
	return &savingSource{src: src, last: tok, subject: subject, s: d.s}, nil
}

// savingSource stores refreshed (rotated) tokens, and turns a refused refresh into
// push.ErrSignInNeeded so the change waits for its author instead of failing.
type savingSource struct {
	src     oauth2.TokenSource
	last    *oauth2.Token
	subject string
	s       *Server
}

func (p *savingSource) Token() (*oauth2.Token, error) {
	t, err := p.src.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) || p.last.RefreshToken == "" {
			return nil, fmt.Errorf("%w: refresh for %s refused: %v", push.ErrSignInNeeded, p.subject, err)
		}
		return nil, err
	}
	if t.AccessToken != p.last.AccessToken {
		if err := p.s.saveUserToken(context.Background(), p.subject, t); err != nil {
			return nil, err
		}
		p.last = t
	}
	return t, nil
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
func (s *Server) signedIn(ctx context.Context, u User) error {
	if s.pusher == nil || s.cfg.GraphAuth != "delegated" {
		return nil
	}
	if err := s.saveUserToken(ctx, u.Subject, &oauth2.Token{AccessToken: u.AccessToken, RefreshToken: u.RefreshToken, Expiry: u.TokenExpiry}); err != nil {
		return err
	}
	return s.pusher.SignedIn(ctx, u.Subject)
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
	setFlash(w, "pushing")
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
		setFlash(w, flash)
	}
	redirect(w, r, views.AssociationURL(id))
}
