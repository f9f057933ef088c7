package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/store"
)

// This file is the Worker's read of Intune: every object, page by page, each page
// reconciled in one transaction (by the rule in reconcile.go), on a schedule, when an admin
// asks, and when an unanswered create needs one. Only one read runs at a time. Reads pass
// the same pacing gate as pushes, and a 429 on either pauses both.

// ReadTokenSourcer is implemented by a TokenSourcer that can choose whose token reads
// Intune: preferred (the admin who asked, may be empty) if it can, else another admin's.
// Without it, reads use TokenSource(ctx, preferred).
type ReadTokenSourcer interface {
	ReadTokenSource(ctx context.Context, preferred string) (oauth2.TokenSource, error)
}

// ReadStatus is the state of reading Intune, for the sync panel.
type ReadStatus struct {
	Running   bool      // a read is running or about to start
	SoFar     int       // objects read so far by the running read
	StartedAt time.Time // when the running read began
	Last      store.ReadInfo
	HaveLast  bool // false: Intune has not been read (since this database was made)
}

// readState is guarded by Worker.mu.
type readState struct {
	queued       bool   // a read was asked for and has not begun
	backingOff   bool   // the queued read, asked for by nobody, waits out a backoff
	running      bool   // a read is running
	subject      string // whose token the queued read prefers
	soFar        int
	startedAt    time.Time
	last         store.ReadInfo
	haveLast     bool
	lastComplete time.Time // when the last complete read began
	failures     int       // reads failed in a row
}

// WithReadEvery sets how often Intune is read in full (default 15 min); 0 turns the
// schedule off (reads then happen only when asked for). With a schedule, the first read is
// at start-up.
func WithReadEvery(d time.Duration) Option { return func(w *Worker) { w.readEvery = max(d, 0) } }

// WithReadBackoff sets the base and the cap of the wait before a read that nobody asked
// for (scheduled, or for an unanswered create) after failed reads (default 5 s and 5 min).
func WithReadBackoff(base, max time.Duration) Option {
	return func(w *Worker) { w.readBackoff, w.readBackoffMax = base, max }
}

// WithAwaitPoll sets how long a create whose POST went unanswered waits for a read of
// Intune before asking for one again (default 30 s).
func WithAwaitPoll(d time.Duration) Option {
	return func(w *Worker) {
		if d > 0 {
			w.awaitPoll = d
		}
	}
}

// RequestRead asks for a read of Intune now, preferring subject's token where tokens are
// the admins'. It returns false when a read is already running or queued, except that an
// admin (a subject) asking while the queued read waits out a backoff after failures
// starts it now.
func (w *Worker) RequestRead(subject string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	cutShort := w.rd.backingOff && w.rd.subject == "" && subject != ""
	if w.rd.running || (w.rd.queued && !cutShort) {
		return false
	}
	w.rd.queued, w.rd.subject = true, subject
	select {
	case w.readReq <- struct{}{}:
	default:
	}
	return true
}

// ReadStatus reports the running read and the last finished one. It is safe for
// concurrent use.
func (w *Worker) ReadStatus() ReadStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A read waiting out a backoff after failures is not running: the panel shows the
	// failed one until it begins.
	return ReadStatus{Running: w.rd.running || (w.rd.queued && !w.rd.backingOff), SoFar: w.rd.soFar, StartedAt: w.rd.startedAt,
		Last: w.rd.last, HaveLast: w.rd.haveLast}
}

// LastCompleteRead is when the last read of this run that reached its last page began
// (zero: none yet).
func (w *Worker) LastCompleteRead() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rd.lastComplete
}

