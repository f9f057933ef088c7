package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/web/devidp"
)

// An admin sees who is signed in and signs another browser out; that browser is back at
// sign-in on its next request. "Sign out everyone else" ends every session but the admin's.
func TestSessionsPage(t *testing.T) {
	e := newAuthEnv(t, nil)
	admin, other, viewer := e.browser(t), e.browser(t), e.browser(t)
	e.login(t, admin, devidp.SubjectAdmin, "/")
	e.login(t, other, devidp.SubjectAdmin, "/")
	e.login(t, viewer, devidp.SubjectViewer, "/")

	page := func() (rows []string, endURLs []string) {
		h := do(t, admin, "GET", e.url+"/sessions", nil, nil)
		if h.status != http.StatusOK {
			t.Fatalf("GET /sessions = %d", h.status)
		}
		d := parseDoc(t, h.body)
		d.Find(`[data-testid="session-row"]`).Each(func(_ int, s *goquery.Selection) {
			rows = append(rows, text(s))
			if a, ok := s.Find("form").Attr("action"); ok {
				endURLs = append(endURLs, a)
			}
		})
		return rows, endURLs
	}
	rows, ends := page()
	if len(rows) != 3 || len(ends) != 2 {
		t.Fatalf("sessions page rows %q with %d sign-out buttons, want 3 rows and a button on the 2 others", rows, len(ends))
	}
	joined := strings.Join(rows, "\n")
	for _, want := range []string{"Dev Admin", "Dev Viewer", "This browser", "Admin", "Viewer"} {
		if !strings.Contains(joined, want) {
			t.Errorf("sessions page lacks %q:\n%s", want, joined)
		}
	}

	// The other admin's browser (not the viewer's: the rows are newest first, the viewer
	// signed in last).
	var otherEnd string
	for i, r := range rows {
		if strings.Contains(r, "Dev Admin") && !strings.Contains(r, "This browser") {
			otherEnd = ends[min(i, len(ends)-1)]
		}
	}
	if otherEnd == "" {
		t.Fatalf("no sign-out button for the other admin: %q", rows)
	}
	h := do(t, admin, "POST", e.url+otherEnd, nil, nil)
	if h.status != http.StatusSeeOther || !strings.HasSuffix(h.location, "/sessions") {
		t.Fatalf("sign out = %d → %q", h.status, h.location)
	}
	if h := do(t, other, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther || !strings.Contains(h.location, "/signin") {
		t.Errorf("signed-out browser = %d → %q, want sign-in", h.status, h.location)
	}
	if h := do(t, admin, "GET", e.url+"/sessions", nil, nil); !strings.Contains(h.body, "Session signed out") {
		t.Error("no message after signing a session out")
	}
	// The same button again: already gone, said so, no error.
	if h := do(t, admin, "POST", e.url+otherEnd, nil, nil); h.status != http.StatusSeeOther {
		t.Errorf("signing out an ended session = %d", h.status)
	}
	if h := do(t, admin, "GET", e.url+"/sessions", nil, nil); !strings.Contains(h.body, "already ended") {
		t.Error("no message after signing out an ended session")
	}
	for _, bad := range []string{"/sessions/zz/end", "/sessions/" + strings.Repeat("ab", 16) + "/end"} {
		if h := do(t, admin, "POST", e.url+bad, nil, nil); h.status != http.StatusNotFound && h.status != http.StatusSeeOther {
			t.Errorf("POST %s = %d, want 404 or the already-ended message", bad, h.status)
		}
	}

	// Viewers cannot see or end sessions.
	if h := do(t, viewer, "GET", e.url+"/sessions", nil, nil); h.status != http.StatusForbidden {
		t.Errorf("viewer GET /sessions = %d, want 403", h.status)
	}
	if h := do(t, viewer, "POST", e.url+"/sessions/end-others", nil, nil); h.status != http.StatusForbidden {
		t.Errorf("viewer POST end-others = %d, want 403", h.status)
	}
	if h := do(t, viewer, "GET", e.url+"/associations", nil, nil); h.status != http.StatusOK {
		t.Fatalf("viewer signed out by a refused request: %d", h.status)
	}

	if h := do(t, admin, "POST", e.url+"/sessions/end-others", nil, nil); h.status != http.StatusSeeOther {
		t.Fatalf("end-others = %d", h.status)
	}
	if h := do(t, viewer, "GET", e.url+"/associations", nil, nil); h.status != http.StatusSeeOther {
		t.Errorf("viewer after “Sign out everyone else” = %d, want sign-in", h.status)
	}
	if h := do(t, admin, "GET", e.url+"/associations", nil, nil); h.status != http.StatusOK {
		t.Errorf("the admin who pressed it = %d, want still signed in", h.status)
	}
	if rows, _ := page(); len(rows) != 1 {
		t.Errorf("rows after “Sign out everyone else”: %q", rows)
	}
}
