// Package push keeps Microsoft Graph and cartclass in step. Saves land in the store with an
// outbox row in the same transaction; a Worker leases due rows, pushes each association's
// latest state (POST when Graph does not have it yet, else a PATCH of only the changed
// properties, after reading the object to take what changed in Intune; DELETE for one
// deleted in cartclass) and records the outcome. Leases keep one message in flight per
// association, so a create always precedes its updates and its delete. The Worker also reads
// every object in Intune on a schedule and reconciles (read.go, by the rule in
// reconcile.go); a POST whose answer was lost waits for such a read to adopt what it made
// before it is ever re-sent. What to do with each kind of failure is in policy.go.
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/store"
)

// codeSignInNeeded marks, in a change's recorded error, that it waits for its author to
// sign in again (so a restarted worker knows whom the banner names).
const codeSignInNeeded = "SignInNeeded"

// ErrSignInNeeded is what a TokenSourcer's error wraps when the author of a change has no
// usable token: their changes wait (they do not fail) until they sign in again.
var ErrSignInNeeded = errors.New("sign-in needed")

// Store is what the worker needs of the store (implemented by *store.Store).
type Store interface {
	ClaimOutbox(ctx context.Context, owner string, now time.Time, lease time.Duration) (store.OutboxItem, error)
	PostponedAuthors(ctx context.Context, code string) ([]string, error)
	LatestPostponement(ctx context.Context, status int, now time.Time) (time.Time, error)
	NextDue(ctx context.Context) (time.Time, error)
	MarkCreateSent(ctx context.Context, id int64, owner string, sent store.SentCreate) error
	ClearCreateSent(ctx context.Context, id int64, owner string) error
	CompleteCreate(ctx context.Context, id int64, owner string, p store.Pushed) error
	CompleteUpdate(ctx context.Context, id int64, owner string, p store.Pushed) error
	RetryLater(ctx context.Context, id int64, owner string, next time.Time, syncErr *store.SyncError) error
	Postpone(ctx context.Context, id int64, owner string, next time.Time, syncErr *store.SyncError) error
	Fail(ctx context.Context, id int64, owner string, syncErr *store.SyncError, pushed int64) error
	MarkDeleted(ctx context.Context, id int64, owner string, syncErr *store.SyncError) error
	ExpediteSubject(ctx context.Context, subject string, now time.Time) (int64, error)
	QueueStats(ctx context.Context) (depth int, oldestWaiting time.Time, err error)

	CompleteDelete(ctx context.Context, id int64, owner string) error
	MarkDeleteSent(ctx context.Context, id int64, owner string, at time.Time) error
	TakeRemote(ctx context.Context, id int64, owner string, revision int64, local, base store.Fields, modified time.Time, by *store.Actor) (store.Association, error)
	MarkChanged(ctx context.Context, id int64, owner string, revision int64, remote store.Fields, conflicts []string) error
	ExpediteUnanswered(ctx context.Context, now time.Time) (int64, error)
	ApplyRemotePage(ctx context.Context, objs []store.RemoteObject, fetched time.Time, decide store.Decider) (store.PageResult, error)
	MissingCandidates(ctx context.Context, seen []string, started time.Time) ([]store.Association, error)
	MarkGone(ctx context.Context, ids []int64, started time.Time) (int64, error)
	SaveRead(ctx context.Context, r store.ReadInfo) error
	LastRead(ctx context.Context) (store.ReadInfo, bool, error)
	RecordGraphRequests(ctx context.Context, rs []store.GraphRequest) error
}

// TokenSourcer gives the token source to push a change with. In delegated mode it is the
// author's (subject is UpdatedBy.Subject of the association) and is implemented by the web
// layer; in app mode see AppTokens. It is asked again after a 401, which is its chance to
// refresh. An error wrapping ErrSignInNeeded makes the change wait for a new sign-in.
type TokenSourcer interface {
	TokenSource(ctx context.Context, subject string) (oauth2.TokenSource, error)
}

// Invalidator is implemented by a TokenSourcer that caches tokens: after Graph answers 401
// the worker calls Invalidate so the next TokenSource refreshes instead of handing back the
// rejected token.
type Invalidator interface {
	Invalidate(subject string)
}

// Reason is why pushing is held back, as Status reports it.
type Reason string

// The reasons; the empty Reason means all is well.
const (
	// ReasonThrottled: Graph answered 429; nothing is sent until Status.Until.
	ReasonThrottled Reason = "throttled"
	// ReasonPermission: Graph answered 403; Status.Scope is missing; re-checked at Until.
	ReasonPermission Reason = "permission"
	// ReasonCredentials: app-only mode, Graph refused cartclass's own token; re-checked at Until.
	ReasonCredentials Reason = "credentials"
	// ReasonSignIn: not paused, but the changes of Status.Subjects wait for them to sign in.
	ReasonSignIn Reason = "signin"
)

