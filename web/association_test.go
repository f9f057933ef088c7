package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web/devidp"
)

// fieldContainer is the wrapper of one form field, where its message belongs.
func (r *response) field(name string) *goquery.Selection { return r.testid("field-" + name) }

// fieldValue is what the browser would show in the named input or textarea.
func (r *response) fieldValue(t testing.TB, name string) string {
	t.Helper()
	c := r.field(name)
	if in := c.Find(`input[name="` + name + `"]`); in.Length() == 1 {
		v, _ := in.Attr("value")
		return v
	}
	if ta := c.Find(`textarea[name="` + name + `"]`); ta.Length() == 1 {
		return ta.Text()
	}
	t.Fatalf("no input or textarea named %q in its field container; body:\n%s", name, r.body)
	return ""
}

func (r *response) hiddenRevision(t testing.TB) string {
	t.Helper()
	in := r.testid("association-form").Find(`input[type="hidden"][name="revision"]`)
	if in.Length() != 1 {
		t.Fatalf("form has %d revision inputs, want 1", in.Length())
	}
	v, _ := in.Attr("value")
	return v
}

func wantFullPage(t testing.TB, r *response) {
	t.Helper()
	if r.doc.Find("html > head > title").Length() != 1 || !strings.Contains(r.body, "<html") {
		t.Errorf("want a full page with <html> and a title; body:\n%s", r.body)
	}
}

func wantFragment(t testing.TB, r *response) {
	t.Helper()
	if strings.Contains(strings.ToLower(r.body), "<html") || strings.Contains(r.body, "<title") || strings.Contains(r.body, "site-header") {
		t.Errorf("want a fragment without the page frame; body:\n%s", r.body)
	}
}

func wantErrorPage(t testing.TB, r *response, status int, title string) {
	t.Helper()
	r.wantStatus(t, status)
	page := r.testid("error-page")
	if page.Length() != 1 {
		t.Fatalf("no error page in the %d answer; body:\n%s", status, r.body)
	}
	if got := text(page.Find("h1")); got != title {
		t.Errorf("error page heading = %q, want %q", got, title)
	}
	if got := text(page.Find(".error-code")); got != strconv.Itoa(status) {
		t.Errorf("error code shown = %q, want %d", got, status)
	}
}

func TestHomeRedirectsToList(t *testing.T) {
	app := newTestApp(t)
	r := app.get(t, "/", false)
	r.wantStatus(t, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/associations" {
		t.Errorf("Location = %q, want /associations", loc)
	}
}

func TestHealthz(t *testing.T) {
	app := newTestApp(t)
	r := app.get(t, "/healthz", false)
	r.wantStatus(t, http.StatusOK)
	if strings.TrimSpace(r.body) != "ok" {
		t.Errorf("body = %q, want ok", r.body)
	}
}

func TestNotFoundPages(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Exists"})
	for _, path := range []string{
		"/associations/999",
		"/associations/abc",
		"/associations/0",
		"/associations/-1",
		"/associations/1.0",
		"/associations/999/edit",
		"/associations/abc/edit",
		"/no/such/page",
		"/associations/" + strconv.FormatInt(a.ID, 10) + "/nope",
	} {
		t.Run(path, func(t *testing.T) {
			r := app.get(t, path, false)
			wantErrorPage(t, r, http.StatusNotFound, "Not found")
			wantFullPage(t, r)
			if !strings.Contains(text(r.testid("error-page")), "There is nothing at this address") {
				t.Errorf("404 page text = %q", text(r.testid("error-page")))
			}
		})
	}
	// An htmx request gets the message without the frame.
	r := app.get(t, "/associations/999", true)
	wantErrorPage(t, r, http.StatusNotFound, "Not found")
	wantFragment(t, r)

	// Saving to an id that does not exist is also a 404, and creates nothing.
	r = app.postForm(t, "/associations/999", with(validForm(), "revision", "1"), false)
	wantErrorPage(t, r, http.StatusNotFound, "Not found")
	r = app.postForm(t, "/associations/abc", with(validForm(), "revision", "1"), false)
	wantErrorPage(t, r, http.StatusNotFound, "Not found")
	if n := app.count(t); n != 1 {
		t.Errorf("store holds %d associations, want 1", n)
	}
}

func TestEmptyListShowsEmptyState(t *testing.T) {
	app := newTestApp(t)
	r := app.get(t, "/associations", false)
	r.wantStatus(t, http.StatusOK)
	wantFullPage(t, r)
	empty := r.testid("empty-state")
	if empty.Length() != 1 {
		t.Fatalf("no empty state; body:\n%s", r.body)
	}
	if !strings.Contains(text(empty), "No associations yet") {
		t.Errorf("empty state says %q", text(empty))
	}
	link := empty.Find("a").FilterFunction(func(_ int, s *goquery.Selection) bool { return text(s) == "New association" })
	if href, _ := link.Attr("href"); link.Length() != 1 || href != "/associations/new" {
		t.Errorf("empty state has no New association link to /associations/new")
	}
	if r.testid("association-row").Length() != 0 {
		t.Error("empty list shows rows")
	}
}

func TestListShowsRows(t *testing.T) {
	app := newTestApp(t)
	app.clock.freeze(time.Date(2025, 3, 14, 9, 26, 1, 0, time.UTC))
	a := app.create(t, store.Fields{DisplayName: "Science block iPads", Description: "Second floor", Version: 7,
		DeviceCartIDs: []string{"C1", "C2", "C3"}, ClassroomIDs: []string{"R1", "R2"}})
	app.clock.freeze(time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC))
	app.create(t, store.Fields{DisplayName: "Music room", Version: 0})

	r := app.get(t, "/associations", false)
	r.wantStatus(t, http.StatusOK)
	wantFullPage(t, r)
	if got := r.header.Values("Vary"); !slices.Contains(got, "HX-Request") {
		t.Errorf("Vary = %q, want HX-Request", got)
	}
	if got := text(r.testid("result-count")); got != "Showing 1–2 of 2" {
		t.Errorf("result count = %q", got)
	}
	rows := r.testid("association-row")
	if rows.Length() != 2 {
		t.Fatalf("%d rows, want 2", rows.Length())
	}
	// Newest change first: Music room was created last.
	if got := text(rows.Eq(0).Find(`[data-testid="association-link"]`)); got != "Music room" {
		t.Errorf("first row = %q, want Music room", got)
	}
	row := rows.Eq(1)
	link := row.Find(`[data-testid="association-link"]`)
	if href, _ := link.Attr("href"); text(link) != "Science block iPads" || href != fmt.Sprintf("/associations/%d", a.ID) {
		t.Errorf("row link = %q → %q", text(link), href)
	}
	cells := row.Find("td")
	var got []string
	cells.Each(func(_ int, c *goquery.Selection) { got = append(got, text(c)) })
	if len(got) != 6 || got[0] != "Science block iPads Second floor" || got[1] != "3" || got[2] != "2" || got[3] != "7" || got[5] != "Waiting" {
		t.Errorf("row cells = %q; want name+description, 3 carts, 2 classrooms, version 7, …, Waiting", got)
	}
	if got[4] != "14 Mar 2025, 09:26 UTC" {
		t.Errorf("last modified cell = %q", got[4])
	}
	if dt, _ := cells.Eq(4).Find("time").Attr("datetime"); dt != "2025-03-14T09:26:01Z" {
		t.Errorf("last modified datetime = %q", dt)
	}
	if badge := row.Find(`[data-testid="sync-badge"]`); text(badge) != "Waiting" {
		t.Errorf("sync badge = %q", text(badge))
	}
	if r.testid("empty-state").Length() != 0 {
		t.Error("empty state shown beside rows")
	}
	if link := r.testid("new-association"); text(link) != "New association" {
		t.Errorf("page has no New association button")
	}
}

func TestListSearch(t *testing.T) {
	app := newTestApp(t)
	app.create(t, store.Fields{DisplayName: "Science block iPads", DeviceCartIDs: []string{"CART-7"}})
	app.create(t, store.Fields{DisplayName: "Ärzte Zimmer", ClassroomIDs: []string{"MED-1"}})
	app.create(t, store.Fields{DisplayName: "Music", Description: "100% pianos"})

	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"science", []string{"Science block iPads"}},
		{"cart-7", []string{"Science block iPads"}},
		{"med-1", []string{"Ärzte Zimmer"}},
		{"ärzte", []string{"Ärzte Zimmer"}},
		{"100%", []string{"Music"}},
		{"% p", []string{"Music"}}, // LIKE's wildcard and a space, matched as themselves
		{"iPa", []string{"Science block iPads"}},
		// 1–2 characters match the start of a word (the search box says so).
		{"sc", []string{"Science block iPads"}},
		{"pi", []string{"Music"}},
		{"ä", []string{"Ärzte Zimmer"}},
		{"7", []string{"Science block iPads"}},
		{"%", nil},
		{"ce", nil},
	} {
		r := app.get(t, "/associations?q="+url.QueryEscape(tc.q), false)
		r.wantStatus(t, http.StatusOK)
		var got []string
		r.testid("association-link").Each(func(_ int, s *goquery.Selection) { got = append(got, text(s)) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("q=%q shows %q, want %q", tc.q, got, tc.want)
		}
		if v, _ := r.testid("search").Attr("value"); v != tc.q {
			t.Errorf("q=%q: search box holds %q", tc.q, v)
		}
		if c := text(r.testid("result-count")); len(tc.want) > 0 && !strings.Contains(c, "matching “"+tc.q+"”") {
			t.Errorf("q=%q: result count %q does not name the search", tc.q, c)
		}
	}

	r := app.get(t, "/associations?q=nothing-like-this", false)
	r.wantStatus(t, http.StatusOK)
	if got := text(r.testid("no-results")); !strings.Contains(got, "No associations match “nothing-like-this”") {
		t.Errorf("no-results message = %q", got)
	}
	if r.testid("empty-state").Length() != 0 || r.testid("association-row").Length() != 0 {
		t.Error("a search without matches should keep the search form and show no rows, not the empty state")
	}
	if r.testid("search").Length() != 1 {
		t.Error("search box missing when nothing matches")
	}
}

