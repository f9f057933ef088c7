package web_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
)

// bodyMarker is in every body the fake "issuers" below send: it must never reach an
// error message or a log line.
const bodyMarker = "BODY-MARKER-4f1c9e"

// newAppWithIssuer builds cartclass against issuer, returning web.New's error and the log.
func newAppWithIssuer(t *testing.T, issuer string) (*web.Server, error, *logRecorder) {
	t.Helper()
	env := map[string]string{
		"CARTCLASS_OIDC_ISSUER": issuer, "CARTCLASS_OIDC_CLIENT_ID": "id", "CARTCLASS_OIDC_CLIENT_SECRET": "s",
		"CARTCLASS_SESSION_KEY": strings.Repeat("ab", 32),
	}
	cfg, err := web.LoadConfig(func(k string) string { return env[k] }, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &logRecorder{}
	app, err := web.New(t.Context(), cfg, st, slog.New(logs))
	return app, err, logs
}

// An issuer whose discovery URL answers something other than an OpenID configuration is
// refused at start-up, saying what was fetched, the status and the content type, and
// never the body that came back.
func TestDiscoveryOfSomethingElse(t *testing.T) {
	page := "<!doctype html><html><head><title>Springfield School</title></head><body>" + bodyMarker + strings.Repeat(" welcome", 200) + "</body></html>"
	html := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(status)
			w.Write([]byte(page))
		}
	}
	for _, c := range []struct {
		name    string
		handler func(srvURL string) http.Handler
		want    string // after "GET <issuer>/.well-known/openid-configuration "
	}{
		{"a school's web site", func(string) http.Handler { return html(http.StatusOK) },
			"answered 200 OK with text/html; charset=utf-8 that is not an OpenID configuration (JSON)"},
		{"a web site's 404 page", func(string) http.Handler { return html(http.StatusNotFound) },
			"answered 404 Not Found (text/html; charset=utf-8), not an OpenID configuration"},
		{"JSON that is no OpenID configuration", func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"status": "ok", "motd": bodyMarker, "token_endpoint": "https://x.example/token"})
			})
		}, "answered JSON (application/json) that is not an OpenID configuration: it has no issuer, authorization_endpoint, jwks_uri"},
		{"a redirect to a sign-in page", func(string) http.Handler {
			mux := http.NewServeMux()
			mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/login?return=%2F.well-known%2Fopenid-configuration&session="+bodyMarker, http.StatusFound)
			})
			mux.HandleFunc("/login", html(http.StatusOK))
			return mux
		}, "was redirected to {srv}/login (a sign-in page?), which answered 200 OK with text/html; charset=utf-8 that is not an OpenID configuration (JSON)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(nil)
			srv.Config.Handler = c.handler("http://" + srv.Listener.Addr().String())
			srv.Start()
			defer srv.Close()
			_, err, logs := newAppWithIssuer(t, srv.URL)
			if err == nil {
				t.Fatal("cartclass started with an issuer that is no identity provider")
			}
			msg := err.Error()
			want := `CARTCLASS_OIDC_ISSUER="` + srv.URL + `": GET ` + srv.URL + "/.well-known/openid-configuration " + strings.ReplaceAll(c.want, "{srv}", srv.URL)
			if !strings.Contains(msg, want) {
				t.Errorf("start-up error:\n got %s\nwant …%s…", msg, want)
			}
			if !strings.Contains(msg, "; check that it is your identity provider's issuer URL, such as https://login.microsoftonline.com/<tenant-id>/v2.0") {
				t.Errorf("start-up error says nothing to check: %s", msg)
			}
			for where, text := range map[string]string{"error": msg, "log": logs.text()} {
				if strings.Contains(text, bodyMarker) || strings.Contains(text, "welcome") || strings.Contains(text, "<html") {
					t.Errorf("the %s shows the body that came back:\n%s", where, text)
				}
			}
		})
	}
}

// A provider whose configuration names another issuer (a trailing slash, Entra's common
// endpoint) is refused with both issuers.
func TestDiscoveryIssuerMismatch(t *testing.T) {
	var issuer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": issuer, "authorization_endpoint": "http://127.0.0.1/authorize", "token_endpoint": "http://127.0.0.1/token",
			"jwks_uri": "http://127.0.0.1/keys", "service_documentation": bodyMarker,
		})
	}))
	defer srv.Close()
	for _, c := range []struct{ configured, advertised, want string }{
		{srv.URL + "/", srv.URL, `the provider at ` + srv.URL + `/.well-known/openid-configuration calls itself "` + srv.URL + `", not "` + srv.URL + `/", and ID tokens must name the issuer exactly (they differ in the trailing slash); if that is your provider, set CARTCLASS_OIDC_ISSUER to exactly the issuer it names`},
		{srv.URL + "/common/v2.0", srv.URL + "/0000-tenant/v2.0", `calls itself "` + srv.URL + `/0000-tenant/v2.0", not "` + srv.URL + `/common/v2.0", and ID tokens must name the issuer exactly (Entra ID: put your tenant's ID in place of common or organizations)`},
	} {
		issuer = c.advertised
		_, err, logs := newAppWithIssuer(t, c.configured)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), `CARTCLASS_OIDC_ISSUER="`+c.configured+`": `) {
			t.Errorf("issuer %s advertising %s:\n got %v\nwant …%s…", c.configured, c.advertised, err, c.want)
		}
		if err != nil && strings.Contains(err.Error()+logs.text(), bodyMarker) {
			t.Errorf("the body reached the message or the log: %v", err)
		}
	}
}

// A provider failing for now (a 5xx, from it or the proxy in front of it) does not keep
// cartclass from starting, which would crash-loop it under its service manager: it is
// logged, without the body, and sign-in says it is unavailable.
func TestDiscoveryOfAProviderDownForNow(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError} {
		t.Run(http.StatusText(status), func(t *testing.T) { providerDownForNow(t, status) })
	}
}

func providerDownForNow(t *testing.T, status int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		w.Write([]byte("<html>" + bodyMarker + " maintenance</html>"))
	}))
	defer srv.Close()
	app, err, logs := newAppWithIssuer(t, srv.URL)
	if err != nil {
		t.Fatalf("a %d at start-up kept cartclass from starting: %v", status, err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/auth/login", strings.NewReader("next=/"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	app.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Sign-in is unavailable") {
		t.Errorf("sign-in with the provider answering %d = %d", status, rec.Code)
	}
	log := logs.text()
	if !strings.Contains(log, "GET "+srv.URL+"/.well-known/openid-configuration answered "+strconv.Itoa(status)+" "+http.StatusText(status)+" (text/html)") {
		t.Errorf("the log does not say what answered what:\n%s", log)
	}
	if strings.Contains(log+rec.Body.String(), bodyMarker) {
		t.Errorf("the body reached the log or the page:\n%s", log)
	}
}