// Status is the worker's state for the admins' banner.
type Status struct {
	// Paused is true while no request goes to Graph for any record: Reason is then
	// ReasonThrottled, ReasonPermission or ReasonCredentials.
	Paused   bool
	Reason   Reason
	Until    time.Time
	Scope    string
	Subjects []string // whose sign-in is needed, sorted
	// LastSuccess is when Graph last accepted a push (zero if never since start).
	LastSuccess time.Time
}

// Stats is the queue as admins see it.
type Stats struct {
	Depth         int           // associations waiting to be pushed (not counting failed or deleted)
	OldestWaiting time.Time     // since when the oldest has waited; zero when none
	OldestAge     time.Duration // now - OldestWaiting; zero when none
}

// Worker pushes the outbox to Graph. Create it with New and start it with Run.
type Worker struct {
	st     Store
	gc     *graph.Client
	tokens TokenSourcer

	log            *slog.Logger
	now            func() time.Time
	concurrency    int
	lease          time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	permRecheck    time.Duration
	signInRecheck  time.Duration
	appOnly        bool
	maxIdle        time.Duration
	scopes         []string
	owner          string
	writes         int           // writes per `per` at most
	per            time.Duration // pacing period
	requests       int           // requests of any kind per `per` at most
	readEvery      time.Duration // scheduled reads of Intune; 0: none
	classStore     ClassStore    // nil: the school's classes are not read
	cls            ClassesStatus // guarded by mu
	readBackoff    time.Duration // base and cap of the wait before a read after failed ones
	readBackoffMax time.Duration
	awaitPoll      time.Duration // how long an unanswered create waits for a read before asking again
	outcome        func(string)  // told each attempt's outcome (see WithOutcomes); never nil

	writeLimit *rate.Limiter // nil: writes are not paced
	allLimit   *rate.Limiter // every request, reads included; nil: not paced

	mu          sync.Mutex
	wake        chan struct{} // closed and replaced by Kick: wakes every idle pusher
	stopping    chan struct{} // closed by Stop: finish what is in hand, take nothing new
	stopOnce    sync.Once
	drained     atomic.Int64 // changes finished after Stop
	throttled   time.Time    // no request before this
	permUntil   time.Time    // paused for a missing permission until this (zero: not)
	permScope   string
	permReason  Reason               // ReasonPermission or ReasonCredentials
	signIn      map[string]time.Time // author's subject → when to ask their token source again
	lastSuccess time.Time
	awaiting    map[int64]time.Time // unanswered creates → the read must begin after this

	rd      readState
	readReq chan struct{} // a read was asked for (cap 1)

	reqLog    chan requestRecord // Graph requests to record (see logRequests)
	logClosed bool               // reqLog is closed (Run returned); guarded by mu
}

// Option configures a Worker.
type Option func(*Worker)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(w *Worker) {
		if l != nil {
			w.log = l
		}
	}
}

// WithOutcomes sets f to be told the outcome of every attempt to push a change, for
// metrics: "delivered", "conflict", or what the failure led to ("retry", "throttled",
// "permission", "signin", "failed", "deleted", "postponed", "awaiting_read"). f must be
// quick; it runs on the pusher's goroutine.
func WithOutcomes(f func(outcome string)) Option {
	return func(w *Worker) {
		if f != nil {
			w.outcome = f
		}
	}
}

// WithConcurrency sets how many associations are pushed at once (default 4). Each one
// still has at most one request in flight.
func WithConcurrency(n int) Option {
	return func(w *Worker) { w.concurrency = max(n, 1) }
}

// WithWritesPer20s paces writes (POST, PATCH) to n per 20 s, so that a bulk change stays
// under Intune's limit (100 per 20 s per app) and never earns a 429. Default 90; n <= 0
// lifts pacing.
func WithWritesPer20s(n int) Option { return WithWriteRate(n, 20*time.Second) }

// WithWriteRate paces writes to n per period (n <= 0 lifts pacing). The burst is a tenth
// of n, so no window of that length ever sees more than n + n/10 writes: 99 for the
// default 90 per 20 s, under Intune's 100.
func WithWriteRate(n int, per time.Duration) Option {
	return func(w *Worker) { w.writes, w.per = n, per }
}

// WithRequestsPer20s paces every request, reads included, to n per 20 s (default 1,800,
// under Intune's 2,000 per 20 s per tenant), so a read of every object never throttles
// the admins' saves. n <= 0 lifts it.
func WithRequestsPer20s(n int) Option { return func(w *Worker) { w.requests = n } }

