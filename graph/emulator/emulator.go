// Package emulator is a stand-in for the Microsoft Graph (beta) endpoints
// cartclass uses, faithful to what the project knows of Graph and Intune
// (see shared/GRAPH.md): cartToClassAssociations list with paging, get,
// create (201), update (204 by default, like Intune, or 200 + object), and
// delete; Graph-shaped errors with request-id and client-request-id; strict
// validation of bodies; bearer-token checks; an optional Intune-like write
// limit; state persisted atomically to a file for dev mode; and fault
// injection (status codes, Retry-After, latency, dropped connections before
// or after a change is applied) for tests of the push worker.
//
// An Emulator is an http.Handler. Mount it at the root of a server; a graph
// client then uses "<server URL>/beta" as its base URL.
package emulator

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/google/uuid"
)

// BasePath is the path prefix the emulator serves Graph under.
const BasePath = "/beta"

// collectionPath is the resource collection under BasePath.
const collectionPath = "/deviceManagement/cartToClassAssociations"

// maxRecorded bounds the request log (oldest dropped first), so a
// long-running dev server does not grow without limit.
const maxRecorded = 10000

// maxRequestBody caps request bodies; larger ones get 413.
const maxRequestBody = 1 << 20

// Request is one request the emulator received on the Graph API paths.
type Request struct {
	Method          string    `json:"method"`
	Path            string    `json:"path"`
	Query           string    `json:"query,omitempty"`
	Body            []byte    `json:"body,omitempty"`
	ClientRequestID string    `json:"clientRequestId"`
	RequestID       string    `json:"requestId"`
	Time            time.Time `json:"time"`
	// Status is the status answered; 0 when the connection was dropped.
	Status  int  `json:"status"`
	Dropped bool `json:"dropped,omitempty"`
	// Applied is true when a create, update or delete changed the state
	// (even if the answer was then dropped).
	Applied bool `json:"applied,omitempty"`
}

// Emulator is an in-memory Graph. It is safe for concurrent use.
type Emulator struct {
	log         *slog.Logger
	stateFile   string
	pageSize    int
	writeLimit  int
	writeWindow time.Duration
	now         func() time.Time
	patchStatus int
	authorizer  func(token string, r *http.Request) int
	control     bool
	emptyPages  bool

	mu       sync.Mutex
	objects  map[string]*stored
	seq      int64 // last creation sequence number handed out
	writes   []time.Time
	faults   []*activeFault
	latency  time.Duration
	requests []Request
}

// stored is one object plus its creation sequence, which gives the stable
// list order and the skiptoken.
type stored struct {
	Seq int64             `json:"seq"`
	Obj graph.Association `json:"object"`
}

// Option configures an Emulator.
type Option func(*Emulator)

// WithLogger sets the logger. POST and PATCH bodies are logged at Info as
// received ("graph_emulator_request"); other requests at Debug.
func WithLogger(l *slog.Logger) Option {
	return func(e *Emulator) {
		if l != nil {
			e.log = l
		}
	}
}

// WithStateFile loads the objects from path at start (if it exists) and
// saves them atomically (temp file + rename) after every change.
func WithStateFile(path string) Option { return func(e *Emulator) { e.stateFile = path } }

// WithPageSize sets how many objects a list page holds (default 5, so
// paging is always exercised).
func WithPageSize(n int) Option {
	return func(e *Emulator) {
		if n > 0 {
			e.pageSize = n
		}
	}
}

// WithWriteLimit enforces an Intune-like throttle: more than n writes
// (POST, PATCH, DELETE) within window get 429 with Retry-After in whole
// seconds. Off by default. Intune's documented limit for this resource is
// 100 per 20 s per app.
func WithWriteLimit(n int, window time.Duration) Option {
	return func(e *Emulator) { e.writeLimit, e.writeWindow = n, window }
}

// WithClock sets the clock used for timestamps and the write limit.
func WithClock(now func() time.Time) Option {
	return func(e *Emulator) {
		if now != nil {
			e.now = now
		}
	}
}

// WithPatchResponse sets how a successful PATCH is answered: 204 (default,
// like Intune) or 200 with the updated object (like the docs).
func WithPatchResponse(status int) Option {
	return func(e *Emulator) {
		if status == http.StatusOK || status == http.StatusNoContent {
			e.patchStatus = status
		}
	}
}

