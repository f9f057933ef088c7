package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/a-h/templ"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// errBadRequest marks a malformed request (unparseable form, bad revision).
var errBadRequest = errors.New("malformed request")

// fail is the one error funnel: known errors become their page, anything else one log
// record and a generic 500. Error text never reaches the response.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		tooBig    *http.MaxBytesError
		stale     *store.ConflictError
		authErr   *authError
		setup     *setupError
		forbidden *forbiddenError
		limited   *rateLimitedError
		e         views.ErrorInfo
	)
	if !errors.Is(err, errBadRequest) && (r.Context().Err() != nil || errors.Is(err, context.Canceled)) {
		// The client went away (closed the tab, cut the body off): it is not cartclass's
		// failure, and nobody is likely to read the answer.
		s.log.Debug("request abandoned by the client", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	switch {
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", limited.retryAfterSeconds())
		e = views.ErrorInfo{Status: http.StatusTooManyRequests, Title: "Too many sign-in attempts",
			Message: "This computer's network has started a lot of sign-ins in a short time, so cartclass is pausing them. " +
				"Wait " + limited.retryAfterSeconds() + " seconds, then sign in again.",
			ActionLabel: "Sign in", ActionURL: "/signin"}
	case errors.As(err, &setup):
		// At ERROR: whoever runs cartclass must act, and nobody signs in until then. An
		// error the provider sent through the browser (the authorize step) can be made up
		// by anyone who starts a sign-in: it is logged at most every setupLogEvery.
		if setup.step == "authorize" {
			s.oidc.logSetupProblem(s.log, setup, s.now())
		} else {
			setup.log(s.log)
		}
		e = views.ErrorInfo{Status: http.StatusInternalServerError, Title: "cartclass is not set up correctly",
			Message: "Your school's identity provider refused cartclass itself, not your account. This is a set-up problem that " +
				"only the person who runs cartclass can fix, so signing in again will not help. Please tell them that " + setup.advice +
				". (The identity provider answered " + setup.codes() + ".)",
			NoAction: true}
	case errors.As(err, &authErr):
		s.log.Warn("sign-in failed", "reason", authErr.title, "err", authErr.cause)
		e = views.ErrorInfo{Status: authErr.status, Title: authErr.title, Message: authErr.message, ActionLabel: "Sign in again", ActionURL: "/signin"}
	case errors.As(err, &forbidden):
		e = views.ErrorInfo{Status: http.StatusForbidden, Title: "You don't have access to this"}
		if forbidden.have == RoleNone {
			e.Message = "You are signed in, but your account has no cartclass role. Ask your IT lead to give you the " +
				roleNames(s.cfg.AdminRoles) + " role (to make changes) or the " + roleNames(s.cfg.ViewerRoles) + " role (to look only), " +
				"then sign out and in again; or sign out to use another account."
			e.SignOut = true // every page would answer this same 403
		} else {
			e.Message = "You have read-only access. Ask your IT lead for the " + roleNames(s.cfg.AdminRoles) + " role to make changes."
		}
	case errors.Is(err, errProviderDown):
		s.log.Error("identity provider unreachable", "issuer", s.cfg.OIDCIssuer, "err", err)
		e = views.ErrorInfo{Status: http.StatusServiceUnavailable, Title: "Sign-in is unavailable",
			Message:     "cartclass cannot reach your school's sign-in service right now. Try again in a few minutes; if it persists, tell your IT lead.",
			ActionLabel: "Try again", ActionURL: "/signin"}
	case errors.Is(err, store.ErrNotFound):
		e = views.ErrorInfo{Status: http.StatusNotFound, Title: "Not found",
			Message: "There is nothing at this address. The link may be mistyped or out of date."}
	case errors.Is(err, store.ErrDeleted):
		e = views.ErrorInfo{Status: http.StatusConflict, Title: "This association was deleted",
			Message: "It was deleted in cartclass, so it cannot be changed. Restore it first: it stays under the Deleted filter of the list for 30 days."}
		if id, err := pathID(r); err == nil {
			e.ActionLabel, e.ActionURL = "Back to the association", views.AssociationURL(id)
		}
	case errors.As(err, &stale):
		// A button pressed on a page that was out of date: the admin chose without seeing
		// the latest version, so nothing was done.
		by := stale.Current.UpdatedBy.Name
		if by == "" {
			by = "someone"
		}
		e = views.ErrorInfo{Status: http.StatusConflict, Title: "Someone changed this association",
			Message: "While you were looking at it, " + by + " changed it (it is now at revision " + strconv.FormatInt(stale.Current.Revision, 10) +
				"), so nothing was done. Look at it again, then choose.",
			ActionLabel: "See it now", ActionURL: views.AssociationURL(stale.Current.ID)}
	case errors.Is(err, store.ErrConflict):
		e = views.ErrorInfo{Status: http.StatusConflict, Title: "Being changed right now",
			Message: "cartclass is sending this association to Intune at this moment, so nothing was done. Try again in a few seconds."}
		if id, err := pathID(r); err == nil {
			e.ActionLabel, e.ActionURL = "Back to the association", views.AssociationURL(id)
		}
	case errors.As(err, &tooBig):
		e = views.ErrorInfo{Status: http.StatusRequestEntityTooLarge, Title: "Too much data",
			Message: "The form sent more than 1 MiB. Split the IDs across several associations, or remove stray text, and try again."}
		if r.URL.Path == importPath {
			e.Message = "The upload is far larger than the 5 MiB a CSV import may be. Import at most " + thousands(maxImportRows) + " rows at a time: split the file into smaller ones."
			e.ActionLabel, e.ActionURL = "Back to Import CSV", importPath
		}
	case errors.Is(err, errBadRequest):
		e = views.ErrorInfo{Status: http.StatusBadRequest, Title: "Bad request",
			Message: "The form could not be read. Reload the page and try again."}
	case errors.Is(err, errCrossOrigin):
		e = views.ErrorInfo{Status: http.StatusForbidden, Title: "Request refused",
			Message: "This change came from another site, so cartclass refused it. Make changes from cartclass's own pages."}
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = views.ErrorInfo{Status: http.StatusInternalServerError, Title: "Something went wrong",
			Message: "cartclass could not complete this request. Nothing you saved before is lost; try again in a moment."}
	}
	if e.Status == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	s.renderPage(w, r, e.Status, views.ErrorView(e), func() templ.Component { return views.ErrorPage(s.page(w, r, e.Title), e) })
}

// roleNames quotes configured role names for a message: "CartClass.Admin" or "A" or "B".
func roleNames(roles []string) string {
	if len(roles) == 0 {
		return "admin"
	}
	out := "“" + roles[0] + "”"
	for _, r := range roles[1:] {
		out += " or “" + r + "”"
	}
	return out
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, store.ErrNotFound)
}