func TestListHTMXTableFragment(t *testing.T) {
	app := newTestApp(t)
	app.create(t, store.Fields{DisplayName: "Alpha"})
	app.create(t, store.Fields{DisplayName: "Beta"})

	r := app.getTable(t, "/associations?q=alp&sort=name")
	r.wantStatus(t, http.StatusOK)
	wantFragment(t, r)
	if r.doc.Find("#association-table").Length() != 1 {
		t.Fatalf("fragment has no #association-table; body:\n%s", r.body)
	}
	if got := text(r.testid("association-link")); got != "Alpha" {
		t.Errorf("fragment rows = %q, want Alpha", got)
	}
	sortInput := r.doc.Find("#sort-input")
	if oob, _ := sortInput.Attr("hx-swap-oob"); sortInput.Length() != 1 || oob != "true" {
		t.Errorf("fragment needs #sort-input with hx-swap-oob=true; body:\n%s", r.body)
	}
	if v, _ := sortInput.Attr("value"); v != "name" {
		t.Errorf("out-of-band sort value = %q, want name", v)
	}
	if !slices.Contains(r.header.Values("Vary"), "HX-Request") {
		t.Errorf("fragment Vary = %q", r.header.Values("Vary"))
	}
	if r.doc.Find("form[role=search]").Length() != 0 {
		t.Error("fragment repeats the search form")
	}

	// The address bar gets the short canonical URL, not every form field htmx sent.
	for target, want := range map[string]string{
		"/associations?q=alp&sort=name&state=":            "/associations?q=alp&sort=name",
		"/associations?q=&sort=-modified&state=":          "/associations",
		"/associations?q=+Alp+&state=notsynced&sort=name": "/associations?q=Alp&sort=name&state=notsynced",
	} {
		if got := app.getTable(t, target).header.Get("HX-Push-Url"); got != want {
			t.Errorf("HX-Push-Url for %s = %q, want %q", target, got, want)
		}
	}

	full := app.get(t, "/associations?q=alp&sort=name", false)
	full.wantStatus(t, http.StatusOK)
	wantFullPage(t, full)
	if full.doc.Find("#association-table").Length() != 1 || full.testid("search").Length() != 1 {
		t.Error("full page lacks the table or the search box")
	}
	if _, oob := full.doc.Find("#sort-input").Attr("hx-swap-oob"); oob {
		t.Error("full page's sort input must not be out of band")
	}
	if !slices.Contains(full.header.Values("Vary"), "HX-Request") {
		t.Errorf("full page Vary = %q", full.header.Values("Vary"))
	}

	// A history restore wants the whole page even though it is an htmx request.
	h := http.Header{"HX-Request": {"true"}, "HX-Target": {"association-table"}, "HX-History-Restore-Request": {"true"}}
	restore := app.request(t, http.MethodGet, "/associations", nil, h)
	wantFullPage(t, restore)
}

// pagerLink returns the href of the pager link with the given rel, or "" if absent.
func pagerLink(r *response, rel string) string {
	href, _ := r.doc.Find(`nav.pager a[rel="` + rel + `"]`).Attr("href")
	return href
}

func TestListPaging(t *testing.T) {
	app := newTestApp(t)
	for i := range 120 {
		app.create(t, store.Fields{DisplayName: fmt.Sprintf("Room %03d", i)})
	}
	for _, tc := range []struct {
		path           string
		rows           int
		count, status  string
		first          string
		prev, next     string
		fromFragmentOK bool
	}{
		{"/associations", 50, "Showing 1–50 of 120", "Page 1 of 3", "Room 119", "", "/associations?page=2", true},
		{"/associations?page=2", 50, "Showing 51–100 of 120", "Page 2 of 3", "Room 069", "/associations", "/associations?page=3", true},
		{"/associations?page=3", 20, "Showing 101–120 of 120", "Page 3 of 3", "Room 019", "/associations?page=2", "", true},
		{"/associations?page=99", 20, "Showing 101–120 of 120", "Page 3 of 3", "Room 019", "/associations?page=2", "", true},
		{"/associations?page=0", 50, "Showing 1–50 of 120", "Page 1 of 3", "Room 119", "", "/associations?page=2", true},
		{"/associations?page=-4", 50, "Showing 1–50 of 120", "Page 1 of 3", "Room 119", "", "/associations?page=2", true},
		{"/associations?page=zwei", 50, "Showing 1–50 of 120", "Page 1 of 3", "Room 119", "", "/associations?page=2", true},
		{"/associations?sort=name&page=2", 50, "Showing 51–100 of 120", "Page 2 of 3", "Room 050", "/associations?sort=name", "/associations?page=3&sort=name", true},
		{"/associations?q=room+0&page=2", 50, "Showing 51–100 of 100 matching “room 0”", "Page 2 of 2", "Room 049", "/associations?q=room+0", "", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, r := range []*response{app.get(t, tc.path, false), app.getTable(t, tc.path)} {
				r.wantStatus(t, http.StatusOK)
				if n := r.testid("association-row").Length(); n != tc.rows {
					t.Errorf("%d rows, want %d", n, tc.rows)
				}
				if got := text(r.testid("result-count")); got != tc.count {
					t.Errorf("result count = %q, want %q", got, tc.count)
				}
				if got := text(r.doc.Find(".pager-status")); got != tc.status {
					t.Errorf("pager status = %q, want %q", got, tc.status)
				}
				if got := text(r.testid("association-link").First()); got != tc.first {
					t.Errorf("first row = %q, want %q", got, tc.first)
				}
				if got := pagerLink(r, "prev"); got != tc.prev {
					t.Errorf("Previous link = %q, want %q", got, tc.prev)
				}
				if got := pagerLink(r, "next"); got != tc.next {
					t.Errorf("Next link = %q, want %q", got, tc.next)
				}
			}
		})
	}
	// The Next/Previous links are labelled for people.
	r := app.get(t, "/associations?page=2", false)
	if got := text(r.doc.Find(`nav.pager a[rel="next"]`)); got != "Next →" {
		t.Errorf("next link text = %q", got)
	}
	if got := text(r.doc.Find(`nav.pager a[rel="prev"]`)); got != "← Previous" {
		t.Errorf("previous link text = %q", got)
	}
}

func TestListPageNumberTooLargeShowsLastPage(t *testing.T) {
	app := newTestApp(t)
	for i := range 60 {
		app.create(t, store.Fields{DisplayName: fmt.Sprintf("Room %03d", i)})
	}
	r := app.get(t, "/associations?page=9223372036854775807", false)
	if r.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 with the last page", r.status)
	}
	if got := text(r.doc.Find(".pager-status")); got != "Page 2 of 2" {
		t.Fatalf("?page=9223372036854775807 shows pager %q and count %q instead of the last page: store.ListAssociations computes OFFSET (Page-1)*PerPage, which overflows int to a negative offset (SQLite treats it as 0), so the 'past the end' fallback in handleAssociationList never triggers",
			got, text(r.testid("result-count")))
	}
	if got := text(r.testid("result-count")); got != "Showing 51–60 of 60" {
		t.Errorf("result count = %q", got)
	}
}

func TestListSortLinks(t *testing.T) {
	app := newTestApp(t)
	app.create(t, store.Fields{DisplayName: "bravo", Description: "a cart"})
	app.create(t, store.Fields{DisplayName: "Charlie", Description: "a cart"})
	app.create(t, store.Fields{DisplayName: "alpha", Description: "a cart"})

	sortHeader := func(r *response, label string) (href, ariaSort string) {
		a := r.doc.Find("th a.sort").FilterFunction(func(_ int, s *goquery.Selection) bool { return text(s) == label })
		if a.Length() != 1 {
			t.Fatalf("no sort link %q", label)
		}
		href, _ = a.Attr("href")
		ariaSort, _ = a.Closest("th").Attr("aria-sort")
		return href, ariaSort
	}
	shown := func(r *response) []string {
		var got []string
		r.testid("association-link").Each(func(_ int, s *goquery.Selection) { got = append(got, text(s)) })
		return got
	}

	for _, tc := range []struct {
		path                 string
		rows                 []string
		nameHref, nameAria   string
		modHref, modAria     string
		hiddenSort, boxValue string
	}{
		{"/associations", []string{"alpha", "Charlie", "bravo"}, "/associations?sort=name", "none", "/associations?sort=modified", "descending", "-modified", ""},
		{"/associations?sort=name", []string{"alpha", "bravo", "Charlie"}, "/associations?sort=-name", "ascending", "/associations?sort=modified", "none", "name", ""},
		{"/associations?sort=-name", []string{"Charlie", "bravo", "alpha"}, "/associations?sort=name", "descending", "/associations?sort=modified", "none", "-name", ""},
		{"/associations?sort=modified", []string{"bravo", "Charlie", "alpha"}, "/associations?sort=name", "none", "/associations", "ascending", "modified", ""}, // newest first is the default, so no parameter
		{"/associations?sort=size", []string{"alpha", "Charlie", "bravo"}, "/associations?sort=name", "none", "/associations?sort=modified", "descending", "-modified", ""},
		{"/associations?q=a&sort=name", []string{"alpha", "bravo", "Charlie"}, "/associations?q=a&sort=-name", "ascending", "/associations?q=a&sort=modified", "none", "name", "a"},
		{"/associations?q=art&sort=-name", []string{"Charlie", "bravo", "alpha"}, "/associations?q=art&sort=name", "descending", "/associations?q=art&sort=modified", "none", "-name", "art"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := app.get(t, tc.path, false)
			r.wantStatus(t, http.StatusOK)
			if got := shown(r); !slices.Equal(got, tc.rows) {
				t.Errorf("rows = %q, want %q", got, tc.rows)
			}
			if href, aria := sortHeader(r, "Display name"); href != tc.nameHref || aria != tc.nameAria {
				t.Errorf("Display name header → %q aria-sort %q; want %q %q", href, aria, tc.nameHref, tc.nameAria)
			}
			if href, aria := sortHeader(r, "Last modified"); href != tc.modHref || aria != tc.modAria {
				t.Errorf("Last modified header → %q aria-sort %q; want %q %q", href, aria, tc.modHref, tc.modAria)
			}
			if v, _ := r.doc.Find("#sort-input").Attr("value"); v != tc.hiddenSort {
				t.Errorf("search form carries sort %q, want %q", v, tc.hiddenSort)
			}
			if v, _ := r.testid("search").Attr("value"); v != tc.boxValue {
				t.Errorf("search box = %q, want %q", v, tc.boxValue)
			}
		})
	}
}

