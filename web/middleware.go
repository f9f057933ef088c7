package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

type ctxKey int

const nonceKey ctxKey = iota

// nonceFrom returns the CSP nonce secureHeaders put in the request context.
func nonceFrom(ctx context.Context) string {
	n, _ := ctx.Value(nonceKey).(string)
	return n
}

// secureHeaders sets the security headers every answer carries, with a fresh CSP nonce per
// response for the page's own script tags.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 18)
		rand.Read(b)
		nonce := base64.RawStdEncoding.EncodeToString(b)
		h := w.Header()
		h.Set("Content-Security-Policy", strings.Join([]string{
			"default-src 'self'",
			"script-src 'self' 'nonce-" + nonce + "'",
			"style-src 'self'",
			"img-src 'self' data:",
			"connect-src 'self'",
			"object-src 'none'",
			"base-uri 'none'",
			"frame-ancestors 'none'",
			"form-action " + strings.Join(append([]string{"'self'"}, s.oidc.formOrigins()...), " "),
		}, "; "))
		if s.cfg.Secure() {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nonceKey, nonce)))
	})
}

// crossOrigin refuses state-changing requests from other origins (Sec-Fetch-Site / Origin
// checks of net/http's CrossOriginProtection) with the 403 page.
//
// A browser that sends no Sec-Fetch-Site is judged by its Origin against the Host
// cartclass sees; behind a proxy that rewrites Host (nginx's default) its own Origin, the
// public URL's, would look foreign. So for those requests alone an Origin equal to the
// public URL's passes. A request whose Sec-Fetch-Site says cross-site or same-site is
// never let through by its Origin: a browser naming cartclass's origin there is no
// browser.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errCrossOrigin)
	}))
	checked := p.Handler(next)
	public := ""
	if s.cfg.PublicURL != nil {
		public = canonicalOrigin(s.cfg.PublicURL.Scheme + "://" + s.cfg.PublicURL.Host)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public != "" && r.Header.Get("Sec-Fetch-Site") == "" && canonicalOrigin(r.Header.Get("Origin")) == public {
			next.ServeHTTP(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// canonicalOrigin is an origin as browsers send it: scheme and host in lower case, no
// default port. "" for anything else (an empty or "null" Origin, a URL with a path).
func canonicalOrigin(o string) string {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return ""
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	if strings.Contains(host, ":") { // IPv6
		host = "[" + host + "]"
	}
	return scheme + "://" + host
}

// limitBody answers 413 at once when the declared length is too large, and caps what a
// handler can read otherwise (parsing then fails with *http.MaxBytesError → 413).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(maxBodyBytes)
		if r.Method == http.MethodPost && r.URL.Path == importPath {
			limit = maxImportBody // a CSV upload; readUpload bounds the file itself
		}
		if r.ContentLength > limit {
			s.fail(w, r, &http.MaxBytesError{Limit: limit})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a handler panic into the generic 500 page and one log record.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.fail(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

var errCrossOrigin = errors.New("cross-origin request refused")
