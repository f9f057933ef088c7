package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// The Activity page: every association's history, newest first, filtered by person,
// association and dates, in keyset pages, and as a CSV download of the same filters.

// activityPerPage is how many entries the Activity page shows at a time.
const activityPerPage = 50

// activityHeader is the activity CSV's header row.
var activityHeader = []string{"at", "associationId", "displayName", "kind", "actorName", "actorSubject", "revision", "details"}

// Dates a filter may name: the store keeps times as Unix nanoseconds, which end in 2262.
var (
	minActivityDate = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxActivityDate = time.Date(2261, 12, 31, 0, 0, 0, 0, time.UTC)
)

// activityFilter reads the Activity page's filters from its URL: as typed (for the form),
// as applied (the valid ones, for links), the store's filter, and a message per refused
// field. A refused filter is not applied; the rest still are.
func activityFilter(q url.Values) (a views.Activity, f store.HistoryFilter) {
	oneLine := func(name string) string {
		return strings.TrimSpace(strings.Join(strings.FieldsFunc(q.Get(name), func(r rune) bool { return r == '\n' || r == '\r' }), " "))
	}
	a.Form = views.ActivityFilter{Person: oneLine(views.ActivityPerson), Association: oneLine(views.ActivityAssociation),
		From: oneLine(views.ActivityFrom), To: oneLine(views.ActivityTo)}
	a.Errors = map[string]string{}

	a.Applied.Person, f.Person = a.Form.Person, a.Form.Person
	if v := a.Form.Association; v != "" {
		if id, err := strconv.ParseInt(v, 10, 64); err != nil || id < 1 {
			a.Errors[views.ActivityAssociation] = "Enter the association’s local ID: a whole number, shown on its detail page."
		} else {
			a.Applied.Association, f.AssociationID = v, id
		}
	}
	date := func(name, v string) (time.Time, bool) {
		if v == "" {
			return time.Time{}, false
		}
		d, err := time.ParseInLocation(time.DateOnly, v, time.UTC)
		switch {
		case err != nil:
			a.Errors[name] = "Enter a date as YYYY-MM-DD, such as 2025-03-14."
		case d.Before(minActivityDate) || d.After(maxActivityDate):
			a.Errors[name] = "Enter a date from 1970 to 2261."
		default:
			return d, true
		}
		return time.Time{}, false
	}
	from, fromOK := date(views.ActivityFrom, a.Form.From)
	to, toOK := date(views.ActivityTo, a.Form.To)
	if fromOK && toOK && to.Before(from) {
		a.Errors[views.ActivityTo] = "“To” is before “From”: enter the same day or a later one."
		toOK = false
	}
	if fromOK {
		a.Applied.From, f.From = from.Format(time.DateOnly), from
	}
	if toOK {
		// To names a day, included: the entries before the start of the next.
		a.Applied.To, f.To = to.Format(time.DateOnly), to.AddDate(0, 0, 1)
	}
	if before, err := strconv.ParseInt(q.Get(views.ActivityBefore), 10, 64); err == nil && before > 0 {
		a.Before, f.Before = before, before
	}
	return a, f
}

func (s *Server) handleActivity(w http.ResponseWriter, r *http.Request) {
	a, f := activityFilter(r.URL.Query())
	f.Limit = activityPerPage
	entries, more, err := s.store.ListHistory(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a.Entries, a.More = entries, more
	status := http.StatusOK
	if len(a.Errors) > 0 {
		// As a form with a refused value is: the page, with the message beside the field.
		status = http.StatusUnprocessableEntity
	}
	p := s.page(w, r, "Activity")
	p.Nav = "activity"
	s.render(w, r, status, views.ActivityPage(p, a))
}

// handleActivityExport sends every entry the Activity page's filters select (all pages)
// as a CSV file, streamed like the association export (see sendCSV). A refused filter sends the
// browser to the page, which says what is wrong with it.
func (s *Server) handleActivityExport(w http.ResponseWriter, r *http.Request) {
	a, f := activityFilter(r.URL.Query())
	if len(a.Errors) > 0 {
		http.Redirect(w, r, views.ActivityURL(a.Form, 0), http.StatusSeeOther)
		return
	}
	s.sendCSV(w, r, "cartclass-activity", activityHeader, func(row func([]string) error) error {
		return s.store.EachHistory(r.Context(), f, func(e store.ActivityEntry) error { return row(activityRecord(e)) })
	})
}

// activityRecord is e's row of the activity CSV, in activityHeader's order, every cell
// through csvCell: details are the page's lines, one per line of the cell.
func activityRecord(e store.ActivityEntry) []string {
	rec := []string{
		e.At.UTC().Format(time.RFC3339),
		strconv.FormatInt(e.AssociationID, 10),
		e.DisplayName,
		string(e.Kind),
		e.Actor.Name,
		e.Actor.Subject,
		strconv.FormatInt(e.Revision, 10),
		strings.Join(views.HistoryText(e.HistoryEntry), "\n"),
	}
	for i, c := range rec {
		rec[i] = csvCell(c)
	}
	return rec
}