// wantLabel checks that the field's label points at its control and reads exactly label,
// apart from an "(optional)" marker.
func wantLabel(t *testing.T, r *response, name, label string) *goquery.Selection {
	t.Helper()
	l := r.doc.Find(`label[for="` + name + `"]`)
	if l.Length() != 1 {
		t.Errorf("%d labels for %q, want 1", l.Length(), name)
		return l
	}
	own := l.Clone()
	own.Find(".optional").Remove()
	if got := text(own); got != label {
		t.Errorf("label for %q reads %q, want %q", name, got, label)
	}
	if !strings.HasPrefix(text(l), label) {
		t.Errorf("label for %q = %q, want it to start with %q", name, text(l), label)
	}
	ctl := r.doc.Find("#" + name)
	if ctl.Length() != 1 || !(ctl.Is("input") || ctl.Is("textarea")) {
		t.Errorf("label for=%q does not point at one input or textarea", name)
	}
	if n, _ := ctl.Attr("name"); n != name {
		t.Errorf("control #%s has name %q", name, n)
	}
	return l
}

var formFields = []struct{ name, label string }{
	{"displayName", "Display name"},
	{"description", "Description"},
	{"version", "Version"},
	{"deviceCartIds", "Device cart IDs"},
	{"classroomIds", "Classroom IDs"},
}

func TestNewForm(t *testing.T) {
	app := newTestApp(t)
	r := app.get(t, "/associations/new", false)
	r.wantStatus(t, http.StatusOK)
	wantFullPage(t, r)
	for _, f := range formFields {
		wantLabel(t, r, f.name, f.label)
	}
	if got := text(r.testid("save")); got != "Save" || !r.testid("save").Is(`button[type="submit"]`) {
		t.Errorf("save button = %q", got)
	}
	form := r.testid("association-form")
	if action, _ := form.Attr("action"); action != "/associations" {
		t.Errorf("form action = %q", action)
	}
	if m, _ := form.Attr("method"); m != "post" {
		t.Errorf("form method = %q", m)
	}
	if got := r.fieldValue(t, "version"); got != "1" {
		t.Errorf("new form version = %q, want 1", got)
	}
	if got := r.fieldValue(t, "displayName"); got != "" {
		t.Errorf("new form display name = %q, want empty", got)
	}
	if r.testid("error-summary").Length() != 0 || r.doc.Find(".field-error").Length() != 0 {
		t.Error("a fresh form shows errors")
	}
	if got := text(r.doc.Find("h1")); got != "New association" {
		t.Errorf("heading = %q", got)
	}
}

func TestRequiredFieldsAreNotMarkedOptional(t *testing.T) {
	app := newTestApp(t)
	r := app.get(t, "/associations/new", false)
	r.wantStatus(t, http.StatusOK)
	if got := text(r.doc.Find(`label[for="description"] .optional`)); got != "(optional)" {
		t.Errorf("description label lacks (optional): %q", got)
	}
	if r.doc.Find(`label[for="displayName"] .optional`).Length() != 0 {
		t.Error("display name is marked optional")
	}
	// An empty version is refused with "Enter a version", so the label must not invite leaving it empty.
	if got := text(r.doc.Find(`label[for="version"]`)); strings.Contains(got, "optional") {
		t.Fatalf("the Version label reads %q although an empty version is rejected (views/association.templ passes required=false to textField for Version)", got)
	}
}

func TestCreateValid(t *testing.T) {
	app := newTestApp(t)
	r := app.postForm(t, "/associations", validForm(), false)
	r.wantStatus(t, http.StatusSeeOther)
	if !regexp.MustCompile(`^/associations/[1-9][0-9]*$`).MatchString(r.header.Get("Location")) {
		t.Fatalf("Location = %q, want /associations/{id}", r.header.Get("Location"))
	}
	if !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), "\n"), "cartclass_flash=") {
		t.Errorf("no flash cookie set: %q", r.header.Values("Set-Cookie"))
	}

	detail := app.follow(t, r)
	detail.wantStatus(t, http.StatusOK)
	if got := text(detail.testid("flash")); got != "Association created." {
		t.Errorf("flash = %q, want Association created.", got)
	}
	if got := text(detail.testid("detail-title")); got != "Science block iPads" {
		t.Errorf("detail title = %q", got)
	}
	if got := text(detail.testid("prop-version")); got != "3" {
		t.Errorf("version = %q", got)
	}

	again := app.get(t, r.header.Get("Location"), false)
	again.wantStatus(t, http.StatusOK)
	if again.testid("flash").Length() != 0 {
		t.Errorf("flash shown again on the next load: %q", text(again.testid("flash")))
	}
	if n := app.count(t); n != 1 {
		t.Errorf("store holds %d associations, want 1", n)
	}
}

func TestCreateHTMXRedirects(t *testing.T) {
	app := newTestApp(t)
	r := app.postForm(t, "/associations", validForm(), true)
	r.wantStatus(t, http.StatusOK)
	loc := r.header.Get("HX-Redirect")
	if !regexp.MustCompile(`^/associations/[1-9][0-9]*$`).MatchString(loc) {
		t.Fatalf("HX-Redirect = %q, want /associations/{id}", loc)
	}
	if r.header.Get("Location") != "" {
		t.Errorf("htmx create also sent Location %q; the XHR would follow it", r.header.Get("Location"))
	}
	page := app.get(t, loc, false)
	if got := text(page.testid("flash")); got != "Association created." {
		t.Errorf("flash after HX-Redirect = %q", got)
	}
	if got := text(page.testid("detail-title")); got != "Science block iPads" {
		t.Errorf("HX-Redirect target shows %q", got)
	}
}

func TestCreateInvalid(t *testing.T) {
	long := func(n int, s string) string { return strings.Repeat(s, n) }
	manyIDs := make([]string, 501)
	for i := range manyIDs {
		manyIDs[i] = fmt.Sprintf("CART-%03d", i)
	}
	for _, tc := range []struct {
		name, field, value, message string
	}{
		{"empty display name", "displayName", "", "Enter a display name."},
		{"blank display name", "displayName", "   \t ", "Enter a display name."},
		{"257-char display name", "displayName", long(257, "é"), "Use at most 256 characters (this has 257)."},
		{"display name with a line break", "displayName", "Lab\ncarts", "Remove the line breaks, tabs or other control characters from the display name."},
		{"display name with a tab", "displayName", "Lab\tcarts", "Remove the line breaks, tabs or other control characters from the display name."},
		{"invalid UTF-8 display name", "displayName", "Lab \xff carts", "The display name contains bytes that are not valid text."},
		{"1025-char description", "description", long(1025, "x"), "Use at most 1,024 characters (this has 1,025)."},
		{"description with a control char", "description", "before\x01after", "Remove the control characters from the description (line breaks and tabs are fine)."},
		{"empty version", "version", "", "Enter a version: a whole number such as 1."},
		{"version abc", "version", "abc", "Enter a whole number from 0 to 2,147,483,647."},
		{"version -1", "version", "-1", "Enter a whole number from 0 to 2,147,483,647."},
		{"version 2147483648", "version", "2147483648", "Enter a whole number from 0 to 2,147,483,647."},
		{"version 1.5", "version", "1.5", "Enter a whole number from 0 to 2,147,483,647."},
		{"version 1e3", "version", "1e3", "Enter a whole number from 0 to 2,147,483,647."},
		{"129-char cart id", "deviceCartIds", "OK-1\n" + long(129, "c"), "The device cart ID “" + long(24, "c") + "…” has 129 characters; the limit is 128."},
		{"classroom id with a control char", "classroomIds", "R1\nR\x072", "The classroom ID “R�2” contains a control character; remove it."},
		{"501 cart ids", "deviceCartIds", strings.Join(manyIDs, "\n"), "Enter at most 500 device cart IDs (this list has 501 after removing duplicates)."},
		{"501 classroom ids", "classroomIds", strings.Join(manyIDs, ","), "Enter at most 500 classroom IDs (this list has 501 after removing duplicates)."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newTestApp(t)
			form := with(validForm(), tc.field, tc.value)
			r := app.postForm(t, "/associations", form, false)
			r.wantStatus(t, http.StatusUnprocessableEntity)
			wantFullPage(t, r)
			msg := r.field(tc.field).Find(`[data-testid="error-` + tc.field + `"]`)
			if got := text(msg); got != strings.Join(strings.Fields(tc.message), " ") {
				t.Errorf("message beside %s = %q, want %q", tc.field, got, tc.message)
			}
			// Only the bad field has a message.
			if n := r.doc.Find(".field-error").Length(); n != 1 {
				t.Errorf("%d field messages shown, want 1", n)
			}
			// The typed input comes back verbatim (the browser reads a textarea's text).
			if got := r.fieldValue(t, tc.field); got != tc.value && !(strings.HasPrefix(tc.value, "\n")) {
				t.Errorf("%s re-rendered as %q, want the typed %q", tc.field, got, tc.value)
			}
			for _, other := range formFields {
				if other.name == tc.field {
					continue
				}
				if got := r.fieldValue(t, other.name); got != form.Get(other.name) {
					t.Errorf("other field %s re-rendered as %q, want %q", other.name, got, form.Get(other.name))
				}
			}
			summary := r.testid("error-summary")
			if !strings.Contains(text(summary), "Please fix 1 problem") {
				t.Errorf("error summary = %q", text(summary))
			}
			if href, _ := summary.Find("a").Attr("href"); href != "#"+tc.field {
				t.Errorf("summary link = %q, want #%s", href, tc.field)
			}
			if n := app.count(t); n != 0 {
				t.Errorf("invalid create stored %d associations", n)
			}
		})
	}
}

