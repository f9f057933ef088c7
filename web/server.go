// Package web is cartclass's HTTP side: the route table, middleware, sign-in and sessions,
// handlers, forms and rendering. It is the only package that knows HTTP; it reads and writes
// through the small interfaces declared here and renders views components.
package web

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
)

// Store is what the handlers need from storage.
type Store interface {
	GetAssociation(ctx context.Context, id int64) (store.Association, error)
	AssociationHistory(ctx context.Context, id int64, before int64, limit int) ([]store.HistoryEntry, bool, error)
	GraphRequests(ctx context.Context, id int64, historyIDs []int64) (map[int64][]store.GraphRequest, error)
	// ListHistory and EachHistory read the activity log (every association's history);
	// PruneHistory is CARTCLASS_HISTORY_KEEP's clean-up.
	ListHistory(ctx context.Context, f store.HistoryFilter) ([]store.ActivityEntry, bool, error)
	EachHistory(ctx context.Context, f store.HistoryFilter, fn func(store.ActivityEntry) error) error
	PruneHistory(ctx context.Context, before time.Time) (int64, error)
	ListAssociations(ctx context.Context, f store.ListFilter) (store.AssociationPage, error)
	// EachAssociation walks every association f selects (all pages), in f's order.
	EachAssociation(ctx context.Context, f store.ListFilter, fn func(store.Association) error) error
	CreateAssociation(ctx context.Context, f store.Fields, by store.Actor) (store.Association, error)
	UpdateAssociation(ctx context.Context, id, revision int64, f store.Fields, by store.Actor) (store.Association, error)
	Ping(ctx context.Context) error
	Retry(ctx context.Context, id int64) error
	Recreate(ctx context.Context, id int64, by store.Actor) error
	DeleteAssociation(ctx context.Context, id, revision int64, by store.Actor) (store.Association, error)
	PurgeDeleted(ctx context.Context, before time.Time) (int64, error)
	ClassNames(ctx context.Context, ids []string) (map[string]store.Class, error)
	ClassCount(ctx context.Context) (int, error)
	SuggestClasses(ctx context.Context, q string, limit int) ([]store.Class, error)
	SuggestCarts(ctx context.Context, q string, limit int) ([]store.CartUse, error)
	ListCarts(ctx context.Context, q string, page, perPage int) ([]store.CartEntry, int, error)
	ListClassrooms(ctx context.Context, q string, page, perPage int) ([]store.ClassroomEntry, int, error)
	OtherCartUses(ctx context.Context, carts []string, except int64) (map[string][]store.AssociationRef, error)
	SameNameAssociations(ctx context.Context, name string, except int64) ([]store.AssociationRef, error)
	MatchImport(ctx context.Context, keys []store.ImportKey) ([]store.ImportMatch, error)
	SaveImport(ctx context.Context, owner store.Actor, fileName string, rows []store.ImportRow, ignored ...string) (store.ImportPreview, error)
	GetImport(ctx context.Context, id, ownerSub string) (store.ImportPreview, error)
	ApplyImport(ctx context.Context, id string, by store.Actor) (store.ImportPreview, error)
	PurgeImports(ctx context.Context, now time.Time) (int64, error)
	RestoreAssociation(ctx context.Context, id int64, by store.Actor) (store.Association, error)
	RemoveLocal(ctx context.Context, id int64, by store.Actor) (store.Association, error)
	KeepIntune(ctx context.Context, id, revision int64, by store.Actor) (store.Association, error)
	PushMine(ctx context.Context, id, revision int64, by store.Actor) (store.Association, error)
	PutUserToken(ctx context.Context, subject string, data []byte) error
	GetUserToken(ctx context.Context, subject string) ([]byte, error)
	ActorName(ctx context.Context, subject string) (string, error)
	SessionStore
}

// Server serves cartclass's pages.
type Server struct {
	cfg        Config
	store      Store
	log        *slog.Logger
	httpClient *http.Client // for the identity provider
	oidc       *oidcClient
	sessions   *sessionStore
	seal       *sealer
	now        func() time.Time
	handler    http.Handler
	baseCtx    context.Context // lives as long as the server

	signInLimiter *clientLimiter // per-client budget for the sign-in endpoints
	tarpit        chan struct{}  // slots for answers held back from clients past their budget
	importSlots   chan struct{}  // uploads being read (see handleImportUpload)
	spentLogins   spentLogins    // sign-ins already completed, refused if replayed
	refreshLocks  sync.Map       // subject → *sync.Mutex: one token refresh at a time per person
	roleChecks    roleChecks

	metrics      *Metrics
	rediscovered atomic.Int64 // when /readyz last started a discovery (Unix ns; see rediscover)
	graph        *graph.Client
	pushOpts     []push.Option
	pusher       *push.Worker     // nil without WithGraph
	delegated    *delegatedTokens // delegated mode's token lending
}

// New builds the server and discovers the identity provider. ctx must live as long as the
// server: the provider's signing keys are fetched with it. A provider that is unreachable
// at start-up is not fatal (sign-in shows a clear page until it answers); a wrong issuer is.
func New(ctx context.Context, cfg Config, st Store, log *slog.Logger, opts ...Option) (*Server, error) {
	keys := cfg.SessionKeys
	if len(keys) == 0 && cfg.Dev {
		k := make([]byte, 32)
		rand.Read(k)
		keys = [][]byte{k}
	}
	seal, err := newSealer(keys)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, store: st, log: log, seal: seal, now: time.Now, baseCtx: ctx,
		httpClient:    &http.Client{Timeout: 15 * time.Second},
		signInLimiter: newClientLimiter(signInRate, signInBurst, maxLimited),
		tarpit:        make(chan struct{}, tarpitSlots),
		importSlots:   make(chan struct{}, importSlots),
	}
	for _, o := range opts {
		o(s)
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	if s.graph != nil {
		// The pusher has a store interface of its own; no handler uses it.
		ps, ok := st.(push.Store)
		if !ok {
			return nil, errors.New("web.New: pushing to Graph needs a store that implements push.Store")
		}
		s.pusher = s.newPusher(ps)
	}
	s.sessions = &sessionStore{db: st, seal: seal, idle: cfg.SessionIdle, max: cfg.SessionMax, secure: cfg.Secure(), now: func() time.Time { return s.now() }, log: log}
	s.oidc, err = newOIDCClient(ctx, cfg, s.httpClient)
	if s.oidc == nil {
		return nil, err
	}
	if err != nil {
		log.Warn("identity provider unreachable at start-up; sign-in will retry", "issuer", cfg.OIDCIssuer, "err", err)
	}
	if err := s.metrics.reg.Register(newServerCollector(s)); err != nil {
		return nil, fmt.Errorf("web.New: metrics: %w (one Metrics per Server)", err)
	}
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }
