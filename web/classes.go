package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// The school's language: class names beside classroom ids, suggestions while typing, and
// the Carts and Classrooms lookups. Class names come from Microsoft Graph (read with every
// read of Intune, see push/classes.go) and are kept in SQLite: nothing here asks Graph.

const (
	suggestLimit  = 12 // a form of a year group has about 10 classes: "7B" shows them all
	lookupPerPage = 50
	maxSuggestQ   = 100 // runes of a suggestion query that are used
)

// classesOn reports whether class names are shown: configured, read by a pusher, and not
// refused by Graph at the last attempt.
func (s *Server) classesOn() bool {
	return s.cfg.EduClasses && s.pusher != nil && !s.pusher.ClassesStatus().Denied
}

// classNames are the known classes among ids; nil without class names (off, refused, or
// unreadable: ids then show alone, which is never wrong).
func (s *Server) classNames(r *http.Request, ids []string) map[string]store.Class {
	if !s.classesOn() || len(ids) == 0 {
		return nil
	}
	names, err := s.store.ClassNames(r.Context(), ids)
	if err != nil {
		s.log.Error("class names failed", "err", err)
		return nil
	}
	return names
}

// withClassNames is r with names in its context, for the views to name classroom ids
// (views.WithClassNames).
func withClassNames(r *http.Request, names map[string]store.Class) *http.Request {
	if names == nil {
		return r
	}
	return r.WithContext(views.WithClassNames(r.Context(), names))
}

// warningsFor are the soft checks of a: classroom ids that are not known classes (names:
// the classes among its ids, see classNames), carts other associations also list, and
// another association with its name.
func (s *Server) warningsFor(r *http.Request, a store.Association, names map[string]store.Class) views.Warnings {
	var w views.Warnings
	if !a.DeletedAt.IsZero() {
		return w
	}
	ctx := r.Context()
	if names != nil {
		// Only once classes were read: before that, every id would look unknown.
		if n, err := s.store.ClassCount(ctx); err == nil && n > 0 {
			for _, id := range a.ClassroomIDs {
				if _, ok := names[id]; !ok {
					w.UnknownRooms = append(w.UnknownRooms, id)
				}
			}
		}
	}
	if len(a.DeviceCartIDs) > 0 {
		uses, err := s.store.OtherCartUses(ctx, a.DeviceCartIDs, a.ID)
		if err != nil {
			s.log.Error("cart uses failed", "err", err)
		}
		if len(uses) > 0 {
			w.SharedCarts = uses
		}
	}
	same, err := s.store.SameNameAssociations(ctx, a.DisplayName, a.ID)
	if err != nil {
		s.log.Error("same-name check failed", "err", err)
	}
	w.SameName = same
	return w
}

// suggestQuery is the text typed into a finder: trimmed, one line, bounded.
func suggestQuery(r *http.Request) string {
	q := strings.TrimSpace(strings.Join(strings.Fields(r.URL.Query().Get("q")), " "))
	if rs := []rune(q); len(rs) > maxSuggestQ {
		q = string(rs[:maxSuggestQ])
	}
	return q
}

// handleSuggestClasses answers the Classroom IDs finder: the classes whose name, code or
// id holds what was typed.
func (s *Server) handleSuggestClasses(w http.ResponseWriter, r *http.Request) {
	q := suggestQuery(r)
	if q == "" {
		s.render(w, r, http.StatusOK, views.ClassSuggestions(q, nil, ""))
		return
	}
	if !s.classesOn() {
		s.render(w, r, http.StatusOK, views.ClassSuggestions(q, nil, "Class names are off; see the Sync page."))
		return
	}
	classes, err := s.store.SuggestClasses(r.Context(), q, suggestLimit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note := ""
	if len(classes) == 0 {
		if n, err := s.store.ClassCount(r.Context()); err == nil && n == 0 {
			note = "The school's classes have not been read from Microsoft Graph yet; any ID can still be typed in the box."
		}
	}
	s.render(w, r, http.StatusOK, views.ClassSuggestions(q, classes, note))
}

// handleSuggestCarts answers the Device cart IDs finder: the carts in use whose id holds
// what was typed, with how many rooms each serves.
func (s *Server) handleSuggestCarts(w http.ResponseWriter, r *http.Request) {
	q := suggestQuery(r)
	var carts []store.CartUse
	if q != "" {
		var err error
		if carts, err = s.store.SuggestCarts(r.Context(), q, suggestLimit); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.render(w, r, http.StatusOK, views.CartSuggestions(q, carts))
}

// lookup reads a lookup page's search and page number from its URL.
func lookup(r *http.Request) views.Lookup {
	q := r.URL.Query()
	l := views.Lookup{Query: strings.TrimSpace(q.Get("q")), Page: 1, PerPage: lookupPerPage}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 1 && n < 1_000_000 {
		l.Page = n
	}
	return l
}

// handleCarts is the Carts page: every cart in use and the classrooms it serves.
func (s *Server) handleCarts(w http.ResponseWriter, r *http.Request) {
	l := lookup(r)
	carts, total, err := s.store.ListCarts(r.Context(), l.Query, l.Page, l.PerPage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l.Total = total
	var rooms []string
	for _, c := range carts {
		rooms = append(rooms, c.Classrooms...)
	}
	r = withClassNames(r, s.classNames(r, dedupe(rooms)))
	p := s.page(w, r, "Carts", views.Crumb{Label: "Carts"})
	p.Nav = "carts"
	s.render(w, r, http.StatusOK, views.CartsPage(p, l, carts))
}

// handleClassrooms is the Classrooms page: every classroom in use, with its class's name,
// and the carts that serve it.
func (s *Server) handleClassrooms(w http.ResponseWriter, r *http.Request) {
	l := lookup(r)
	rooms, total, err := s.store.ListClassrooms(r.Context(), l.Query, l.Page, l.PerPage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l.Total = total
	if !s.classesOn() {
		for i := range rooms {
			rooms[i].Class = nil
		}
	}
	p := s.page(w, r, "Classrooms", views.Crumb{Label: "Classrooms"})
	p.Nav = "classrooms"
	s.render(w, r, http.StatusOK, views.ClassroomsPage(p, l, rooms))
}

// dedupe is ids without repeats, in order.
func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
