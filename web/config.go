package web

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Config is cartclass's configuration, read from CARTCLASS_* environment variables.
type Config struct {
	Addr     string     // CARTCLASS_ADDR: where the server listens
	DBPath   string     // CARTCLASS_DB: the SQLite database file
	LogLevel slog.Level // CARTCLASS_LOG_LEVEL
	Dev      bool       // -dev: embedded development defaults

	PublicURL *url.URL // CARTCLASS_PUBLIC_URL: external URL; https turns on Secure cookies and HSTS

	OIDCIssuer       string   // CARTCLASS_OIDC_ISSUER
	OIDCClientID     string   // CARTCLASS_OIDC_CLIENT_ID
	OIDCClientSecret string   // CARTCLASS_OIDC_CLIENT_SECRET
	OIDCScopes       []string // CARTCLASS_OIDC_SCOPES

	AdminRoles    []string // CARTCLASS_ADMIN_ROLES
	AdminGroups   []string // CARTCLASS_ADMIN_GROUPS
	AdminSubjects []string // CARTCLASS_ADMIN_SUBJECTS
	ViewerRoles   []string // CARTCLASS_VIEWER_ROLES
	ViewerGroups  []string // CARTCLASS_VIEWER_GROUPS

	SessionKeys [][]byte      // CARTCLASS_SESSION_KEY: the first seals, all open (rotation)
	SessionIdle time.Duration // CARTCLASS_SESSION_IDLE
	SessionMax  time.Duration // CARTCLASS_SESSION_MAX
	RoleRecheck time.Duration // CARTCLASS_ROLE_RECHECK: roles are re-read from the provider this often

	TrustedProxies []*net.IPNet // CARTCLASS_TRUSTED_PROXIES: peers whose X-Forwarded-For names the client

	GraphURL          string    // CARTCLASS_GRAPH_URL: base URL, e.g. https://graph.microsoft.com/beta
	GraphAuth         GraphAuth // CARTCLASS_GRAPH_AUTH
	GraphScopes       []string  // CARTCLASS_GRAPH_SCOPES: requested at login in delegated mode
	GraphTokenURL     string    // CARTCLASS_GRAPH_TOKEN_URL: app mode; empty = the provider's token endpoint
	GraphClientID     string    // CARTCLASS_GRAPH_CLIENT_ID: app mode; empty means the OIDC client (see GraphClient)
	GraphClientSecret string    // CARTCLASS_GRAPH_CLIENT_SECRET; empty means the OIDC client's
	GraphAppScope     string    // CARTCLASS_GRAPH_APP_SCOPE
	GraphWritesPer20s int       // CARTCLASS_GRAPH_WRITES_PER_20S: pacing below Intune's limit; 0 lifts it
	// GraphSyncEvery is CARTCLASS_GRAPH_SYNC_EVERY: Intune is read in full at start-up and
	// then this often; 0 reads only when an admin presses Refresh.
	GraphSyncEvery time.Duration
	// HistoryKeep is CARTCLASS_HISTORY_KEEP: history entries older than this are pruned by
	// the periodic clean-up; 0 keeps them for ever.
	HistoryKeep time.Duration
	// MetricsAddr is CARTCLASS_METRICS_ADDR: host:port of the Prometheus listener, apart from
	// the public one; empty serves no metrics.
	MetricsAddr string
	// Timezone is CARTCLASS_TIMEZONE: pages show times in it (UTC on hover).
	Timezone *time.Location
	// ShutdownTimeout (CARTCLASS_SHUTDOWN_TIMEOUT) is how long a shutdown lets requests
	// and pushes in flight finish.
	ShutdownTimeout time.Duration
	// BackupDir (CARTCLASS_BACKUP_DIR) receives a backup every BackupEvery, the newest
	// BackupKeep kept; empty: no rotating backups.
	BackupDir   string
	BackupEvery time.Duration
	BackupKeep  int
	// GraphScopesSet: CARTCLASS_GRAPH_SCOPES was given (it replaces the defaults).
	GraphScopesSet bool
	// EduClasses is CARTCLASS_EDU_CLASSES (on by default): the school's classes are read
	// from Graph, for names beside classroom ids and suggestions while typing.
	EduClasses bool
}