// WithBackoff sets the base and the cap of the per-item exponential backoff (default 1 s
// and 5 min).
func WithBackoff(base, max time.Duration) Option {
	return func(w *Worker) { w.backoffBase, w.backoffMax = base, max }
}

// WithLease sets how long a claimed item stays leased (default 3 min). An attempt is cut
// short well before its lease ends; after a crash, the items in flight are picked up again
// when their leases end.
func WithLease(d time.Duration) Option {
	return func(w *Worker) {
		if d > 0 {
			w.lease = d
		}
	}
}

// WithPermissionRecheck sets how long a 403 pauses the queue before it is tried again
// without Resume (default 5 min).
func WithPermissionRecheck(d time.Duration) Option { return func(w *Worker) { w.permRecheck = d } }

// WithSignInRecheck sets how long an author's changes wait for a sign-in before their
// token source is asked again anyway (default 5 min).
func WithSignInRecheck(d time.Duration) Option { return func(w *Worker) { w.signInRecheck = d } }

// WithScopes sets the Graph scopes the app is configured with, named in the permission
// status when Graph's 403 does not name one.
func WithScopes(scopes ...string) Option { return func(w *Worker) { w.scopes = slices.Clone(scopes) } }

// WithAppOnly tells the worker that tokens are cartclass's own (client credentials), not
// its admins': a refused token then pauses the queue instead of waiting for a sign-in.
func WithAppOnly() Option { return func(w *Worker) { w.appOnly = true } }