func TestCreateAllFieldsInvalidAtOnce(t *testing.T) {
	app := newTestApp(t)
	form := url.Values{
		"displayName":   {""},
		"description":   {strings.Repeat("d", 1025)},
		"version":       {"v2"},
		"deviceCartIds": {strings.Repeat("c", 129)},
		"classroomIds":  {"a\x01b"},
	}
	r := app.postForm(t, "/associations", form, false)
	r.wantStatus(t, http.StatusUnprocessableEntity)
	if got := text(r.testid("error-summary").Find("h2")); got != "Please fix 5 problems" {
		t.Errorf("summary heading = %q", got)
	}
	var links []string
	r.testid("error-summary").Find("a").Each(func(_ int, s *goquery.Selection) {
		href, _ := s.Attr("href")
		links = append(links, href)
	})
	if want := []string{"#displayName", "#description", "#version", "#deviceCartIds", "#classroomIds"}; !slices.Equal(links, want) {
		t.Errorf("summary links = %q, want %q (form order)", links, want)
	}
	for _, f := range formFields {
		if r.field(f.name).Find(".field-error").Length() != 1 {
			t.Errorf("no message beside %s", f.name)
		}
		if inv, _ := r.doc.Find("#" + f.name).Attr("aria-invalid"); inv != "true" {
			t.Errorf("#%s aria-invalid = %q", f.name, inv)
		}
	}
}

func TestCreateAcceptsLimits(t *testing.T) {
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprintf("ROOM-%03d", i)
	}
	for _, tc := range []struct{ name, field, value string }{
		{"256-char display name", "displayName", strings.Repeat("ü", 256)},
		{"1024-char description", "description", strings.Repeat("ß", 1024)},
		{"description with line breaks and tabs", "description", "line one\r\n\tline two"},
		{"version 0", "version", "0"},
		{"version 2147483647", "version", "2147483647"},
		{"version with spaces", "version", " 12 "},
		{"128-char id", "deviceCartIds", strings.Repeat("k", 128)},
		{"500 ids", "classroomIds", strings.Join(ids, "\n")},
		{"500 ids after removing duplicates", "classroomIds", strings.Join(append(ids, ids[:10]...), "\n")},
		{"no ids", "deviceCartIds", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newTestApp(t)
			r := app.postForm(t, "/associations", with(validForm(), tc.field, tc.value), false)
			r.wantStatus(t, http.StatusSeeOther)
			if n := app.count(t); n != 1 {
				t.Errorf("store holds %d associations, want 1", n)
			}
		})
	}
}

func TestCreateNormalisesIDs(t *testing.T) {
	app := newTestApp(t)
	form := with(validForm(), "deviceCartIds", "  CART-B , CART-A\tCART-B\r\n\r\n\n   CART-C  \n,,\t\nCART-A")
	form.Set("classroomIds", "\r\n R 2 \r\nR 1,R 2")
	form.Set("displayName", "  Padded name  ")
	form.Set("description", "\r\n  Line one\r\nLine two  \r\n")
	r := app.postForm(t, "/associations", form, false)
	detail := app.follow(t, r)
	detail.wantStatus(t, http.StatusOK)

	list := func(testid string) []string {
		var got []string
		detail.testid(testid).Find("li").Each(func(_ int, s *goquery.Selection) { got = append(got, s.Text()) })
		return got
	}
	if got := list("prop-deviceCartIds"); !slices.Equal(got, []string{"CART-B", "CART-A", "CART-C"}) {
		t.Errorf("device cart IDs shown = %q, want CART-B, CART-A, CART-C", got)
	}
	if got := list("prop-classroomIds"); !slices.Equal(got, []string{"R 2", "R 1"}) {
		t.Errorf("classroom IDs shown = %q, want R 2, R 1", got)
	}
	if got := detail.testid("prop-displayName").Text(); got != "Padded name" {
		t.Errorf("display name = %q, want it trimmed", got)
	}
	if got := strings.TrimSpace(detail.testid("prop-description").Text()); got != "Line one\nLine two" {
		t.Errorf("description = %q, want trimmed with LF line breaks", got)
	}
	// The edit form shows one id per line.
	edit := app.get(t, r.header.Get("Location")+"/edit", false)
	if got := edit.fieldValue(t, "deviceCartIds"); got != "CART-B\nCART-A\nCART-C" {
		t.Errorf("edit form cart ids = %q", got)
	}
}

func TestCreateInvalidHTMXReturnsOnlyTheForm(t *testing.T) {
	app := newTestApp(t)
	r := app.postForm(t, "/associations", with(validForm(), "version", "x1"), true)
	r.wantStatus(t, http.StatusUnprocessableEntity)
	wantFragment(t, r)
	if r.doc.Find("form#association-form").Length() != 1 {
		t.Fatalf("htmx 422 has no form; body:\n%s", r.body)
	}
	if got := text(r.testid("error-version")); got != "Enter a whole number from 0 to 2,147,483,647." {
		t.Errorf("version message = %q", got)
	}
	if r.doc.Find("h1").Length() != 0 || r.doc.Find("nav").Length() != 0 {
		t.Error("htmx 422 carries more than the form")
	}
	if got := r.fieldValue(t, "version"); got != "x1" {
		t.Errorf("version kept as %q", got)
	}
	if r.header.Get("HX-Redirect") != "" {
		t.Error("invalid create redirected")
	}
	if n := app.count(t); n != 0 {
		t.Errorf("stored %d", n)
	}
}

func TestInvalidInputKeepsLeadingBlankLines(t *testing.T) {
	app := newTestApp(t)
	typed := "\nCART-1\nCART-2"
	r := app.postForm(t, "/associations", url.Values{"displayName": {""}, "version": {"1"}, "deviceCartIds": {typed}}, false)
	r.wantStatus(t, http.StatusUnprocessableEntity)
	if got := r.fieldValue(t, "deviceCartIds"); got != typed {
		t.Fatalf("a textarea value starting with a line break comes back as %q, not %q: HTML drops the first newline after <textarea>, and views/association.templ's textareaField does not emit one to compensate", got, typed)
	}
}

func TestBlurValidation(t *testing.T) {
	app := newTestApp(t)
	post := func(field string, form url.Values) *response {
		return app.postForm(t, "/associations/validate?field="+field, form, true)
	}
	bad := url.Values{"displayName": {""}, "version": {"abc"}, "deviceCartIds": {strings.Repeat("x", 200)}}

	r := post("displayName", bad)
	r.wantStatus(t, http.StatusOK)
	wantFragment(t, r)
	if got := text(r.testid("error-displayName")); got != "Enter a display name." {
		t.Errorf("displayName message = %q", got)
	}
	if strings.Contains(r.body, "whole number") || strings.Contains(r.body, "limit is 128") || r.doc.Find(".field-error").Length() != 1 {
		t.Errorf("validating one field returned other fields' messages: %s", r.body)
	}
	if id, _ := r.testid("error-displayName").Attr("id"); id != "displayName-error" {
		t.Errorf("message id = %q, want displayName-error (the input's aria-describedby)", id)
	}

	r = post("version", bad)
	r.wantStatus(t, http.StatusOK)
	if got := text(r.testid("error-version")); got != "Enter a whole number from 0 to 2,147,483,647." {
		t.Errorf("version message = %q", got)
	}

	r = post("displayName", validForm())
	r.wantStatus(t, http.StatusOK)
	if strings.TrimSpace(r.body) != "" {
		t.Errorf("valid value: body = %q, want empty", r.body)
	}
	r = post("description", bad) // description is fine even though others are not
	r.wantStatus(t, http.StatusOK)
	if strings.TrimSpace(r.body) != "" {
		t.Errorf("valid description: body = %q, want empty", r.body)
	}

	for _, field := range []string{"bogus", "", "revision", "DisplayName"} {
		r = post(field, validForm())
		if r.status != http.StatusBadRequest {
			t.Errorf("field=%q: status = %d, want 400", field, r.status)
		}
	}
	if n := app.count(t); n != 0 {
		t.Errorf("validation stored %d associations", n)
	}
}

