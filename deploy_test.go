package main

// Checks of the deployment files: the Dockerfile, deploy/ and the README's examples. CI can
// run neither Docker nor systemd, so these tests keep the files true to the code: a setting
// misspelt in an example stops a school's cartclass from starting, and a dashboard that
// queries a metric nobody exports shows nothing.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/web"
)

// buildLinePrefix starts the one go build line that the Dockerfile and .ci/run share.
const buildLinePrefix = "CGO_ENABLED=0 go build"

// deployMetrics are the cartclass metrics the server exports (web/metrics.go). A test that
// the running server exposes exactly these is to come; until then this list is the contract
// the dashboard, the alerts and the README are checked against.
var deployMetrics = map[string]string{
	"cartclass_outbox_depth":                               "gauge",
	"cartclass_outbox_oldest_age_seconds":                  "gauge",
	"cartclass_pushes_total":                               "counter",
	"cartclass_graph_requests_total":                       "counter",
	"cartclass_graph_request_duration_seconds":             "histogram",
	"cartclass_graph_throttled_total":                      "counter",
	"cartclass_graph_pause_seconds":                        "gauge",
	"cartclass_intune_last_read_success_timestamp_seconds": "gauge",
	"cartclass_http_requests_total":                        "counter",
	"cartclass_http_request_duration_seconds":              "histogram",
	"cartclass_sessions_active":                            "gauge",
	"cartclass_build_info":                                 "gauge",
}

var (
	settingRE = regexp.MustCompile(`\bCARTCLASS_[A-Z0-9_]+`)
	// Hyphens are matched so that names like the volume cartclass_cartclass-data can be
	// told apart from metrics, which have none.
	metricRE = regexp.MustCompile(`\bcartclass_[a-z0-9_-]+`)
)

func readDeployFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deployFiles lists every file in deploy/ (whoever wrote it).
func deployFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("deploy")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() {
			files = append(files, filepath.Join("deploy", e.Name()))
		}
	}
	if len(files) == 0 {
		t.Fatal("deploy/ is empty")
	}
	return files
}

// unknownSettings lists the CARTCLASS_ names in text that are no setting of web.Vars. Test
// switches start with CARTCLASSTEST_, which the pattern does not match.
func unknownSettings(text string) []string {
	var bad []string
	for _, name := range settingRE.FindAllString(text, -1) {
		known := slices.ContainsFunc(web.Vars, func(v web.Var) bool { return v.Name == name })
		if !known && !slices.Contains(bad, name) {
			bad = append(bad, name)
		}
	}
	return bad
}

// metricNames are the cartclass_ metric names text mentions.
func metricNames(text string) []string {
	var names []string
	for _, name := range metricRE.FindAllString(text, -1) {
		if !strings.Contains(name, "-") {
			names = append(names, name)
		}
	}
	return names
}

// unknownMetrics lists the cartclass_ metric names in text that the server does not export
// (a histogram's _bucket, _sum and _count series count as the histogram).
func unknownMetrics(text string) []string {
	var bad []string
	for _, name := range metricNames(text) {
		if _, ok := deployMetrics[metricFamily(name)]; !ok && !slices.Contains(bad, name) {
			bad = append(bad, name)
		}
	}
	return bad
}

// metricFamily is the metric a series name belongs to.
func metricFamily(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && deployMetrics[base] == "histogram" {
			return base
		}
	}
	return name
}