// WithAuthorizer decides, per request with a bearer token, whether to allow
// it (return 0) or refuse with 401 (expired or invalid token) or 403
// (missing permission). Without it any non-empty bearer token is accepted.
func WithAuthorizer(f func(token string, r *http.Request) int) Option {
	return func(e *Emulator) { e.authorizer = f }
}

// WithControl turns the HTTP control endpoints under /_emulator/ on or off
// (on by default; see ServeHTTP).
func WithControl(on bool) Option { return func(e *Emulator) { e.control = on } }

// WithEmptyPages makes every list page that has a successor followed by an
// empty page carrying a nextLink, as Graph sometimes serves.
func WithEmptyPages() Option { return func(e *Emulator) { e.emptyPages = true } }

// New returns an Emulator. With WithStateFile, a state file that cannot be
// read is logged and moved aside (to path + ".corrupt-<unix time>") rather
// than overwritten.
func New(opts ...Option) *Emulator {
	e := &Emulator{
		log:         slog.New(slog.DiscardHandler),
		pageSize:    5,
		now:         time.Now,
		patchStatus: http.StatusNoContent,
		control:     true,
		objects:     map[string]*stored{},
	}
	for _, o := range opts {
		o(e)
	}
	if e.stateFile != "" {
		e.load()
	}
	return e
}

// Objects returns the current objects, in creation order.
func (e *Emulator) Objects() []graph.Association {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]graph.Association, 0, len(e.objects))
	for _, s := range e.sortedLocked() {
		out = append(out, cloneAssoc(s.Obj))
	}
	return out
}

// Requests returns the requests received on the Graph paths so far (the
// most recent 10,000), oldest first.
func (e *Emulator) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Request, len(e.requests))
	for i, r := range e.requests {
		r.Body = bytes.Clone(r.Body)
		out[i] = r
	}
	return out
}

// Reset forgets objects, recorded requests, faults, latency and the write
// counter (and saves the empty state when a state file is set).
func (e *Emulator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.objects = map[string]*stored{}
	e.requests = nil
	e.faults = nil
	e.latency = 0
	e.writes = nil
	if err := e.saveLocked(); err != nil {
		e.log.Error("graph_emulator_save", "err", err)
	}
}

// sortedLocked returns the objects in creation order. Caller holds mu.
func (e *Emulator) sortedLocked() []*stored {
	all := make([]*stored, 0, len(e.objects))
	for _, s := range e.objects {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *stored) int { return cmp.Compare(a.Seq, b.Seq) })
	return all
}

// recorder buffers a response so it can be dropped after the change was
// applied, and so the status can be recorded.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { r.setStatus(200); return r.body.Write(b) }
func (r *recorder) WriteHeader(status int)      { r.setStatus(status) }
func (r *recorder) setStatus(s int) {
	if r.status == 0 {
		r.status = s
	}
}

// ServeHTTP serves the Graph API under /beta and, unless disabled with
// WithControl(false), these control endpoints for dev mode:
//
//	POST   /_emulator/faults    inject a Fault (JSON object or array)
//	DELETE /_emulator/faults    clear faults
//	POST   /_emulator/latency   {"latency":"250ms"} for every request
//	GET    /_emulator/requests  recorded requests
//	GET    /_emulator/objects   current objects
//	POST   /_emulator/reset     Reset
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		if e.control {
			e.serveControl(w, r)
		} else {
			http.NotFound(w, r)
		}
		return
	}

	reqID := uuid.NewString()
	crid := r.Header.Get("client-request-id")
	if crid == "" {
		crid = reqID // Graph echoes its own id when the client sent none
	}
	rec := Request{
		Method:          r.Method,
		Path:            r.URL.Path,
		Query:           r.URL.RawQuery,
		ClientRequestID: crid,
		RequestID:       reqID,
		Time:            e.now(),
	}
	body, tooLarge := readBody(r)
	rec.Body = body

	fault, latency := e.takeFault(r)
	if latency > 0 && !sleep(r.Context(), latency) {
		e.finish(rec, 0, true)
		return
	}
	if fault != nil && fault.DropBeforeApply {
		e.finish(rec, 0, true)
		dropConnection(w)
		return
	}

	buf := &recorder{header: http.Header{}}
	x := &exchange{e: e, w: buf, r: r, body: body, reqID: reqID, crid: crid}
	switch {
	case fault != nil && fault.Status != 0:
		if fault.RetryAfter != "" {
			buf.header.Set("Retry-After", fault.RetryAfter)
		}
		x.fail(fault.Status, fault.code(), fault.message())
	case tooLarge:
		x.fail(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is too large.")
	default:
		x.serveAPI()
	}
	rec.Applied = x.applied

	if fault != nil && fault.DropAfterApply {
		e.finish(rec, 0, true)
		dropConnection(w)
		return
	}
	for k, v := range buf.header {
		w.Header()[k] = v
	}
	w.Header().Set("request-id", reqID)
	w.Header().Set("client-request-id", crid)
	status := cmp.Or(buf.status, http.StatusOK)
	// Record before answering, so a client that has its answer always
	// finds the request in Requests.
	e.finish(rec, status, false)
	w.WriteHeader(status)
	_, _ = w.Write(buf.body.Bytes())
}

