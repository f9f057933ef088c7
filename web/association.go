package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/a-h/templ"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

const (
	perPage = 50
	// historyPerPage is how many history entries the detail page shows at a time.
	historyPerPage = 20
	// maxPage bounds the page number so the offset cannot overflow; a larger one is past
	// the end of any list and shows the last page.
	maxPage = 1 << 20
)

var listCrumb = views.Crumb{Label: "Associations", URL: "/associations"}

func (s *Server) handleHome(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/associations", http.StatusSeeOther)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.store.Ping(r.Context()); err != nil {
		s.log.Error("health check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "database unavailable")
		return
	}
	fmt.Fprintln(w, "ok")
}

// listFilter is the listing a list URL asks for (its search, filter and order; no page):
// the list page and its CSV export read it alike.
func listFilter(q url.Values) store.ListFilter {
	// A query is one line: a line break would let it match across two values.
	query := strings.TrimSpace(strings.Join(strings.FieldsFunc(q.Get("q"), func(r rune) bool { return r == '\n' || r == '\r' }), " "))
	f := store.ListFilter{Query: query, Sort: q.Get("sort"),
		NotSynced: q.Get("state") == views.StateNotSynced, Deleted: q.Get("state") == views.StateDeleted}
	if !store.ValidSort(f.Sort) {
		f.Sort = store.SortModifiedDesc
	}
	return f
}

