package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// Option configures a Server.
type Option func(*Server)

// WithClock replaces the server's clock (sessions, sign-in, role re-checks); tests move it.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.now = now }
}

// WithGraph makes the server push every save to Microsoft Graph through gc, with a push
// worker that RunPusher runs. Without it saves stay local (tests of pages alone).
func WithGraph(gc *graph.Client, opts ...push.Option) Option {
	return func(s *Server) {
		s.graph = gc
		s.pushOpts = opts
	}
}

// StopPusher asks the push worker to finish the changes it is sending and take no more
// (see push.Worker.Stop); RunPusher then returns.
func (s *Server) StopPusher() {
	if s.pusher != nil {
		s.pusher.Stop()
	}
}

// PushesDrained is how many changes the push worker finished after StopPusher.
func (s *Server) PushesDrained() int64 {
	if s.pusher == nil {
		return 0
	}
	return s.pusher.Drained()
}

// QueueDepth is how many changes wait to be sent to Graph.
func (s *Server) QueueDepth(ctx context.Context) (int, error) {
	if s.pusher == nil {
		return 0, nil
	}
	st, err := s.pusher.Stats(ctx)
	return st.Depth, err
}

// RunPusher pushes the outbox to Graph until ctx is done; it returns at once when the
// server has no Graph client.
func (s *Server) RunPusher(ctx context.Context) {
	if s.pusher != nil {
		s.pusher.Run(ctx)
	}
}

// newPusher builds the push worker with the token source of the configured mode.
func (s *Server) newPusher(ps push.Store) *push.Worker {
	var tokens push.TokenSourcer
	var mode []push.Option
	if s.cfg.GraphAuth == GraphAuthApp {
		tokens = &appTokens{s: s}
		mode = append(mode, push.WithAppOnly())
	} else {
		s.delegated = &delegatedTokens{s: s, pushAs: map[string]loan{}, stale: map[string]bool{}}
		tokens = s.delegated
	}
	opts := append([]push.Option{
		push.WithLogger(s.log.With("component", "push")),
		push.WithWritesPer20s(s.cfg.GraphWritesPer20s),
		push.WithReadEvery(s.cfg.GraphSyncEvery),
		push.WithScopes(s.cfg.GraphScopes...),
		push.WithOutcomes(s.metrics.pushOutcome),
	}, mode...)
	if s.cfg.EduClasses {
		if cs, ok := ps.(push.ClassStore); ok {
			opts = append(opts, push.WithClasses(cs))
		}
	}
	opts = append(opts, s.pushOpts...)
	return push.New(ps, s.graph, tokens, opts...)
}

// kick tells the worker a change is waiting.
func (s *Server) kick() {
	if s.pusher != nil {
		s.pusher.Kick()
	}
}

// classesPermission is the Graph permission that listing classes needs, as cartclass runs:
// the delegated one, or the application one in app mode.
func (s *Server) classesPermission() string {
	if s.cfg.GraphAuth == GraphAuthApp {
		return graph.ClassesApplicationPermission + " (application)"
	}
	return graph.ClassesDelegatedPermission + " (delegated)"
}

// banner is the admins' notice while pushing is paused or waits for a sign-in.
func (s *Server) banner(ctx context.Context) *views.Banner {
	if s.pusher == nil {
		return nil
	}
	st := s.pusher.Status()
	var names []string
	if st.Reason == push.ReasonSignIn {
		for _, sub := range st.Subjects {
			names = append(names, s.nameOf(ctx, sub))
		}
	}
	return views.PauseBanner(views.WithZone(ctx, s.cfg.Timezone), st.Reason, st.Until, st.Scope, names)
}

func (s *Server) handleSyncPanel(w http.ResponseWriter, r *http.Request) {
	if s.pusher == nil {
		p := s.page(w, r, "Sync")
		p.Nav = "sync"
		s.render(w, r, http.StatusOK, views.SyncPage(p, views.SyncOverview{NoGraph: true}))
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
		Reason: st.Reason, Until: st.Until, Scope: st.Scope, AppOnly: s.cfg.GraphAuth == GraphAuthApp, Unsynced: unsynced.Total,
		Read: s.pusher.ReadStatus(), Classes: s.pusher.ClassesStatus(), ClassesPermission: s.classesPermission(),
		ScopesSet: s.cfg.GraphScopesSet,
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

// handleSyncRefresh starts a read of Intune now. In delegated mode the read may borrow the
// pressing admin's sign-in.
func (s *Server) handleSyncRefresh(w http.ResponseWriter, r *http.Request) {
	if s.pusher == nil {
		s.fail(w, r, store.ErrNotFound)
		return
	}
	u, _ := s.currentUser(r)
	if s.pusher.RequestRead(u.Subject) {
		s.setFlash(w, "reading")
	} else {
		s.setFlash(w, "reading-already")
	}
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
	s.requeue(w, r, func(ctx context.Context, id int64) error { return s.store.Recreate(ctx, id, s.actor(r)) }, "recreating")
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