// finish records and logs a request.
func (e *Emulator) finish(rec Request, status int, dropped bool) {
	rec.Status, rec.Dropped = status, dropped
	e.mu.Lock()
	if len(e.requests) >= maxRecorded {
		e.requests = slices.Delete(e.requests, 0, len(e.requests)-maxRecorded+1)
	}
	e.requests = append(e.requests, rec)
	e.mu.Unlock()
	level := slog.LevelDebug
	if rec.Method == http.MethodPost || rec.Method == http.MethodPatch {
		level = slog.LevelInfo
	}
	e.log.Log(context.Background(), level, "graph_emulator_request",
		"method", rec.Method, "path", rec.Path, "body", string(rec.Body),
		"status", status, "dropped", dropped, "client_request_id", rec.ClientRequestID)
}

// readBody reads up to maxRequestBody bytes; tooLarge reports more.
func readBody(r *http.Request) (body []byte, tooLarge bool) {
	if r.Body == nil {
		return nil, false
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if len(b) > maxRequestBody {
		return b[:maxRequestBody], true
	}
	return b, false
}

// sleep waits d or until ctx ends; false means the client went away.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dropConnection closes the connection without any response: the client
// sees its request written and then the connection lost.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// HTTP/2 or a wrapped writer: abort the handler, which resets the
	// stream or closes the connection without a response.
	panic(http.ErrAbortHandler)
}

// exchange is one API request being served.
type exchange struct {
	e       *Emulator
	w       *recorder
	r       *http.Request
	body    []byte
	reqID   string
	crid    string
	applied bool
}

// serveAPI authenticates, routes, throttles and runs the request.
func (x *exchange) serveAPI() {
	if !x.authenticate() {
		return
	}
	id, isItem, ok := x.route()
	if !ok {
		x.fail(http.StatusBadRequest, "BadRequest",
			fmt.Sprintf("Resource not found for the segment '%s'.", lastSegment(x.r.URL.Path)))
		return
	}
	m := x.r.Method
	allowed := []string{http.MethodGet, http.MethodPost}
	if isItem {
		allowed = []string{http.MethodGet, http.MethodPatch, http.MethodDelete}
	}
	if !slices.Contains(allowed, m) {
		x.w.header.Set("Allow", strings.Join(allowed, ", "))
		x.fail(http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not allowed for this resource.", m))
		return
	}
	if m != http.MethodGet {
		if wait, ok := x.e.takeWrite(); !ok {
			x.w.header.Set("Retry-After", fmt.Sprint(int64((wait+time.Second-1)/time.Second)))
			x.fail(http.StatusTooManyRequests, "TooManyRequests",
				intuneMessage("Too many requests; the write limit for this resource was exceeded.", x.reqID, x.r.URL.Path))
			return
		}
	}
	switch {
	case !isItem && m == http.MethodGet:
		x.list()
	case !isItem && m == http.MethodPost:
		x.create()
	case m == http.MethodGet:
		x.get(id)
	case m == http.MethodPatch:
		x.update(id)
	case m == http.MethodDelete:
		x.delete(id)
	}
}