// loadLastRead takes up the last read an earlier run recorded, for the sync panel.
func (w *Worker) loadLastRead(ctx context.Context) {
	last, ok, err := w.st.LastRead(ctx)
	if err != nil {
		w.log.Error("graph_read_load_failed", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok && !w.rd.haveLast {
		w.rd.last, w.rd.haveLast = last, true
	}
	// A complete read of an earlier run does not settle this run's unanswered creates:
	// those are waited for from their first claim in this run, which is later.
}

// readLoop runs reads: at start-up and every readEvery when scheduled, and when asked.
// After a failed read the next one that nobody asked for waits a growing backoff.
func (w *Worker) readLoop(ctx context.Context) {
	w.loadLastRead(ctx)
	var tick <-chan time.Time
	var timer *time.Timer
	if w.readEvery > 0 {
		timer = time.NewTimer(0)
		defer timer.Stop()
		tick = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.readReq:
		case <-tick:
		}
		w.mu.Lock()
		subject, failures := w.rd.subject, w.rd.failures
		w.mu.Unlock()
		if failures > 0 && subject == "" {
			// Asked by a waiting create, or scheduled, after failures: back off, unless
			// an admin asks meanwhile (RequestRead wakes us through readReq).
			w.mu.Lock()
			w.rd.backingOff = true
			w.mu.Unlock()
			ok := sleep(ctx, backoff(failures, w.readBackoff, w.readBackoffMax), w.readReq)
			w.mu.Lock()
			w.rd.backingOff = false
			w.mu.Unlock()
			if !ok {
				return
			}
		}
		w.runRead(ctx)
		if timer != nil {
			w.mu.Lock()
			next := w.readEvery
			if w.rd.failures > 0 {
				next = min(next, w.readBackoff)
			}
			w.mu.Unlock()
			timer.Reset(next)
		}
	}
}

// runRead runs one read and records how it went.
func (w *Worker) runRead(ctx context.Context) {
	started := w.now()
	w.mu.Lock()
	subject := w.rd.subject
	w.rd.queued, w.rd.running, w.rd.subject, w.rd.soFar, w.rd.startedAt = false, true, "", 0, started
	select {
	case <-w.readReq: // this read serves that request too
	default:
	}
	w.mu.Unlock()

	tally, err := w.read(ctx, subject, started)
	info := store.ReadInfo{StartedAt: started, FinishedAt: w.now(), Objects: tally.objects, Complete: err == nil}
	if err != nil {
		info.Error = readError(err)
	}
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if serr := w.st.SaveRead(bctx, info); serr != nil {
		w.log.Error("graph_read_record_failed", "err", serr)
	}
	w.mu.Lock()
	w.rd.running, w.rd.last, w.rd.haveLast = false, info, true
	if err == nil {
		w.rd.failures = 0
		if tally.unidentified == 0 {
			// An object whose id could not be read may be what an unanswered POST made:
			// such a read settles none of them.
			w.rd.lastComplete = started
		}
		for _, id := range tally.leftToWorker {
			// This read left the create to the worker holding it, which may only have
			// been checking whether a read had settled it: this one has not, the next must.
			if after, ok := w.awaiting[id]; ok && !after.After(started) {
				w.awaiting[id] = started
			}
		}
	} else {
		w.rd.failures++
	}
	w.mu.Unlock()

	if v, _ := classify(err, false); err != nil && v == throttle && ctx.Err() == nil {
		// Intune asked to slow down: read again once the pause is over (readGate waits).
		defer w.RequestRead(subject)
	} else if ctx.Err() == nil {
		// The classes go with every read, whatever became of the associations' (another
		// permission): a failure here is only reported.
		w.readClasses(ctx, subject)
	}
	attrs := []any{"objects", tally.objects, "pages", tally.pages, "imported", tally.Imported, "adopted", tally.Adopted,
		"taken", tally.Taken, "to_push", tally.Pushed, "conflicts", tally.Conflicts, "missing", tally.missing,
		"unreadable", tally.unreadable, "duration", info.FinishedAt.Sub(started)}
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("graph_read_failed", append(attrs, "err", err.Error())...)
		}
		return
	}
	w.log.Info("graph_read", attrs...)
	// Unanswered creates waiting for this read: adopted ones are linked now; the rest
	// learn that their POST made nothing.
	if _, err := w.st.ExpediteUnanswered(bctx, w.now()); err != nil {
		w.log.Error("graph_read_expedite_failed", "err", err)
	}
	w.Kick()
}

// readTally counts what a read did.
type readTally struct {
	store.PageResult
	objects, pages, missing, unreadable int
	unidentified                        int // unreadable objects without a readable id
	// leftToWorker are the unanswered creates whose object this read found but skipped,
	// because a worker held them at the time.
	leftToWorker []int64
}

// read lists every object and reconciles page by page; only when the listing reached its
// last page are the associations it no longer holds marked deleted in Intune.
func (w *Worker) read(ctx context.Context, subject string, started time.Time) (readTally, error) {
	var tally readTally
	ts, err := w.readTokens(ctx, subject)
	if err != nil {
		return tally, fmt.Errorf("token source: %w", err)
	}
	tally, err = w.readWith(ctx, ts, started)
	var ae *graph.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return tally, err
	}
	// The token was refused: ask for a fresh one once, and start over.
	if inv, ok := w.tokens.(Invalidator); ok {
		inv.Invalidate(subject)
	}
	if ts, err = w.readTokens(ctx, subject); err != nil {
		return tally, fmt.Errorf("token source: %w", err)
	}
	return w.readWith(ctx, ts, started)
}

