package web

import (
	"context"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cartclass/cartclass/push"
)

// Metrics is what cartclass tells Prometheus, on a listener of its own
// (CARTCLASS_METRICS_ADDR), never the public one. Every label value is bounded: route
// patterns of the route table, HTTP methods and statuses, push outcomes; never a raw path,
// an id or a name.
//
// main makes one, wraps the Graph client's transport with GraphTransport and hands it to
// New with WithMetrics; the server adds what only it knows (the outbox, sessions, pauses,
// the last read of Intune), read at each scrape.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests  *prometheus.CounterVec   // route, status
	httpDuration  *prometheus.HistogramVec // route
	graphRequests *prometheus.CounterVec   // method, status
	graphDuration *prometheus.HistogramVec // method
	graphThrottle prometheus.Counter
	pushes        *prometheus.CounterVec // outcome

	// The last answer from Graph, for /readyz.
	mu          sync.Mutex
	lastContact graphContact
}

// graphContact is the last request made to Graph and how it went.
type graphContact struct {
	At      time.Time
	Status  int // 0: no answer came back
	OK      bool
	LastOK  time.Time // the last request that Graph answered as it should
	Problem string    // what went wrong, in words, when !OK
}

// WithMetrics has the server count into m (one Metrics per Server). Without it the
// server keeps metrics of its own that nothing serves.
func WithMetrics(m *Metrics) Option {
	return func(s *Server) { s.metrics = m }
}

// NewMetrics returns the metrics of one cartclass, with Go's and the process's own.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cartclass_http_requests_total",
		Help: "HTTP requests answered, by route pattern of the route table and status code.",
	}, []string{"route", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cartclass_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	m.graphRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cartclass_graph_requests_total",
		Help: `Requests sent to Microsoft Graph, by method and status code ("error": no answer came back).`,
	}, []string{"method", "status"})
	m.graphDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cartclass_graph_request_duration_seconds",
		Help:    "Time from sending a request to Microsoft Graph to its answer's headers, by method.",
		Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"method"})
	m.graphThrottle = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cartclass_graph_throttled_total",
		Help: "Answers 429 Too Many Requests from Microsoft Graph.",
	})
	m.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cartclass_pushes_total",
		Help: "Attempts to send a change to Microsoft Graph, by outcome: delivered, conflict (changed in Intune too: waits for an admin), retry, throttled, permission, signin, failed, deleted (gone from Intune), postponed, awaiting_read.",
	}, []string{"outcome"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cartclass_build_info",
		Help: "Always 1; the labels say which cartclass runs.",
	}, []string{"version", "revision", "goversion"})
	version, revision, goversion := "unknown", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goversion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	build.WithLabelValues(version, revision, goversion).Set(1)
	m.reg.MustRegister(m.httpRequests, m.httpDuration, m.graphRequests, m.graphDuration,
		m.graphThrottle, m.pushes, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus's text format, for the metrics listener.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// GraphTransport wraps next (nil: http.DefaultTransport) so that every request to Graph is
// counted and timed, and the last one's outcome is kept for /readyz.
func (m *Metrics) GraphTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return graphTransport{next: next, m: m}
}

type graphTransport struct {
	next http.RoundTripper
	m    *Metrics
}

func (t graphTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	took := time.Since(start)
	method := boundedMethod(r.Method)
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.m.graphRequests.WithLabelValues(method, status).Inc()
	t.m.graphDuration.WithLabelValues(method).Observe(took.Seconds())
	c := graphContact{At: start}
	switch {
	case err != nil:
		c.Problem = "no answer from Microsoft Graph"
		if r.Context().Err() != nil {
			return resp, err // cartclass gave up (stopping, a deadline of its own): says nothing of Graph
		}
	default:
		c.Status = resp.StatusCode
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			t.m.graphThrottle.Inc()
			c.Problem = "Microsoft Graph is throttling cartclass (429)"
		case resp.StatusCode >= 500:
			c.Problem = "Microsoft Graph answered " + strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			c.Problem = "Microsoft Graph refused cartclass's token (" + strconv.Itoa(resp.StatusCode) + ")"
		default:
			// 2xx, and the 4xx that are about one request (404 of a deleted object, 400
			// of a value, 412): Graph is there and answers.
			c.OK = true
		}
	}
	t.m.mu.Lock()
	c.LastOK = t.m.lastContact.LastOK
	if c.OK {
		c.LastOK = start
	}
	t.m.lastContact = c
	t.m.mu.Unlock()
	return resp, err
}

// boundedMethod keeps the method label to the methods there are.
func boundedMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut, http.MethodHead:
		return m
	}
	return "other"
}

