// Package static holds the stylesheet, the small app script, the favicon and the vendored,
// pinned htmx, embedded into the binary. Each file is served under a content-hashed name
// (app.css → app.1a2b3c4d5e6f.css) with a one-year immutable cache, so a deploy never
// mixes old and new assets and browsers never revalidate.
package static

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed app.css app.js favicon.svg vendor
var files embed.FS

// Prefix is where Handler is mounted.
const Prefix = "/static/"

type asset struct {
	name string // logical name, e.g. "vendor/htmx-2.0.11.min.js"
	body []byte
}

var (
	hashed  = map[string]string{} // logical name → hashed URL path
	byHash  = map[string]asset{}  // hashed name (without Prefix) → asset
	modTime = time.Unix(0, 0)
)

func init() {
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(p)
		name := strings.TrimSuffix(p, ext) + "." + hex.EncodeToString(sum[:6]) + ext
		hashed[p] = Prefix + name
		byHash[name] = asset{name: p, body: body}
		return nil
	})
	if err != nil {
		panic("static: " + err.Error())
	}
}

// Path returns the content-hashed URL path of the embedded file name ("app.css"). It panics
// on an unknown name, which is a programming error caught by any test that renders a page.
func Path(name string) string {
	p, ok := hashed[name]
	if !ok {
		panic("static: no embedded file " + name)
	}
	return p
}

// Handler serves the embedded files under their hashed names; it must be mounted at Prefix.
// Any other name is a 404, so a stale URL never serves new content under an old hash.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := byHash[strings.TrimPrefix(r.URL.Path, Prefix)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, a.name, modTime, bytes.NewReader(a.body))
	})
}