func (s *Server) handleAssociationList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lf := listFilter(q)
	l := views.AssociationList{Query: lf.Query, Sort: lf.Sort, PerPage: perPage, NotSynced: lf.NotSynced, Deleted: lf.Deleted}
	l.Page, _ = strconv.Atoi(q.Get("page"))
	l.Page = min(max(l.Page, 1), maxPage) // past the end is handled below

	f := store.ListFilter{Query: l.Query, Sort: l.Sort, Page: l.Page, PerPage: perPage, NotSynced: l.NotSynced, Deleted: l.Deleted}
	res, err := s.store.ListAssociations(r.Context(), f)
	if err == nil && len(res.Items) == 0 && res.Total > 0 {
		// A bookmarked page past the end: show the last page rather than nothing.
		l.Total = res.Total
		l.Page = l.Pages()
		f.Page = l.Page
		res, err = s.store.ListAssociations(r.Context(), f)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l.Items, l.Total, l.TotalCapped = res.Items, res.Total, res.TotalCapped
	if l.Empty() {
		l.Intune = s.intuneReading()
	}

	if isHTMX(r) && r.Header.Get("HX-Target") == views.EmptyStateID {
		// The empty page's poll while Intune is read: once something arrived, the whole
		// page is due (toolbar and table), so the browser reloads it.
		if !l.Empty() {
			w.Header().Set("HX-Refresh", "true")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.render(w, r, http.StatusOK, views.EmptyState(l, s.canEdit(r)))
		return
	}
	if isHTMX(r) && r.Header.Get("HX-Target") == "association-table" {
		// htmx would push the request's URL, every form field included (q=&state=&sort=…);
		// push the short canonical one so the address bar stays readable and bookmarkable.
		w.Header().Set("HX-Push-Url", l.URL())
		s.render(w, r, http.StatusOK, views.TableFragment(l))
		return
	}
	s.render(w, r, http.StatusOK, views.AssociationsPage(s.page(w, r, "Associations"), l))
}

func (s *Server) handleAssociationNew(w http.ResponseWriter, r *http.Request) {
	f := views.AssociationForm{Values: views.AssociationValues{Version: "1"}}
	s.renderForm(w, r, http.StatusOK, "New association", f)
}

func (s *Server) handleAssociationCreate(w http.ResponseWriter, r *http.Request) {
	in, err := parseAssociationForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	fields, errs := validateAssociation(in)
	if len(errs) > 0 {
		s.renderForm(w, r, http.StatusUnprocessableEntity, "New association", views.AssociationForm{Values: in, Errors: errs})
		return
	}
	a, err := s.store.CreateAssociation(r.Context(), fields, s.actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.kick()
	s.setFlash(w, "created")
	redirect(w, r, views.AssociationURL(a.ID))
}

func (s *Server) handleAssociationValidate(w http.ResponseWriter, r *http.Request) {
	in, err := parseAssociationForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	field := r.URL.Query().Get("field")
	if !slices.Contains(views.FieldNames(), field) {
		s.fail(w, r, fmt.Errorf("%w: unknown field %q", errBadRequest, field))
		return
	}
	_, errs := validateAssociation(in)
	s.render(w, r, http.StatusOK, views.FieldMessageContent(field, errs[field]))
}

func (s *Server) handleAssociationShow(w http.ResponseWriter, r *http.Request) {
	a, err := s.loadAssociation(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The page of history after the entry named, newest first; anything but an entry id
	// shows the newest.
	before, err := strconv.ParseInt(r.URL.Query().Get(views.HistoryParam), 10, 64)
	if err != nil || before < 1 {
		before = 0
	}
	entries, more, err := s.store.AssociationHistory(r.Context(), a.ID, before, historyPerPage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ids := make([]int64, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	requests, err := s.store.GraphRequests(r.Context(), a.ID, ids)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := views.History{Entries: entries, Before: before, More: more, Requests: requests}
	names := s.classNames(r, a.ClassroomIDs)
	r = withClassNames(r, names)
	warn := s.warningsFor(r, a, names)
	p := s.page(w, r, a.DisplayName, listCrumb, views.Crumb{Label: a.DisplayName})
	s.render(w, r, http.StatusOK, views.AssociationDetail(p, a, &h, warn))
}

func (s *Server) handleAssociationEdit(w http.ResponseWriter, r *http.Request) {
	a, err := s.loadAssociation(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !a.DeletedAt.IsZero() {
		// A form whose Save could only fail: say why instead.
		s.fail(w, r, store.ErrDeleted)
		return
	}
	v := views.ValuesOf(a.Fields)
	f := views.AssociationForm{ID: a.ID, Revision: a.Revision, Values: v, Base: &v}
	s.renderForm(w, r, http.StatusOK, "Edit "+a.DisplayName, f)
}

func (s *Server) handleAssociationUpdate(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	in, err := parseAssociationForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	revision, err := strconv.ParseInt(r.PostForm.Get(views.FieldRevision), 10, 64)
	if err != nil || revision < 1 {
		s.fail(w, r, fmt.Errorf("%w: revision %q", errBadRequest, r.PostForm.Get(views.FieldRevision)))
		return
	}
	f := views.AssociationForm{ID: id, Revision: revision, Values: in, Base: parseBase(r)}
	fields, errs := validateAssociation(in)
	if len(errs) > 0 {
		f.Errors = errs
		s.renderForm(w, r, http.StatusUnprocessableEntity, "Edit association", f)
		return
	}

	_, err = s.store.UpdateAssociation(r.Context(), id, revision, fields, s.actor(r))
	var conflict *store.ConflictError
	switch {
	case errors.Is(err, store.ErrUnchanged):
		s.setFlash(w, "unchanged")
	case errors.As(err, &conflict) && !conflict.Current.DeletedAt.IsZero():
		// Deleted while it was being edited: there is nothing to re-apply the change to.
		s.fail(w, r, store.ErrDeleted)
		return
	case errors.As(err, &conflict):
		s.renderConflict(w, r, fields, f.Base, conflict.Current)
		return
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		s.kick()
		s.setFlash(w, "updated")
	}
	redirect(w, r, views.AssociationURL(id))
}

// renderConflict answers 409 with both versions. htmx saves get the conflict view swapped
// into the page's main region instead of the form.
func (s *Server) renderConflict(w http.ResponseWriter, r *http.Request, mine store.Fields, base *views.AssociationValues, cur store.Association) {
	c := rebase(mine, base, cur)
	c.Current = cur
	c.Form.ClassesOn = s.classesOn()
	r = withClassNames(r, s.classNames(r, dedupe(append(slices.Clone(mine.ClassroomIDs), cur.ClassroomIDs...))))
	if isHTMX(r) {
		w.Header().Set("HX-Retarget", "#main")
		w.Header().Set("HX-Reswap", "innerHTML show:window:top")
	}
	s.renderPage(w, r, http.StatusConflict, views.ConflictView(c), func() templ.Component {
		return views.ConflictPage(s.page(w, r, "Conflicting edit", listCrumb, views.Crumb{Label: cur.DisplayName, URL: views.AssociationURL(cur.ID)}, views.Crumb{Label: "Conflict"}), c)
	})
}

// rebase puts the admin's change on top of the version saved meanwhile: a field they left
// as it was when they started takes the saved value, a field they changed keeps theirs.
// Without a (valid) starting point every field keeps theirs.
func rebase(mine store.Fields, base *views.AssociationValues, cur store.Association) views.Conflict {
	theirs := views.ValuesOf(cur.Fields)
	c := views.Conflict{Mine: mine, Form: views.AssociationForm{ID: cur.ID, Revision: cur.Revision, Values: views.ValuesOf(mine), Base: &theirs}}
	if base == nil {
		return c
	}
	from, errs := validateAssociation(*base)
	if len(errs) > 0 {
		return c
	}
	// Compared in normalised form (what validation made of each), field by field.
	minev, fromv := views.ValuesOf(mine), views.ValuesOf(from)
	changedByMe, changedByThem := views.Differing(minev, fromv), views.Differing(theirs, fromv)
	merged, both := theirs, views.Differing(minev, theirs)
	for name := range both {
		if changedByMe[name] {
			merged.Set(name, minev.Get(name))
		}
		if !changedByMe[name] || !changedByThem[name] {
			delete(both, name)
		}
	}
	c.Rebased, c.Both, c.Form.Values = true, both, merged
	return c
}

// parseBase reads the hidden copy of the values an edit started from; nil unless every
// field came exactly once (a form from before this existed, or a hand-made request).
func parseBase(r *http.Request) *views.AssociationValues {
	b, complete := valuesFrom(r.PostForm, views.BasePrefix)
	if !complete {
		return nil
	}
	return &b
}

// renderForm renders the association form page, or just the form for htmx.
func (s *Server) renderForm(w http.ResponseWriter, r *http.Request, status int, title string, f views.AssociationForm) {
	f.ClassesOn = s.classesOn()
	crumbs := []views.Crumb{listCrumb, {Label: "New"}}
	if f.ID != 0 {
		// The crumb names the association as it was when the edit began (what the page
		// behind it shows), not the name being typed.
		name := "Association"
		if f.Base != nil && strings.TrimSpace(f.Base.DisplayName) != "" {
			name = f.Base.DisplayName
		}
		crumbs = []views.Crumb{listCrumb, {Label: name, URL: views.AssociationURL(f.ID)}, {Label: "Edit"}}
		if title == "Edit association" {
			title = "Edit " + name
		}
	}
	s.renderPage(w, r, status, views.AssociationFormView(f), func() templ.Component {
		return views.AssociationFormPage(s.page(w, r, title, crumbs...), f)
	})
}

// intuneReading is what the empty list says about reading Intune: nil without Graph.
func (s *Server) intuneReading() *views.IntuneReading {
	if s.pusher == nil {
		return nil
	}
	st := s.pusher.ReadStatus()
	return &views.IntuneReading{Running: st.Running, SoFar: st.SoFar,
		FoundNone: st.HaveLast && st.Last.Complete && st.Last.Error == "" && st.Last.Objects == 0}
}

// canEdit reports whether the signed-in user may change associations.
func (s *Server) canEdit(r *http.Request) bool {
	u, _ := s.currentUser(r)
	return u.Role >= RoleAdmin
}

// actor is the signed-in user as the audit fields record them.
func (s *Server) actor(r *http.Request) store.Actor {
	u, _ := s.currentUser(r)
	return u.Actor()
}

func (s *Server) loadAssociation(r *http.Request) (store.Association, error) {
	id, err := pathID(r)
	if err != nil {
		return store.Association{}, err
	}
	return s.store.GetAssociation(r.Context(), id)
}

// pathID reads the {id} path segment; anything but a positive integer is "not found".
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, store.ErrNotFound
	}
	return id, nil
}