// minSyncEvery is the shortest schedule for reading Intune: each read lists every object,
// and a shorter one would spend Intune's request budget on little news.
const minSyncEvery = 5 * time.Second

// minHistoryKeep is the shortest history retention: Go durations have no days, and "1m"
// meant as a month must not prune every entry a minute old.
const minHistoryKeep = 24 * time.Hour

// GraphAuth is how cartclass authenticates its pushes to Graph.
type GraphAuth string

// The Graph auth modes of CARTCLASS_GRAPH_AUTH.
const (
	GraphAuthDelegated GraphAuth = "delegated" // the token of the admin who made the change
	GraphAuthApp       GraphAuth = "app"       // cartclass's own client credentials
)

// Secure reports whether cartclass is served over https (Secure, __Host- cookies, HSTS).
func (c Config) Secure() bool { return c.PublicURL != nil && c.PublicURL.Scheme == "https" }

// GraphClient is the client app-only mode authenticates as: CARTCLASS_GRAPH_CLIENT_ID and
// _SECRET, each defaulting to the OIDC client's. It is resolved on use, not at load, because
// -dev fills in the OIDC client only once its provider has started.
func (c Config) GraphClient() (id, secret string) {
	return firstNonEmpty(c.GraphClientID, c.OIDCClientID), firstNonEmpty(c.GraphClientSecret, c.OIDCClientSecret)
}

// RedirectURL is the OAuth redirect URI to register with the identity provider.
func (c Config) RedirectURL() string {
	return strings.TrimSuffix(c.PublicURL.String(), "/") + "/auth/callback"
}

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	DevNote string // how -dev changes the default, if it does
	Usage   string
	Secret  bool
}

const defaultGraphScopes = "https://graph.microsoft.com/DeviceManagementConfiguration.ReadWrite.All https://graph.microsoft.com/DeviceManagementServiceConfig.ReadWrite.All"

// eduClassesScope is the delegated scope for listing the school's classes (the least that
// Microsoft documents), requested by default unless CARTCLASS_EDU_CLASSES=off.
const eduClassesScope = "https://graph.microsoft.com/EduRoster.ReadBasic"

