package web

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// The admins' Sessions page: who is signed in, and a way to end any session at once (a
// lost laptop, someone who left the school) without rotating the key for everyone.

func (s *Server) handleSessionList(w http.ResponseWriter, r *http.Request) {
	rows, err := s.store.ListSessions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	current := s.currentSessionHash(r)
	now := s.now()
	out := make([]views.SessionRow, 0, len(rows))
	for _, row := range rows {
		// Rows past a limit are ended at their next use or by the clean-up; they are no
		// longer signed in.
		if s.sessions.ended(row, now) {
			continue
		}
		out = append(out, views.SessionRow{
			Handle: hex.EncodeToString(row.IDHash), Name: firstNonEmpty(row.Name, row.Subject), Subject: row.Subject,
			Role: Role(row.Role).String(), SignedInAt: row.CreatedAt, LastSeenAt: row.LastSeenAt,
			Current: bytes.Equal(row.IDHash, current),
		})
	}
	p := s.page(w, r, "Sessions")
	p.Nav = "sessions"
	s.render(w, r, http.StatusOK, views.SessionsPage(p, out))
}

// handleSessionEnd signs one session out. The handle is the hash the database keys the
// session by: showing it to admins reveals nothing a cookie could be made from.
func (s *Server) handleSessionEnd(w http.ResponseWriter, r *http.Request) {
	h, err := hex.DecodeString(r.PathValue("handle"))
	if err != nil || len(h) != 32 {
		s.fail(w, r, store.ErrNotFound)
		return
	}
	if _, err := s.store.GetSession(r.Context(), h); errors.Is(err, store.ErrNotFound) {
		s.setFlash(w, "ended-none")
		redirect(w, r, "/sessions")
		return
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.DeleteSession(r.Context(), h); err != nil {
		s.fail(w, r, err)
		return
	}
	u, _ := s.currentUser(r)
	s.log.Info("session signed out by an admin", "by", u.Subject)
	s.setFlash(w, "ended")
	redirect(w, r, "/sessions")
}

// handleSessionEndOthers signs out every session but the one asking.
func (s *Server) handleSessionEndOthers(w http.ResponseWriter, r *http.Request) {
	n, err := s.store.DeleteSessionsExcept(r.Context(), s.currentSessionHash(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	u, _ := s.currentUser(r)
	s.log.Info("every other session signed out by an admin", "by", u.Subject, "count", n)
	s.setFlash(w, "ended-rest")
	redirect(w, r, "/sessions")
}

// currentSessionHash is the database key of the request's own session (nil when none).
func (s *Server) currentSessionHash(r *http.Request) []byte {
	sess, err := s.sessions.Get(r, s.sessions.cookieName())
	if err != nil || sess.IsNew {
		return nil
	}
	id, ok := decodeID(sess.ID)
	if !ok {
		return nil
	}
	return hashID(id)
}