func TestDetailPage(t *testing.T) {
	app := newTestApp(t)
	app.clock.freeze(time.Date(2025, 3, 14, 9, 26, 1, 0, time.UTC))
	a := app.create(t, store.Fields{DisplayName: "Lab carts", Description: "North wing\nnear the stairs", Version: 12,
		DeviceCartIDs: []string{"C-2", "C-1"}, ClassroomIDs: []string{"L1"}})
	app.clock.freeze(time.Date(2025, 3, 14, 10, 56, 1, 0, time.UTC)) // the edit happens 1.5 h later
	if _, err := app.store.UpdateAssociation(context.Background(), a.ID, 1, store.Fields{DisplayName: "Lab carts", Description: "North wing\nnear the stairs", Version: 13,
		DeviceCartIDs: []string{"C-2", "C-1"}, ClassroomIDs: []string{"L1"}}, store.Actor{Subject: "s", Name: "Grace Admin"}); err != nil {
		t.Fatal(err)
	}

	r := app.get(t, fmt.Sprintf("/associations/%d", a.ID), false)
	r.wantStatus(t, http.StatusOK)
	wantFullPage(t, r)
	if got := text(r.testid("detail-title")); got != "Lab carts" {
		t.Errorf("title = %q", got)
	}
	for testid, want := range map[string]string{
		"prop-displayName":   "Lab carts",
		"prop-description":   "North wing near the stairs",
		"prop-version":       "13",
		"prop-deviceCartIds": "C-2|C-1",
		"prop-classroomIds":  "L1",
	} {
		got := text(r.testid(testid))
		if items := r.testid(testid).Find("li"); items.Length() > 0 {
			got = strings.Join(items.Map(func(_ int, s *goquery.Selection) string { return text(s) }), "|")
		}
		if got != want {
			t.Errorf("%s = %q, want %q", testid, got, want)
		}
	}
	local := r.testid("local-props")
	prop := func(sel *goquery.Selection, label string) *goquery.Selection {
		return sel.Find("dt").FilterFunction(func(_ int, s *goquery.Selection) bool { return text(s) == label }).Next()
	}
	if got := text(prop(local, "Created")); got != "14 Mar 2025, 09:26 UTC" {
		t.Errorf("Created = %q", got)
	}
	if dt, _ := prop(local, "Created").Find("time").Attr("datetime"); dt != "2025-03-14T09:26:01Z" {
		t.Errorf("Created datetime = %q", dt)
	}
	if got := text(prop(local, "Last modified")); got != "14 Mar 2025, 10:56 UTC by Grace Admin" {
		t.Errorf("Last modified = %q", got)
	}
	if got := text(prop(local, "Revision")); got != "2" {
		t.Errorf("Revision = %q", got)
	}
	if got := text(prop(local, "Local ID")); got != strconv.FormatInt(a.ID, 10) {
		t.Errorf("Local ID = %q", got)
	}
	graph := r.testid("graph-props")
	if got := text(prop(graph, "Sync state")); got != "Waiting" {
		t.Errorf("Sync state = %q", got)
	}
	if got := text(prop(graph, "Graph ID")); got != "Not created in Graph yet" {
		t.Errorf("Graph ID = %q", got)
	}
	if got := text(prop(graph, "Created in Graph")); got != "—" {
		t.Errorf("Created in Graph = %q", got)
	}
	edit := r.testid("edit")
	if href, _ := edit.Attr("href"); text(edit) != "Edit" || href != fmt.Sprintf("/associations/%d/edit", a.ID) {
		t.Errorf("Edit link = %q → %q", text(edit), href)
	}
	if crumbs := strings.Join(r.doc.Find("nav.breadcrumbs li").Map(func(_ int, s *goquery.Selection) string { return text(s) }), " › "); crumbs != "Associations › Lab carts" {
		t.Errorf("breadcrumbs = %q", crumbs)
	}

	// No id lists and no description show "None".
	b := app.create(t, store.Fields{DisplayName: "Bare"})
	r = app.get(t, fmt.Sprintf("/associations/%d", b.ID), false)
	for _, id := range []string{"prop-description", "prop-deviceCartIds", "prop-classroomIds"} {
		if got := text(r.testid(id)); got != "None" {
			t.Errorf("%s of a bare association = %q, want None", id, got)
		}
	}
}

