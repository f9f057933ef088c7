package static_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/cartclass/cartclass/static"
)

var hashedPath = regexp.MustCompile(`^/static/(.+)\.([0-9a-f]{12})\.(css|js|svg)$`)

// embedded are the files the package embeds, with the file on disk each must serve.
var embedded = []struct{ name, ctype string }{
	{"app.css", "text/css"},
	{"app.js", "javascript"},
	{"favicon.svg", "image/svg+xml"},
	{"vendor/htmx-2.0.11.min.js", "javascript"},
}

func serve(t *testing.T, method, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	static.Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func TestPathIsContentHashed(t *testing.T) {
	seen := map[string]string{}
	for _, f := range embedded {
		p := static.Path(f.name)
		m := hashedPath.FindStringSubmatch(p)
		if m == nil {
			t.Errorf("Path(%q) = %q, want /static/<name>.<12 hex>.<ext>", f.name, p)
			continue
		}
		if want := strings.TrimSuffix(f.name, "."+m[3]); m[1] != want {
			t.Errorf("Path(%q) = %q keeps the name %q, want %q", f.name, p, m[1], want)
		}
		if other, dup := seen[m[2]]; dup {
			t.Errorf("%s and %s have the same hash %s", f.name, other, m[2])
		}
		seen[m[2]] = f.name
		if again := static.Path(f.name); again != p {
			t.Errorf("Path(%q) is not stable: %q then %q", f.name, p, again)
		}
	}
}

func TestHandlerServesHashedFilesImmutable(t *testing.T) {
	for _, f := range embedded {
		res := serve(t, http.MethodGet, static.Path(f.name))
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", f.name, res.StatusCode)
			continue
		}
		disk, err := os.ReadFile(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, disk) {
			t.Errorf("%s: served %d bytes that differ from the file on disk (%d bytes)", f.name, len(body), len(disk))
		}
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control = %q", f.name, cc)
		}
		if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, f.ctype) {
			t.Errorf("%s: Content-Type = %q, want %s", f.name, ct, f.ctype)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", f.name)
		}
		if lm := res.Header.Get("Last-Modified"); lm != "" {
			t.Errorf("%s: Last-Modified %q invites revalidation of an immutable file", f.name, lm)
		}
	}
	// HEAD works and sends no body.
	res := serve(t, http.MethodHead, static.Path("app.css"))
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD: %d with %d bytes", res.StatusCode, len(body))
	}
}

func TestHandlerRefusesOtherNames(t *testing.T) {
	css := static.Path("app.css")
	for _, p := range []string{
		"/static/app.css",
		"/static/app.js",
		"/static/vendor/htmx-2.0.11.min.js",
		"/static/preview.html",
		"/static/static.go",
		"/static/",
		"/static/app.000000000000.css",
		strings.Replace(css, ".css", ".js", 1),
		css + "x",
		"/static/../static/static.go",
		strings.ToUpper(css),
	} {
		res := serve(t, http.MethodGet, p)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, res.StatusCode)
		}
		if strings.Contains(res.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("%s: 404 marked immutable", p)
		}
	}
}

func TestPathPanicsOnUnknownName(t *testing.T) {
	for _, name := range []string{"nope.css", "preview.html", "/app.css"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Path(%q) did not panic", name)
				}
			}()
			static.Path(name)
		}()
	}
}
