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
	env["CARTCLASS_PUBLIC_URL"] = " https://cartclass.school.example "
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
		if !strings.Contains(msg, `CARTCLASS_HISTORY_KEEP="`+v+`": `) || !strings.Contains(msg, `; use 0 (keep history for ever) or a Go duration of at least 24h, such as 8760h for a year`) {
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

// A value that is given but wrong says what is wrong with it, and what to write instead;
// "required" is only ever said of a setting left empty.
func TestConfigSaysWhatIsWrongWithAValue(t *testing.T) {
	for _, c := range []struct {
		name, value string
		dev         bool
		want        string
	}{
		{"CARTCLASS_ADDR", "localhost", false, `CARTCLASS_ADDR="localhost": not host:port; use one such as 127.0.0.1:8080, or :8080 for every interface`},
		{"CARTCLASS_ADDR", "127.0.0.1:http", false, `CARTCLASS_ADDR="127.0.0.1:http": the port "http" is not a number from 1 to 65535`},
		{"CARTCLASS_ADDR", "127.0.0.1:80800", false, `CARTCLASS_ADDR="127.0.0.1:80800": the port "80800" is not a number from 1 to 65535`},
		{"CARTCLASS_LOG_LEVEL", "chatty", false, `CARTCLASS_LOG_LEVEL="chatty": not a log level; use debug, info, warn or error`},

		{"CARTCLASS_PUBLIC_URL", "cartclass.school.example", false, `CARTCLASS_PUBLIC_URL="cartclass.school.example": not a URL; use the address people open cartclass at, such as https://cartclass.school.example`},
		{"CARTCLASS_PUBLIC_URL", "localhost:8080", false, `CARTCLASS_PUBLIC_URL="localhost:8080": not a URL;`},
		{"CARTCLASS_PUBLIC_URL", "ftp://cartclass.school.example", false, `CARTCLASS_PUBLIC_URL="ftp://cartclass.school.example": has the scheme "ftp", not https;`},
		{"CARTCLASS_PUBLIC_URL", "https://", false, `CARTCLASS_PUBLIC_URL="https://": has no host;`},
		{"CARTCLASS_PUBLIC_URL", "https://cartclass.school.example/cartclass", false, `CARTCLASS_PUBLIC_URL="https://cartclass.school.example/cartclass": has a path (/cartclass); cartclass is served at the root of its host`},
		{"CARTCLASS_PUBLIC_URL", "https://cartclass.school.example/?x=1", false, `CARTCLASS_PUBLIC_URL="https://cartclass.school.example/?x=1": has a query or fragment;`},
		{"CARTCLASS_PUBLIC_URL", "https://admin:pw@cartclass.school.example", false, `has a user name or password in it;`},
		{"CARTCLASS_PUBLIC_URL", "http://cartclass.school.example", false, `CARTCLASS_PUBLIC_URL="http://cartclass.school.example": must be https outside localhost: Entra ID accepts http redirect URIs only for localhost, and cookies would travel in clear`},
		{"CARTCLASS_PUBLIC_URL", "http://10.1.2.3:8080", false, `CARTCLASS_PUBLIC_URL="http://10.1.2.3:8080": must be https outside localhost`},

		{"CARTCLASS_OIDC_ISSUER", "login.microsoftonline.com/tenant/v2.0", false, `CARTCLASS_OIDC_ISSUER="login.microsoftonline.com/tenant/v2.0": not a URL; use the identity provider's issuer URL, such as https://login.microsoftonline.com/<tenant-id>/v2.0`},
		{"CARTCLASS_OIDC_ISSUER", "%zz", false, `CARTCLASS_OIDC_ISSUER="%zz": not a URL;`},
		{"CARTCLASS_OIDC_ISSUER", "https:///tenant/v2.0", false, `CARTCLASS_OIDC_ISSUER="https:///tenant/v2.0": has no host;`},
		{"CARTCLASS_OIDC_ISSUER", "ldap://dc1.school.example", false, `CARTCLASS_OIDC_ISSUER="ldap://dc1.school.example": has the scheme "ldap", not https;`},
		{"CARTCLASS_OIDC_ISSUER", "http://sso.school.example/realms/school", false, `CARTCLASS_OIDC_ISSUER="http://sso.school.example/realms/school": must be https outside localhost: sign-in codes and tokens would travel in clear`},
		{"CARTCLASS_OIDC_ISSUER", "https://sso.school.example/?tenant=1", false, `has a query or fragment;`},
		// The same in -dev, where the built-in provider is skipped for a given issuer.
		{"CARTCLASS_OIDC_ISSUER", "sso.school.example", true, `CARTCLASS_OIDC_ISSUER="sso.school.example": not a URL;`},

		{"CARTCLASS_SESSION_KEY", "c2hvcnQ=", false, `CARTCLASS_SESSION_KEY: key 1 has 5 bytes; at least 32 are needed`},
		{"CARTCLASS_SESSION_KEY", "not base64!", false, `CARTCLASS_SESSION_KEY: key 1 is neither base64 nor hex`},
		{"CARTCLASS_SESSION_IDLE", "soon", false, `CARTCLASS_SESSION_IDLE="soon": not a Go duration (a number and a unit: s, m or h); use a duration such as 8h or 30m`},
		{"CARTCLASS_SESSION_MAX", "1d", false, `CARTCLASS_SESSION_MAX="1d": not a Go duration (they have no days, weeks or years: 30 days is 720h)`},
		{"CARTCLASS_SESSION_MAX", "0", false, `CARTCLASS_SESSION_MAX="0": is zero; use a duration such as 8h or 30m`},
		{"CARTCLASS_ROLE_RECHECK", "-10m", false, `CARTCLASS_ROLE_RECHECK="-10m": is negative;`},
		{"CARTCLASS_OIDC_SCOPES", "profile email", false, `CARTCLASS_OIDC_SCOPES="profile email": lacks openid, without which there is no ID token to sign in with; add it`},
		{"CARTCLASS_TRUSTED_PROXIES", "proxy.school.example", false, `CARTCLASS_TRUSTED_PROXIES: "proxy.school.example" is not an address or a CIDR range such as 10.0.0.0/8`},

		{"CARTCLASS_GRAPH_AUTH", "both", false, `CARTCLASS_GRAPH_AUTH="both": not a mode; use delegated (each admin's own token) or app (cartclass's client credentials)`},
		{"CARTCLASS_EDU_CLASSES", "yes", false, `CARTCLASS_EDU_CLASSES="yes": want on (read the school's classes from Graph) or off`},
		{"CARTCLASS_GRAPH_URL", "graph.microsoft.com/beta", false, `CARTCLASS_GRAPH_URL="graph.microsoft.com/beta": not a URL; use Graph's base URL, such as https://graph.microsoft.com/beta`},
		{"CARTCLASS_GRAPH_URL", "http://graph.school.example/beta", false, `CARTCLASS_GRAPH_URL="http://graph.school.example/beta": must be https outside localhost: the admins' access tokens would travel in clear`},
		{"CARTCLASS_GRAPH_TOKEN_URL", "login.microsoftonline.com/t/oauth2/v2.0/token", false, `CARTCLASS_GRAPH_TOKEN_URL="login.microsoftonline.com/t/oauth2/v2.0/token": not a URL; use a token endpoint`},
		{"CARTCLASS_GRAPH_TOKEN_URL", "http://sso.school.example/token", false, `CARTCLASS_GRAPH_TOKEN_URL="http://sso.school.example/token": must be https outside localhost: the client secret would travel in clear`},
		{"CARTCLASS_GRAPH_WRITES_PER_20S", "lots", false, `CARTCLASS_GRAPH_WRITES_PER_20S="lots": not a whole number; use one from 0 (no pacing) to 100 (Intune's limit per app)`},
		{"CARTCLASS_GRAPH_WRITES_PER_20S", "150", false, `CARTCLASS_GRAPH_WRITES_PER_20S="150": is more than 100;`},
		{"CARTCLASS_GRAPH_WRITES_PER_20S", "-1", false, `CARTCLASS_GRAPH_WRITES_PER_20S="-1": is less than 0;`},
		{"CARTCLASS_GRAPH_SYNC_EVERY", "4s", false, `CARTCLASS_GRAPH_SYNC_EVERY="4s": is shorter than 5s; use 0 (no schedule) or a duration of at least 5s, such as 15m`},
		{"CARTCLASS_GRAPH_SYNC_EVERY", "15", false, `CARTCLASS_GRAPH_SYNC_EVERY="15": not a Go duration (a number and a unit: s, m or h);`},
		{"CARTCLASS_HISTORY_KEEP", "30d", false, `CARTCLASS_HISTORY_KEEP="30d": not a Go duration (they have no days, weeks or years: 30 days is 720h); use 0 (keep history for ever)`},
		{"CARTCLASS_HISTORY_KEEP", "23h59m", false, `CARTCLASS_HISTORY_KEEP="23h59m": is shorter than 24h;`},
		{"CARTCLASS_SHUTDOWN_TIMEOUT", "-5s", false, `CARTCLASS_SHUTDOWN_TIMEOUT="-5s": is negative; use a Go duration such as 20s or 1m`},
		{"CARTCLASS_SHUTDOWN_TIMEOUT", "twenty", false, `CARTCLASS_SHUTDOWN_TIMEOUT="twenty": not a Go duration`},
		{"CARTCLASS_BACKUP_EVERY", "30s", false, `CARTCLASS_BACKUP_EVERY="30s": is shorter than 1m; use a Go duration of at least 1m, such as 24h or 6h`},
		{"CARTCLASS_BACKUP_EVERY", "1w", false, `CARTCLASS_BACKUP_EVERY="1w": not a Go duration (they have no days, weeks or years`},
		{"CARTCLASS_BACKUP_KEEP", "0", false, `CARTCLASS_BACKUP_KEEP="0": is less than 1; use the number of backups to keep, at least 1`},
		{"CARTCLASS_BACKUP_KEEP", "seven", false, `CARTCLASS_BACKUP_KEEP="seven": not a whole number;`},
		{"CARTCLASS_METRICS_ADDR", "9090", false, `CARTCLASS_METRICS_ADDR="9090": not host:port; use one such as 127.0.0.1:9464`},
		{"CARTCLASS_METRICS_ADDR", "127.0.0.1:8080", false, `CARTCLASS_METRICS_ADDR="127.0.0.1:8080": is the port CARTCLASS_ADDR serves`},
		{"CARTCLASS_TIMEZONE", "Europe/Londn", false, `CARTCLASS_TIMEZONE="Europe/Londn": not an IANA time zone name`},
	} {
		env := required()
		if c.dev { // a given issuer in -dev still needs its client; the rest has defaults
			delete(env, "CARTCLASS_OIDC_ISSUER")
			delete(env, "CARTCLASS_SESSION_KEY")
		}
		env[c.name] = c.value
		_, err := web.LoadConfig(envFunc(env), c.dev)
		if err == nil {
			t.Errorf("%s=%q (dev %v) accepted; want %q", c.name, c.value, c.dev, c.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s=%q (dev %v):\n got %s\nwant …%s…", c.name, c.value, c.dev, msg, c.want)
		}
		if strings.Contains(msg, "required") {
			t.Errorf("%s=%q is set, but the message says required: %s", c.name, c.value, msg)
		}
		if n := strings.Count(msg, "\n  "); n != 1 {
			t.Errorf("%s=%q: %d problems reported, want this one alone: %s", c.name, c.value, n, msg)
		}
	}
}

// "required" is for a required setting left empty (or blank), and says what goes there.
func TestConfigRequiredOnlyWhenEmpty(t *testing.T) {
	for name, want := range map[string]string{
		"CARTCLASS_OIDC_ISSUER":        "CARTCLASS_OIDC_ISSUER: required, the identity provider's issuer URL, such as https://login.microsoftonline.com/<tenant-id>/v2.0",
		"CARTCLASS_OIDC_CLIENT_ID":     "CARTCLASS_OIDC_CLIENT_ID: required (the application's client id)",
		"CARTCLASS_OIDC_CLIENT_SECRET": "CARTCLASS_OIDC_CLIENT_SECRET: required (a client secret of the application)",
		"CARTCLASS_SESSION_KEY":        "CARTCLASS_SESSION_KEY: required, at least 32 random bytes as base64 or hex",
	} {
		for _, empty := range []string{"", "  "} {
			env := required()
			env[name] = empty
			_, err := web.LoadConfig(envFunc(env), false)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s=%q: %v; want %q", name, empty, err, want)
			}
		}
	}
}

// Plain http is refused only where it would leave this machine: on loopback, and in -dev,
// it is fine; https anywhere.
func TestConfigHTTPOnlyOnLoopback(t *testing.T) {
	for _, c := range []struct {
		public, issuer string
		dev            bool
	}{
		{"http://localhost:8080", "http://localhost:9000", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:9000/realms/dev", false},
		{"http://[::1]:8080/", "http://[::1]:9000", false},
		{"http://LOCALHOST", "https://sso.school.example/realms/school", false},
		{"https://cartclass.school.example/", "https://login.microsoftonline.com/tenant/v2.0", false},
		{"https://cartclass.school.example:8443", "https://login.microsoftonline.com/tenant/v2.0", false},
		{"http://cartclass-dev.lan:8080", "http://sso.lan:9000", true},
	} {
		env := required()
		if c.dev { // a given issuer in -dev still needs its client; the rest has defaults
			delete(env, "CARTCLASS_OIDC_ISSUER")
			delete(env, "CARTCLASS_SESSION_KEY")
		}
		env["CARTCLASS_PUBLIC_URL"], env["CARTCLASS_OIDC_ISSUER"] = c.public, c.issuer
		cfg, err := web.LoadConfig(envFunc(env), c.dev)
		if err != nil {
			t.Errorf("public %s, issuer %s (dev %v): %v", c.public, c.issuer, c.dev, err)
			continue
		}
		if got := cfg.RedirectURL(); got != strings.TrimSuffix(c.public, "/")+"/auth/callback" {
			t.Errorf("public %s: redirect URI %q", c.public, got)
		}
	}

	// No public URL: cartclass's own http address stands in for it only on loopback (or in
	// -dev). Listening beyond this machine (a container's :8080), it must be told the https
	// address people open, or cookies would lose Secure and pages their HSTS.
	for _, c := range []struct {
		addr string
		dev  bool
		want string // "" = starts, with http://<addr> as the public URL
	}{
		{"127.0.0.1:8080", false, ""},
		{"localhost:8080", false, ""},
		{"[::1]:8080", false, ""},
		{":8080", true, ""},
		{":8080", false, `CARTCLASS_PUBLIC_URL: required when CARTCLASS_ADDR (":8080") listens beyond this machine: the https address people open cartclass at, such as https://cartclass.school.example`},
		{"0.0.0.0:8080", false, `CARTCLASS_PUBLIC_URL: required when CARTCLASS_ADDR ("0.0.0.0:8080") listens beyond this machine`},
		{"10.1.2.3:8080", false, `CARTCLASS_PUBLIC_URL: required when CARTCLASS_ADDR ("10.1.2.3:8080") listens beyond this machine`},
	} {
		env := required()
		if c.dev {
			env = map[string]string{}
		}
		env["CARTCLASS_ADDR"] = c.addr
		cfg, err := web.LoadConfig(envFunc(env), c.dev)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CARTCLASS_ADDR=%s (dev %v) without a public URL: %v", c.addr, c.dev, err)
		case c.want == "" && cfg.PublicURL.String() != "http://"+c.addr:
			t.Errorf("CARTCLASS_ADDR=%s: public URL %v", c.addr, cfg.PublicURL)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CARTCLASS_ADDR=%s (dev %v) without a public URL: %v, want %q", c.addr, c.dev, err, c.want)
		}
	}
}

func TestConfigURLPasswordsAreMasked(t *testing.T) {
	env := required()
	env["CARTCLASS_GRAPH_AUTH"] = "app"
	env["CARTCLASS_GRAPH_TOKEN_URL"] = "https://app:Sup3rS3cret@login.example/token"
	env["CARTCLASS_GRAPH_URL"] = "http://graph:An0therS3cret@graph.example/beta"
	env["CARTCLASS_OIDC_ISSUER"] = "https://me:Th1rdS3cret@login.example/v2.0"
	env["CARTCLASS_PUBLIC_URL"] = "https://me:F0urthS3cret@cartclass.school.example"
	_, err := web.LoadConfig(envFunc(env), false)
	if err == nil {
		t.Fatal("URLs with passwords accepted")
	}
	for _, secret := range []string{"Sup3rS3cret", "An0therS3cret", "Th1rdS3cret", "F0urthS3cret"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the start-up message shows the password %q:\n%v", secret, err)
		}
	}
	if !strings.Contains(err.Error(), `CARTCLASS_GRAPH_TOKEN_URL="https://app:xxxxx@login.example/token": has a user name or password in it`) {
		t.Errorf("message does not name the URL with its password masked:\n%v", err)
	}
}
