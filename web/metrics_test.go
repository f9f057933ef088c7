package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// metricsEnv is cartclass pushing to the emulator through a Graph client whose transport
// counts into Metrics, as main wires it, with /metrics served apart.
type metricsEnv struct {
	*graphEnv
	metrics string // the metrics listener's URL
}

func newMetricsEnv(t *testing.T, emuOpts ...emulator.Option) *metricsEnv {
	t.Helper()
	m := web.NewMetrics()
	g := newGraphEnvWiring(t, nil, nil,
		[]graph.Option{graph.WithHTTPClient(&http.Client{Transport: m.GraphTransport(nil)})},
		[]web.Option{web.WithMetrics(m)}, emuOpts...)
	msrv := httptest.NewServer(m.Handler())
	t.Cleanup(msrv.Close)
	return &metricsEnv{graphEnv: g, metrics: msrv.URL}
}

// sample is one line of the text exposition: a name, its labels and value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// scrape reads the metrics as Prometheus would, and returns every sample.
func (m *metricsEnv) scrape(t *testing.T) ([]sample, string) {
	t.Helper()
	res, err := http.Get(m.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", res.StatusCode)
	}
	var out []sample
	var raw strings.Builder
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		raw.WriteString(line + "\n")
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		p := sampleLine.FindStringSubmatch(line)
		if p == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		v, err := strconv.ParseFloat(p[3], 64)
		if err != nil {
			t.Fatalf("value of %q: %v", line, err)
		}
		s := sample{name: p[1], labels: map[string]string{}, value: v}
		for _, l := range labelPair.FindAllStringSubmatch(p[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out, raw.String()
}

// value is the sample of name whose labels include want; ok is false without one.
func value(samples []sample, name string, want map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func (m *metricsEnv) waitValue(t *testing.T, name string, labels map[string]string, cond func(float64) bool) float64 {
	t.Helper()
	var v float64
	eventually(t, name+" to reach the expected value", func() bool {
		s, _ := m.scrape(t)
		var ok bool
		v, ok = value(s, name, labels)
		return ok && cond(v)
	})
	return v
}

func TestMetricsCountWhatHappened(t *testing.T) {
	m := newMetricsEnv(t)
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }

	// A save reaches Graph: a push delivered, a POST answered 201, the page's route.
	id := m.create(t, url.Values{"displayName": {"Hall iPads"}, "version": {"1"}, "deviceCartIds": {"cart-1"}, "classroomIds": {"r1"}})
	m.waitState(t, id, store.SyncSynced)
	m.waitValue(t, "cartclass_pushes_total", map[string]string{"outcome": "delivered"}, atLeast(1))
	m.waitValue(t, "cartclass_graph_requests_total", map[string]string{"method": "POST", "status": "201"}, atLeast(1))
	m.waitValue(t, "cartclass_intune_last_read_success_timestamp_seconds", nil, func(v float64) bool {
		return v > float64(time.Now().Add(-time.Minute).Unix()) // the read after the sign-in
	})

	// Graph throttles the next POST: a 429 counted, pushing paused, the push "throttled".
	m.emu.Inject(emulator.Fault{Method: "POST", Count: 1, Status: 429, RetryAfter: "30"})
	m.create(t, url.Values{"displayName": {"Gym laptops"}, "version": {"1"}, "deviceCartIds": {"cart-2"}, "classroomIds": {"r2"}})
	m.waitValue(t, "cartclass_graph_throttled_total", nil, func(v float64) bool { return v == 1 })
	s, raw := m.scrape(t)
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"cartclass_graph_requests_total", map[string]string{"method": "POST", "status": "429"}, func(v float64) bool { return v == 1 }, "1"},
		{"cartclass_pushes_total", map[string]string{"outcome": "throttled"}, func(v float64) bool { return v == 1 }, "1"},
		{"cartclass_graph_pause_seconds", map[string]string{"reason": "throttled"}, func(v float64) bool { return v > 20 && v <= 30 }, "(20, 30]"},
		{"cartclass_graph_pause_seconds", map[string]string{"reason": "permission"}, func(v float64) bool { return v == 0 }, "0"},
		{"cartclass_outbox_depth", nil, func(v float64) bool { return v == 1 }, "1 (the throttled save)"},
		{"cartclass_outbox_oldest_age_seconds", nil, func(v float64) bool { return v >= 0 && v < 60 }, "[0, 60)"},
		{"cartclass_sessions_active", nil, func(v float64) bool { return v == 1 }, "1"},
		{"cartclass_http_requests_total", map[string]string{"route": "POST /associations", "status": "303"}, func(v float64) bool { return v == 2 }, "2"},
		{"cartclass_http_request_duration_seconds_count", map[string]string{"route": "POST /associations"}, func(v float64) bool { return v == 2 }, "2"},
		{"cartclass_graph_request_duration_seconds_count", map[string]string{"method": "POST"}, func(v float64) bool { return v == 2 }, "2"},
		{"cartclass_build_info", nil, func(v float64) bool { return v == 1 }, "1"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
	}
	for _, c := range checks {
		v, ok := value(s, c.name, c.labels)
		if !ok || !c.ok(v) {
			t.Errorf("%s%v = %v (present %v), want %s", c.name, c.labels, v, ok, c.want)
		}
	}

	// Everything the example dashboard and alerts draw is there, under the type they assume.
	for _, file := range []string{"../deploy/grafana-dashboard.json", "../deploy/alerts.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`cartclass_[a-z_]+`).FindAllString(string(b), -1) {
			family := name
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if f, ok := strings.CutSuffix(name, suffix); ok && strings.Contains(raw, "# TYPE "+f+" histogram") {
					family = f
				}
			}
			if !strings.Contains(raw, "# TYPE "+family+" ") {
				t.Errorf("%s uses %s, which cartclass does not expose", file, name)
			}
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", raw)
	}
}

