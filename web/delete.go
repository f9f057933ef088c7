package web

import (
	"errors"
	"net/http"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// Deleting, restoring and removing associations. A delete is a tombstone: the association
// leaves the list at once, its DELETE goes to Intune through the outbox, and it can be
// restored for 30 days. Every button here is a POST that may come twice (a double click, a
// reload, another admin) or be forged; each answers with a page saying where things stand,
// never a 500, and the store makes sure no second Graph request follows.

func (s *Server) handleAssociationDeleteConfirm(w http.ResponseWriter, r *http.Request) {
	a, err := s.loadAssociation(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !a.DeletedAt.IsZero() {
		s.setNamedFlash(w, "already-deleted", a.ID)
		redirect(w, r, views.AssociationURL(a.ID))
		return
	}
	p := s.page(w, r, "Delete "+a.DisplayName, listCrumb, views.Crumb{Label: a.DisplayName, URL: views.AssociationURL(a.ID)}, views.Crumb{Label: "Delete"})
	s.render(w, r, http.StatusOK, views.DeletePage(p, a))
}

func (s *Server) handleAssociationDelete(w http.ResponseWriter, r *http.Request) {
	id, revision, err := parseRevisionForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.store.DeleteAssociation(r.Context(), id, revision, s.actor(r))
	var stale *store.ConflictError
	switch {
	case errors.Is(err, store.ErrDeleted), errors.Is(err, store.ErrUnchanged),
		errors.As(err, &stale) && !stale.Current.DeletedAt.IsZero():
		// A second click, or another admin was quicker: the detail page shows it deleted.
		s.setNamedFlash(w, "already-deleted", id)
		redirect(w, r, views.AssociationURL(id))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	switch {
	case a.Sync.DeletePending:
		s.kick()
		s.setNamedFlash(w, "deleted", id)
	case a.GraphID != "":
		s.setNamedFlash(w, "deleted-gone", id) // it was deleted in Intune already
	default:
		s.setNamedFlash(w, "deleted-local", id)
	}
	redirect(w, r, "/associations")
}

func (s *Server) handleAssociationRestore(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.store.RestoreAssociation(r.Context(), id, s.actor(r))
	switch {
	case errors.Is(err, store.ErrUnchanged):
		s.setFlash(w, "restore-none")
	case err != nil:
		s.fail(w, r, err)
		return
	case a.GraphID != "":
		s.kick()
		s.setFlash(w, "restored-kept")
	default:
		s.kick()
		s.setFlash(w, "restored")
	}
	redirect(w, r, views.AssociationURL(id))
}

// handleAssociationRemove is "Remove from cartclass" for an association deleted in Intune:
// Intune no longer holds it, so nothing is sent.
func (s *Server) handleAssociationRemove(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.store.RemoveLocal(r.Context(), id, s.actor(r))
	switch {
	case errors.Is(err, store.ErrDeleted), errors.Is(err, store.ErrUnchanged) && !a.DeletedAt.IsZero():
		s.setNamedFlash(w, "already-deleted", id)
	case errors.Is(err, store.ErrUnchanged):
		s.setFlash(w, "remove-none")
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		s.setNamedFlash(w, "removed", id)
		redirect(w, r, "/associations")
		return
	}
	redirect(w, r, views.AssociationURL(id))
}