// Vars lists every variable cartclass reads, for -h and the README.
var Vars = []Var{
	{Name: "CARTCLASS_ADDR", Default: "127.0.0.1:8080", Usage: "host:port the web server listens on"},
	{Name: "CARTCLASS_PUBLIC_URL", Default: "http:// + CARTCLASS_ADDR", Usage: "the address people open cartclass at: https (http only on localhost, or with -dev); the redirect URI is <PUBLIC_URL>/auth/callback; https turns on Secure/__Host- cookies and HSTS"},
	{Name: "CARTCLASS_DB", Default: "cartclass.db", DevNote: "cartclass-dev.db", Usage: "SQLite database file (created if missing)"},
	{Name: "CARTCLASS_LOG_LEVEL", Default: "info", Usage: "log level: debug, info, warn or error"},
	{Name: "CARTCLASS_OIDC_ISSUER", Default: "(required)", DevNote: "the built-in dev provider", Usage: "OpenID Connect issuer URL, https outside localhost (discovery at /.well-known/openid-configuration)"},
	{Name: "CARTCLASS_OIDC_CLIENT_ID", Default: "(required)", DevNote: "cartclass-dev", Usage: "client id of the confidential web client"},
	{Name: "CARTCLASS_OIDC_CLIENT_SECRET", Default: "(required)", DevNote: "generated", Usage: "client secret", Secret: true},
	{Name: "CARTCLASS_OIDC_SCOPES", Default: "openid profile email offline_access + Graph scopes (delegated)", Usage: "space-separated scopes requested at sign-in; when set, replaces the default list exactly"},
	{Name: "CARTCLASS_ADMIN_ROLES", Default: "CartClass.Admin", Usage: "comma-separated values of the ID token's roles claim that make an admin"},
	{Name: "CARTCLASS_ADMIN_GROUPS", Default: "", Usage: "comma-separated values of the groups claim that make an admin"},
	{Name: "CARTCLASS_ADMIN_SUBJECTS", Default: "", Usage: "comma-separated sub values that make an admin"},
	{Name: "CARTCLASS_VIEWER_ROLES", Default: "CartClass.Viewer", Usage: "comma-separated roles claim values with read-only access"},
	{Name: "CARTCLASS_VIEWER_GROUPS", Default: "", Usage: "comma-separated groups claim values with read-only access"},
	{Name: "CARTCLASS_SESSION_KEY", Default: "(required)", DevNote: "random per start", Usage: "≥ 32 random bytes, base64 or hex; comma-separated for rotation, the first is current; seals tokens at rest", Secret: true},
	{Name: "CARTCLASS_SESSION_IDLE", Default: "8h", Usage: "sign out after this long without activity"},
	{Name: "CARTCLASS_SESSION_MAX", Default: "24h", Usage: "sign out this long after sign-in, whatever the activity"},
	{Name: "CARTCLASS_ROLE_RECHECK", Default: "10m", Usage: "re-read each signed-in person's roles from the identity provider (with their refresh token) at least this often; someone whose refresh is refused is signed out"},
	{Name: "CARTCLASS_TRUSTED_PROXIES", Default: "", Usage: "comma-separated addresses or CIDR ranges of the reverse proxies in front of cartclass; only their X-Forwarded-For is read (to rate-limit sign-in per client)"},
	{Name: "CARTCLASS_GRAPH_URL", Default: "https://graph.microsoft.com/beta", DevNote: "the built-in Graph emulator", Usage: "Graph base URL; the resource is <URL>/deviceManagement/cartToClassAssociations"},
	{Name: "CARTCLASS_GRAPH_AUTH", Default: "delegated", Usage: "delegated: push with the token of the admin who made the change; app: client credentials"},
	{Name: "CARTCLASS_GRAPH_SCOPES", Default: defaultGraphScopes + " + " + eduClassesScope + " (unless CARTCLASS_EDU_CLASSES=off)", Usage: "Graph scopes requested at sign-in in delegated mode; when set, replaces the default list exactly"},
	{Name: "CARTCLASS_EDU_CLASSES", Default: "on", Usage: "on: read the school's classes from <GRAPH_URL>/education/classes (delegated EduRoster.ReadBasic, or application EduRoster.Read.All) for class names and suggestions; off: classroom IDs only"},
	{Name: "CARTCLASS_GRAPH_TOKEN_URL", Default: "the provider's token endpoint", Usage: "app mode: token endpoint for client credentials"},
	{Name: "CARTCLASS_GRAPH_CLIENT_ID", Default: "CARTCLASS_OIDC_CLIENT_ID", Usage: "app mode: client id"},
	{Name: "CARTCLASS_GRAPH_CLIENT_SECRET", Default: "CARTCLASS_OIDC_CLIENT_SECRET", Usage: "app mode: client secret", Secret: true},
	{Name: "CARTCLASS_GRAPH_APP_SCOPE", Default: "https://graph.microsoft.com/.default", Usage: "app mode: scope requested"},
	{Name: "CARTCLASS_GRAPH_WRITES_PER_20S", Default: "90", Usage: "writes sent to Graph per 20 s at most (Intune allows 100 per app); 0 lifts pacing"},
	{Name: "CARTCLASS_GRAPH_SYNC_EVERY", Default: "15m", Usage: "read every association in Intune at start-up and then this often (a Go duration, at least 5s); 0 turns the schedule off (Refresh on the sync panel still reads)"},
	{Name: "CARTCLASS_SHUTDOWN_TIMEOUT", Default: "20s", Usage: "on SIGTERM or SIGINT, how long requests and Graph pushes in flight may finish before they are cut off (cut-off changes are sent after the next start)"},
	{Name: "CARTCLASS_BACKUP_DIR", Default: "", Usage: "folder for rotating backups of the database (consistent copies made while cartclass runs); empty: none"},
	{Name: "CARTCLASS_BACKUP_EVERY", Default: "24h", Usage: "how often a backup goes into CARTCLASS_BACKUP_DIR (a Go duration, at least 1m); the first one this long after start-up"},
	{Name: "CARTCLASS_BACKUP_KEEP", Default: "7", Usage: "how many backups CARTCLASS_BACKUP_DIR keeps (the oldest beyond it are deleted)"},
	{Name: "CARTCLASS_METRICS_ADDR", Default: "", Usage: "host:port of a separate listener serving Prometheus metrics at /metrics (such as 127.0.0.1:9464; 9090 is Prometheus's own); never the public port; empty: no metrics"},
	{Name: "CARTCLASS_TIMEZONE", Default: "the server's time zone", Usage: "IANA time zone pages show times in, such as Europe/London (UTC on hover)"},
	{Name: "CARTCLASS_HISTORY_KEEP", Default: "0", Usage: "delete history entries older than this (a Go duration, at least 24h, such as 8760h for a year) at the periodic clean-up; 0 keeps them for ever"},
}