func TestMetricsLabelsAreRoutePatterns(t *testing.T) {
	m := newMetricsEnv(t)
	id := m.create(t, url.Values{"displayName": {"Library carts"}, "version": {"1"}, "deviceCartIds": {"cart-lib"}, "classroomIds": {"lib"}})
	path := "/associations/" + strconv.FormatInt(id, 10)
	do(t, m.admin, "GET", m.url+path, nil, nil)
	do(t, m.admin, "GET", m.url+"/no-such-page/secret-looking-id-7f3a", nil, nil)
	do(t, m.admin, "GET", m.url+"/associations?q=zebrafinch", nil, nil)
	// A cross-site POST is refused before routing; it still counts under its route.
	do(t, m.admin, "POST", m.url+"/associations", url.Values{"displayName": {"x"}}, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})

	s, raw := m.scrape(t)
	for _, want := range []struct {
		route, status string
	}{
		{"GET /associations/{id}", "200"},
		{"/", "404"},
		{"GET /associations", "200"},
		{"POST /associations", "403"},
	} {
		if _, ok := value(s, "cartclass_http_requests_total", map[string]string{"route": want.route, "status": want.status}); !ok {
			t.Errorf("no cartclass_http_requests_total{route=%q,status=%q}", want.route, want.status)
		}
	}
	for _, leak := range []string{path + `"`, "secret-looking-id", "zebrafinch", "evil.example", "Library carts"} {
		if strings.Contains(raw, leak) {
			t.Errorf("the metrics hold %q: a label value is not bounded", leak)
		}
	}
	for _, smp := range s {
		if r, ok := smp.labels["route"]; ok && r != "/" && r != "other" && !strings.Contains(r, " /") {
			t.Errorf("route label %q is not a route pattern", r)
		}
	}
}

// readyz GETs /readyz and decodes it.
func readyz(t *testing.T, base string) (int, map[string]any, string) {
	t.Helper()
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("/readyz is not JSON: %v: %s", err, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/readyz Content-Type = %q", ct)
	}
	return res.StatusCode, body, string(b)
}

func TestReadyzReportsGraphAndStaysReadyWhenGraphFails(t *testing.T) {
	m := newMetricsEnv(t)
	id := m.create(t, url.Values{"displayName": {"Art room"}, "version": {"1"}, "deviceCartIds": {"cart-art"}, "classroomIds": {"art"}})
	m.waitState(t, id, store.SyncSynced)
	status, body, raw := readyz(t, m.url)
	if status != http.StatusOK || body["ready"] != true {
		t.Fatalf("/readyz = %d %s", status, raw)
	}
	g := body["graph"].(map[string]any)
	if g["contacted"] != true || g["ok"] != true || g["last_success"] == nil {
		t.Errorf("graph after a delivered save = %v", g)
	}

	// Graph goes down: cartclass still serves (saves wait in the outbox), and says so.
	m.emu.Inject(emulator.Fault{Status: 503})
	m.create(t, url.Values{"displayName": {"Music room"}, "version": {"1"}, "deviceCartIds": {"cart-mus"}, "classroomIds": {"mus"}})
	eventually(t, "/readyz to report Graph failing", func() bool {
		_, body, _ = readyz(t, m.url)
		return body["graph"].(map[string]any)["ok"] == false
	})
	status, body, raw = readyz(t, m.url)
	g = body["graph"].(map[string]any)
	if status != http.StatusOK || body["ready"] != true {
		t.Errorf("/readyz with Graph down = %d %s; want 200, ready: Graph does not take cartclass out", status, raw)
	}
	if g["problem"] != "Microsoft Graph answered 503 Service Unavailable" || g["last_status"] != 503.0 || g["last_success"] == nil {
		t.Errorf("graph while failing = %v", g)
	}
	for _, secret := range []string{"test-secret", m.cfg.OIDCIssuer, "cartclass-test", "localhost"} {
		if strings.Contains(raw, secret) {
			t.Errorf("/readyz tells %q", secret)
		}
	}
}

