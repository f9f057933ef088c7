package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// Over https the flash cookie is __Host- prefixed and Secure, like the session cookie, and
// it round-trips through a redirect; over plain http it cannot be Secure.
func TestFlashCookieFollowsPublicURL(t *testing.T) {
	for _, tc := range []struct {
		public string
		name   string
		secure bool
	}{
		{"https://cartclass.school.example", "__Host-cartclass_flash", true},
		{"http://127.0.0.1:8080", "cartclass_flash", false},
	} {
		u, _ := url.Parse(tc.public)
		s := &Server{cfg: Config{PublicURL: u}}
		rec := httptest.NewRecorder()
		s.setFlash(rec, "created")
		cookies := rec.Result().Cookies()
		if len(cookies) != 1 {
			t.Fatalf("%s: %d cookies", tc.public, len(cookies))
		}
		c := cookies[0]
		if c.Name != tc.name || c.Secure != tc.secure || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("%s: flash cookie %+v", tc.public, c)
		}

		r := httptest.NewRequest("GET", "/associations/1", nil)
		r.AddCookie(c)
		rec = httptest.NewRecorder()
		if f := s.takeFlash(rec, r); f != flashes["created"] || f.Message == "" {
			t.Errorf("%s: flash after redirect = %+v", tc.public, f)
		}
		if cleared := rec.Result().Cookies(); len(cleared) != 1 || cleared[0].Name != tc.name || cleared[0].MaxAge >= 0 {
			t.Errorf("%s: flash not cleared once shown: %+v", tc.public, cleared)
		}
	}
}