// readmeCodeBlocks is the text inside the README's ``` fences.
func readmeCodeBlocks(readme string) string {
	var b strings.Builder
	in := false
	for line := range strings.Lines(readme) {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// readmeTableSettings are the names in the first column of the README's configuration table.
func readmeTableSettings(readme string) []string {
	var names []string
	for line := range strings.Lines(readme) {
		if !strings.HasPrefix(line, "| `CARTCLASS_") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		names = append(names, settingRE.FindAllString(first, -1)...)
	}
	return names
}

// envFile reads NAME=value lines, as systemd's EnvironmentFile and compose's env_file take
// them, skipping blank lines and # notes.
func envFile(text string) map[string]string {
	env := map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

// environ turns env into os.Environ form, giving a placeholder session key a real one so
// that the rest of the example is what gets checked.
func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		if k == "CARTCLASS_SESSION_KEY" && strings.HasPrefix(v, "<") {
			v = base64.StdEncoding.EncodeToString(make([]byte, 32))
		}
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// systemdUnit reads a unit file into key → values in order (the last one is what counts for
// most keys), ignoring section headers and comments.
func systemdUnit(text string) map[string][]string {
	keys := map[string][]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		keys[strings.TrimSpace(k)] = append(keys[strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return keys
}

// systemdHardening are the unit's keys and the value each must have last.
var systemdHardening = map[string]string{
	"DynamicUser":             "yes",
	"StateDirectory":          "cartclass",
	"ProtectSystem":           "strict",
	"ProtectHome":             "yes",
	"PrivateTmp":              "yes",
	"PrivateDevices":          "yes",
	"NoNewPrivileges":         "yes",
	"ProtectKernelTunables":   "yes",
	"ProtectKernelModules":    "yes",
	"ProtectKernelLogs":       "yes",
	"ProtectControlGroups":    "yes",
	"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	"RestrictNamespaces":      "yes",
	"LockPersonality":         "yes",
	"MemoryDenyWriteExecute":  "yes",
	"SystemCallFilter":        "@system-service",
	"SystemCallArchitectures": "native",
	"CapabilityBoundingSet":   "",
	"UMask":                   "0077",
	"EnvironmentFile":         "/etc/cartclass/cartclass.env",
	"Restart":                 "on-failure",
	"KillSignal":              "SIGTERM",
}

// systemdProblems says what the unit lacks, given the shutdown timeout cartclass will use.
func systemdProblems(unit map[string][]string, shutdown time.Duration) []string {
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(systemdHardening)) {
		vs := unit[k]
		if len(vs) == 0 {
			problems = append(problems, fmt.Sprintf("%s= is missing (want %s=%s)", k, k, systemdHardening[k]))
		} else if last := vs[len(vs)-1]; last != systemdHardening[k] {
			problems = append(problems, fmt.Sprintf("%s=%s, want %s=%s", k, last, k, systemdHardening[k]))
		}
	}
	stop := unit["TimeoutStopSec"]
	if len(stop) == 0 {
		return append(problems, "TimeoutStopSec= is missing (systemd's default may be shorter than the shutdown)")
	}
	d, err := systemdSeconds(stop[len(stop)-1])
	if err != nil {
		problems = append(problems, err.Error())
	} else if d <= shutdown {
		problems = append(problems, fmt.Sprintf("TimeoutStopSec=%s does not exceed CARTCLASS_SHUTDOWN_TIMEOUT (%s): systemd would kill cartclass mid-shutdown", stop[len(stop)-1], shutdown))
	}
	return problems
}

// systemdSeconds parses a systemd time span: plain seconds, or a Go-style duration.
func systemdSeconds(s string) (time.Duration, error) {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		s += "s"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("TimeoutStopSec=%s: not a time span this test reads (seconds, or like 30s)", s)
	}
	return d, nil
}

// composeService is what the compose checks read of one service.
type composeService struct {
	ports       []string
	env         map[string]string
	networkMode string
	stopGrace   string
	ipv4        string // its fixed address on a network (ipv4_address)
}

// composeFile reads the services of a compose file, and the subnets it declares: a reading
// by indentation that is enough for deploy/compose.yaml (two spaces a level), not YAML.
func composeFile(text string) (map[string]*composeService, []string) {
	services := map[string]*composeService{}
	var subnets []string
	var top, svcKey string
	var svc *composeService
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		raw := sc.Text()
		if i := strings.Index(raw, " #"); i >= 0 {
			raw = raw[:i]
		}
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " "))
		key, value, isKey := strings.Cut(line, ":")
		value = unquote(strings.TrimSpace(value))
		if s, ok := strings.CutPrefix(line, "- subnet:"); ok {
			subnets = append(subnets, unquote(strings.TrimSpace(s)))
		}
		switch {
		case indent == 0:
			top, svc, svcKey = key, nil, ""
		case top != "services":
		case indent == 2 && isKey:
			svc = &composeService{env: map[string]string{}}
			services[key] = svc
			svcKey = ""
		case svc == nil:
		case indent == 4 && isKey:
			svcKey = key
			switch key {
			case "network_mode":
				svc.networkMode = value
			case "stop_grace_period":
				svc.stopGrace = value
			case "ports":
				if value != "" { // ports: ["8080:8080"]
					svc.ports = append(svc.ports, value)
				}
			}
		case indent > 4 && svcKey == "networks" && key == "ipv4_address":
			svc.ipv4 = value
		case indent > 4 && svcKey == "ports":
			svc.ports = append(svc.ports, unquote(strings.TrimSpace(strings.TrimPrefix(line, "-"))))
		case indent > 4 && svcKey == "environment":
			item := strings.TrimSpace(strings.TrimPrefix(line, "- "))
			if k, v, ok := strings.Cut(item, "="); ok && !strings.Contains(k, ":") {
				svc.env[k] = unquote(v)
			} else if k, v, ok := strings.Cut(item, ":"); ok {
				svc.env[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
			}
		}
	}
	return services, subnets
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// composeProblems says how the compose file exposes cartclass or cuts its shutdown short.
func composeProblems(services map[string]*composeService, shutdown time.Duration) []string {
	svc := services["cartclass"]
	if svc == nil {
		return []string{"no cartclass service"}
	}
	var problems []string
	if len(svc.ports) > 0 {
		problems = append(problems, fmt.Sprintf("cartclass publishes ports %q: only Caddy may reach it, and its metrics must never be published", svc.ports))
	}
	if svc.networkMode == "host" {
		problems = append(problems, "cartclass uses network_mode: host, which publishes every port it listens on")
	}
	metrics := svc.env["CARTCLASS_METRICS_ADDR"]
	if metrics == "" {
		problems = append(problems, "cartclass sets no CARTCLASS_METRICS_ADDR")
	} else if _, port, err := net.SplitHostPort(metrics); err == nil {
		for name, other := range services {
			for _, p := range other.ports {
				if other.networkMode == "service:cartclass" && strings.Contains(p, port) {
					problems = append(problems, fmt.Sprintf("%s publishes %q in cartclass's network namespace: that is the metrics port", name, p))
				}
			}
		}
	}
	if d, err := time.ParseDuration(svc.stopGrace); err != nil || d <= shutdown {
		problems = append(problems, fmt.Sprintf("cartclass's stop_grace_period %q does not exceed CARTCLASS_SHUTDOWN_TIMEOUT (%s): Docker would kill it mid-shutdown (its default is 10s)", svc.stopGrace, shutdown))
	}
	return problems
}

// shutdownTimeout is the CARTCLASS_SHUTDOWN_TIMEOUT an install from env gets.
func shutdownTimeout(t *testing.T, env map[string]string) time.Duration {
	t.Helper()
	v := web.Value(func(k string) string { return env[k] }, "CARTCLASS_SHUTDOWN_TIMEOUT", false)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("CARTCLASS_SHUTDOWN_TIMEOUT %q: %v", v, err)
	}
	return d
}

func TestDockerfileBuildLineMatchesCI(t *testing.T) {
	find := func(path, prefix string) []string {
		var lines []string
		for line := range strings.Lines(readDeployFile(t, path)) {
			if l, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok && strings.HasPrefix(l, buildLinePrefix) {
				lines = append(lines, l)
			}
		}
		return lines
	}
	docker := find("Dockerfile", "RUN ")
	if len(docker) != 1 {
		t.Fatalf("Dockerfile: want one RUN line starting with %q, got %q", buildLinePrefix, docker)
	}
	ci := find(".ci/run", "")
	if len(ci) == 0 {
		t.Fatalf(".ci/run has no line starting with %q: CI cannot pull images, so it must build with the Dockerfile's line:\n  %s", buildLinePrefix, docker[0])
	}
	for _, l := range ci {
		if l != docker[0] {
			t.Errorf("the build lines differ; CI checks the Dockerfile's build with its own:\n  Dockerfile: %s\n  .ci/run:    %s", docker[0], l)
		}
	}
}

func TestDockerfileImage(t *testing.T) {
	df := readDeployFile(t, "Dockerfile")
	gomod := readDeployFile(t, "go.mod")
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	for _, want := range []string{
		"FROM golang:" + goLine[1] + "-", // the toolchain go.mod asks for (the images set GOTOOLCHAIN=local)
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build --chown=65532:65532 /data /data",
		"VOLUME /data",
		"USER nonroot",
		"EXPOSE 8080",
		`ENTRYPOINT ["/cartclass"]`,
		`CMD ["/cartclass", "healthcheck"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The exec form is JSON: a stray quote would make Docker run it through a shell that
	// distroless does not have.
	for line := range strings.Lines(df) {
		for _, instr := range []string{"ENTRYPOINT ", "CMD "} {
			if i := strings.Index(line, instr+"["); i >= 0 && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				var argv []string
				if err := json.Unmarshal([]byte(strings.TrimSpace(line[i+len(instr):])), &argv); err != nil {
					t.Errorf("%s is not valid exec form: %v", strings.TrimSpace(line), err)
				}
			}
		}
	}
	ignore := readDeployFile(t, ".dockerignore")
	for line := range strings.Lines(ignore) {
		if p := strings.TrimSpace(line); p == ".git" || p == ".git/" || p == "**/.git" {
			t.Errorf(".dockerignore leaves out .git: `cartclass -version` would show no revision")
		}
	}
	if !strings.Contains(ignore, "\ndeploy/cartclass.env\n") {
		t.Errorf(".dockerignore must leave out deploy/cartclass.env (the compose install's secrets)")
	}
}

func TestDeploySettingNamesExist(t *testing.T) {
	files := append(deployFiles(t), "Dockerfile")
	for _, f := range files {
		if bad := unknownSettings(readDeployFile(t, f)); len(bad) > 0 {
			t.Errorf("%s names %v, which cartclass does not know: it would refuse to start (web.Vars lists the settings)", f, bad)
		}
	}
	readme := readDeployFile(t, "README.md")
	if bad := unknownSettings(readmeCodeBlocks(readme)); len(bad) > 0 {
		t.Errorf("README.md's code blocks name %v, which cartclass does not know", bad)
	}
	if bad := unknownSettings(strings.Join(readmeTableSettings(readme), " ")); len(bad) > 0 {
		t.Errorf("README.md's configuration table names %v, which cartclass does not know", bad)
	}
}

func TestDeployReadmeDocumentsEverySetting(t *testing.T) {
	table := readmeTableSettings(readDeployFile(t, "README.md"))
	for _, v := range web.Vars {
		if !slices.Contains(table, v.Name) {
			t.Errorf("README.md's configuration table has no row for %s", v.Name)
		}
	}
}

func TestDeployEnvExampleLoads(t *testing.T) {
	env := envFile(readDeployFile(t, "deploy/cartclass.env.example"))
	for _, k := range []string{"CARTCLASS_PUBLIC_URL", "CARTCLASS_ADDR", "CARTCLASS_DB", "CARTCLASS_OIDC_ISSUER",
		"CARTCLASS_OIDC_CLIENT_ID", "CARTCLASS_OIDC_CLIENT_SECRET", "CARTCLASS_SESSION_KEY", "CARTCLASS_TRUSTED_PROXIES",
		"CARTCLASS_BACKUP_DIR", "CARTCLASS_METRICS_ADDR", "CARTCLASS_TIMEZONE"} {
		if env[k] == "" {
			t.Errorf("deploy/cartclass.env.example does not set %s", k)
		}
	}
	cfg, err := web.LoadEnv(environ(env), false)
	if err != nil {
		t.Fatalf("cartclass would not start with deploy/cartclass.env.example: %v", err)
	}
	if !cfg.Secure() {
		t.Errorf("the example's CARTCLASS_PUBLIC_URL %q is not https: Entra ID takes http redirect URIs for localhost only", env["CARTCLASS_PUBLIC_URL"])
	}
	if u, _ := url.Parse(env["CARTCLASS_PUBLIC_URL"]); u == nil || u.Path != "" {
		t.Errorf("the example's CARTCLASS_PUBLIC_URL %q should be an origin, without path or slash", env["CARTCLASS_PUBLIC_URL"])
	}

	// The container install: the same file, with compose.yaml's environment on top.
	services, subnets := composeFile(readDeployFile(t, "deploy/compose.yaml"))
	svc := services["cartclass"]
	if svc == nil {
		t.Fatal("deploy/compose.yaml has no cartclass service")
	}
	merged := map[string]string{}
	for k, v := range env {
		merged[k] = v
	}
	for k, v := range svc.env {
		merged[k] = v
	}
	if _, err := web.LoadEnv(environ(merged), false); err != nil {
		t.Errorf("cartclass would not start in deploy/compose.yaml: %v", err)
	}
	// Only Caddy is trusted to name the client: its fixed address, inside the network's
	// subnet; never the whole subnet, which holds the Docker host's gateway too.
	caddy := services["caddy"]
	if caddy == nil || caddy.ipv4 == "" {
		t.Fatal("deploy/compose.yaml gives Caddy no fixed ipv4_address")
	}
	if got := svc.env["CARTCLASS_TRUSTED_PROXIES"]; got != caddy.ipv4 {
		t.Errorf("compose: CARTCLASS_TRUSTED_PROXIES=%q, want Caddy's address %q alone", got, caddy.ipv4)
	}
	if len(subnets) != 1 {
		t.Fatalf("compose: subnets %q, want one", subnets)
	}
	if _, n, err := net.ParseCIDR(subnets[0]); err != nil || !n.Contains(net.ParseIP(caddy.ipv4)) {
		t.Errorf("compose: Caddy's %s is not in the network's subnet %s", caddy.ipv4, subnets[0])
	}
}

func TestSystemdUnitHardening(t *testing.T) {
	unit := systemdUnit(readDeployFile(t, "deploy/cartclass.service"))
	env := envFile(readDeployFile(t, "deploy/cartclass.env.example"))
	for _, p := range systemdProblems(unit, shutdownTimeout(t, env)) {
		t.Error("deploy/cartclass.service: " + p)
	}
	// ProtectSystem=strict leaves only the state folder writable: the database and the
	// backups must live in it.
	state := "/var/lib/" + systemdHardening["StateDirectory"] + "/"
	paths := map[string]string{"CARTCLASS_DB": env["CARTCLASS_DB"], "CARTCLASS_BACKUP_DIR": env["CARTCLASS_BACKUP_DIR"]}
	for _, e := range unit["Environment"] {
		for _, kv := range strings.Fields(e) {
			if k, v, _ := strings.Cut(kv, "="); k == "CARTCLASS_DB" && paths[k] == "" {
				paths[k] = v
			}
		}
	}
	for k, p := range paths {
		if !strings.HasPrefix(p, state) {
			t.Errorf("%s=%q is outside %s, the one folder the service may write", k, p, state)
		}
	}
	if ws := unit["ExecStart"]; len(ws) != 1 || ws[0] != "/usr/local/bin/cartclass" {
		t.Errorf("ExecStart=%q, want /usr/local/bin/cartclass as the README installs it", ws)
	}
}

func TestComposeKeepsCartclassPrivate(t *testing.T) {
	services, _ := composeFile(readDeployFile(t, "deploy/compose.yaml"))
	env := envFile(readDeployFile(t, "deploy/cartclass.env.example"))
	for _, p := range composeProblems(services, shutdownTimeout(t, env)) {
		t.Error("deploy/compose.yaml: " + p)
	}
	caddy := services["caddy"]
	if caddy == nil {
		t.Fatal("deploy/compose.yaml has no caddy service")
	}
	for _, want := range []string{"80:80", "443:443", "443:443/udp"} {
		if !slices.Contains(caddy.ports, want) {
			t.Errorf("caddy does not publish %s (HTTP for the ACME challenge and redirects, HTTPS, HTTP/3)", want)
		}
	}
}

func TestDeployCaddyfilesServePublicURL(t *testing.T) {
	env := envFile(readDeployFile(t, "deploy/cartclass.env.example"))
	u, err := url.Parse(env["CARTCLASS_PUBLIC_URL"])
	if err != nil {
		t.Fatal(err)
	}
	for file, upstream := range map[string]string{
		"deploy/Caddyfile":         env["CARTCLASS_ADDR"],
		"deploy/Caddyfile.compose": "cartclass" + composeAddr(t),
	} {
		text := readDeployFile(t, file)
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(u.Host) + ` \{$`).MatchString(text) {
			t.Errorf("%s serves no site %s { … }: Caddy must answer for CARTCLASS_PUBLIC_URL's host", file, u.Host)
		}
		if !strings.Contains(text, "reverse_proxy "+upstream+"\n") {
			t.Errorf("%s does not reverse_proxy to %s, where cartclass listens", file, upstream)
		}
	}
}

// composeAddr is CARTCLASS_ADDR as deploy/compose.yaml sets it (":8080").
func composeAddr(t *testing.T) string {
	services, _ := composeFile(readDeployFile(t, "deploy/compose.yaml"))
	if s := services["cartclass"]; s != nil {
		return s.env["CARTCLASS_ADDR"]
	}
	return ""
}

func TestGrafanaDashboardMetrics(t *testing.T) {
	raw := readDeployFile(t, "deploy/grafana-dashboard.json")
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json is not valid JSON: %v", err)
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a current dashboard (about 39)", dash.SchemaVersion)
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type string }) bool {
		return v.Name == "DS_PROMETHEUS" && v.Type == "datasource"
	}) {
		t.Errorf("no DS_PROMETHEUS data source variable: importing would leave panels without data")
	}
	var exprs []string
	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && (p.Datasource.UID != "${DS_PROMETHEUS}" || len(p.Targets) == 0) {
				t.Errorf("panel %q: data source %q with %d queries, want ${DS_PROMETHEUS} and at least one", p.Title, p.Datasource.UID, len(p.Targets))
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	if bad := unknownMetrics(raw); len(bad) > 0 {
		t.Errorf("the dashboard queries %v, which cartclass does not export", bad)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricNames(e) {
			used[metricFamily(m)] = true
		}
	}
	for _, m := range slices.Sorted(maps.Keys(deployMetrics)) {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	for _, m := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if !strings.Contains(strings.Join(exprs, "\n"), m) {
			t.Errorf("no panel shows %s", m)
		}
	}
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

func TestDeployMetricNamesKnown(t *testing.T) {
	for _, f := range append(deployFiles(t), "README.md") {
		if bad := unknownMetrics(readDeployFile(t, f)); len(bad) > 0 {
			t.Errorf("%s names metrics %v, which cartclass does not export", f, bad)
		}
	}
}

// TestDeployCheckersCatchMistakes shows that the checks above fail on the mistakes they are
// for, so a pass means something.
func TestDeployCheckersCatchMistakes(t *testing.T) {
	if bad := unknownSettings("CARTCLASS_OIDC_ISUER=x\nCARTCLASS_ADDR=:8080\nCARTCLASSTEST_SCREENSHOTS=1"); !slices.Equal(bad, []string{"CARTCLASS_OIDC_ISUER"}) {
		t.Errorf("unknownSettings = %v, want only the misspelt CARTCLASS_OIDC_ISUER", bad)
	}
	if bad := unknownMetrics(`rate(cartclass_pushes_total[5m]) cartclass_graph_request_duration_seconds_bucket cartclass_push_total cartclass_outbox_depth_bucket`); !slices.Equal(bad, []string{"cartclass_push_total", "cartclass_outbox_depth_bucket"}) {
		t.Errorf("unknownMetrics = %v, want the misspelt counter and a gauge's _bucket", bad)
	}

	unit := systemdUnit(readDeployFile(t, "deploy/cartclass.service"))
	weak := map[string][]string{}
	for k, v := range unit {
		weak[k] = v
	}
	delete(weak, "NoNewPrivileges")
	weak["ProtectSystem"] = []string{"strict", "full"}
	weak["TimeoutStopSec"] = []string{"20"}
	problems := strings.Join(systemdProblems(weak, 20*time.Second), "\n")
	for _, want := range []string{"NoNewPrivileges= is missing", "ProtectSystem=full", "TimeoutStopSec=20 does not exceed"} {
		if !strings.Contains(problems, want) {
			t.Errorf("systemdProblems missed %q; said:\n%s", want, problems)
		}
	}

	services, _ := composeFile(`services:
  cartclass:
    image: cartclass:latest
    environment:
      - CARTCLASS_METRICS_ADDR=:9090
    ports:
      - "9090:9090" # metrics, oops
  caddy:
    image: caddy:2
`)
	problems = strings.Join(composeProblems(services, 20*time.Second), "\n")
	for _, want := range []string{`cartclass publishes ports ["9090:9090"]`, "stop_grace_period"} {
		if !strings.Contains(problems, want) {
			t.Errorf("composeProblems missed %q; said:\n%s", want, problems)
		}
	}
}
