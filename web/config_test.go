package web_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/web"
)

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// required is the minimum a production (non-dev) start needs besides the defaults.
func required() map[string]string {
	return map[string]string{
		"CARTCLASS_OIDC_ISSUER":        "https://login.example.org/tenant/v2.0",
		"CARTCLASS_OIDC_CLIENT_ID":     "client-id",
		"CARTCLASS_OIDC_CLIENT_SECRET": "client-secret-value",
		"CARTCLASS_SESSION_KEY":        strings.Repeat("0f", 32),
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := web.LoadConfig(envFunc(required()), false)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Addr != "127.0.0.1:8080" || cfg.DBPath != "cartclass.db" || cfg.LogLevel != slog.LevelInfo || cfg.Dev {
		t.Errorf("defaults: addr %q db %q level %v dev %v", cfg.Addr, cfg.DBPath, cfg.LogLevel, cfg.Dev)
	}
	if cfg.PublicURL == nil || cfg.PublicURL.String() != "http://127.0.0.1:8080" || cfg.Secure() {
		t.Errorf("public URL = %v", cfg.PublicURL)
	}
	if cfg.RedirectURL() != "http://127.0.0.1:8080/auth/callback" {
		t.Errorf("redirect URL = %q", cfg.RedirectURL())
	}
	if cfg.SessionIdle != 8*time.Hour || cfg.SessionMax != 24*time.Hour {
		t.Errorf("session lifetimes = %v, %v", cfg.SessionIdle, cfg.SessionMax)
	}
	if len(cfg.SessionKeys) != 1 || len(cfg.SessionKeys[0]) != 32 {
		t.Errorf("session keys = %d", len(cfg.SessionKeys))
	}
}

func TestConfigDevDefaults(t *testing.T) {
	cfg, err := web.LoadConfig(envFunc(nil), true)
	if err != nil {
		t.Fatalf("dev mode with an empty environment: %v", err)
	}
	if cfg.DBPath != "cartclass-dev.db" || cfg.Addr != "127.0.0.1:8080" || !cfg.Dev || cfg.LogLevel != slog.LevelInfo {
		t.Errorf("dev defaults: db %q addr %q dev %v level %v", cfg.DBPath, cfg.Addr, cfg.Dev, cfg.LogLevel)
	}
	// An explicit database wins over the dev default.
	cfg, err = web.LoadConfig(envFunc(map[string]string{"CARTCLASS_DB": "/data/x.db"}), true)
	if err != nil || cfg.DBPath != "/data/x.db" {
		t.Errorf("CARTCLASS_DB in dev mode: %q, %v", cfg.DBPath, err)
	}
}

func TestConfigValuesAreTrimmed(t *testing.T) {
	env := required()
	env["CARTCLASS_ADDR"] = "  0.0.0.0:9000 "
	env["CARTCLASS_LOG_LEVEL"] = " DEBUG\n"
	env["CARTCLASS_DB"] = "   "
	cfg, err := web.LoadConfig(envFunc(env), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "0.0.0.0:9000" || cfg.LogLevel != slog.LevelDebug || cfg.DBPath != "cartclass.db" {
		t.Errorf("addr %q level %v db %q", cfg.Addr, cfg.LogLevel, cfg.DBPath)
	}
}

func TestConfigReportsBadAddrAndLogLevelTogether(t *testing.T) {
	for _, dev := range []bool{true, false} {
		env := map[string]string{"CARTCLASS_ADDR": "localhost", "CARTCLASS_LOG_LEVEL": "chatty"}
		if !dev {
			for k, v := range required() {
				env[k] = v
			}
		}
		_, err := web.LoadConfig(envFunc(env), dev)
		if err == nil {
			t.Fatalf("dev=%v: bad address and log level accepted", dev)
		}
		msg := err.Error()
		for _, want := range []string{`CARTCLASS_ADDR="localhost"`, `CARTCLASS_LOG_LEVEL="chatty"`} {
			if !strings.Contains(msg, want) {
				t.Errorf("dev=%v: error does not name %s: %v", dev, want, err)
			}
		}
		if strings.Contains(msg, "OIDC") || strings.Contains(msg, "SESSION") {
			t.Errorf("dev=%v: error blames variables that are fine: %v", dev, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:", "8080", "[::1", "a:b:c"} {
		env := required()
		env["CARTCLASS_ADDR"] = addr
		if _, err := web.LoadConfig(envFunc(env), false); err == nil || !strings.Contains(err.Error(), "CARTCLASS_ADDR") {
			t.Errorf("CARTCLASS_ADDR=%q: err = %v, want it named", addr, err)
		}
	}
	for _, addr := range []string{":8080", "[::1]:8443", "0.0.0.0:80"} {
		env := required()
		env["CARTCLASS_ADDR"] = addr
		env["CARTCLASS_PUBLIC_URL"] = "https://cartclass.school.example"
		if _, err := web.LoadConfig(envFunc(env), false); err != nil {
			t.Errorf("CARTCLASS_ADDR=%q refused: %v", addr, err)
		}
	}
}

func TestConfigErrorsDoNotEchoSecrets(t *testing.T) {
	env := required()
	env["CARTCLASS_SESSION_KEY"] = "dG9vLXNob3J0LXNlY3JldA=="
	env["CARTCLASS_LOG_LEVEL"] = "nope"
	_, err := web.LoadConfig(envFunc(env), false)
	if err == nil {
		t.Fatal("short session key accepted")
	}
	for _, secret := range []string{env["CARTCLASS_SESSION_KEY"], "client-secret-value"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error echoes a secret: %v", err)
		}
	}
	if !strings.Contains(err.Error(), "CARTCLASS_SESSION_KEY") || !strings.Contains(err.Error(), "CARTCLASS_LOG_LEVEL") {
		t.Errorf("error = %v, want both variables named", err)
	}
}

func TestPrintVarsListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	web.PrintVars(&buf)
	out := buf.String()
	for _, v := range web.Vars {
		if !strings.Contains(out, v.Name) {
			t.Errorf("-h output lacks %s", v.Name)
		}
	}
	for _, name := range []string{"CARTCLASS_ADDR", "CARTCLASS_DB", "CARTCLASS_LOG_LEVEL"} {
		if !strings.Contains(out, name) {
			t.Errorf("-h output lacks %s", name)
		}
	}
	if !strings.Contains(out, "cartclass-dev.db") {
		t.Error("-h output does not mention the dev database default")
	}
}

// App-only mode authenticates as the OIDC client unless told otherwise, even when that
// client is filled in after loading (as -dev does once its provider has started).
func TestGraphClientDefaultsToOIDCClientOnUse(t *testing.T) {
	cfg, err := web.LoadConfig(func(k string) string { return map[string]string{"CARTCLASS_GRAPH_AUTH": "app"}[k] }, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OIDCClientID, cfg.OIDCClientSecret = "cartclass-dev", "dev-secret"
	if id, secret := cfg.GraphClient(); id != "cartclass-dev" || secret != "dev-secret" {
		t.Errorf("GraphClient() = %q, %q; want the OIDC client's", id, secret)
	}
	cfg.GraphClientID, cfg.GraphClientSecret = "graph-app", "graph-secret"
	if id, secret := cfg.GraphClient(); id != "graph-app" || secret != "graph-secret" {
		t.Errorf("GraphClient() = %q, %q; want CARTCLASS_GRAPH_CLIENT_ID/_SECRET", id, secret)
	}
}

// Intune is read every 15 minutes unless told otherwise; 0 turns the schedule off, and a
// schedule under 5 s is refused at start-up rather than spending Intune's request budget.
func TestGraphSyncEvery(t *testing.T) {
	for _, c := range []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"", 15 * time.Minute, true},
		{"0", 0, true},
		{"5s", 5 * time.Second, true},
		{"1h", time.Hour, true},
		{"4s", 0, false},
		{"-1m", 0, false},
		{"15", 0, false},
		{"often", 0, false},
	} {
		env := required()
		env["CARTCLASS_GRAPH_SYNC_EVERY"] = c.value
		cfg, err := web.LoadConfig(envFunc(env), false)
		switch {
		case c.ok && err != nil:
			t.Errorf("%q refused: %v", c.value, err)
		case c.ok && cfg.GraphSyncEvery != c.want:
			t.Errorf("%q = %v, want %v", c.value, cfg.GraphSyncEvery, c.want)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "CARTCLASS_GRAPH_SYNC_EVERY")):
			t.Errorf("%q: error %v, want one naming CARTCLASS_GRAPH_SYNC_EVERY", c.value, err)
		}
	}
}