func (w *Worker) readTokens(ctx context.Context, subject string) (oauth2.TokenSource, error) {
	if rt, ok := w.tokens.(ReadTokenSourcer); ok {
		return rt.ReadTokenSource(ctx, subject)
	}
	return w.tokens.TokenSource(ctx, subject)
}

func (w *Worker) readWith(ctx context.Context, ts oauth2.TokenSource, started time.Time) (readTally, error) {
	var tally readTally
	tok, err := ts.Token()
	if err != nil {
		return tally, fmt.Errorf("get token: %w", err)
	}
	gc := w.gc.WithTokenSource(oauth2.ReuseTokenSource(tok, ts))
	if err := w.readGate(ctx); err != nil {
		return tally, err
	}
	var seen []string
	fetched := w.now()
	for page, err := range gc.Pages(ctx) {
		if err != nil {
			w.throttledBy(err)
			return tally, err
		}
		tally.pages++
		for _, sk := range page.Skipped {
			// Logged once and left out: never imported half. Its id (if readable) still
			// counts as present, so it is not taken for deleted.
			w.log.Warn("graph_read_object_skipped", "graph_id", sk.ID, "err", sk.Err.Error())
			tally.unreadable++
			if sk.ID != "" {
				seen = append(seen, sk.ID)
			} else {
				tally.unidentified++
			}
		}
		objs := make([]store.RemoteObject, 0, len(page.Objects))
		for _, o := range page.Objects {
			objs = append(objs, store.RemoteObject{GraphID: o.ID, Fields: fromGraph(o),
				CreatedAt: o.CreatedDateTime, ModifiedAt: o.LastModifiedDateTime})
			seen = append(seen, o.ID)
		}
		var leftToWorker []int64
		res, err := w.st.ApplyRemotePage(ctx, objs, fetched, func(remote store.RemoteObject, local *store.Local, pending []store.Local) store.Verdict {
			v := decideRemote(remote, local, pending)
			if v.Kind == store.VerdictSkip && local == nil && v.AdoptID != 0 {
				leftToWorker = append(leftToWorker, v.AdoptID)
			}
			return v
		})
		if err != nil {
			return tally, err
		}
		tally.leftToWorker = append(tally.leftToWorker, leftToWorker...)
		tally.Imported += res.Imported
		tally.Adopted += res.Adopted
		tally.Taken += res.Taken
		tally.Pushed += res.Pushed
		tally.Conflicts += res.Conflicts
		tally.objects += len(page.Objects)
		w.mu.Lock()
		w.rd.soFar = tally.objects
		w.mu.Unlock()
		if res.Pushed > 0 {
			w.Kick()
		}
		if page.Last {
			break
		}
		// Pages requests the next page when this body returns: pass the gate first.
		if err := w.readGate(ctx); err != nil {
			return tally, err
		}
		fetched = w.now()
	}
	if tally.unidentified > 0 {
		// An object whose id could not be read may be any of them: conclude nothing.
		w.log.Warn("graph_read_missing_not_checked", "unidentified", tally.unidentified)
		return tally, nil
	}
	return tally, w.confirmMissing(ctx, gc, seen, started, &tally)
}

// confirmMissing marks deleted in Intune what the complete listing no longer held, after
// a GET of each answers 404: a listing whose pages shifted while it was read (an object
// deleted meanwhile moves the rest up a page) can miss one that is still there. One that
// is there after all is reconciled as a page of its own.
func (w *Worker) confirmMissing(ctx context.Context, gc *graph.Client, seen []string, started time.Time, tally *readTally) error {
	cands, err := w.st.MissingCandidates(ctx, seen, started)
	if err != nil {
		return err
	}
	var gone []int64
	var failed error
	for _, a := range cands {
		if failed = w.readGate(ctx); failed != nil {
			break
		}
		fetched := w.now()
		// Unlike the listing's pages, this GET is for one association: it is recorded.
		obj, err := gc.WithObserver(w.recorder(a.ID, a.Revision)).Get(ctx, a.GraphID)
		if graph.IsNotFound(err) {
			gone = append(gone, a.ID)
			continue
		}
		if err != nil {
			w.throttledBy(err)
			failed = err
			break
		}
		w.log.Info("graph_read_missed_object", "association_id", a.ID, "graph_id", a.GraphID)
		res, err := w.st.ApplyRemotePage(ctx, []store.RemoteObject{{GraphID: obj.ID, Fields: fromGraph(obj),
			CreatedAt: obj.CreatedDateTime, ModifiedAt: obj.LastModifiedDateTime}}, fetched, decideRemote)
		if err != nil {
			failed = err
			break
		}
		tally.Taken += res.Taken
		tally.Pushed += res.Pushed
		tally.Conflicts += res.Conflicts
	}
	// What was confirmed stays confirmed, even if a later GET failed.
	n, err := w.st.MarkGone(ctx, gone, started)
	tally.missing = int(n)
	return errors.Join(failed, err)
}