func TestEditFormPrefilled(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Lab carts", Description: "line 1\nline 2", Version: 4,
		DeviceCartIDs: []string{"C-2", "C-1"}, ClassroomIDs: []string{"L1", "L2"}})
	r := app.get(t, fmt.Sprintf("/associations/%d/edit", a.ID), false)
	r.wantStatus(t, http.StatusOK)
	wantFullPage(t, r)
	for name, want := range map[string]string{
		"displayName":   "Lab carts",
		"description":   "line 1\nline 2",
		"version":       "4",
		"deviceCartIds": "C-2\nC-1",
		"classroomIds":  "L1\nL2",
	} {
		if got := r.fieldValue(t, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := r.hiddenRevision(t); got != "1" {
		t.Errorf("revision = %q, want 1", got)
	}
	// The breadcrumb names the association the edit is of, and leads back to it.
	crumbs := r.doc.Find("nav.breadcrumbs li")
	if got := strings.Join(crumbs.Map(func(_ int, s *goquery.Selection) string { return text(s) }), " › "); got != "Associations › Lab carts › Edit" {
		t.Errorf("breadcrumbs = %q", got)
	}
	if href, _ := crumbs.Eq(1).Find("a").Attr("href"); href != fmt.Sprintf("/associations/%d", a.ID) {
		t.Errorf("the association's crumb links to %q", href)
	}
	if action, _ := r.testid("association-form").Attr("action"); action != fmt.Sprintf("/associations/%d", a.ID) {
		t.Errorf("form action = %q", action)
	}
	for _, f := range formFields {
		wantLabel(t, r, f.name, f.label)
	}
}

func editForm(name, revision string) url.Values {
	return url.Values{
		"displayName":   {name},
		"description":   {"Edited"},
		"version":       {"2"},
		"deviceCartIds": {"C-9"},
		"classroomIds":  {""},
		"revision":      {revision},
	}
}

func TestUpdateValid(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Before", Version: 1})
	path := fmt.Sprintf("/associations/%d", a.ID)
	r := app.postForm(t, path, editForm("After", "1"), false)
	r.wantStatus(t, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != path {
		t.Errorf("Location = %q, want %q", loc, path)
	}
	detail := app.follow(t, r)
	if got := text(detail.testid("flash")); got != "Changes saved." {
		t.Errorf("flash = %q", got)
	}
	if got := text(detail.testid("prop-displayName")); got != "After" {
		t.Errorf("display name = %q", got)
	}
	if got := text(detail.testid("prop-classroomIds")); got != "None" {
		t.Errorf("classroom ids = %q, want None", got)
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.Revision != 2 || stored.DisplayName != "After" || stored.Description != "Edited" || stored.Version != 2 {
		t.Errorf("stored = %+v", stored)
	}
	if app.get(t, path, false).testid("flash").Length() != 0 {
		t.Error("flash shown twice")
	}

	// htmx save answers HX-Redirect.
	h := app.postForm(t, path, editForm("After again", "2"), true)
	h.wantStatus(t, http.StatusOK)
	if got := h.header.Get("HX-Redirect"); got != path {
		t.Errorf("HX-Redirect = %q, want %q", got, path)
	}
}

func TestUpdateUnchanged(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Same", Description: "Edited", Version: 2, DeviceCartIDs: []string{"C-9"}})
	path := fmt.Sprintf("/associations/%d", a.ID)
	// Same values, typed differently (padding, CRLF, duplicate id).
	form := editForm("  Same ", "1")
	form.Set("deviceCartIds", "C-9\r\nC-9\r\n")
	r := app.postForm(t, path, form, false)
	detail := app.follow(t, r)
	if got := text(detail.testid("flash")); got != "Nothing changed, so nothing was saved." {
		t.Errorf("flash = %q", got)
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.Revision != 1 || !stored.UpdatedAt.Equal(a.UpdatedAt) {
		t.Errorf("unchanged save wrote: revision %d, updated %v (was %v)", stored.Revision, stored.UpdatedAt, a.UpdatedAt)
	}
}

func TestUpdateInvalidKeepsInputAndStore(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Stored", Version: 1})
	path := fmt.Sprintf("/associations/%d", a.ID)
	form := editForm("", "1")
	form.Set("version", "-3")
	r := app.postForm(t, path, form, false)
	r.wantStatus(t, http.StatusUnprocessableEntity)
	wantFullPage(t, r)
	if got := text(r.field("displayName").Find(".field-error")); got != "Enter a display name." {
		t.Errorf("display name message = %q", got)
	}
	if got := text(r.field("version").Find(".field-error")); got != "Enter a whole number from 0 to 2,147,483,647." {
		t.Errorf("version message = %q", got)
	}
	if got := r.fieldValue(t, "version"); got != "-3" {
		t.Errorf("version kept as %q", got)
	}
	if got := r.hiddenRevision(t); got != "1" {
		t.Errorf("revision kept as %q", got)
	}
	if action, _ := r.testid("association-form").Attr("action"); action != path {
		t.Errorf("form posts to %q, want %q", action, path)
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.DisplayName != "Stored" || stored.Revision != 1 {
		t.Errorf("store changed: %+v", stored)
	}
}

func TestUpdateConflict(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Original", Version: 1, DeviceCartIDs: []string{"C-1"}})
	path := fmt.Sprintf("/associations/%d", a.ID)
	// Another admin saves first.
	if _, err := app.store.UpdateAssociation(context.Background(), a.ID, 1,
		store.Fields{DisplayName: "Theirs", Version: 5, DeviceCartIDs: []string{"C-1"}}, store.Actor{Subject: "x", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}

	r := app.postForm(t, path, editForm("Mine", "1"), false)
	r.wantStatus(t, http.StatusConflict)
	wantFullPage(t, r)
	if got := text(r.testid("conflict").Find("h1")); got != "Someone else saved this association first" {
		t.Errorf("conflict heading = %q", got)
	}
	if !strings.Contains(text(r.testid("conflict")), "While you were editing, Ada saved revision 2.") {
		t.Errorf("conflict lead = %q", text(r.testid("conflict").Find(".lead")))
	}
	mine, theirs := r.testid("conflict-mine"), r.testid("conflict-theirs")
	if got := text(mine.Find(`[data-testid="prop-displayName"]`)); got != "Mine" {
		t.Errorf("your version shows %q", got)
	}
	if got := text(theirs.Find(`[data-testid="prop-displayName"]`)); got != "Theirs" {
		t.Errorf("stored version shows %q", got)
	}
	if got := text(mine.Find(`[data-testid="prop-version"]`)) + "/" + text(theirs.Find(`[data-testid="prop-version"]`)); got != "2/5" {
		t.Errorf("versions mine/theirs = %q, want 2/5", got)
	}
	if !mine.Find(`[data-testid="prop-displayName"]`).HasClass("changed") || mine.Find(`[data-testid="prop-deviceCartIds"]`).HasClass("changed") == false {
		// C-9 vs C-1 differ too
		t.Error("changed properties are not highlighted")
	}
	if !strings.Contains(text(theirs.Find("h2")), "revision 2") {
		t.Errorf("stored version heading = %q", text(theirs.Find("h2")))
	}
	if got := r.hiddenRevision(t); got != "2" {
		t.Errorf("re-apply form revision = %q, want the current 2", got)
	}
	if got := r.fieldValue(t, "displayName"); got != "Mine" {
		t.Errorf("re-apply form holds %q, want your Mine", got)
	}
	if href, _ := r.testid("keep-theirs").Attr("href"); href != path {
		t.Errorf("keep theirs → %q", href)
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.DisplayName != "Theirs" || stored.Revision != 2 {
		t.Errorf("conflict changed the store: %q rev %d", stored.DisplayName, stored.Revision)
	}

	// Re-applying from the conflict form (now at revision 2) saves.
	again := app.postForm(t, path, editForm("Mine", r.hiddenRevision(t)), false)
	again.wantStatus(t, http.StatusSeeOther)
	stored, _ = app.store.GetAssociation(context.Background(), a.ID)
	if stored.DisplayName != "Mine" || stored.Revision != 3 {
		t.Errorf("after re-apply: %q rev %d, want Mine rev 3", stored.DisplayName, stored.Revision)
	}
}

// The edit form carries the values it started from, so a conflicting save re-applies only
// what this admin changed: the other admin's rename survives, and a field both changed is
// named.
func TestUpdateConflictRebasesOnTheirVersion(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Original", Description: "Old", Version: 1, DeviceCartIDs: []string{"C-1"}})
	path := fmt.Sprintf("/associations/%d", a.ID)
	edit := app.get(t, path+"/edit", false)
	edit.wantStatus(t, http.StatusOK)
	form := formValues(edit.testid("association-form"))
	if form.Get("base.displayName") != "Original" || form.Get("base.deviceCartIds") != "C-1" {
		t.Fatalf("edit form lacks the values it started from: %v", form)
	}

	// Ada renames it and changes the version meanwhile.
	if _, err := app.store.UpdateAssociation(context.Background(), a.ID, 1,
		store.Fields{DisplayName: "Renamed by Ada", Description: "Old", Version: 7, DeviceCartIDs: []string{"C-1"}}, store.Actor{Subject: "x", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	// This admin changed the description and the version.
	form.Set("description", "Mine")
	form.Set("version", "3")
	r := app.postForm(t, path, form, false)
	r.wantStatus(t, http.StatusConflict)
	for field, want := range map[string]string{"displayName": "Renamed by Ada", "description": "Mine", "version": "3", "deviceCartIds": "C-1"} {
		if got := strings.TrimSpace(r.fieldValue(t, field)); got != want {
			t.Errorf("re-apply form %s = %q, want %q", field, got, want)
		}
	}
	note := text(r.testid("rebase-note"))
	if !strings.Contains(note, "fields you did not change show their values") || !strings.Contains(note, "You both changed Version") {
		t.Errorf("re-apply note = %q", note)
	}

	// Saving it keeps Ada's rename.
	again := formValues(r.testid("association-form"))
	app.postForm(t, path, again, false).wantStatus(t, http.StatusSeeOther)
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.DisplayName != "Renamed by Ada" || stored.Description != "Mine" || stored.Version != 3 || stored.Revision != 3 {
		t.Errorf("after re-apply: %q %q v%d rev %d", stored.DisplayName, stored.Description, stored.Version, stored.Revision)
	}
}

// formValues is what a browser would submit from form: its inputs' and textareas' values.
func formValues(form *goquery.Selection) url.Values {
	v := url.Values{}
	form.Find("input, textarea").Each(func(_ int, el *goquery.Selection) {
		name, _ := el.Attr("name")
		value, _ := el.Attr("value")
		if goquery.NodeName(el) == "textarea" {
			value = el.Text()
		}
		if name != "" {
			v.Set(name, value)
		}
	})
	return v
}

func TestUpdateConflictHTMX(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Original", Version: 1})
	if _, err := app.store.UpdateAssociation(context.Background(), a.ID, 1, store.Fields{DisplayName: "Theirs", Version: 1}, store.Actor{}); err != nil {
		t.Fatal(err)
	}
	r := app.postForm(t, fmt.Sprintf("/associations/%d", a.ID), editForm("Mine", "1"), true)
	r.wantStatus(t, http.StatusConflict)
	wantFragment(t, r)
	if got := r.header.Get("HX-Retarget"); got != "#main" {
		t.Errorf("HX-Retarget = %q, want #main", got)
	}
	if r.testid("conflict").Length() != 1 || r.testid("association-form").Length() != 1 {
		t.Errorf("htmx conflict lacks the comparison or the form; body:\n%s", r.body)
	}
	if !strings.Contains(text(r.testid("conflict")), "another admin saved revision 2") {
		t.Errorf("conflict text = %q", text(r.testid("conflict").Find(".lead")))
	}
}

func TestUpdateBadRevision(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Stored", Version: 1})
	path := fmt.Sprintf("/associations/%d", a.ID)
	for _, rev := range []string{"", "abc", "0", "-1", "1.0", "99999999999999999999"} {
		form := editForm("Changed", rev)
		if rev == "" {
			form.Del("revision")
		}
		r := app.postForm(t, path, form, false)
		wantErrorPage(t, r, http.StatusBadRequest, "Bad request")
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.DisplayName != "Stored" || stored.Revision != 1 {
		t.Errorf("bad revisions changed the store: %+v", stored)
	}
}

func TestMalformedFormIs400(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Stored", Version: 1})
	for _, path := range []string{"/associations", fmt.Sprintf("/associations/%d", a.ID), "/associations/validate?field=displayName"} {
		for _, body := range []string{"displayName=%zz&version=1", "displayName=ok&version=1&revision=1&%", "a=%G0"} {
			r := app.postRaw(t, path, strings.NewReader(body), nil)
			wantErrorPage(t, r, http.StatusBadRequest, "Bad request")
			if !strings.Contains(text(r.testid("error-page")), "The form could not be read") {
				t.Errorf("%s %q: page says %q", path, body, text(r.testid("error-page")))
			}
		}
	}
	if n := app.count(t); n != 1 {
		t.Errorf("store holds %d associations, want 1", n)
	}
}

// unsized hides a reader's length, so the request is sent with an unknown length.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestBodyTooLarge(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Stored", Version: 1})
	big := func() []byte {
		return []byte("displayName=Big&version=1&description=" + strings.Repeat("x", 1<<20))
	}
	for _, path := range []string{"/associations", fmt.Sprintf("/associations/%d", a.ID), "/associations/validate?field=description", "/auth/login"} {
		t.Run(path+" declared", func(t *testing.T) {
			r := app.postRaw(t, path, bytes.NewReader(big()), nil)
			wantErrorPage(t, r, http.StatusRequestEntityTooLarge, "Too much data")
		})
		t.Run(path+" unknown length", func(t *testing.T) {
			r := app.postRaw(t, path, unsized{bytes.NewReader(big())}, nil)
			wantErrorPage(t, r, http.StatusRequestEntityTooLarge, "Too much data")
			if !strings.Contains(text(r.testid("error-page")), "more than 1 MiB") {
				t.Errorf("413 page says %q", text(r.testid("error-page")))
			}
		})
	}
	if n := app.count(t); n != 1 {
		t.Errorf("store holds %d associations, want 1", n)
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.Revision != 1 {
		t.Errorf("oversized update changed the store")
	}
	// Just under the limit is read normally (here: a 422 for the long description).
	body := "displayName=Near&version=1&description=" + strings.Repeat("y", 1<<20-100)
	r := app.postRaw(t, "/associations", unsized{strings.NewReader(body)}, nil)
	r.wantStatus(t, http.StatusUnprocessableEntity)
}

func TestCrossOriginPostsRefused(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Stored", Version: 1})
	update := editForm("Hijacked", "1")
	for _, hdr := range []http.Header{
		{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {""}},
		// Fetch metadata saying cross-site or same-site wins over an Origin of
		// cartclass's own (which no browser would send with it), and over none.
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-site"}},
		{"Sec-Fetch-Site": {"cross-site"}, "Origin": {""}},
		{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://intranet.localhost"}},
		{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}},
	} {
		for _, tc := range []struct {
			path string
			form url.Values
		}{
			{"/associations", validForm()},
			{fmt.Sprintf("/associations/%d", a.ID), update},
			{"/associations/validate?field=displayName", validForm()},
		} {
			r := app.postRaw(t, tc.path, strings.NewReader(tc.form.Encode()), hdr)
			wantErrorPage(t, r, http.StatusForbidden, "Request refused")
		}
	}
	if n := app.count(t); n != 1 {
		t.Errorf("cross-origin posts stored: %d associations", n)
	}
	stored, _ := app.store.GetAssociation(context.Background(), a.ID)
	if stored.DisplayName != "Stored" {
		t.Errorf("cross-origin update saved %q", stored.DisplayName)
	}
	// The same post from the site itself works, by Origin alone too.
	ok := app.postRaw(t, "/associations", strings.NewReader(validForm().Encode()), http.Header{"Sec-Fetch-Site": {""}, "Origin": {testOrigin}})
	ok.wantStatus(t, http.StatusSeeOther)
	// Reading is allowed cross-site (links from elsewhere must work).
	app.request(t, http.MethodGet, "/associations", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}).wantStatus(t, http.StatusOK)
}

var nonceRE = regexp.MustCompile(`script-src 'self' 'nonce-([A-Za-z0-9+/=_-]+)'`)

func TestSecurityHeaders(t *testing.T) {
	app := newTestApp(t)
	app.create(t, store.Fields{DisplayName: "x"})
	var nonces []string
	for _, path := range []string{"/associations", "/associations", "/associations/new", "/associations/1", "/nope"} {
		r := app.get(t, path, false)
		csp := r.header.Get("Content-Security-Policy")
		m := nonceRE.FindStringSubmatch(csp)
		if m == nil {
			t.Fatalf("%s: CSP %q has no script nonce", path, csp)
		}
		nonces = append(nonces, m[1])
		for _, want := range []string{"object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "default-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP lacks %q", path, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows unsafe code: %q", path, csp)
		}
		scripts := r.doc.Find("script")
		if scripts.Length() == 0 {
			t.Errorf("%s: page has no script tags", path)
		}
		scripts.Each(func(_ int, s *goquery.Selection) {
			if n, _ := s.Attr("nonce"); n != m[1] {
				src, _ := s.Attr("src")
				t.Errorf("%s: script %s nonce %q, want the CSP's %q", path, src, n, m[1])
			}
		})
		for h, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Cache-Control":          "no-store",
			"Referrer-Policy":        "same-origin",
			"X-Frame-Options":        "DENY",
		} {
			if got := r.header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", path, h, got, want)
			}
		}
		if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type = %q", path, ct)
		}
	}
	slices.Sort(nonces)
	if len(slices.Compact(nonces)) != 5 {
		t.Errorf("nonces repeat across responses: %q", nonces)
	}
	// htmx config keeps htmx from running code from responses.
	r := app.get(t, "/associations", false)
	cfg, _ := r.doc.Find(`meta[name="htmx-config"]`).Attr("content")
	for _, want := range []string{`"allowEval":false`, `"allowScriptTags":false`, `"historyCacheSize":0`, `"selfRequestsOnly":true`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("htmx-config %q lacks %s", cfg, want)
		}
	}
	// Error answers carry the headers too.
	for _, res := range []*response{
		app.postRaw(t, "/associations", strings.NewReader("%zz"), nil),
		app.postRaw(t, "/associations", strings.NewReader(validForm().Encode()), http.Header{"Sec-Fetch-Site": {"cross-site"}}),
	} {
		if res.header.Get("X-Content-Type-Options") != "nosniff" || res.header.Get("Cache-Control") != "no-store" || !nonceRE.MatchString(res.header.Get("Content-Security-Policy")) {
			t.Errorf("%d answer lacks security headers: %v", res.status, res.header)
		}
	}
}

func TestStaticAssets(t *testing.T) {
	app := newTestApp(t)
	page := app.get(t, "/associations/new", false)
	css, _ := page.doc.Find(`link[rel="stylesheet"]`).Attr("href")
	var scripts []string
	page.doc.Find("script[src]").Each(func(_ int, s *goquery.Selection) {
		src, _ := s.Attr("src")
		scripts = append(scripts, src)
	})
	hashed := regexp.MustCompile(`^/static/[a-z0-9/.-]+\.[0-9a-f]{12}\.(css|js)$`)
	for _, tc := range []struct{ path, ctype, contains string }{
		{css, "text/css", "{"},
		{scripts[0], "javascript", "htmx"},
		{scripts[len(scripts)-1], "javascript", "htmx:afterSwap"},
	} {
		if !hashed.MatchString(tc.path) {
			t.Errorf("asset URL %q is not content-hashed", tc.path)
			continue
		}
		r := app.get(t, tc.path, false)
		r.wantStatus(t, http.StatusOK)
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
			t.Errorf("%s: Cache-Control = %q, want a year, immutable", tc.path, cc)
		}
		if ct := r.header.Get("Content-Type"); !strings.Contains(ct, tc.ctype) {
			t.Errorf("%s: Content-Type = %q, want %s", tc.path, ct, tc.ctype)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.path)
		}
		if !strings.Contains(r.body, tc.contains) {
			t.Errorf("%s: body does not look like the asset", tc.path)
		}
	}
	for _, path := range []string{"/static/app.css", "/static/app.js", "/static/vendor/htmx-2.0.11.min.js", "/static/app.000000000000.css", "/static/", "/static/preview.html"} {
		r := app.get(t, path, false)
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, r.status)
		}
		if strings.Contains(r.header.Get("Cache-Control"), "immutable") {
			t.Errorf("%s: a 404 is cached as immutable", path)
		}
	}
}