func TestConfigHistoryKeep(t *testing.T) {
	cfg, err := web.LoadConfig(envFunc(required()), false)
	if err != nil || cfg.HistoryKeep != 0 {
		t.Fatalf("default CARTCLASS_HISTORY_KEEP = %v, %v; want 0 (for ever)", cfg.HistoryKeep, err)
	}
	for v, want := range map[string]time.Duration{"0": 0, "8760h": 8760 * time.Hour, " 24h ": 24 * time.Hour} {
		env := required()
		env["CARTCLASS_HISTORY_KEEP"] = v
		if cfg, err := web.LoadConfig(envFunc(env), false); err != nil || cfg.HistoryKeep != want {
			t.Errorf("CARTCLASS_HISTORY_KEEP=%q: %v, %v; want %v", v, cfg.HistoryKeep, err, want)
		}
	}
	// Refused at start-up, by name, with what to write instead: not a duration, a day
	// count (Go durations have none), negative, or so short it would prune at once.
	for _, v := range []string{"30d", "forever", "-1h", "1m", "23h59m"} {
		env := required()
		env["CARTCLASS_HISTORY_KEEP"] = v
		_, err := web.LoadConfig(envFunc(env), false)
		if err == nil {
			t.Errorf("CARTCLASS_HISTORY_KEEP=%q accepted", v)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, `CARTCLASS_HISTORY_KEEP="`+v+`": want 0 (keep history for ever) or a Go duration of at least 24h, such as 8760h for a year`) {
			t.Errorf("CARTCLASS_HISTORY_KEEP=%q: message %q", v, msg)
		}
		if strings.Contains(msg, "SESSION") || strings.Contains(msg, "OIDC") {
			t.Errorf("CARTCLASS_HISTORY_KEEP=%q: blames others: %q", v, msg)
		}
	}
	var help bytes.Buffer
	web.PrintVars(&help)
	if !strings.Contains(help.String(), "CARTCLASS_HISTORY_KEEP") {
		t.Error("-h does not list CARTCLASS_HISTORY_KEEP")
	}
}