// LoadConfig reads the configuration through getenv (os.Getenv in main) and validates it,
// reporting every bad or missing variable in one error. In dev mode the OIDC settings may
// be empty: main fills them in from the built-in provider.
func LoadConfig(getenv func(string) string, dev bool) (Config, error) {
	return loadConfig(getenv, nil, dev)
}

// LoadEnv is LoadConfig from an environment as os.Environ gives it ("NAME=value"), also
// refusing a CARTCLASS_ variable that is no setting — a misspelt one would otherwise be
// ignored in silence — and naming the closest setting.
func LoadEnv(environ []string, dev bool) (Config, error) {
	env := map[string]string{}
	var names []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		names = append(names, k)
	}
	return loadConfig(func(k string) string { return env[k] }, names, dev)
}

// varPrefix starts every cartclass setting. Switches that only the tests read start with
// CARTCLASSTEST_ instead, so that they are never taken for a misspelt setting.
const varPrefix = "CARTCLASS_"

// unknownVars says, for each name in names that starts like a setting but is none, that
// it is not one, and which setting it probably meant.
func unknownVars(names []string) []string {
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, varPrefix) || knownVar(n) {
			continue
		}
		msg := n + " is not a cartclass setting"
		if best := closestVar(n); best != "" {
			msg += "; did you mean " + best + "?"
		} else {
			msg += " (cartclass -h lists them)"
		}
		out = append(out, msg)
	}
	slices.Sort(out)
	return out
}

func knownVar(name string) bool {
	return slices.ContainsFunc(Vars, func(v Var) bool { return v.Name == name })
}

