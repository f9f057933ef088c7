package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// Behind a proxy, CARTCLASS_PUBLIC_URL alone fixes cartclass's scheme and host: forwarded
// headers a client writes (or a proxy passes on) change no redirect, cookie or link.

const proxyPublicURL = "https://cartclass.school.example"

// forgedHeaders are what a client could add to make cartclass believe it is served
// elsewhere, over http, or under another path.
var forgedHeaders = map[string]http.Header{
	"forwarded as http": {
		"X-Forwarded-Proto":  {"http"},
		"X-Forwarded-Host":   {"evil.example"},
		"X-Forwarded-Port":   {"80"},
		"X-Forwarded-For":    {"203.0.113.66"},
		"X-Forwarded-Prefix": {"/evil"},
		"X-Forwarded-Server": {"evil.example"},
		"Forwarded":          {"for=203.0.113.66;host=evil.example;proto=http"},
		"X-Original-Host":    {"evil.example"},
		"X-Host":             {"evil.example"},
		"X-Original-URL":     {"/evil/associations"},
		"X-Rewrite-URL":      {"/evil/associations"},
		"Front-End-Https":    {"off"},
		"X-Url-Scheme":       {"http"},
	},
	"forwarded as https elsewhere": {
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Host":   {"evil.example:8443"},
		"X-Forwarded-Port":   {"8443"},
		"X-Forwarded-For":    {"198.51.100.1, 203.0.113.66"},
		"X-Forwarded-Prefix": {"/evil"},
		"Forwarded":          {`for="[2001:db8::66]";host=evil.example;proto=https`},
		"X-Original-Host":    {"evil.example"},
	},
	// Not forged: a proxy that sends its upstream's Host (nginx's default), and says
	// where it was asked in headers cartclass does not need.
	"proxy sends its own Host": {
		"Host":              {"127.0.0.1:8080"},
		"X-Forwarded-Host":  {"cartclass.school.example"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-For":   {"198.51.100.7"},
	},
}

// forgedMarkers is what must not appear in any answer to requests with each set of headers.
var forgedMarkers = map[string][]string{
	"forwarded as http":            {"evil", "203.0.113.66", "http://cartclass"},
	"forwarded as https elsewhere": {"evil", "8443", "203.0.113.66", "2001:db8::66"},
	"proxy sends its own Host":     {"127.0.0.1:8080", "198.51.100.7"},
}

// proxyApp is cartclass at proxyPublicURL, with a provider that knows that redirect URI.
type proxyApp struct {
	idp     *devidp.Provider
	handler http.Handler
	peer    string // the address requests come from: the proxy, or a client directly
}

func newProxyApp(t *testing.T, trustedProxies string) *proxyApp {
	t.Helper()
	idp, err := devidp.Start(devidp.Config{
		Issuer: "http://localhost:0",
		Clients: []devidp.Client{{
			ID: testClientID, Secret: testSecret,
			RedirectURIs:           []string{proxyPublicURL + "/auth/callback"},
			PostLogoutRedirectURIs: []string{proxyPublicURL + "/signedout"},
		}},
		Users: devidp.DefaultUsers(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	path := filepath.Join(t.TempDir(), "cartclass.db")
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	env := testEnv(path)
	env["CARTCLASS_PUBLIC_URL"] = proxyPublicURL
	env["CARTCLASS_OIDC_ISSUER"] = idp.Issuer()
	env["CARTCLASS_TRUSTED_PROXIES"] = trustedProxies
	cfg, err := web.LoadConfig(func(k string) string { return env[k] }, false)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(t.Context(), cfg, st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	peer := "198.51.100.20:50000" // a client straight on the internet
	if trustedProxies != "" {
		peer = "10.0.0.2:41000" // the TLS proxy
	}
	return &proxyApp{idp: idp, handler: srv, peer: peer}
}

// proxyResponse is an answer reduced to what must not depend on forwarded headers.
type proxyResponse struct {
	step     string
	status   int
	location *url.URL
	cookies  []*http.Cookie
	header   http.Header
	body     string
}

// browserSession keeps cookies by name, as a browser at proxyPublicURL would (Secure cookies
// included: the browser talks https to the proxy).
type browserSession map[string]string

// send makes one request as it reaches cartclass from the proxy: plain http, the public
// host, and the extra headers.
func (a *proxyApp) send(t *testing.T, b browserSession, step, method, target string, form url.Values, extra http.Header) proxyResponse {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "http://cartclass.school.example"+target, body)
	req.RemoteAddr = a.peer
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", proxyPublicURL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for name, value := range b {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	for k, vs := range extra {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	res := rec.Result()
	out := proxyResponse{step: step, status: res.StatusCode, cookies: res.Cookies(), header: res.Header, body: rec.Body.String()}
	if loc := res.Header.Get("Location"); loc != "" {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("%s: Location %q: %v", step, loc, err)
		}
		out.location = u
	}
	for _, c := range out.cookies {
		if c.MaxAge < 0 {
			delete(b, c.Name)
		} else {
			b[c.Name] = c.Value
		}
	}
	return out
}

// signInFlow walks a signed-out visit, sign-in, callback, a page and sign-out, every
// request to cartclass carrying extra, and returns each answer.
func (a *proxyApp) signInFlow(t *testing.T, extra http.Header) []proxyResponse {
	t.Helper()
	b := browserSession{}
	var out []proxyResponse
	step := func(r proxyResponse) proxyResponse { out = append(out, r); return r }

	step(a.send(t, b, "signed-out home", "GET", "/", nil, extra))
	step(a.send(t, b, "signed-out list", "GET", "/associations?q=room", nil, extra))
	step(a.send(t, b, "sign-in page", "GET", "/signin?next=%2Fassociations", nil, extra))
	start := step(a.send(t, b, "sign-in start", "POST", "/auth/login", url.Values{"next": {"/associations"}}, extra))
	if start.location == nil {
		t.Fatalf("sign-in start = %d without a redirect", start.status)
	}

	// The provider's side, as the browser sees it, until it sends the browser back.
	if err := a.idp.SetAutoLogin(devidp.SubjectAdmin); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "cartclass.school.example" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	res, err := client.Get(start.location.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if err != nil || back.Scheme+"://"+back.Host != proxyPublicURL || back.Path != "/auth/callback" {
		t.Fatalf("the provider sent the browser to %q, want %s/auth/callback", res.Header.Get("Location"), proxyPublicURL)
	}

	step(a.send(t, b, "callback", "GET", back.RequestURI(), nil, extra))
	step(a.send(t, b, "signed-in list", "GET", "/associations", nil, extra))
	step(a.send(t, b, "signed-in form", "GET", "/associations/new", nil, extra))
	step(a.send(t, b, "sign-out", "POST", "/auth/logout", url.Values{}, extra))
	step(a.send(t, b, "signed-out page", "GET", "/signedout", nil, extra))
	return out
}

// randomParams vary from one sign-in to the next; their values are not compared.
var randomParams = map[string]bool{"state": true, "nonce": true, "code_challenge": true, "id_token_hint": true, "code": true}

func (r proxyResponse) normalLocation() string {
	if r.location == nil {
		return ""
	}
	u := *r.location
	q := u.Query()
	for k := range q {
		if randomParams[k] {
			q.Set(k, "*")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// cookieShapes are the cookies set, without their values: name and every attribute.
func (r proxyResponse) cookieShapes() []string {
	var out []string
	for _, c := range r.cookies {
		out = append(out, strings.Join([]string{c.Name, "Path=" + c.Path, "Domain=" + c.Domain, "MaxAge=" + strconv.Itoa(c.MaxAge),
			"Secure=" + yesNo(c.Secure), "HttpOnly=" + yesNo(c.HttpOnly), "SameSite=" + strconv.Itoa(int(c.SameSite))}, "; "))
	}
	sort.Strings(out)
	return out
}

var cspNonceRE = regexp.MustCompile(`'nonce-[^']*'`)

// headerShape is the headers that would carry a scheme, host or path, nonces blanked.
func (r proxyResponse) headerShape() string {
	var out []string
	for _, k := range []string{"Strict-Transport-Security", "Content-Security-Policy", "Cache-Control", "Vary", "Content-Type", "Hx-Redirect", "Referrer-Policy", "X-Frame-Options"} {
		out = append(out, k+": "+cspNonceRE.ReplaceAllString(r.header.Get(k), "'nonce-*'"))
	}
	return strings.Join(out, "\n")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// absoluteLinks lists every URL in the page that names a scheme or host.
func absoluteLinks(t *testing.T, body string) []string {
	t.Helper()
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	doc.Find("*").Each(func(_ int, s *goquery.Selection) {
		for _, attr := range []string{"href", "src", "action", "formaction", "hx-get", "hx-post", "hx-push-url", "data-url", "content"} {
			v, ok := s.Attr(attr)
			if !ok {
				continue
			}
			if strings.Contains(v, "://") || strings.HasPrefix(v, "//") {
				out = append(out, attr+"="+v)
			}
		}
	})
	return out
}

func TestForgedForwardedHeadersChangeNothing(t *testing.T) {
	for _, trusted := range []string{"", "10.0.0.0/8"} {
		name := "no trusted proxies"
		if trusted != "" {
			name = "behind a trusted proxy"
		}
		t.Run(name, func(t *testing.T) {
			a := newProxyApp(t, trusted)
			plain := a.signInFlow(t, nil)
			checkServedAtPublicURL(t, a, plain)
			for forgery, hdr := range forgedHeaders {
				forged := a.signInFlow(t, hdr)
				for i, want := range plain {
					got := forged[i]
					ctx := forgery + ", " + got.step
					if got.status != want.status {
						t.Errorf("%s: status %d, without the headers %d", ctx, got.status, want.status)
					}
					if g, w := got.normalLocation(), want.normalLocation(); g != w {
						t.Errorf("%s: Location\n  %s\nwithout the headers\n  %s", ctx, g, w)
					}
					if g, w := strings.Join(got.cookieShapes(), "\n"), strings.Join(want.cookieShapes(), "\n"); g != w {
						t.Errorf("%s: cookies\n%s\nwithout the headers\n%s", ctx, g, w)
					}
					if g, w := got.headerShape(), want.headerShape(); g != w {
						t.Errorf("%s: headers\n%s\nwithout the headers\n%s", ctx, g, w)
					}
					if g, w := strings.Join(absoluteLinks(t, got.body), "\n"), strings.Join(absoluteLinks(t, want.body), "\n"); g != w {
						t.Errorf("%s: absolute links\n%s\nwithout the headers\n%s", ctx, g, w)
					}
					all := got.body + got.headerShape() + got.normalLocation() + strings.Join(got.header.Values("Set-Cookie"), "\n")
					for _, bad := range forgedMarkers[forgery] {
						if strings.Contains(all, bad) {
							t.Errorf("%s: the answer shows %q from the forged headers", ctx, bad)
						}
					}
				}
			}
		})
	}
}

// checkServedAtPublicURL checks the flow without forged headers is the one https at
// proxyPublicURL calls for (identical answers alone could be identically wrong).
func checkServedAtPublicURL(t *testing.T, a *proxyApp, flow []proxyResponse) {
	t.Helper()
	by := map[string]proxyResponse{}
	for _, r := range flow {
		by[r.step] = r
		if hsts := r.header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
			t.Errorf("%s: Strict-Transport-Security = %q, want HSTS (the public URL is https)", r.step, hsts)
		}
		for _, link := range absoluteLinks(t, r.body) {
			v := link[strings.Index(link, "=")+1:]
			if !strings.HasPrefix(v, proxyPublicURL+"/") && !strings.HasPrefix(v, a.idp.Issuer()+"/") && !strings.HasPrefix(v, "http://www.w3.org/") {
				t.Errorf("%s: link %s is neither on %s nor at the provider", r.step, link, proxyPublicURL)
			}
		}
		for _, c := range r.cookies {
			if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("%s: cookie %s: Secure=%v HttpOnly=%v Path=%q Domain=%q SameSite=%v; want __Host-, Secure, HttpOnly, Path=/, no Domain, Lax",
					r.step, c.Name, c.Secure, c.HttpOnly, c.Path, c.Domain, c.SameSite)
			}
		}
	}
	for step, want := range map[string]string{
		"signed-out home": "/signin?next=%2F",
		"signed-out list": "/signin?next=%2Fassociations%3Fq%3Droom",
		"callback":        "/associations",
	} {
		if got := by[step].normalLocation(); got != want {
			t.Errorf("%s: Location %q, want %q", step, got, want)
		}
	}
	start := by["sign-in start"].location
	if start == nil || !strings.HasPrefix(start.String(), a.idp.Issuer()+"/") || start.Query().Get("redirect_uri") != proxyPublicURL+"/auth/callback" {
		t.Errorf("sign-in start: Location %v, want the provider with redirect_uri=%s/auth/callback", start, proxyPublicURL)
	}
	if out := by["sign-out"].location; out == nil || out.Query().Get("post_logout_redirect_uri") != proxyPublicURL+"/signedout" {
		t.Errorf("sign-out: Location %v, want post_logout_redirect_uri=%s/signedout", out, proxyPublicURL)
	}
	if by["signed-in list"].status != http.StatusOK || by["signed-in form"].status != http.StatusOK {
		t.Errorf("signed in, the list = %d and the form = %d, want 200", by["signed-in list"].status, by["signed-in form"].status)
	}
	names := map[string]bool{}
	for _, c := range append(by["sign-in start"].cookies, by["callback"].cookies...) {
		names[c.Name] = true
	}
	if !names["__Host-cartclass_login"] || !names["__Host-cartclass_session"] {
		t.Errorf("cookies set during sign-in: %v, want __Host-cartclass_login and __Host-cartclass_session", names)
	}
}

// A proxy that rewrites Host (nginx's default) leaves the browser's Origin, the public
// URL's, unlike the Host cartclass sees. A browser that sends no Sec-Fetch-Site must still
// be able to save; another origin still cannot.
func TestRewrittenHostKeepsSameOriginWrites(t *testing.T) {
	a := newTestApp(t)
	post := func(origin string) int {
		t.Helper()
		req := a.newRequest(http.MethodPost, "/associations", strings.NewReader(validForm().Encode()),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {""}, "Origin": {origin}})
		req.Host = "10.0.0.5:8080" // what the proxy sent on
		rec := httptest.NewRecorder()
		a.handler.ServeHTTP(rec, req)
		return rec.Code
	}
	if got := post(testOrigin); got != http.StatusSeeOther {
		t.Errorf("save with the public URL's Origin behind a Host-rewriting proxy = %d, want 303", got)
	}
	if got := post("https://evil.example"); got != http.StatusForbidden {
		t.Errorf("save with another Origin = %d, want 403", got)
	}
	for _, o := range []string{"http://LOCALHOST", "http://localhost:80"} {
		if got := post(o); got != http.StatusSeeOther {
			t.Errorf("save with Origin %s (the public URL written otherwise) = %d, want 303", o, got)
		}
	}
	for _, o := range []string{"http://localhost.evil.example", "https://localhost", "http://localhost:8080", "null"} {
		if got := post(o); got != http.StatusForbidden {
			t.Errorf("save with Origin %s = %d, want 403", o, got)
		}
	}
}