func TestConfigTimezone(t *testing.T) {
	cfg, err := web.LoadConfig(envFunc(required()), false)
	if err != nil || cfg.Timezone != time.Local {
		t.Fatalf("default CARTCLASS_TIMEZONE = %v, %v; want the server's zone", cfg.Timezone, err)
	}
	env := required()
	env["CARTCLASS_TIMEZONE"] = " Europe/London "
	if cfg, err := web.LoadConfig(envFunc(env), false); err != nil || cfg.Timezone.String() != "Europe/London" {
		t.Errorf("CARTCLASS_TIMEZONE=Europe/London: %v, %v", cfg.Timezone, err)
	}
	// Refused by name: not a zone, a path, or "Local" (which names no zone).
	for _, v := range []string{"Europe/Londn", "GMT+1 (summer)", "Local", "/etc/localtime", "../../etc/passwd"} {
		env := required()
		env["CARTCLASS_TIMEZONE"] = v
		_, err := web.LoadConfig(envFunc(env), false)
		if err == nil || !strings.Contains(err.Error(), `CARTCLASS_TIMEZONE="`+v+`": not an IANA time zone name; use one such as Europe/London, America/New_York or UTC`) {
			t.Errorf("CARTCLASS_TIMEZONE=%q: %v", v, err)
		}
	}
}

