// Package emulator is a stand-in for the Microsoft Graph (beta) endpoints
// cartclass uses, faithful to what the project knows of Graph and Intune
// (see shared/GRAPH.md): cartToClassAssociations list with paging, get,
// create (201), update (204 by default, like Intune, or 200 + object), and
// delete; Graph-shaped errors with request-id and client-request-id; strict
// validation of bodies; bearer-token checks; an optional Intune-like write
// limit; state persisted to a file for dev mode (write-behind, see Flush
// and Close); fault injection (status codes, Retry-After, latency, dropped
// connections before or after a change is applied) for tests of the push
// worker; and changes made "as someone else in Intune" (PutObject,
// ChangeObject, RemoveObject), so dev mode and tests can show drift.
//
// It also serves the school's education classes, read-only, for the
// classroom pick-list: GET /beta/education/classes, paged like the
// associations and honouring $select, with a deterministic default set of
// about 300 classes of a UK secondary school (see SetClasses) and a switch
// that answers 403 as Graph does without an EduRoster permission
// (SetClassesForbidden). Classes live in memory only, never in the state
// file.
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
	controlMux  *http.ServeMux

	mu       sync.Mutex
	objects  map[string]*stored // by lower-case id
	order    []*stored          // the same objects by Seq, for listing pages without sorting
	seq      int64              // last creation sequence number handed out
	writes   []time.Time
	faults   []*activeFault
	latency  time.Duration
	requests []Request
	gen      uint64 // changes made so far (under mu)
	savedGen uint64 // changes in the state file (under mu)

	// classes is what GET /education/classes serves (under mu); it is
	// replaced whole, never changed in place, so a page can be cut from it
	// outside the lock.
	classes          []graph.Class
	classesForbidden bool

	// Write-behind persistence (state.go).
	saveMu    sync.Mutex    // serializes state file writes
	kick      chan struct{} // wakes the flusher; nil without a state file
	stop      chan struct{} // closed by Close
	stopped   chan struct{} // closed when the flusher has returned
	closeOnce sync.Once
	closeErr  error
}

// stored is one object plus its creation sequence, which gives the stable
// list order and the skiptoken. A change replaces Obj with a new value and
// never modifies its slices in place, so a copy of a stored (a state
// snapshot) stays valid outside the lock.
type stored struct {
	Seq int64             `json:"seq"`
	Obj graph.Association `json:"object"`
}

// Option configures an Emulator.
type Option func(*Emulator)

// WithLogger sets the logger. Writes (POST, PATCH, DELETE) are logged at
// Info with their bodies as received ("graph_emulator_request"), reads at
// Debug, and changes made as someone else in Intune at Info
// ("graph_emulator_external_change").
func WithLogger(l *slog.Logger) Option {
	return func(e *Emulator) {
		if l != nil {
			e.log = l
		}
	}
}

// WithStateFile loads the objects from path at start (if it exists) and
// saves them in the background, atomically (temp file + fsync + rename,
// mode 0600), at most every 250 ms after a change. Call Close at shutdown to
// write what is pending; a crash can lose the last ~250 ms of changes, which
// is acceptable for a dev-mode stand-in.
func WithStateFile(path string) Option { return func(e *Emulator) { e.stateFile = path } }

// WithPageSize sets how many objects a list page holds (default 5, so
// paging is always exercised). See also SetPageSize.
func WithPageSize(n int) Option {
	return func(e *Emulator) {
		if n > 0 {
			e.pageSize = n
		}
	}
}

// WithWriteLimit enforces an Intune-like throttle: more than n writes
// (POST, PATCH, DELETE) within window get 429 with Retry-After in whole
// seconds and a Graph error body. Off by default. Intune's documented limit
// for this resource is 100 per 20 s per app. See also SetWriteLimit.
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
// than overwritten, and a background flusher is started: call Close when
// done.
func New(opts ...Option) *Emulator {
	e := &Emulator{
		log:         slog.New(slog.DiscardHandler),
		pageSize:    5,
		now:         time.Now,
		patchStatus: http.StatusNoContent,
		control:     true,
		objects:     map[string]*stored{},
		classes:     DefaultClasses(),
	}
	for _, o := range opts {
		o(e)
	}
	if e.stateFile != "" {
		e.load()
		e.startFlusher()
	}
	e.controlMux = e.newControlMux()
	return e
}

// Objects returns the current objects, in creation order.
func (e *Emulator) Objects() []graph.Association {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]graph.Association, 0, len(e.objects))
	for _, s := range e.order {
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
// counter (and saves the empty state when a state file is set), and restores
// the default classes, readable. The page size and write limit stay as set.
func (e *Emulator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.objects = map[string]*stored{}
	e.order = nil
	e.requests = nil
	e.faults = nil
	e.latency = 0
	e.writes = nil
	e.classes = DefaultClasses()
	e.classesForbidden = false
	e.changedLocked()
}

// addLocked stores a new object with the next creation sequence number.
// Caller holds mu.
func (e *Emulator) addLocked(a graph.Association) {
	e.seq++
	s := &stored{Seq: e.seq, Obj: a}
	e.objects[strings.ToLower(a.ID)] = s
	e.order = append(e.order, s) // seq only grows, so order stays sorted
}

// removeLocked deletes the object with the lower-case id key and reports
// whether it existed. Caller holds mu.
func (e *Emulator) removeLocked(key string) (*stored, bool) {
	s, ok := e.objects[key]
	if !ok {
		return nil, false
	}
	delete(e.objects, key)
	if i, found := slices.BinarySearchFunc(e.order, s.Seq, bySeq); found {
		e.order = slices.Delete(e.order, i, i+1)
	}
	return s, true
}

// firstAfterLocked is the index in order of the first object created after
// seq. Caller holds mu.
func (e *Emulator) firstAfterLocked(seq int64) int {
	i, found := slices.BinarySearchFunc(e.order, seq, bySeq)
	if found {
		i++
	}
	return i
}

func bySeq(s *stored, seq int64) int { return cmp.Compare(s.Seq, seq) }

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
//	POST   /_emulator/faults        inject a Fault (JSON object or array)
//	DELETE /_emulator/faults        clear faults
//	POST   /_emulator/latency       {"latency":"250ms"} for every request
//	POST   /_emulator/pagesize      {"pageSize":20} (SetPageSize)
//	POST   /_emulator/writelimit    {"writes":100,"window":"20s"}; writes 0 turns it off (SetWriteLimit)
//	GET    /_emulator/requests      recorded requests
//	GET    /_emulator/objects       current objects
//	POST   /_emulator/objects       create as someone else in Intune: a body like Graph's POST; 201 + object (PutObject)
//	PATCH  /_emulator/objects/{id}  change as someone else: a body like Graph's PATCH; 200 + object, 404 (ChangeObject)
//	DELETE /_emulator/objects/{id}  delete as someone else: 204, 404 (RemoveObject)
//	GET    /_emulator/classes       current classes (Classes)
//	POST   /_emulator/classes       replace them: a JSON array of {id,displayName,classCode,externalId}; empty body or null restores the defaults (SetClasses)
//	POST   /_emulator/classes/forbidden  {"forbidden":true} answers 403 to classes reads; false ends it (SetClassesForbidden)
//	POST   /_emulator/reset         Reset
//
// Control requests are not API requests: they are not recorded in
// Requests, do not count against the write limit and ignore faults and
// latency.
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
	if rec.Method == http.MethodPost || rec.Method == http.MethodPatch || rec.Method == http.MethodDelete {
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
	if x.isClasses() {
		x.serveClasses()
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
