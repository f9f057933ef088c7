package devidp

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The login step: the library redirects the browser from /authorize to
// /login?authRequestID=…; the user picks a user (or denies), and we send the
// browser to the library's /authorize/callback, which issues the code.

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in – cartclass dev identity provider</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; color: #1b1b1b; }
p.note { color: #6b4e00; background: #fff4d6; padding: .5rem .75rem; border-radius: .25rem; }
form { display: grid; gap: .5rem; }
button { font: inherit; padding: .6rem 1rem; text-align: left; cursor: pointer; border: 1px solid #888; border-radius: .25rem; background: #f7f7f7; }
button small { display: block; color: #555; }
button.deny { background: #fff; border-color: #a33; color: #a33; }
</style>
</head>
<body>
<h1>Sign in to {{.ClientID}}</h1>
<p class="note">Development identity provider. Not for production: anyone can sign in as anyone.</p>
<form method="post" action="{{.Action}}" data-testid="login-form">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
{{range .Users}}<button type="submit" name="subject" value="{{.Subject}}" data-testid="login-as-{{.Subject}}">Sign in as {{.Name}}<small>{{.Email}}{{if .Roles}} · {{.Roles}}{{else}} · no role{{end}}</small></button>
{{end}}<button type="submit" name="deny" value="1" class="deny" data-testid="deny">Deny</button>
</form>
</body>
</html>
`))

var messagePage = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{.Title}} – cartclass dev identity provider</title></head>
<body><h1 data-testid="title">{{.Title}}</h1><p data-testid="message">{{.Message}}</p></body>
</html>
`))

type loginUser struct {
	Subject, Name, Email, Roles string
}

func (p *Provider) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	req, err := p.storage.authRequest(id)
	if err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Sign-in request not found",
			"This sign-in request is unknown or has expired. Go back to the application and sign in again.")
		return
	}
	if subject := p.autoLoginSubject(); subject != "" {
		p.completeLogin(w, r, req, subject)
		return
	}

	users := make([]loginUser, 0, len(p.users))
	for _, u := range p.users {
		users = append(users, loginUser{
			Subject: u.Subject, Name: displayName(u), Email: u.Email, Roles: strings.Join(u.Roles, ", "),
		})
	}
	p.render(w, http.StatusOK, loginPage, map[string]any{
		"ClientID":      req.clientID,
		"Action":        loginPath,
		"AuthRequestID": req.id,
		"Users":         users,
	})
}

func (p *Provider) handleLoginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	req, err := p.storage.authRequest(r.PostForm.Get("authRequestID"))
	if err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Sign-in request not found",
			"This sign-in request is unknown or has expired. Go back to the application and sign in again.")
		return
	}
	if r.PostForm.Get("deny") != "" {
		p.deny(w, r, req)
		return
	}
	p.completeLogin(w, r, req, r.PostForm.Get("subject"))
}

// completeLogin marks the request as signed in by subject and hands the
// browser to the library's callback, which redirects to the client with a code.
func (p *Provider) completeLogin(w http.ResponseWriter, r *http.Request, req *authRequest, subject string) {
	if err := p.storage.completeAuthRequest(req.id, subject); err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Sign-in failed", "Unknown user, or this request was already used.")
		return
	}
	p.log.Info("dev sign-in", "subject", subject, "client_id", req.clientID)
	ctx := op.ContextWithIssuer(r.Context(), p.issuer)
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, req.id), http.StatusSeeOther)
}

// deny answers the client as Entra does when the user declines:
// error=access_denied (with the state) at the redirect URI.
func (p *Provider) deny(w http.ResponseWriter, r *http.Request, req *authRequest) {
	// Delete first: a denied request must not be completable afterwards.
	if err := p.storage.DeleteAuthRequest(r.Context(), req.id); err != nil {
		p.renderMessage(w, http.StatusInternalServerError, "Error", "The request could not be cancelled.")
		return
	}
	p.log.Info("dev sign-in denied", "client_id", req.clientID)
	op.AuthRequestError(w, r, req, oidc.ErrAccessDenied().WithDescription("The user denied the sign-in."), p.op)
}

func (p *Provider) handleLoggedOut(w http.ResponseWriter, _ *http.Request) {
	p.renderMessage(w, http.StatusOK, "Signed out", "You are signed out of the dev identity provider.")
}

func (p *Provider) renderMessage(w http.ResponseWriter, status int, title, message string) {
	p.render(w, status, messagePage, map[string]string{"Title": title, "Message": message})
}

// render writes a self-contained page: no scripts, no external resources.
func (p *Provider) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		p.log.Error("devidp render", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// No form-action: Chromium applies it to the redirects after the POST,
	// which end at the client's origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func displayName(u User) string {
	if u.Name != "" {
		return u.Name
	}
	return u.Subject
}