func TestConfigEduClasses(t *testing.T) {
	cfg, err := web.LoadConfig(envFunc(required()), false)
	if err != nil || !cfg.EduClasses {
		t.Fatalf("default CARTCLASS_EDU_CLASSES: %v, %v; want on", cfg.EduClasses, err)
	}
	if got := strings.Join(cfg.GraphScopes, " "); !strings.HasSuffix(got, " https://graph.microsoft.com/EduRoster.ReadBasic") {
		t.Errorf("default scopes %q do not ask for EduRoster.ReadBasic", got)
	}
	env := required()
	env["CARTCLASS_EDU_CLASSES"] = "OFF"
	cfg, err = web.LoadConfig(envFunc(env), false)
	if err != nil || cfg.EduClasses || strings.Contains(strings.Join(cfg.GraphScopes, " "), "EduRoster") {
		t.Errorf("CARTCLASS_EDU_CLASSES=OFF: on=%v scopes=%q err=%v; want off and no EduRoster scope", cfg.EduClasses, cfg.GraphScopes, err)
	}
	env["CARTCLASS_GRAPH_SCOPES"] = "a b"
	env["CARTCLASS_EDU_CLASSES"] = "on"
	if cfg, _ := web.LoadConfig(envFunc(env), false); strings.Join(cfg.GraphScopes, " ") != "a b" {
		t.Errorf("CARTCLASS_GRAPH_SCOPES set: scopes %q, want exactly a b", cfg.GraphScopes)
	}
	env["CARTCLASS_EDU_CLASSES"] = "maybe"
	if _, err := web.LoadConfig(envFunc(env), false); err == nil || !strings.Contains(err.Error(), `CARTCLASS_EDU_CLASSES="maybe": want on (read the school's classes from Graph) or off`) {
		t.Errorf("CARTCLASS_EDU_CLASSES=maybe: %v", err)
	}
}

// A CARTCLASS_ variable that is no setting is refused, naming the setting it probably
// meant, together with every other problem; other variables, and the tests' own
// CARTCLASSTEST_ switches, are none of cartclass's business.
func TestUnknownVariablesAreRefused(t *testing.T) {
	var environ []string
	for k, v := range required() {
		environ = append(environ, k+"="+v)
	}
	good := append(environ, "PATH=/usr/bin", "CARTCLASSTEST_SCREENSHOTS=1", "CARTCLASS=1")
	if _, err := web.LoadEnv(good, false); err != nil {
		t.Fatalf("LoadEnv of a good environment: %v", err)
	}
	bad := append(environ, "CARTCLASS_OIDC_ISUER=https://x", "CARTCLASS_TIMEZON=UTC", "CARTCLASS_FROBNICATE=1", "CARTCLASS_LOG_LEVEL=loud")
	_, err := web.LoadEnv(bad, false)
	if err == nil {
		t.Fatal("unknown variables accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"CARTCLASS_OIDC_ISUER is not a cartclass setting; did you mean CARTCLASS_OIDC_ISSUER?",
		"CARTCLASS_TIMEZON is not a cartclass setting; did you mean CARTCLASS_TIMEZONE?",
		"CARTCLASS_FROBNICATE is not a cartclass setting (cartclass -h lists them)",
		`CARTCLASS_LOG_LEVEL="loud"`, // reported in the same message
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "https://x") {
		t.Errorf("the message echoes a value: %s", msg)
	}
}

func TestConfigBackups(t *testing.T) {
	cfg, err := web.LoadConfig(envFunc(required()), false)
	if err != nil || cfg.BackupDir != "" || cfg.BackupEvery != 24*time.Hour || cfg.BackupKeep != 7 {
		t.Fatalf("backup defaults: %q %v %d, %v; want none, 24h, 7", cfg.BackupDir, cfg.BackupEvery, cfg.BackupKeep, err)
	}
	for name, v := range map[string]string{"CARTCLASS_BACKUP_EVERY": "30s", "CARTCLASS_BACKUP_KEEP": "0"} {
		env := required()
		env[name] = v
		_, err := web.LoadConfig(envFunc(env), false)
		if err == nil || !strings.Contains(err.Error(), name+`="`+v+`"`) {
			t.Errorf("%s=%s: %v", name, v, err)
		}
	}
}