// Hostile text an admin might paste: it must stay text on every page and fragment.
const (
	hostileName = `<script>alert(1)</script>`
	hostileDesc = `"><img src=x onerror=alert(1)>`
	hostileID1  = `javascript:alert(1)`
	hostileID2  = `hx-get="/x"`
)

func wantInert(t *testing.T, where string, r *response) {
	t.Helper()
	for _, raw := range []string{"<script>alert", "<img src=x", `"><img`, `<img `} {
		if strings.Contains(r.body, raw) {
			t.Errorf("%s: raw %q appears unescaped in the body", where, raw)
		}
	}
	if n := r.doc.Find("img, [onerror]").Length(); n != 0 {
		t.Errorf("%s: %d injected img/onerror elements", where, n)
	}
	r.doc.Find("*").Each(func(_ int, s *goquery.Selection) {
		for _, a := range s.Nodes[0].Attr {
			if strings.HasPrefix(a.Key, "hx-") && a.Val == "/x" {
				t.Errorf("%s: injected attribute %s=%q on <%s>", where, a.Key, a.Val, s.Nodes[0].Data)
			}
			if a.Key == "href" && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
				t.Errorf("%s: javascript: link on <%s>", where, s.Nodes[0].Data)
			}
		}
	})
	r.doc.Find("script").Each(func(_ int, s *goquery.Selection) {
		if _, ok := s.Attr("src"); !ok {
			t.Errorf("%s: inline script %q", where, s.Text())
		}
	})
}

func wantText(t *testing.T, where string, r *response, texts ...string) {
	t.Helper()
	all := r.doc.Text()
	for _, s := range texts {
		if !strings.Contains(all, s) {
			t.Errorf("%s: text %q not shown", where, s)
		}
	}
}

func TestHostileTextStaysText(t *testing.T) {
	app := newTestApp(t)
	form := url.Values{
		"displayName":   {hostileName},
		"description":   {hostileDesc},
		"version":       {"1"},
		"deviceCartIds": {hostileID1 + "\n" + hostileID2},
		"classroomIds":  {`<b>R1</b>`},
	}
	created := app.postForm(t, "/associations", form, false)
	created.wantStatus(t, http.StatusSeeOther)
	path := created.header.Get("Location")

	detail := app.follow(t, created)
	detail.wantStatus(t, http.StatusOK)
	wantInert(t, "detail", detail)
	wantText(t, "detail", detail, hostileName, hostileDesc, hostileID1, hostileID2, "<b>R1</b>")
	if got := text(detail.testid("detail-title")); got != hostileName {
		t.Errorf("detail title = %q", got)
	}
	if got := text(detail.doc.Find("title")); !strings.HasPrefix(got, hostileName) {
		t.Errorf("page title = %q", got)
	}

	list := app.get(t, "/associations", false)
	wantInert(t, "list", list)
	wantText(t, "list", list, hostileName, hostileDesc)

	frag := app.getTable(t, "/associations?q="+url.QueryEscape("<script>"))
	frag.wantStatus(t, http.StatusOK)
	wantInert(t, "list fragment", frag)
	wantText(t, "list fragment", frag, hostileName, "matching “<script>”")
	if v, _ := frag.doc.Find("#sort-input").Attr("value"); v != "-modified" {
		t.Errorf("fragment sort input = %q", v)
	}

	// A hostile search is echoed as text in the box and the count.
	search := app.get(t, "/associations?q="+url.QueryEscape(`"><img src=x onerror=alert(1)>`), false)
	wantInert(t, "search page", search)
	if v, _ := search.testid("search").Attr("value"); v != hostileDesc {
		t.Errorf("search box = %q", v)
	}

	edit := app.get(t, path+"/edit", false)
	wantInert(t, "edit form", edit)
	if got := edit.fieldValue(t, "displayName"); got != hostileName {
		t.Errorf("edit display name = %q", got)
	}
	if got := edit.fieldValue(t, "description"); got != hostileDesc {
		t.Errorf("edit description = %q", got)
	}
	if got := edit.fieldValue(t, "deviceCartIds"); got != hostileID1+"\n"+hostileID2 {
		t.Errorf("edit ids = %q", got)
	}

	bad := with(form, "version", `"><img src=x onerror=alert(2)>`)
	for _, htmx := range []bool{false, true} {
		r := app.postForm(t, "/associations", bad, htmx)
		r.wantStatus(t, http.StatusUnprocessableEntity)
		wantInert(t, fmt.Sprintf("422 (htmx %v)", htmx), r)
		if got := r.fieldValue(t, "version"); got != `"><img src=x onerror=alert(2)>` {
			t.Errorf("422 version = %q", got)
		}
		if got := r.fieldValue(t, "displayName"); got != hostileName {
			t.Errorf("422 display name = %q", got)
		}
	}
	// An id error quotes the id in its message: still text.
	r := app.postForm(t, "/associations", with(form, "deviceCartIds", "<img src=x onerror=alert(3)>"+strings.Repeat("z", 130)), false)
	r.wantStatus(t, http.StatusUnprocessableEntity)
	wantInert(t, "422 id message", r)
	wantText(t, "422 id message", r, "“<img src=x onerror=alert…”")

	// Someone else saves hostile text too; the 409 shows both versions as text.
	id, _ := strconv.ParseInt(strings.TrimPrefix(path, "/associations/"), 10, 64)
	if _, err := app.store.UpdateAssociation(context.Background(), id, 1,
		store.Fields{DisplayName: `<svg onload=alert(4)>`, Description: hostileDesc, Version: 1}, store.Actor{Name: `<i>Mallory</i>`}); err != nil {
		t.Fatal(err)
	}
	for _, htmx := range []bool{false, true} {
		c := app.postForm(t, path, with(form, "revision", "1"), htmx)
		c.wantStatus(t, http.StatusConflict)
		wantInert(t, fmt.Sprintf("409 (htmx %v)", htmx), c)
		if c.doc.Find("svg, i").Length() != 0 || strings.Contains(c.body, "<svg") {
			t.Errorf("409 (htmx %v): markup injected", htmx)
		}
		wantText(t, "409", c, hostileName, `<svg onload=alert(4)>`, "<i>Mallory</i>")
	}
}