// closestVar is the setting nearest to name by edit distance, if it is near enough to be
// a slip (at most a third of the name's letters after the prefix differ), else "".
func closestVar(name string) string {
	best, bestD := "", -1
	for _, v := range Vars {
		if d := editDistance(name, v.Name); bestD < 0 || d < bestD {
			best, bestD = v.Name, d
		}
	}
	if bestD > max(2, (len(name)-len(varPrefix))/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes: the names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Value is the setting name as getenv gives it (trimmed), or else its default (the -dev
// one in dev mode); "" for a required setting that is not set. The backup command reads
// CARTCLASS_DB this way, without the rest of the configuration.
func Value(getenv func(string) string, name string, dev bool) string {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v
	}
	for _, v := range Vars {
		if v.Name == name && !strings.HasPrefix(v.Default, "(") {
			if dev && v.DevNote != "" && !strings.Contains(v.DevNote, " ") {
				return v.DevNote
			}
			return v.Default
		}
	}
	return ""
}

func loadConfig(getenv func(string) string, names []string, dev bool) (Config, error) {
	set := func(name string) bool { return strings.TrimSpace(getenv(name)) != "" }
	get := func(name string) string { return Value(getenv, name, dev) }
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// durationAtLeast reads a positive Go duration of at least least (0 too when zeroOK), saying
	// what is wrong with a value that is not one; want describes a good value.
	durationAtLeast := func(name string, least time.Duration, zeroOK bool, want string) (time.Duration, bool) {
		v := get(name)
		d, err := time.ParseDuration(v)
		switch {
		case err != nil && countsDays(v):
			bad("%s=%q: not a Go duration (they have no days, weeks or years: 30 days is 720h); %s", name, v, want)
		case err != nil:
			bad("%s=%q: not a Go duration (a number and a unit: s, m or h); %s", name, v, want)
		case d < 0:
			bad("%s=%q: is negative; %s", name, v, want)
		case d == 0 && zeroOK:
			return 0, true
		case d == 0:
			bad("%s=%q: is zero; %s", name, v, want)
		case d < least:
			bad("%s=%q: is shorter than %s; %s", name, v, shortDuration(least), want)
		default:
			return d, true
		}
		return 0, false
	}
	// wholeNumber reads a whole number from least to most.
	wholeNumber := func(name string, least, most int, want string) (int, bool) {
		v := get(name)
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			bad("%s=%q: not a whole number; %s", name, v, want)
		case n < least:
			bad("%s=%q: is less than %d; %s", name, v, least, want)
		case n > most:
			bad("%s=%q: is more than %d; %s", name, v, most, want)
		default:
			return n, true
		}
		return 0, false
	}

	cfg := Config{Dev: dev, Addr: get("CARTCLASS_ADDR"), DBPath: get("CARTCLASS_DB")}
	addrOK := false
	if problem := listenAddrProblem(cfg.Addr); problem != "" {
		bad("CARTCLASS_ADDR=%q: %s; use one such as 127.0.0.1:8080, or :8080 for every interface", cfg.Addr, problem)
	} else {
		addrOK = true
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("CARTCLASS_LOG_LEVEL"))); err != nil {
		bad("CARTCLASS_LOG_LEVEL=%q: not a log level; use debug, info, warn or error", get("CARTCLASS_LOG_LEVEL"))
	}

	if set("CARTCLASS_PUBLIC_URL") {
		public := get("CARTCLASS_PUBLIC_URL")
		u, problem := originProblem(public)
		switch {
		case problem != "":
			bad("CARTCLASS_PUBLIC_URL=%q: %s", redacted(public), problem)
		case !dev && u.Scheme == "http" && !loopback(u.Hostname()):
			bad("CARTCLASS_PUBLIC_URL=%q: must be https outside localhost: Entra ID accepts http redirect URIs only for localhost, and cookies would travel in clear", redacted(public))
		default:
			cfg.PublicURL = u
		}
	} else if addrOK {
		// Not given: cartclass as its own listener shows it. A wrong CARTCLASS_ADDR is
		// reported once, as itself. Outside -dev that is plain http, so only on loopback:
		// listening beyond this machine, people reach cartclass through an https address
		// that it must be told.
		host, _, _ := net.SplitHostPort(cfg.Addr)
		if !dev && !loopback(host) {
			bad("CARTCLASS_PUBLIC_URL: required when CARTCLASS_ADDR (%q) listens beyond this machine: the https address people open cartclass at, such as https://cartclass.school.example", cfg.Addr)
		} else {
			cfg.PublicURL = &url.URL{Scheme: "http", Host: cfg.Addr}
		}
	}

	cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecret = get("CARTCLASS_OIDC_ISSUER"), get("CARTCLASS_OIDC_CLIENT_ID"), get("CARTCLASS_OIDC_CLIENT_SECRET")
	if !dev || cfg.OIDCIssuer != "" {
		const issuerExample = "such as https://login.microsoftonline.com/<tenant-id>/v2.0"
		if cfg.OIDCIssuer == "" {
			bad("CARTCLASS_OIDC_ISSUER: required, the identity provider's issuer URL, %s", issuerExample)
		} else if u, problem := urlProblem(cfg.OIDCIssuer); problem != "" {
			bad("CARTCLASS_OIDC_ISSUER=%q: %s; use the identity provider's issuer URL, %s", redacted(cfg.OIDCIssuer), problem, issuerExample)
		} else if !dev && u.Scheme == "http" && !loopback(u.Hostname()) {
			bad("CARTCLASS_OIDC_ISSUER=%q: must be https outside localhost: sign-in codes and tokens would travel in clear (Entra ID's issuer is https)", redacted(cfg.OIDCIssuer))
		}
		if cfg.OIDCClientID == "" {
			bad("CARTCLASS_OIDC_CLIENT_ID: required (the application's client id)")
		}
		if cfg.OIDCClientSecret == "" {
			bad("CARTCLASS_OIDC_CLIENT_SECRET: required (a client secret of the application)")
		}
	}

	cfg.GraphAuth = GraphAuth(get("CARTCLASS_GRAPH_AUTH"))
	if cfg.GraphAuth != GraphAuthDelegated && cfg.GraphAuth != GraphAuthApp {
		bad("CARTCLASS_GRAPH_AUTH=%q: not a mode; use delegated (each admin's own token) or app (cartclass's client credentials)", cfg.GraphAuth)
	}
	switch v := strings.TrimSpace(getenv("CARTCLASS_EDU_CLASSES")); strings.ToLower(v) {
	case "", "on":
		cfg.EduClasses = true
	case "off":
	default:
		bad("CARTCLASS_EDU_CLASSES=%q: want on (read the school's classes from Graph) or off", v)
	}
	if v := strings.TrimSpace(getenv("CARTCLASS_GRAPH_SCOPES")); v != "" {
		cfg.GraphScopes, cfg.GraphScopesSet = strings.Fields(v), true
	} else {
		cfg.GraphScopes = strings.Fields(defaultGraphScopes)
		if cfg.EduClasses {
			cfg.GraphScopes = append(cfg.GraphScopes, eduClassesScope)
		}
	}
	cfg.GraphURL = strings.TrimSuffix(strings.TrimSpace(getenv("CARTCLASS_GRAPH_URL")), "/")
	if cfg.GraphURL == "" && !dev {
		cfg.GraphURL = "https://graph.microsoft.com/beta"
	}
	if cfg.GraphURL != "" {
		if u, problem := urlProblem(cfg.GraphURL); problem != "" {
			bad("CARTCLASS_GRAPH_URL=%q: %s; use Graph's base URL, such as https://graph.microsoft.com/beta", redacted(cfg.GraphURL), problem)
		} else if !dev && u.Scheme == "http" && !loopback(u.Hostname()) {
			bad("CARTCLASS_GRAPH_URL=%q: must be https outside localhost: the admins' access tokens would travel in clear", redacted(cfg.GraphURL))
		}
	}
	cfg.GraphTokenURL = strings.TrimSpace(getenv("CARTCLASS_GRAPH_TOKEN_URL"))
	if cfg.GraphTokenURL != "" {
		if u, problem := urlProblem(cfg.GraphTokenURL); problem != "" {
			bad("CARTCLASS_GRAPH_TOKEN_URL=%q: %s; use a token endpoint, such as https://login.microsoftonline.com/<tenant-id>/oauth2/v2.0/token", redacted(cfg.GraphTokenURL), problem)
		} else if !dev && u.Scheme == "http" && !loopback(u.Hostname()) {
			bad("CARTCLASS_GRAPH_TOKEN_URL=%q: must be https outside localhost: the client secret would travel in clear", redacted(cfg.GraphTokenURL))
		}
	}
	cfg.GraphClientID = strings.TrimSpace(getenv("CARTCLASS_GRAPH_CLIENT_ID"))
	cfg.GraphClientSecret = strings.TrimSpace(getenv("CARTCLASS_GRAPH_CLIENT_SECRET"))
	cfg.GraphAppScope = get("CARTCLASS_GRAPH_APP_SCOPE")
	if n, ok := wholeNumber("CARTCLASS_GRAPH_WRITES_PER_20S", 0, 100, "use one from 0 (no pacing) to 100 (Intune's limit per app)"); ok {
		cfg.GraphWritesPer20s = n
	}
	if v, ok := durationAtLeast("CARTCLASS_GRAPH_SYNC_EVERY", minSyncEvery, true, "use 0 (no schedule) or a duration of at least 5s, such as 15m"); ok {
		cfg.GraphSyncEvery = v
	}
	if v, ok := durationAtLeast("CARTCLASS_HISTORY_KEEP", minHistoryKeep, true, "use 0 (keep history for ever) or a Go duration of at least 24h, such as 8760h for a year"); ok {
		cfg.HistoryKeep = v
	}
	if set("CARTCLASS_OIDC_SCOPES") {
		cfg.OIDCScopes = strings.Fields(get("CARTCLASS_OIDC_SCOPES"))
	} else {
		cfg.OIDCScopes = []string{"openid", "profile", "email", "offline_access"}
		if cfg.GraphAuth == GraphAuthDelegated {
			cfg.OIDCScopes = append(cfg.OIDCScopes, cfg.GraphScopes...)
		}
	}
	if !contains(cfg.OIDCScopes, "openid") {
		bad("CARTCLASS_OIDC_SCOPES=%q: lacks openid, without which there is no ID token to sign in with; add it", strings.Join(cfg.OIDCScopes, " "))
	}

	cfg.AdminRoles, cfg.AdminGroups, cfg.AdminSubjects = list(get("CARTCLASS_ADMIN_ROLES")), list(get("CARTCLASS_ADMIN_GROUPS")), list(get("CARTCLASS_ADMIN_SUBJECTS"))
	cfg.ViewerRoles, cfg.ViewerGroups = list(get("CARTCLASS_VIEWER_ROLES")), list(get("CARTCLASS_VIEWER_GROUPS"))

	switch keys, err := parseKeys(get("CARTCLASS_SESSION_KEY")); {
	case err != nil:
		bad("CARTCLASS_SESSION_KEY: %v", err)
	case len(keys) == 0 && !dev:
		bad("CARTCLASS_SESSION_KEY: required, at least 32 random bytes as base64 or hex (e.g. openssl rand -base64 32)")
	default:
		cfg.SessionKeys = keys
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"CARTCLASS_SESSION_IDLE", &cfg.SessionIdle}, {"CARTCLASS_SESSION_MAX", &cfg.SessionMax}, {"CARTCLASS_ROLE_RECHECK", &cfg.RoleRecheck}} {
		if v, ok := durationAtLeast(d.name, 0, false, "use a duration such as 8h or 30m"); ok {
			*d.dst = v
		}
	}

	if v, ok := durationAtLeast("CARTCLASS_SHUTDOWN_TIMEOUT", 0, true, "use a Go duration such as 20s or 1m"); ok {
		cfg.ShutdownTimeout = v
	}
	cfg.BackupDir = strings.TrimSpace(getenv("CARTCLASS_BACKUP_DIR"))
	if v, ok := durationAtLeast("CARTCLASS_BACKUP_EVERY", time.Minute, false, "use a Go duration of at least 1m, such as 24h or 6h"); ok {
		cfg.BackupEvery = v
	}
	if n, ok := wholeNumber("CARTCLASS_BACKUP_KEEP", 1, math.MaxInt32, "use the number of backups to keep, at least 1"); ok {
		cfg.BackupKeep = n
	}
	if v := strings.TrimSpace(getenv("CARTCLASS_METRICS_ADDR")); v != "" {
		if problem := listenAddrProblem(v); problem != "" {
			bad("CARTCLASS_METRICS_ADDR=%q: %s; use one such as 127.0.0.1:9464", v, problem)
		} else if samePort(v, cfg.Addr) {
			bad("CARTCLASS_METRICS_ADDR=%q: is the port CARTCLASS_ADDR serves; metrics need a listener of their own, never the public one", v)
		} else {
			cfg.MetricsAddr = v
		}
	}
	cfg.Timezone = time.Local
	if tz := strings.TrimSpace(getenv("CARTCLASS_TIMEZONE")); tz != "" {
		// LoadLocation would also take "Local" or a path; a school names its zone.
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" || strings.HasPrefix(tz, "/") || strings.Contains(tz, "..") {
			bad("CARTCLASS_TIMEZONE=%q: not an IANA time zone name; use one such as Europe/London, America/New_York or UTC", tz)
		} else {
			cfg.Timezone = loc
		}
	}

	for _, p := range list(get("CARTCLASS_TRUSTED_PROXIES")) {
		cidr := p
		if ip := net.ParseIP(p); ip != nil && ip.To4() != nil {
			cidr += "/32"
		} else if ip != nil {
			cidr += "/128"
		}
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			bad("CARTCLASS_TRUSTED_PROXIES: %q is not an address or a CIDR range such as 10.0.0.0/8", p)
			continue
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, n)
	}

	problems = append(problems, unknownVars(names)...)
	if len(problems) > 0 {
		return cfg, errors.New("invalid configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return cfg, nil
}

// listenAddrProblem says what is wrong with addr as a listen address (host:port), or "".
func listenAddrProblem(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "not host:port"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "the port " + strconv.Quote(port) + " is not a number from 1 to 65535"
	}
	return ""
}