// graphContact is the last request to Graph and how it went (zero At: none yet).
func (m *Metrics) graphContact() graphContact {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastContact
}

// pushOutcome counts one push attempt's outcome.
func (m *Metrics) pushOutcome(outcome string) { m.pushes.WithLabelValues(outcome).Inc() }

// instrument counts and times every request by the route pattern that served it. The
// mux writes the pattern into the request it routes; routed (the innermost handler,
// around the mux) copies it here. A request answered before routing (403 cross-site, 413)
// takes the pattern the mux would have chosen.
func (m *Metrics) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var pattern string
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(context.WithValue(r.Context(), patternKey, &pattern))
		defer func() {
			if pattern == "" {
				_, pattern = mux.Handler(r)
			}
			if pattern == "" {
				pattern = "other" // a redirect to the cleaned path
			}
			status := sw.status
			if p := recover(); p != nil {
				// A handler giving up on a client that left (ErrAbortHandler, as an export
				// does) after its answer began is not a server error: the status stands.
				if p != http.ErrAbortHandler || !sw.wroteHeader {
					status = http.StatusInternalServerError
				}
				defer panic(p)
			}
			m.httpRequests.WithLabelValues(pattern, strconv.Itoa(status)).Inc()
			m.httpDuration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// patternKey holds, in a request's context, where routed writes the route pattern.
const patternKey ctxKey = 100

// routed runs the mux and hands the pattern it chose to instrument.
func routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if p, ok := r.Context().Value(patternKey).(*string); ok {
			*p = r.Pattern
		}
	})
}

// statusWriter remembers the status a handler answered with. Unwrap lets
// http.ResponseController reach the connection (flushes, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// FlushError flushes through to the connection and reports a client gone meanwhile, as
// http.ResponseController.Flush does on the bare writer (a streamed export checks it).
func (w *statusWriter) FlushError() error {
	w.wroteHeader = true
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Flush() { w.FlushError() }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serverCollector reads, at each scrape, what the server knows: the outbox, the pause,
// the last read of Intune and the sessions.
type serverCollector struct {
	s *Server

	depth, oldest, pause, lastRead, sessions *prometheus.Desc
}

func newServerCollector(s *Server) *serverCollector {
	return &serverCollector{s: s,
		depth:    prometheus.NewDesc("cartclass_outbox_depth", "Changes saved in cartclass and waiting to be sent to Microsoft Graph.", nil, nil),
		oldest:   prometheus.NewDesc("cartclass_outbox_oldest_age_seconds", "How long the oldest waiting change has waited (0: none waits).", nil, nil),
		pause:    prometheus.NewDesc("cartclass_graph_pause_seconds", "Seconds left in the current pause of sending to Graph, by reason (throttled: Graph's Retry-After; permission, credentials: until re-checked); 0 when not paused.", []string{"reason"}, nil),
		lastRead: prometheus.NewDesc("cartclass_intune_last_read_success_timestamp_seconds", "Unix time when the last complete read of every association in Intune began (absent: none yet).", nil, nil),
		sessions: prometheus.NewDesc("cartclass_sessions_active", "Sessions signed in and not expired.", nil, nil),
	}
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.oldest
	ch <- c.pause
	ch <- c.lastRead
	ch <- c.sessions
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ctx, cancel := context.WithTimeout(s.baseCtx, 5*time.Second)
	defer cancel()
	if s.pusher != nil {
		if st, err := s.pusher.Stats(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Depth))
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, st.OldestAge.Seconds())
		} else {
			ch <- prometheus.NewInvalidMetric(c.depth, err)
		}
		ps := s.pusher.Status()
		for _, reason := range []push.Reason{push.ReasonThrottled, push.ReasonPermission, push.ReasonCredentials} {
			left := 0.0
			if ps.Paused && ps.Reason == reason {
				left = max(time.Until(ps.Until).Seconds(), 0)
			}
			ch <- prometheus.MustNewConstMetric(c.pause, prometheus.GaugeValue, left, string(reason))
		}
		t := s.pusher.LastCompleteRead()
		if rs := s.pusher.ReadStatus(); t.IsZero() && rs.HaveLast && rs.Last.Complete && rs.Last.Error == "" {
			t = rs.Last.StartedAt // an earlier run's
		}
		if !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastRead, prometheus.GaugeValue, float64(t.UnixNano())/1e9)
		}
	}
	now := s.now()
	n, err := s.store.CountSessions(ctx, now.Add(-s.cfg.SessionMax), now.Add(-s.cfg.SessionIdle))
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sessions, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(n))
}
