package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// An association Changed in Intune had the same field changed here and there: nothing is
// sent for it until an admin picks a side. Both buttons carry the revision the admin saw,
// so a choice made on an out-of-date page (a colleague chose first, or Intune changed it
// again and a newer revision was taken) is refused with a 409 rather than applied blind.

func (s *Server) handleAssociationKeepIntune(w http.ResponseWriter, r *http.Request) {
	s.choose(w, r, s.store.KeepIntune, "kept-intune")
}

func (s *Server) handleAssociationPushMine(w http.ResponseWriter, r *http.Request) {
	s.choose(w, r, s.store.PushMine, "pushing-mine")
}

func (s *Server) choose(w http.ResponseWriter, r *http.Request, op func(context.Context, int64, int64, store.Actor) (store.Association, error), flash string) {
	id, revision, err := parseRevisionForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch _, err := op(r.Context(), id, revision, s.actor(r)); {
	case errors.Is(err, store.ErrUnchanged):
		// Already resolved (a second click, or another admin): the page shows where it is.
		s.setFlash(w, "choice-none")
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		s.kick()
		s.setFlash(w, flash)
	}
	redirect(w, r, views.AssociationURL(id))
}