// readGate is passed before each page request: it waits out a throttling pause (a 429 on
// a push pauses reads too), then takes a turn under the limit for every request. A pause
// for a missing write permission does not stop reads.
func (w *Worker) readGate(ctx context.Context) error {
	for {
		now := w.now()
		w.mu.Lock()
		d := w.throttled.Sub(now)
		w.mu.Unlock()
		if d <= 0 {
			break
		}
		if !sleep(ctx, d, nil) {
			return ctx.Err()
		}
	}
	if w.allLimit == nil {
		return nil
	}
	now := w.now()
	res := w.allLimit.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 && !sleep(ctx, d, nil) {
		res.CancelAt(w.now())
		return ctx.Err()
	}
	return nil
}

// throttledBy pauses every request (pushes too) when err is a 429 with Retry-After.
func (w *Worker) throttledBy(err error) {
	if v, wait := classify(err, false); v == throttle {
		until := w.now().Add(wait)
		w.mu.Lock()
		if until.After(w.throttled) {
			w.throttled = until
		}
		w.mu.Unlock()
		w.log.Info("graph_read_throttled", "paused_until", until)
	}
}

// readError is a failed read in words for the sync panel.
func readError(err error) string {
	var ae *graph.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return "Microsoft Graph refused the read (403): cartclass needs DeviceManagementConfiguration.Read.All (or ReadWrite.All). " + ae.Short()
	case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
		return "Intune asked cartclass to slow down (429); the read is tried again after the pause."
	case errors.As(err, &ae):
		return ae.Short()
	case errors.Is(err, context.DeadlineExceeded):
		return "Microsoft Graph did not answer in time."
	case errors.Is(err, ErrSignInNeeded), errors.Is(err, graph.ErrNoTokenSource):
		return "No admin's sign-in is available to read Intune with: it is read after an admin signs in."
	case errors.Is(err, context.Canceled):
		return "The read was stopped (cartclass shutting down)."
	}
	var te *graph.TransportError
	if errors.As(err, &te) {
		return "Could not reach Microsoft Graph."
	}
	// Anything else is cartclass's own trouble (the database, say): the log has it.
	return "The read failed inside cartclass; the server log says why."
}

// decideRemote is the verdict for one object of a read: the rule in reconcile.go, plus
// what only a listing knows. It is pure (it runs inside the page's transaction).
func decideRemote(remote store.RemoteObject, local *store.Local, pending []store.Local) store.Verdict {
	if local == nil {
		// Unknown here: made by an unanswered POST of ours, or in Intune by someone else.
		for _, p := range pending {
			rev, ok := int64(0), false
			switch {
			case remote.Fields.Equal(p.Association.Fields):
				rev, ok = p.Association.Revision, true
			case p.CreateSent != nil && remote.Fields.Equal(p.CreateSent.Fields):
				rev, ok = p.CreateSent.Revision, true
			}
			if !ok {
				continue
			}
			if p.Leased {
				// Its worker is posting right now and links what it made, or is checking
				// whether a read settled it: then this read does not count (AdoptID tells
				// the read which create it left to its worker).
				return store.Verdict{Kind: store.VerdictSkip, AdoptID: p.Association.ID}
			}
			return store.Verdict{Kind: store.VerdictAdopt, AdoptID: p.Association.ID, AdoptRev: rev}
		}
		return store.Verdict{Kind: store.VerdictImport}
	}
	a := local.Association
	if local.Leased || local.Stale || !a.DeletedAt.IsZero() {
		// In flight (its worker reads it before sending), older than what is known, or
		// being deleted: nothing to learn here.
		return store.Verdict{Kind: store.VerdictSkip}
	}
	d := Decide(local.Base, a.Fields, remote.Fields)
	switch d.Outcome {
	case TakeIntune:
		return store.Verdict{Kind: store.VerdictTake, Local: d.Local}
	case PushLocal:
		return store.Verdict{Kind: store.VerdictPush, Local: d.Local}
	case Conflict:
		return store.Verdict{Kind: store.VerdictConflict, Conflicts: d.Conflicts}
	}
	return store.Verdict{Kind: store.VerdictInStep}
}