// urlProblem parses raw as an absolute http(s) URL, saying what is wrong if it is not one.
func urlProblem(raw string) (*url.URL, string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Scheme == "" || u.Opaque != "":
		return nil, "not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "has the scheme " + strconv.Quote(u.Scheme) + ", not https"
	case u.Host == "" || u.Hostname() == "":
		return nil, "has no host"
	case u.User != nil:
		return nil, "has a user name or password in it"
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, "has a query or fragment"
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "has the port " + strconv.Quote(port) + ", not a number from 1 to 65535"
		}
	}
	return u, ""
}

// originProblem reads CARTCLASS_PUBLIC_URL: a URL with no path (cartclass serves its host's
// root), a trailing slash allowed.
func originProblem(raw string) (*url.URL, string) {
	const example = "use the address people open cartclass at, such as https://cartclass.school.example"
	u, problem := urlProblem(raw)
	if problem != "" {
		return nil, problem + "; " + example
	}
	if u.Path != "" && u.Path != "/" {
		return nil, "has a path (" + u.Path + "); cartclass is served at the root of its host: " + example
	}
	u.Path, u.RawPath = "", ""
	return u, ""
}

// redacted is a URL setting as messages may show it: a password in it masked.
func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return u.Redacted()
		}
	}
	return raw
}