func TestReadyzWithoutIdentityProvider(t *testing.T) {
	// The provider is down at start-up: cartclass starts, but is not ready: nobody could
	// sign in. The database still answers, and /healthz (liveness) stays 200.
	down := httptest.NewServer(nil)
	issuer := down.URL
	down.Close()
	app, err, _ := newAppWithIssuer(t, issuer) // client id "id", secret "s"
	if err != nil {
		t.Fatalf("web.New with the provider down: %v", err)
	}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)

	status, body, raw := readyz(t, srv.URL)
	if status != http.StatusServiceUnavailable || body["ready"] != false {
		t.Fatalf("/readyz = %d %s, want 503 not ready", status, raw)
	}
	idp := body["identity_provider"].(map[string]any)
	if idp["ok"] != false || idp["problem"] != "the identity provider's OpenID configuration could not be read yet" {
		t.Errorf("identity_provider = %v", idp)
	}
	if db := body["database"].(map[string]any); db["ok"] != true {
		t.Errorf("database = %v", db)
	}
	if g := body["graph"].(map[string]any); g["contacted"] != false {
		t.Errorf("graph = %v, want not contacted", g)
	}
	if strings.Contains(raw, issuer) || strings.Contains(raw, `"id"`) || strings.Contains(raw, `"s"`) {
		t.Errorf("/readyz tells the issuer, client id or secret: %s", raw)
	}
	res, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 (alive, only not ready)", res.StatusCode)
	}
}

func TestMetricsAddrConfig(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		addr, metrics, want string
	}{
		{"127.0.0.1:8080", "127.0.0.1:9464", ""},
		{"127.0.0.1:8080", "", ""},
		{"127.0.0.1:8080", "127.0.0.1:8080", `CARTCLASS_METRICS_ADDR="127.0.0.1:8080": is the port CARTCLASS_ADDR serves; metrics need a listener of their own, never the public one`},
		{":8080", "127.0.0.1:8080", "is the port CARTCLASS_ADDR serves"},
		{"127.0.0.1:8080", "0.0.0.0:8080", "is the port CARTCLASS_ADDR serves"},
		{"127.0.0.1:8080", "9090", `CARTCLASS_METRICS_ADDR="9090": not host:port; use one such as 127.0.0.1:9464`},
	} {
		vars := map[string]string{"CARTCLASS_ADDR": c.addr, "CARTCLASS_METRICS_ADDR": c.metrics, "CARTCLASS_SESSION_KEY": key}
		cfg, err := web.LoadConfig(func(k string) string { return vars[k] }, true)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s / %s: %v", c.addr, c.metrics, err)
		case c.want == "" && cfg.MetricsAddr != c.metrics:
			t.Errorf("%s / %s: MetricsAddr = %q", c.addr, c.metrics, cfg.MetricsAddr)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s / %s: error %v, want %q", c.addr, c.metrics, err, c.want)
		}
	}
}

// A download the client abandons is cut (ErrAbortHandler) after its 200 went out: it is
// counted as the 200 it was, never as a server error that would page someone.
func TestMetricsAbandonedExportIsNotAServerError(t *testing.T) {
	// Without Graph: nothing else writes while the rows are seeded.
	metrics := web.NewMetrics()
	e := newAuthEnv(t, nil, web.WithMetrics(metrics))
	c := e.browser(t)
	e.login(t, c, devidp.SubjectAdmin, "/")
	msrv := httptest.NewServer(metrics.Handler())
	t.Cleanup(msrv.Close)
	m := &metricsEnv{graphEnv: &graphEnv{authEnv: e, admin: c}, metrics: msrv.URL}
	seedRaw(t, rawDB(t, m.dbPath), 700)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", m.url+"/associations/export.csv", nil)
	req.AddCookie(m.sessionCookie(m.admin))
	w := &goneWriter{header: http.Header{}, cancel: cancel}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("handler ended with %v, want ErrAbortHandler", v)
			}
		}()
		m.app.ServeHTTP(w, req)
	}()
	s, raw := m.scrape(t)
	route := map[string]string{"route": "GET /associations/export.csv"}
	if v, ok := value(s, "cartclass_http_requests_total", map[string]string{"route": route["route"], "status": "200"}); !ok || v != 1 {
		t.Errorf("abandoned export counted as 200: %v (present %v)", v, ok)
	}
	if _, ok := value(s, "cartclass_http_requests_total", map[string]string{"route": route["route"], "status": "500"}); ok {
		t.Errorf("abandoned export counted as a 500:\n%s", raw)
	}
}