func TestSavesRecordTheSignedInUser(t *testing.T) {
	app := newTestApp(t)
	r := app.postForm(t, "/associations", validForm(), false)
	detail := app.follow(t, r)
	local := detail.testid("local-props")
	if !strings.Contains(text(local), "by Dev Admin") {
		t.Errorf("history does not name the admin: %q", text(local))
	}
	id, _ := strconv.ParseInt(strings.TrimPrefix(r.header.Get("Location"), "/associations/"), 10, 64)
	a, err := app.store.GetAssociation(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if a.CreatedBy.Subject != devidp.SubjectAdmin || a.CreatedBy.Name != "Dev Admin" {
		t.Errorf("CreatedBy = %+v", a.CreatedBy)
	}
	app.postForm(t, r.header.Get("Location"), editForm("Renamed", "1"), false).wantStatus(t, http.StatusSeeOther)
	a, _ = app.store.GetAssociation(context.Background(), id)
	if a.UpdatedBy.Subject != devidp.SubjectAdmin || a.UpdatedBy.Name != "Dev Admin" {
		t.Errorf("UpdatedBy = %+v", a.UpdatedBy)
	}
}

func TestViewerCanReadButNotWrite(t *testing.T) {
	app := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"))
	a := app.create(t, store.Fields{DisplayName: "Read me", Version: 1})
	app.signIn(t, devidp.SubjectViewer)
	path := fmt.Sprintf("/associations/%d", a.ID)

	list := app.get(t, "/associations", false)
	list.wantStatus(t, http.StatusOK)
	if list.testid("new-association").Length() != 0 {
		t.Error("viewer sees New association")
	}
	detail := app.get(t, path, false)
	detail.wantStatus(t, http.StatusOK)
	if detail.testid("edit").Length() != 0 {
		t.Error("viewer sees Edit")
	}
	for _, p := range []string{"/associations/new", path + "/edit"} {
		r := app.get(t, p, false)
		r.wantStatus(t, http.StatusForbidden)
	}
	for _, htmx := range []bool{false, true} {
		app.postForm(t, "/associations", validForm(), htmx).wantStatus(t, http.StatusForbidden)
		app.postForm(t, path, editForm("Changed", "1"), htmx).wantStatus(t, http.StatusForbidden)
		app.postForm(t, "/associations/validate?field=displayName", validForm(), htmx).wantStatus(t, http.StatusForbidden)
	}
	if n := app.count(t); n != 1 {
		t.Errorf("viewer created: %d associations", n)
	}
	if got, _ := app.store.GetAssociation(context.Background(), a.ID); got.DisplayName != "Read me" || got.Revision != 1 {
		t.Errorf("viewer changed the association: %+v", got)
	}
}

func TestSignedOutGetsSignIn(t *testing.T) {
	app := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"))
	a := app.create(t, store.Fields{DisplayName: "Secret", Version: 1})
	path := fmt.Sprintf("/associations/%d", a.ID)
	for _, p := range []string{"/associations", path, "/associations?q=secret"} {
		r := app.get(t, p, false)
		r.wantStatus(t, http.StatusSeeOther)
		if loc := r.header.Get("Location"); loc != "/signin?next="+url.QueryEscape(p) {
			t.Errorf("%s → %q", p, loc)
		}
		if strings.Contains(r.body, "Secret") {
			t.Errorf("%s: signed-out answer leaks content", p)
		}
	}
	frag := app.getTable(t, "/associations?q=secret")
	if frag.status != http.StatusUnauthorized || !strings.HasPrefix(frag.header.Get("HX-Redirect"), "/signin?next=") {
		t.Errorf("signed-out htmx: %d HX-Redirect %q", frag.status, frag.header.Get("HX-Redirect"))
	}
	if strings.Contains(frag.body, "Secret") {
		t.Error("signed-out htmx answer leaks content")
	}
	r := app.postForm(t, path, editForm("Changed", "1"), false)
	r.wantStatus(t, http.StatusSeeOther)
	if got, _ := app.store.GetAssociation(context.Background(), a.ID); got.DisplayName != "Secret" {
		t.Error("signed-out save was stored")
	}
	app.postForm(t, "/associations", validForm(), false).wantStatus(t, http.StatusSeeOther)
	if n := app.count(t); n != 1 {
		t.Errorf("signed-out create stored: %d", n)
	}
}

// benchDB holds 10,000 associations, built once per test binary: creating them one
// transaction at a time takes seconds, and the benchmarks only read.
var benchDB struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func benchApp(b *testing.B) *testApp {
	b.Helper()
	benchDB.once.Do(func() {
		start := time.Now()
		if benchDB.dir, benchDB.err = os.MkdirTemp("", "cartclass-webbench-"); benchDB.err != nil {
			return
		}
		benchDB.path = filepath.Join(benchDB.dir, "bench.db")
		st, err := store.Open(context.Background(), benchDB.path)
		if err != nil {
			benchDB.err = err
			return
		}
		defer st.Close()
		at := time.Date(2024, 9, 1, 7, 0, 0, 0, time.UTC)
		st.Now = func() time.Time { at = at.Add(time.Second); return at }
		for i := range 10_000 {
			f := store.Fields{
				DisplayName:   fmt.Sprintf("%s wing room %05d", []string{"North", "south", "East", "west", "Ärzte", "Music", "Lab"}[i%7], i),
				Description:   "Laptops on the second floor",
				DeviceCartIDs: []string{fmt.Sprintf("CART-%05d", i)},
				ClassroomIDs:  []string{fmt.Sprintf("R%04d", i%3000)},
			}
			if i%2 == 0 {
				f.Description = "iPads for the whole year group"
			}
			if i%1000 == 0 {
				f.DeviceCartIDs = append(f.DeviceCartIDs, fmt.Sprintf("RARE-%d", i))
			}
			if _, err := st.CreateAssociation(context.Background(), f, store.Actor{}); err != nil {
				benchDB.err = err
				return
			}
		}
		fmt.Fprintf(os.Stderr, "web bench: created 10000 associations in %v\n", time.Since(start).Round(time.Millisecond))
	})
	if benchDB.err != nil {
		b.Fatalf("building the benchmark database: %v", benchDB.err)
	}
	app := newSignedOutApp(b, benchDB.path)
	app.signIn(b, devidp.SubjectAdmin)
	return app
}

func BenchmarkListPage(b *testing.B) {
	app := benchApp(b)
	for _, bc := range []struct {
		name, path string
		htmx       bool
		count      string
	}{
		{"first-page-default-sort", "/associations", false, "Showing 1–50 of 1,000+"},
		{"first-page-fragment", "/associations", true, "Showing 1–50 of 1,000+"},
		{"search-few", "/associations?q=rare", false, "Showing 1–10 of 10 matching “rare”"},
		{"search-many", "/associations?q=ipads", false, "Showing 1–50 of 1,000+ matching “ipads”"},
		{"name-sort-page-100", "/associations?sort=name&page=100", false, "Showing 4,951–5,000 of 5,000+"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Check the answer once through the parsing helpers, then time the handler alone.
			hdr := http.Header{}
			if bc.htmx {
				hdr.Set("HX-Request", "true")
				hdr.Set("HX-Target", "association-table")
			}
			r := app.request(b, http.MethodGet, bc.path, nil, hdr)
			if got := text(r.testid("result-count")); r.status != http.StatusOK || got != bc.count {
				b.Fatalf("status %d, count %q; want 200, %q", r.status, got, bc.count)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				app.handler.ServeHTTP(rec, app.newRequest(http.MethodGet, bc.path, nil, hdr))
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
