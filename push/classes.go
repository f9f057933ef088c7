package push

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/store"
)

// The school's classes, read from Graph's education API with every read of Intune, so
// that admins can pick classroom ids by class name. It is a convenience: a failure here
// is reported on the sync panel and changes nothing else, and a 403 (the permission was
// not granted) turns class names off until a read succeeds again.

// ClassStore is what reading classes needs of the store.
type ClassStore interface {
	ReplaceClasses(ctx context.Context, classes []store.Class) error
}

// ClassesStatus is where reading the school's classes stands, for the sync panel.
type ClassesStatus struct {
	Enabled bool // classes are read (WithClasses)
	// Denied: the last attempt was refused (403): the permission is missing, and class
	// names are off.
	Denied bool
	Count  int       // classes the last complete read stored
	Last   time.Time // when the last complete read finished; zero: none yet
	Error  string    // why the last attempt failed (other than Denied), in words; empty after a success
}

// WithClasses turns on reading the school's classes (into st) after every read of Intune.
func WithClasses(st ClassStore) Option {
	return func(w *Worker) { w.classStore, w.cls.Enabled = st, st != nil }
}

// ClassesStatus reports the last read of the school's classes. It is safe for concurrent
// use.
func (w *Worker) ClassesStatus() ClassesStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cls
}

// maxClasses bounds one read (a district tenant may hold many schools): beyond it the read
// stops and what it has is not stored, so a partial list never replaces a whole one.
const maxClasses = 100_000

// readClasses lists every class, page by page through the pacing gate, and stores the
// complete list; a listing that fails part-way stores nothing.
func (w *Worker) readClasses(ctx context.Context, subject string) {
	if w.classStore == nil {
		return
	}
	started := w.now()
	classes, err := w.listClasses(ctx, subject)
	if err == nil {
		bctx, cancel := bookkeeping(ctx)
		err = w.classStore.ReplaceClasses(bctx, classes)
		cancel()
	}
	var ae *graph.APIError
	denied := errors.As(err, &ae) && ae.Status == http.StatusForbidden
	w.mu.Lock()
	switch {
	case err == nil:
		w.cls.Count, w.cls.Last, w.cls.Error, w.cls.Denied = len(classes), w.now(), "", false
	case denied:
		w.cls.Error, w.cls.Denied = "", true
	default:
		// Denied stays as it was: only a read that succeeds shows the permission granted.
		w.cls.Error = readError(err)
	}
	w.mu.Unlock()
	switch {
	case err == nil:
		w.log.Info("graph_classes_read", "classes", len(classes), "duration", w.now().Sub(started))
	case denied:
		w.log.Warn("graph_classes_denied", "code", ae.Code, "request_id", ae.RequestID)
	case ctx.Err() == nil:
		w.log.Warn("graph_classes_read_failed", "err", err.Error())
	}
}

// listClasses reads the whole classes listing with subject's token (or another admin's).
func (w *Worker) listClasses(ctx context.Context, subject string) ([]store.Class, error) {
	ts, err := w.readTokens(ctx, subject)
	if err != nil {
		return nil, err
	}
	tok, err := ts.Token()
	if err != nil {
		return nil, err
	}
	gc := w.gc.WithTokenSource(oauth2.ReuseTokenSource(tok, ts))
	if err := w.readGate(ctx); err != nil {
		return nil, err
	}
	var out []store.Class
	for page, err := range gc.ClassPages(ctx) {
		if err != nil {
			// Not throttledBy: a 429 here fails this convenience read alone, and must not
			// pause pushing to Intune.
			return nil, err
		}
		for _, sk := range page.Skipped {
			w.log.Warn("graph_class_skipped", "id", sk.ID, "err", sk.Err.Error())
		}
		for _, c := range page.Classes {
			out = append(out, store.Class{ID: c.ID, DisplayName: c.DisplayName, ClassCode: c.ClassCode, ExternalID: c.ExternalID})
		}
		if len(out) > maxClasses {
			return nil, errTooManyClasses
		}
		if page.Last {
			return out, nil
		}
		if err := w.readGate(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var errTooManyClasses = errors.New("graph: more than 100,000 classes")
