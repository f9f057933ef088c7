package web

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"
)

// loginState is a sign-in in progress, between the redirect to the identity provider and
// its callback. It lives in the browser, sealed (AES-GCM under the session key), so that
// starting a sign-in writes nothing on the server: a signed-out client cannot fill the
// database or slow the admins' saves.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"` // PKCE code verifier
	Next     string `json:"r"` // relative path to return to
	Expires  int64  `json:"e"` // Unix seconds
}

// loginAD binds a sealed login state to its purpose: a sealed session value or token can
// never pass for one.
var loginAD = []byte("cartclass login v1")

// maxNextLen bounds the return path kept in the login cookie (cookies stay under 4 KiB).
const maxNextLen = 1024

func (s *Server) sealLogin(l loginState) string {
	if len(l.Next) > maxNextLen {
		l.Next = "/associations"
	}
	b, _ := json.Marshal(l)
	return base64.RawURLEncoding.EncodeToString(s.seal.seal(b, loginAD))
}

// openLogin reads a login cookie's value; anything tampered with, sealed with a retired
// key or malformed is an error.
func (s *Server) openLogin(v string) (loginState, error) {
	var l loginState
	sealed, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return l, errors.New("login cookie is not base64")
	}
	plain, err := s.seal.open(sealed, loginAD)
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(plain, &l); err != nil || l.State == "" || l.Nonce == "" || l.Verifier == "" {
		return loginState{}, errors.New("login cookie does not hold a sign-in")
	}
	l.Next = safeNext(l.Next)
	return l, nil
}

func (s *Server) loginCookieName() string {
	if s.cfg.Secure() {
		return "__Host-cartclass_login"
	}
	return "cartclass_login"
}

// loginCookie is the login cookie with value; maxAge < 0 deletes it. Lax, not Strict: it
// must come back with the provider's cross-site redirect to the callback.
func (s *Server) loginCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: s.loginCookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.cfg.Secure(), SameSite: http.SameSiteLaxMode}
}

// spentLogins remembers, in memory, the states of sign-ins already completed until they
// expire, so a replayed callback (the same cookie and URL again) is refused. The provider
// refuses a used authorization code as well; this refuses it before asking. Entries come
// only from cookies this server sealed, at most loginTTL old, so the set stays small.
type spentLogins struct {
	mu    sync.Mutex
	m     map[[sha256.Size]byte]time.Time
	swept time.Time
}

// maxSpent bounds the set even under a flood of completed sign-ins: past it the half
// nearest to expiry is forgotten (the provider still refuses their codes), whatever it
// takes to get under the bound.
const maxSpent = 100_000

// used reports whether state belongs to a sign-in already completed.
func (sp *spentLogins) used(state string) bool {
	key := sha256.Sum256([]byte(state))
	sp.mu.Lock()
	defer sp.mu.Unlock()
	_, ok := sp.m[key]
	return ok
}

// spend marks state as used until until; it reports false when it already was.
func (sp *spentLogins) spend(state string, until, now time.Time) bool {
	key := sha256.Sum256([]byte(state))
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.m == nil {
		sp.m = map[[sha256.Size]byte]time.Time{}
	}
	if _, used := sp.m[key]; used {
		return false
	}
	if now.Sub(sp.swept) >= time.Minute {
		sp.swept = now
		for k, t := range sp.m {
			if !now.Before(t) {
				delete(sp.m, k)
			}
		}
	}
	if len(sp.m) >= maxSpent {
		for cut := now.Add(loginTTL / 2); len(sp.m) > maxSpent/2; cut = cut.Add(loginTTL / 2) {
			for k, t := range sp.m {
				if t.Before(cut) {
					delete(sp.m, k)
				}
			}
		}
	}
	sp.m[key] = until
	return true
}
