package web

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/a-h/templ"

	"github.com/cartclass/cartclass/views"
)

// isHTMX reports whether r is an htmx request that wants a fragment. History-restore
// requests want the whole page.
func isHTMX(r *http.Request) bool {
	return r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-History-Restore-Request") != "true"
}

// render writes c with status. It renders into a buffer first so that a render error still
// becomes a clean 500 and headers (cookies) are complete before the body.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	// Rendering only fills a buffer; a client that has stopped sending (a cut-off body)
	// may still be reading, so its answer is rendered even when the request is cancelled.
	ctx := views.WithZone(context.WithoutCancel(r.Context()), s.cfg.Timezone)
	if err := c.Render(ctx, &buf); err != nil {
		s.log.Error("render failed", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "Internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Add("Vary", "HX-Request")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderPage renders fragment for htmx requests and the page full builds otherwise. full
// is only called for a whole page: the page frame (user, banner) costs queries a fragment
// does not need.
func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, fragment templ.Component, full func() templ.Component) {
	if isHTMX(r) {
		s.render(w, r, status, fragment)
		return
	}
	s.render(w, r, status, full())
}

// page builds the props every full page shares, consuming a pending flash message.
func (s *Server) page(w http.ResponseWriter, r *http.Request, title string, crumbs ...views.Crumb) views.Page {
	// Only a full page shows the flash: a fragment must not consume it.
	var flash views.Flash
	if !isHTMX(r) {
		flash = s.takeFlash(w, r)
	}
	var user *views.User
	var banner *views.Banner
	if u, ok := s.currentUser(r); ok {
		user = &views.User{Name: u.Name, Role: u.Role.String(), CanEdit: u.Role >= RoleAdmin}
		if u.Role >= RoleAdmin {
			banner = s.banner(r.Context())
		}
	}
	return views.Page{
		User:        user,
		Banner:      banner,
		Title:       title,
		Nonce:       nonceFrom(r.Context()),
		Flash:       flash,
		Breadcrumbs: crumbs,
		Nav:         "associations",
	}
}

// redirect sends the browser to url after a successful POST: 303 for plain forms,
// HX-Redirect for htmx (a 303 would be followed by the XHR and swapped into the form).
func redirect(w http.ResponseWriter, r *http.Request, url string) {
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Redirect", url)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Redirect(w, r, url, http.StatusSeeOther)
}

// flashes are the messages a redirect can carry; the cookie holds only the key, so nothing
// a user controls is ever echoed from it.
var flashes = map[string]views.Flash{
	"created":    {Kind: "success", Message: "Association created."},
	"updated":    {Kind: "success", Message: "Changes saved."},
	"unchanged":  {Kind: "info", Message: "Nothing changed, so nothing was saved."},
	"retrying":   {Kind: "info", Message: "Sending it to Intune again."},
	"recreating": {Kind: "info", Message: "Re-creating it in Intune."},
	"pushing":    {Kind: "info", Message: "Pushing now."},
	"ended":      {Kind: "success", Message: "Session signed out: that browser must sign in again."},
	"ended-none": {Kind: "info", Message: "That session had already ended."},
	"ended-rest": {Kind: "success", Message: "Every other session is signed out."},

	"restored":        {Kind: "success", Message: "Restored; it will be created again in Intune."},
	"restored-kept":   {Kind: "success", Message: "Restored. Its removal from Intune is called off, or, if it had already gone through, it is created there again."},
	"restore-none":    {Kind: "info", Message: "It is not deleted, so there was nothing to restore."},
	"remove-none":     {Kind: "info", Message: "Nothing was removed: it is no longer marked as deleted in Intune."},
	"kept-intune":     {Kind: "success", Message: "Kept Intune's version."},
	"pushing-mine":    {Kind: "info", Message: "Sending your version to Intune."},
	"choice-none":     {Kind: "info", Message: "Nothing to choose any more: it is no longer changed in Intune."},
	"reading":         {Kind: "info", Message: "Reading Intune now."},
	"reading-already": {Kind: "info", Message: "A read of Intune is already running."},
	"import-applied":  {Kind: "success", Message: "Import applied. Its changes are on their way to Intune."},
	"import-already":  {Kind: "info", Message: "This import was applied already, so nothing more was saved."},
}

// namedFlashes are the messages that name an association. The cookie carries the key and
// the association's id ("deleted:12"); the name is read from the store when the message is
// shown, so nothing is echoed from the cookie here either.
var namedFlashes = map[string]struct {
	kind   string
	format func(name string) string
}{
	"deleted":         {"success", func(n string) string { return "Deleted " + n + ". It is being removed from Intune." }},
	"deleted-local":   {"success", func(n string) string { return "Deleted " + n + ". It never reached Intune, so nothing was sent." }},
	"deleted-gone":    {"success", func(n string) string { return "Deleted " + n + ". Intune had deleted it already, so nothing was sent." }},
	"removed":         {"success", func(n string) string { return "Removed " + n + " from cartclass. It was already gone from Intune." }},
	"already-deleted": {"info", func(n string) string { return "Nothing to do: " + n + " was already deleted." }},
}

// flashCookie is the cookie carrying a flash key across a redirect: __Host- prefixed and
// Secure over https, like the session cookie.
func (s *Server) flashCookie(value string, maxAge int) *http.Cookie {
	name := "cartclass_flash"
	if s.cfg.Secure() {
		name = "__Host-cartclass_flash"
	}
	return &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: s.cfg.Secure(), SameSite: http.SameSiteLaxMode, MaxAge: maxAge}
}

func (s *Server) setFlash(w http.ResponseWriter, key string) {
	http.SetCookie(w, s.flashCookie(key, 60))
}

// setNamedFlash sets one of namedFlashes, about association id.
func (s *Server) setNamedFlash(w http.ResponseWriter, key string, id int64) {
	s.setFlash(w, key+":"+strconv.FormatInt(id, 10))
}

func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) views.Flash {
	c, err := r.Cookie(s.flashCookie("", 0).Name)
	if err != nil {
		return views.Flash{}
	}
	http.SetCookie(w, s.flashCookie("", -1))
	key, idText, named := strings.Cut(c.Value, ":")
	if !named {
		return flashes[c.Value]
	}
	nf, ok := namedFlashes[key]
	id, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil {
		return views.Flash{}
	}
	name := "the association"
	if a, err := s.store.GetAssociation(r.Context(), id); err == nil {
		name = "“" + a.DisplayName + "”"
	}
	return views.Flash{Kind: nf.kind, Message: nf.format(name)}
}
