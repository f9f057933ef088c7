package web

import (
	"net/http"

	"github.com/cartclass/cartclass/static"
)

// maxBodyBytes bounds every request body; larger ones get 413 before any parsing.
const maxBodyBytes = 1 << 20

// routes is the one route table. Middleware, outermost first:
//
//	metrics (by route pattern) → secureHeaders (CSP nonce, no-store, HSTS) → recoverPanics (500 page, with the nonce) →
//	crossOrigin (403 for cross-site writes) → limitBody (413) → mux → require(role) per route
//
// require sends signed-out browsers to sign-in and answers 403 to people without the role,
// for pages and htmx fragments alike; it is also where a role older than
// CARTCLASS_ROLE_RECHECK is re-read from the identity provider. limitSignIn gives each client
// address a budget for the two sign-in endpoints anyone can reach (429 past it).
func (s *Server) routes() http.Handler {
	viewer := func(h http.HandlerFunc) http.HandlerFunc { return s.require(RoleViewer, h) }
	admin := func(h http.HandlerFunc) http.HandlerFunc { return s.require(RoleAdmin, h) }

	mux := http.NewServeMux()
	mux.Handle("GET /static/", static.Handler())
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)

	mux.HandleFunc("GET /signin", s.handleSignIn)
	mux.HandleFunc("POST /auth/login", s.limitSignIn(s.handleLogin))
	mux.HandleFunc("GET /auth/callback", s.limitSignIn(s.handleCallback))
	mux.HandleFunc("POST /auth/logout", s.handleLogout)
	mux.HandleFunc("GET /signedout", s.handleSignedOut)

	mux.HandleFunc("GET /{$}", viewer(s.handleHome))
	mux.HandleFunc("GET /associations", viewer(s.handleAssociationList))
	mux.HandleFunc("GET /associations/export.csv", viewer(s.handleAssociationExport))
	mux.HandleFunc("GET /associations/new", admin(s.handleAssociationNew))
	mux.HandleFunc("POST /associations", admin(s.handleAssociationCreate))
	mux.HandleFunc("POST /associations/validate", admin(s.handleAssociationValidate))
	mux.HandleFunc("GET /associations/{id}", viewer(s.handleAssociationShow))
	mux.HandleFunc("GET /associations/{id}/edit", admin(s.handleAssociationEdit))
	mux.HandleFunc("POST /associations/{id}", admin(s.handleAssociationUpdate))
	mux.HandleFunc("GET /associations/{id}/sync", viewer(s.handleSyncStatus))
	mux.HandleFunc("POST /associations/{id}/retry", admin(s.handleAssociationRetry))
	mux.HandleFunc("POST /associations/{id}/recreate", admin(s.handleAssociationRecreate))
	mux.HandleFunc("GET /associations/{id}/delete", admin(s.handleAssociationDeleteConfirm))
	mux.HandleFunc("POST /associations/{id}/delete", admin(s.handleAssociationDelete))
	mux.HandleFunc("POST /associations/{id}/restore", admin(s.handleAssociationRestore))
	mux.HandleFunc("POST /associations/{id}/remove", admin(s.handleAssociationRemove))
	mux.HandleFunc("POST /associations/{id}/keep-intune", admin(s.handleAssociationKeepIntune))
	mux.HandleFunc("POST /associations/{id}/push-mine", admin(s.handleAssociationPushMine))
	mux.HandleFunc("GET /carts", viewer(s.handleCarts))
	mux.HandleFunc("GET /classrooms", viewer(s.handleClassrooms))
	mux.HandleFunc("GET /suggest/classes", admin(s.handleSuggestClasses))
	mux.HandleFunc("GET /suggest/carts", admin(s.handleSuggestCarts))
	mux.HandleFunc("GET /imports", admin(s.handleImportForm))
	mux.HandleFunc("POST /imports", admin(s.handleImportUpload))
	mux.HandleFunc("GET /imports/{id}", admin(s.handleImportShow))
	mux.HandleFunc("POST /imports/{id}/apply", admin(s.handleImportApply))
	mux.HandleFunc("GET /activity", viewer(s.handleActivity))
	mux.HandleFunc("GET /activity.csv", viewer(s.handleActivityExport))
	mux.HandleFunc("GET /sync", admin(s.handleSyncPanel))
	mux.HandleFunc("POST /sync/push-now", admin(s.handlePushNow))
	mux.HandleFunc("POST /sync/refresh", admin(s.handleSyncRefresh))
	mux.HandleFunc("GET /sessions", admin(s.handleSessionList))
	mux.HandleFunc("POST /sessions/{handle}/end", admin(s.handleSessionEnd))
	mux.HandleFunc("POST /sessions/end-others", admin(s.handleSessionEndOthers))
	mux.HandleFunc("/", s.handleNotFound)

	h := routed(mux)
	h = s.limitBody(h)
	h = s.crossOrigin(h)
	h = s.recoverPanics(h)
	h = s.secureHeaders(h)
	return s.metrics.instrument(mux, h)
}