// New returns a Worker pushing st's outbox through gc, with tokens from tokens.
func New(st Store, gc *graph.Client, tokens TokenSourcer, opts ...Option) *Worker {
	w := &Worker{
		st: st, gc: gc, tokens: tokens, stopping: make(chan struct{}),
		log:            slog.New(slog.DiscardHandler),
		now:            time.Now,
		concurrency:    4,
		lease:          3 * time.Minute,
		backoffBase:    time.Second,
		backoffMax:     5 * time.Minute,
		permRecheck:    5 * time.Minute,
		signInRecheck:  5 * time.Minute,
		maxIdle:        time.Minute,
		scopes:         []string{"DeviceManagementConfiguration.ReadWrite.All", "DeviceManagementServiceConfig.ReadWrite.All"},
		writes:         90,
		per:            20 * time.Second,
		requests:       1800,
		wake:           make(chan struct{}),
		outcome:        func(string) {},
		signIn:         map[string]time.Time{},
		awaiting:       map[int64]time.Time{},
		readEvery:      15 * time.Minute,
		readBackoff:    5 * time.Second,
		readBackoffMax: 5 * time.Minute,
		awaitPoll:      30 * time.Second,
		readReq:        make(chan struct{}, 1),
		reqLog:         make(chan requestRecord, 1024),
	}
	for _, o := range opts {
		o(w)
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	w.owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	w.writeLimit = newLimiter(w.writes, w.per)
	w.allLimit = newLimiter(w.requests, 20*time.Second)
	return w
}

// Kick wakes idle pushers to look for due items now (call it after each save).
func (w *Worker) Kick() {
	w.mu.Lock()
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// Resume lifts a pause for a missing permission (e.g. after an admin granted consent).
// A throttling pause cannot be lifted: Graph's Retry-After is always honoured.
func (w *Worker) Resume() {
	w.mu.Lock()
	w.permUntil, w.permScope = time.Time{}, ""
	w.mu.Unlock()
	w.Kick()
}

// SignedIn tells the worker that subject signed in again: their waiting changes are due
// now, and a permission pause is lifted (the new sign-in may carry the missing consent).
func (w *Worker) SignedIn(ctx context.Context, subject string) error {
	w.mu.Lock()
	delete(w.signIn, subject)
	w.permUntil, w.permScope = time.Time{}, ""
	// Without a complete read yet (in delegated mode, no admin's token may have been
	// there for the start-up read), read now with this admin's; not when reads are off.
	unread := w.readEvery > 0 && (!w.rd.haveLast || !w.rd.last.Complete)
	w.mu.Unlock()
	if unread {
		w.RequestRead(subject)
	}
	_, err := w.st.ExpediteSubject(ctx, subject, w.now())
	w.Kick()
	return err
}

// Status reports pauses and sign-ins needed. It is safe for concurrent use.
func (w *Worker) Status() Status {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{LastSuccess: w.lastSuccess}
	for sub := range w.signIn {
		s.Subjects = append(s.Subjects, sub)
	}
	slices.Sort(s.Subjects)
	switch {
	case now.Before(w.throttled):
		s.Paused, s.Reason, s.Until = true, ReasonThrottled, w.throttled
	case now.Before(w.permUntil):
		s.Paused, s.Reason, s.Until, s.Scope = true, w.permReason, w.permUntil, w.permScope
	case len(s.Subjects) > 0:
		s.Reason = ReasonSignIn
	}
	return s
}

// Stats reports the queue depth and the oldest waiting change.
func (w *Worker) Stats(ctx context.Context) (Stats, error) {
	depth, oldest, err := w.st.QueueStats(ctx)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Depth: depth, OldestWaiting: oldest}
	if !oldest.IsZero() {
		s.OldestAge = max(w.now().Sub(oldest), 0)
	}
	return s, nil
}

// Run pushes due items until ctx is done, with the configured number of pushers, and reads
// Intune on its schedule and when asked.
func (w *Worker) Run(ctx context.Context) {
	w.restorePauses(ctx)
	logged := make(chan struct{})
	go func() { w.logRequests(); close(logged) }()
	var wg sync.WaitGroup
	// A read is stopped at once by Stop (it can always be done again); a push in hand is
	// let finish.
	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	go func() {
		select {
		case <-w.stopping:
			cancelRead()
		case <-readCtx.Done():
		}
	}()
	wg.Go(func() { w.readLoop(readCtx) })
	for i := range w.concurrency {
		owner := fmt.Sprintf("%s/%d", w.owner, i)
		wg.Go(func() { w.loop(ctx, owner) })
	}
	wg.Wait()
	// Every request made is recorded before Run returns, the last ones at the stop.
	w.mu.Lock()
	w.logClosed = true
	close(w.reqLog)
	w.mu.Unlock()
	<-logged
}

// requestRecord is one Graph request to record, or (flushed set) a request to write what
// is gathered now and then close flushed.
type requestRecord struct {
	r       store.GraphRequest
	flushed chan struct{}
}

// requestBatch is how many Graph requests are recorded in one transaction at most, and
// requestLinger how long one waits for others to share it.
const (
	requestBatch  = 256
	requestLinger = 50 * time.Millisecond
)

// logRequests records the Graph requests the pushers and reads report, a batch per write
// transaction: one each would double the writer's turns per save (a GET and a PATCH beside
// the save and its completion), which the load test showed as a third fewer saves per
// second. It returns once w.reqLog is closed and everything in it is written.
func (w *Worker) logRequests() {
	var batch []store.GraphRequest
	var waiting []chan struct{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			if err := w.st.RecordGraphRequests(ctx, batch); err != nil {
				w.log.Error("graph_request_record_failed", "requests", len(batch), "err", err)
			}
			cancel()
			batch = batch[:0]
		}
		for _, c := range waiting {
			close(c)
		}
		waiting = waiting[:0]
	}
	for {
		select {
		case rec, ok := <-w.reqLog:
			if !ok {
				flush()
				return
			}
			if rec.flushed != nil {
				waiting = append(waiting, rec.flushed)
				flush()
				continue
			}
			if len(batch) == 0 {
				timer.Reset(requestLinger)
			}
			batch = append(batch, rec.r)
			if len(batch) >= requestBatch {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// FlushRequestLog returns once every Graph request reported so far is recorded (or ctx
// ends). Run records them by itself within requestLinger; this is for whoever must read
// them at once (tests). After Run has returned everything is recorded already.
func (w *Worker) FlushRequestLog(ctx context.Context) {
	done := make(chan struct{})
	// Under mu, which Run holds to close reqLog: never a send on a closed channel.
	w.mu.Lock()
	sent := false
	if !w.logClosed {
		select {
		case w.reqLog <- requestRecord{flushed: done}:
			sent = true
		case <-ctx.Done():
		}
	}
	w.mu.Unlock()
	if !sent {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// restorePauses takes up the pauses an earlier run recorded with postponed rows: a
// Retry-After still running holds every record back, and the banner keeps naming whose
// sign-in is awaited (so Push now can lend to them).
func (w *Worker) restorePauses(ctx context.Context) {
	now := w.now()
	throttledUntil, err := w.st.LatestPostponement(ctx, http.StatusTooManyRequests, now)
	var awaiting []string
	if err == nil {
		awaiting, err = w.st.PostponedAuthors(ctx, codeSignInNeeded)
	}
	if err != nil {
		w.log.Error("push_restore_pauses_failed", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if throttledUntil.After(w.throttled) {
		w.throttled = throttledUntil
	}
	for _, sub := range awaiting {
		w.signIn[sub] = now.Add(w.signInRecheck)
	}
}

// loop is one pusher: claim a due item, push it, repeat; sleep while paused or idle.
func (w *Worker) loop(ctx context.Context, owner string) {
	for ctx.Err() == nil && !w.stopped() {
		// Take the wake channel before looking for work, so a Kick after an empty
		// claim is never missed.
		w.mu.Lock()
		wake := w.wake
		w.mu.Unlock()
		if d := w.pausedFor(); d > 0 {
			sleep(ctx, d, wake)
			continue
		}
		it, err := w.st.ClaimOutbox(ctx, owner, w.now(), w.lease)
		switch {
		case errors.Is(err, store.ErrNotFound):
			sleep(ctx, w.idleFor(ctx), wake)
		case err != nil:
			if ctx.Err() == nil {
				w.log.Error("push_claim_failed", "err", err)
				sleep(ctx, time.Second, wake)
			}
		default:
			w.handle(ctx, owner, it)
			if w.stopped() {
				w.drained.Add(1)
			}
		}
	}
}

// Stop asks Run to finish the changes it is sending and take no more: Run returns once
// they are done (or its context ends, which cuts them off; the outbox keeps them, so
// they are sent after the next start). Reads stop at once.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		close(w.stopping)
		w.Kick() // wake idle pushers, so they see it
	})
}

// Drained is how many changes were finished after Stop.
func (w *Worker) Drained() int64 { return w.drained.Load() }

func (w *Worker) stopped() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// idleFor is how long to sleep when nothing is due: until the next row is, at most maxIdle.
func (w *Worker) idleFor(ctx context.Context) time.Duration {
	next, err := w.st.NextDue(ctx)
	if err != nil {
		return w.maxIdle // nothing queued (or the store failed): a Kick wakes us
	}
	return min(max(next.Sub(w.now()), 0), w.maxIdle)
}

// pausedFor is how long the whole queue stays paused from now (0: not paused).
func (w *Worker) pausedFor() time.Duration {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.throttled.Sub(now), w.permUntil.Sub(now), 0)
}

// gate is passed before every request to Graph: it refuses while the queue is paused and
// waits its turn under the pacing limits (writes under both, reads under the one for every
// request). A pause that begins while it waits is seen before the request goes out.
func (w *Worker) gate(ctx context.Context, write bool) error {
	if w.pausedFor() > 0 {
		return errPaused
	}
	limits := []*rate.Limiter{w.allLimit}
	if write {
		limits = append(limits, w.writeLimit)
	}
	for _, lim := range limits {
		if lim == nil {
			continue
		}
		now := w.now()
		res := lim.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 && !sleep(ctx, d, nil) {
			res.CancelAt(w.now())
			return fmt.Errorf("%w: %w", errPaused, ctx.Err())
		}
		if w.pausedFor() > 0 {
			res.CancelAt(w.now()) // give the turn back: nothing is sent
			return errPaused
		}
	}
	return nil
}

// newLimiter paces n events per period with a burst of a tenth of n (at least 1), so no
// window of that length sees more than n + n/10; nil when n <= 0 (no pacing).
func newLimiter(n int, per time.Duration) *rate.Limiter {
	if n <= 0 || per <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(float64(n)/per.Seconds()), max(n/10, 1))
}

// handle makes one attempt to push it and records the outcome.
func (w *Worker) handle(ctx context.Context, owner string, it store.OutboxItem) {
	subject := it.Association.UpdatedBy.Subject
	w.mu.Lock()
	waiting := w.now().Before(w.signIn[subject])
	w.mu.Unlock()
	var err error
	if waiting {
		err = fmt.Errorf("%w: %s", ErrSignInNeeded, subject)
	} else {
		actx, cancel := context.WithTimeout(ctx, w.lease*2/3)
		err = w.attempt(actx, owner, subject, &it)
		cancel()
	}
	// Record the outcome even if ctx ended meanwhile (the worker is stopping).
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if err == nil || errors.Is(err, errParked) {
		if err == nil {
			w.outcome("delivered")
		} else {
			w.outcome("conflict")
		}
		w.mu.Lock()
		w.lastSuccess = w.now()
		delete(w.signIn, subject)
		w.mu.Unlock()
		return
	}
	w.settle(bctx, ctx, owner, subject, it, err)
}

// attempt pushes the item with the author's token, asking for a fresh token once after
// a 401.
func (w *Worker) attempt(ctx context.Context, owner, subject string, it *store.OutboxItem) error {
	ts, err := w.tokens.TokenSource(ctx, subject)
	if err != nil {
		return fmt.Errorf("token source: %w", err)
	}
	err = w.sendWith(ctx, owner, ts, it)
	var ae *graph.APIError
	if !errors.As(err, &ae) || ae.Status != 401 {
		return err
	}
	w.log.Info("graph_push_unauthorized", "association_id", it.Association.ID,
		"request_id", ae.RequestID, "client_request_id", ae.ClientRequestID, "next", "refresh")
	if inv, ok := w.tokens.(Invalidator); ok {
		inv.Invalidate(subject)
	}
	if ts, err = w.tokens.TokenSource(ctx, subject); err != nil {
		return fmt.Errorf("token source: %w", err)
	}
	return w.sendWith(ctx, owner, ts, it)
}

// sendWith gets a token from ts once, before passing the pacing gate (a refresh may take
// seconds, and a pause that begins meanwhile must be seen before the request goes out),
// and sends every request of this attempt with it, each recorded beside the history of
// the association.
func (w *Worker) sendWith(ctx context.Context, owner string, ts oauth2.TokenSource, it *store.OutboxItem) error {
	tok, err := ts.Token()
	if err != nil {
		return fmt.Errorf("get token: %w", err)
	}
	a := it.Association
	gc := w.gc.WithTokenSource(oauth2.ReuseTokenSource(tok, ts)).WithObserver(w.recorder(a.ID, a.Revision))
	return w.send(ctx, owner, gc, it)
}

// recorder is the observer that records each Graph request made for association id, for
// its revision rev (under the history entry of that revision: what the request
// delivers). It hands the request to logRequests, which writes it with others and never
// fails the push (a failure is logged); Run records what a stopping worker made before
// it returns.
func (w *Worker) recorder(id, rev int64) func(graph.RequestInfo) {
	return func(info graph.RequestInfo) {
		w.reqLog <- requestRecord{r: store.GraphRequest{AssociationID: id, Revision: rev,
			At: info.Start, Method: info.Method, Status: info.Status, Duration: info.Duration,
			RequestID: info.RequestID, ClientRequestID: info.ClientRequestID, Code: info.Code}}
	}
}

// send pushes the item's current state: a create if Graph does not have it yet, else an
// update. On success the outcome is already recorded.
func (w *Worker) send(ctx context.Context, owner string, gc *graph.Client, it *store.OutboxItem) error {
	switch {
	case !it.Association.DeletedAt.IsZero():
		return w.remove(ctx, owner, gc, it)
	case it.Association.GraphID == "":
		return w.create(ctx, owner, gc, it)
	}
	return w.update(ctx, owner, gc, it)
}

func (w *Worker) create(ctx context.Context, owner string, gc *graph.Client, it *store.OutboxItem) error {
	a := it.Association
	if it.CreateSent != nil {
		// An earlier POST may have created the object although its answer was lost: a
		// read of Intune adopts it if so. Until one has begun since, post nothing.
		if err := w.settledByRead(a.ID); err != nil {
			return err
		}
	}
	if err := w.gate(ctx, true); err != nil {
		return err
	}
	sent := store.SentCreate{At: w.now(), Revision: a.Revision, Fields: a.Fields}
	if err := w.st.MarkCreateSent(ctx, a.ID, owner, sent); err != nil {
		return err
	}
	it.CreateSent = &sent
	obj, err := gc.Create(ctx, toGraph(a.Fields))
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if err != nil {
		if !graph.OutcomeUnknown(err) {
			// A definite refusal created nothing: no need to read before the next POST.
			if cerr := w.st.ClearCreateSent(bctx, a.ID, owner); cerr == nil {
				it.CreateSent = nil
			}
		}
		return err
	}
	return w.st.CompleteCreate(bctx, a.ID, owner, store.Pushed{
		GraphID: obj.ID, GraphCreatedAt: obj.CreatedDateTime, GraphModifiedAt: obj.LastModifiedDateTime,
		Revision: a.Revision, Fields: fromGraph(obj),
	})
}

// settledByRead tells whether the unanswered POST of association id has been settled by
// a complete read of Intune begun after it (one that would have adopted its object): nil
// if so. Otherwise it asks for a read and returns errAwaitRead. One read serves every
// waiting create.
func (w *Worker) settledByRead(id int64) error {
	now := w.now()
	// One critical section: a read finishing in between moves both the wait point (for
	// the creates it left to their workers) and the last complete read.
	w.mu.Lock()
	after, ok := w.awaiting[id]
	if !ok {
		// This claim comes after the attempt that lost the answer ended: a read begun
		// from now on sees whatever that POST created.
		after = now
		w.awaiting[id] = now
	}
	settled := w.rd.lastComplete.After(after)
	if settled {
		delete(w.awaiting, id)
	}
	w.mu.Unlock()
	if settled {
		return nil
	}
	w.RequestRead("")
	return errAwaitRead
}

// remove deletes in Intune an association deleted in cartclass. One never created there
// needs no request; one whose POST went unanswered waits for a read to adopt (then it is
// deleted) or to show that nothing was made.
func (w *Worker) remove(ctx context.Context, owner string, gc *graph.Client, it *store.OutboxItem) error {
	a := it.Association
	if a.GraphID == "" {
		if it.CreateSent != nil {
			if err := w.settledByRead(a.ID); err != nil {
				return err
			}
		}
		return w.st.CompleteDelete(ctx, a.ID, owner)
	}
	if err := w.gate(ctx, true); err != nil {
		return err
	}
	if err := w.st.MarkDeleteSent(ctx, a.ID, owner, w.now()); err != nil {
		return err
	}
	err := gc.Delete(ctx, a.GraphID)
	if err != nil && !graph.IsNotFound(err) {
		return err
	}
	// 204, or 404: gone either way (a retried DELETE whose first answer was lost).
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	w.log.Info("graph_deleted", "association_id", a.ID, "graph_id", a.GraphID, "already_gone", err != nil)
	return w.st.CompleteDelete(bctx, a.ID, owner)
}

// update reads the object first and reconciles (the rule in reconcile.go): it takes what
// changed only in Intune, parks a field changed on both sides, and PATCHes only
// cartclass's own changes. A 404 means the object was deleted in Intune.
func (w *Worker) update(ctx context.Context, owner string, gc *graph.Client, it *store.OutboxItem) error {
	a := it.Association
	// The write's turn first, then the read: the PATCH follows the GET at once, so an
	// Intune change can only land in the time of one round trip, not of a wait for pacing.
	// (When no PATCH follows, the write's turn goes unused.)
	if err := w.gate(ctx, true); err != nil {
		return err
	}
	if err := w.gate(ctx, false); err != nil {
		return err
	}
	obj, err := gc.Get(ctx, a.GraphID)
	if err != nil {
		return err
	}
	remote := fromGraph(obj)
	d := Decide(it.SyncedFields, a.Fields, remote)
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	switch d.Outcome {
	case Conflict:
		w.log.Info("graph_changed_in_intune", "association_id", a.ID, "graph_id", a.GraphID, "fields", d.Conflicts)
		return parked(takeErr(w.st.MarkChanged(bctx, a.ID, owner, a.Revision, remote, d.Conflicts)))
	case InStep:
		return w.st.CompleteUpdate(bctx, a.ID, owner, store.Pushed{
			GraphModifiedAt: obj.LastModifiedDateTime, Revision: a.Revision, Fields: remote})
	case TakeIntune:
		cur, err := w.st.TakeRemote(bctx, a.ID, owner, a.Revision, d.Local, d.Base, obj.LastModifiedDateTime, &store.IntuneActor)
		if err != nil {
			return takeErr(err)
		}
		w.log.Info("graph_intune_change_taken", "association_id", a.ID, "fields", d.Taken)
		return w.st.CompleteUpdate(bctx, a.ID, owner, store.Pushed{Revision: cur.Revision, Fields: d.Base})
	}
	// PushLocal: first take Intune's changes to other fields, so that what is sent is
	// only cartclass's own.
	rev := a.Revision
	if len(d.Taken) > 0 {
		cur, err := w.st.TakeRemote(bctx, a.ID, owner, a.Revision, d.Local, d.Base, obj.LastModifiedDateTime, nil)
		if err != nil {
			return takeErr(err)
		}
		rev = cur.Revision
		w.log.Info("graph_intune_change_taken", "association_id", a.ID, "fields", d.Taken)
	}
	base := toGraph(d.Base)
	p := graph.Diff(base, toGraph(d.Local))
	if w.pausedFor() > 0 {
		return errPaused // a 429 elsewhere meanwhile: send nothing
	}
	updated, err := gc.Update(ctx, a.GraphID, p)
	if err != nil {
		return err
	}
	held, modified := p.Apply(base), time.Time{}
	if updated != nil { // 200 with the object; 204 tells only that what was sent applied
		held, modified = *updated, updated.LastModifiedDateTime
	}
	return w.st.CompleteUpdate(bctx, a.ID, owner, store.Pushed{
		GraphModifiedAt: modified, Revision: rev, Fields: fromGraph(held),
	})
}

// errParked ends an attempt that went as it should but delivered nothing: the change
// waits for an admin to settle a conflict with Intune. It counts as a success otherwise.
var errParked = errors.New("push: parked as a conflict")

// parked is errParked when err is nil (the conflict was recorded), else err.
func parked(err error) error {
	if err == nil {
		return errParked
	}
	return err
}

// takeErr is what a refused TakeRemote means for the attempt: the association was saved
// again (claim it afresh), or the lease was lost.
func takeErr(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return errSavedMeanwhile
	}
	return err
}

// bookkeeping is the context for recording an outcome Graph has already acted on: it
// outlives the attempt's deadline and the worker's stop.
func bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
}

// settle records a failed attempt according to the policy and logs it once.
func (w *Worker) settle(bctx, ctx context.Context, owner, subject string, it store.OutboxItem, err error) {
	a := it.Association
	if errors.Is(err, store.ErrLeaseLost) {
		w.log.Warn("graph_push_lease_lost", "association_id", a.ID)
		return
	}
	update := a.GraphID != ""
	v, wait := classify(err, update)
	if ctx.Err() != nil && v == awaitRead {
		v = postpone
	}
	if ctx.Err() != nil && v == retry {
		v = postpone // stopping: not the record's fault
	}
	now := w.now()
	syncErr := syncErrorOf(err)
	attrs := []any{"association_id", a.ID, "revision", a.Revision, "op", op(a), "action", v.String(),
		"attempts", it.Attempts + 1, "err", err.Error()}
	var ae *graph.APIError
	if errors.As(err, &ae) {
		attrs = append(attrs, "status", ae.Status, "code", ae.Code, "request_id", ae.RequestID,
			"client_request_id", ae.ClientRequestID)
	}
	var serr error
	switch v {
	case retry:
		d := backoff(it.Attempts, w.backoffBase, w.backoffMax)
		attrs = append(attrs, "retry_in", d)
		serr = w.st.RetryLater(bctx, a.ID, owner, now.Add(d), syncErr)
	case throttle:
		until := now.Add(wait)
		w.mu.Lock()
		if until.After(w.throttled) {
			w.throttled = until
		}
		w.mu.Unlock()
		attrs = append(attrs, "paused_until", until)
		serr = w.st.Postpone(bctx, a.ID, owner, until, syncErr)
	case permission:
		scope := missingScope(err, w.scopes)
		w.mu.Lock()
		w.permUntil, w.permScope, w.permReason = now.Add(w.permRecheck), scope, ReasonPermission
		w.mu.Unlock()
		attrs = append(attrs, "scope", scope)
		serr = w.st.Postpone(bctx, a.ID, owner, now, syncErr)
	case signIn:
		if w.appOnly {
			// Nobody can sign in to fix cartclass's own credentials: pause the queue and
			// tell the admins, as for a missing permission.
			w.mu.Lock()
			w.permUntil, w.permScope, w.permReason = now.Add(w.permRecheck), "", ReasonCredentials
			w.mu.Unlock()
			serr = w.st.Postpone(bctx, a.ID, owner, now, syncErr)
			break
		}
		w.mu.Lock()
		w.signIn[subject] = now.Add(w.signInRecheck)
		w.mu.Unlock()
		syncErr = &store.SyncError{Status: syncErr.Status, Code: codeSignInNeeded,
			Message:   "The sign-in of the admin who made this change expired; it waits for them to sign in again, or for any admin to press Push now on the Sync page.",
			RequestID: syncErr.RequestID}
		serr = w.st.Postpone(bctx, a.ID, owner, now.Add(w.signInRecheck), syncErr)
	case fail:
		serr = w.st.Fail(bctx, a.ID, owner, syncErr, a.Revision)
	case deleted:
		serr = w.st.MarkDeleted(bctx, a.ID, owner, syncErr)
	case postpone:
		// Nothing reached Graph (paused meanwhile, or stopping): due again right away;
		// the loop waits out the pause before claiming it.
		serr = w.st.Postpone(bctx, a.ID, owner, now, nil)
	case awaitRead:
		// Due again when the read ends (it expedites every waiting create), or after a
		// while, to ask again if the read failed.
		serr = w.st.Postpone(bctx, a.ID, owner, now.Add(w.awaitPoll), nil)
	}
	if v == awaitRead {
		w.log.Debug("graph_push_awaiting_read", attrs...)
	} else if v == postpone && !errors.Is(err, context.Canceled) {
		w.log.Debug("graph_push_postponed", attrs...)
	} else if v != postpone {
		if ae != nil && ae.Message != "" {
			attrs = append(attrs, "graph_message", ae.Message)
		}
		w.log.Warn("graph_push_failed", attrs...)
	}
	w.outcome(v.outcome())
	if serr != nil && !errors.Is(serr, store.ErrLeaseLost) {
		w.log.Error("push_record_failed", "association_id", a.ID, "err", serr)
	}
}

func op(a store.Association) string {
	switch {
	case !a.DeletedAt.IsZero():
		return "delete"
	case a.GraphID != "":
		return "update"
	}
	return "create"
}

// sleep waits d, until wake is closed, or until ctx ends (then it returns false).
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

func toGraph(f store.Fields) graph.Association {
	return graph.Association{Version: f.Version, DisplayName: f.DisplayName, Description: f.Description,
		DeviceCartIDs: slices.Clone(f.DeviceCartIDs), ClassroomIDs: slices.Clone(f.ClassroomIDs)}
}

func fromGraph(a graph.Association) store.Fields {
	return store.Fields{DisplayName: a.DisplayName, Description: a.Description, Version: a.Version,
		DeviceCartIDs: slices.Clone(a.DeviceCartIDs), ClassroomIDs: slices.Clone(a.ClassroomIDs)}
}