// loopback reports whether host is this machine (localhost, 127.0.0.0/8 or ::1): the only
// hosts where plain http is acceptable outside -dev.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// shortDuration writes d as a person would: 24h, 5s, 1m rather than 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// countsDays reports whether v counts in days, weeks or years (such as 30d), which Go
// durations do not have.
func countsDays(v string) bool {
	for i := 1; i < len(v); i++ {
		if v[i-1] >= '0' && v[i-1] <= '9' && strings.ContainsRune("dDwWyY", rune(v[i])) {
			return true
		}
	}
	return false
}

// samePort reports whether two listen addresses would collide: the same port on the same
// host, or on all interfaces.
func samePort(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	any := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || any(ha) || any(hb)
}

// parseKeys decodes comma-separated keys, each base64 (standard or URL, padded or not) or
// hex, each at least 32 bytes.
func parseKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for i, k := range list(s) {
		var b []byte
		var err error
		if b, err = hex.DecodeString(k); err != nil {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				if b, err = enc.DecodeString(k); err == nil {
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("key %d is neither base64 nor hex", i+1)
		}
		if len(b) < 32 {
			return nil, fmt.Errorf("key %d has %d bytes; at least 32 are needed", i+1, len(b))
		}
		keys = append(keys, b)
	}
	return keys, nil
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// PrintVars writes the variable table for -h.
func PrintVars(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range Vars {
		def := v.Default
		if v.DevNote != "" {
			def += " (-dev: " + v.DevNote + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Usage)
	}
	tw.Flush()
}
