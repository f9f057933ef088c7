package views_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// render renders c and parses the result.
func render(t *testing.T, c templ.Component) (*goquery.Document, string) {
	t.Helper()
	return renderCtx(t, context.Background(), c)
}

// renderCtx renders c with ctx (a time zone, say).
func renderCtx(t *testing.T, ctx context.Context, c templ.Component) (*goquery.Document, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(ctx, &buf); err != nil {
		t.Fatalf("render: %v", err)
	}
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return doc, buf.String()
}

func testid(doc *goquery.Document, id string) *goquery.Selection {
	return doc.Find(`[data-testid="` + id + `"]`)
}

func text(s *goquery.Selection) string { return strings.Join(strings.Fields(s.Text()), " ") }

func attr(s *goquery.Selection, name string) string {
	v, _ := s.Attr(name)
	return v
}

var when = time.Date(2025, 6, 30, 14, 5, 9, 0, time.UTC)

func association(id int64, name string) store.Association {
	return store.Association{
		ID: id,
		Fields: store.Fields{
			DisplayName:   name,
			Description:   "desc of " + name,
			Version:       int32(id),
			DeviceCartIDs: []string{"C1", "C2"},
			ClassroomIDs:  []string{"R1"},
		},
		Revision:  1,
		CreatedAt: when,
		UpdatedAt: when,
	}
}

func TestAssociationTableRows(t *testing.T) {
	l := views.AssociationList{Page: 1, PerPage: 50, Total: 2, Sort: "-modified",
		Items: []store.Association{association(4, "Lab carts"), association(9, "Music")}}
	doc, _ := render(t, views.AssociationTable(l))

	if doc.Find("#association-table").Length() != 1 {
		t.Fatal("no #association-table region")
	}
	if got := text(testid(doc, "result-count")); got != "Showing 1–2 of 2" {
		t.Errorf("count = %q", got)
	}
	rows := testid(doc, "association-row")
	if rows.Length() != 2 {
		t.Fatalf("%d rows", rows.Length())
	}
	var cells []string
	rows.First().Find("td").Each(func(_ int, s *goquery.Selection) { cells = append(cells, text(s)) })
	want := []string{"Lab carts desc of Lab carts", "2", "1", "4", "30 Jun 2025, 14:05 UTC"}
	for i, w := range want {
		if i >= len(cells) || cells[i] != w {
			t.Errorf("cells = %q, want prefix %q", cells, want)
			break
		}
	}
	if href := attr(rows.First().Find(`[data-testid="association-link"]`), "href"); href != "/associations/4" {
		t.Errorf("row link = %q", href)
	}
	if dt := attr(rows.First().Find("time"), "datetime"); dt != "2025-06-30T14:05:09Z" {
		t.Errorf("datetime = %q", dt)
	}
	if doc.Find("nav.pager").Length() != 0 {
		t.Error("one page of results shows a pager")
	}
	if testid(doc, "no-results").Length() != 0 {
		t.Error("rows and no-results at once")
	}
}

func TestAssociationTableNoDescription(t *testing.T) {
	a := association(1, "Bare")
	a.Description = ""
	doc, _ := render(t, views.AssociationTable(views.AssociationList{Page: 1, PerPage: 50, Total: 1, Items: []store.Association{a}}))
	if doc.Find("td .subtle").Length() != 0 {
		t.Error("empty description rendered as a line")
	}
}

func TestAssociationTableSearchAndNoResults(t *testing.T) {
	doc, _ := render(t, views.AssociationTable(views.AssociationList{Query: "lab", Page: 1, PerPage: 50, Total: 1, Items: []store.Association{association(1, "Lab")}}))
	if got := text(testid(doc, "result-count")); got != "Showing 1–1 of 1 matching “lab”" {
		t.Errorf("count = %q", got)
	}
	doc, _ = render(t, views.AssociationTable(views.AssociationList{Query: "<zz>", Page: 1, PerPage: 50}))
	nr := testid(doc, "no-results")
	if got := text(nr); got != "No associations match “<zz>”. Show all" {
		t.Errorf("no-results = %q", got)
	}
	if href := attr(nr.Find("a"), "href"); href != "/associations" {
		t.Errorf("clear link = %q", href)
	}
	if doc.Find("table").Length() != 0 {
		t.Error("an empty result renders a table")
	}
}

func TestAssociationTablePagerAndSort(t *testing.T) {
	items := make([]store.Association, 50)
	for i := range items {
		items[i] = association(int64(i+1), fmt.Sprintf("n%d", i))
	}
	l := views.AssociationList{Query: "a b&c", Sort: "name", Page: 2, PerPage: 50, Total: 120, Items: items}
	doc, _ := render(t, views.AssociationTable(l))
	if got := text(testid(doc, "result-count")); got != "Showing 51–100 of 120 matching “a b&c”" {
		t.Errorf("count = %q", got)
	}
	if got := text(doc.Find(".pager-status")); got != "Page 2 of 3" {
		t.Errorf("pager = %q", got)
	}
	prev, next := doc.Find(`nav.pager a[rel="prev"]`), doc.Find(`nav.pager a[rel="next"]`)
	if attr(prev, "href") != "/associations?q=a+b%26c&sort=name" || attr(prev, "hx-get") != attr(prev, "href") {
		t.Errorf("prev = %q / hx-get %q", attr(prev, "href"), attr(prev, "hx-get"))
	}
	if attr(next, "href") != "/associations?page=3&q=a+b%26c&sort=name" || attr(next, "hx-get") != attr(next, "href") {
		t.Errorf("next = %q / hx-get %q", attr(next, "href"), attr(next, "hx-get"))
	}
	if attr(next, "hx-target") != "#association-table" {
		t.Errorf("pager targets %q", attr(next, "hx-target"))
	}
	// The name column is sorted ascending: its link reverses, the other starts ascending.
	th := doc.Find("th")
	name := th.FilterFunction(func(_ int, s *goquery.Selection) bool { return text(s) == "Display name" })
	mod := th.FilterFunction(func(_ int, s *goquery.Selection) bool { return text(s) == "Last modified" })
	if attr(name, "aria-sort") != "ascending" || attr(mod, "aria-sort") != "none" {
		t.Errorf("aria-sort name=%q modified=%q", attr(name, "aria-sort"), attr(mod, "aria-sort"))
	}
	if href := attr(name.Find("a"), "href"); href != "/associations?q=a+b%26c&sort=-name" {
		t.Errorf("name header → %q", href)
	}
	if href := attr(mod.Find("a"), "href"); href != "/associations?q=a+b%26c&sort=modified" {
		t.Errorf("modified header → %q", href)
	}
	if !name.Find("a").HasClass("sort-asc") || mod.Find("a").HasClass("sort-asc") || mod.Find("a").HasClass("sort-desc") {
		t.Error("sort classes wrong")
	}
	// Last page: no Next.
	l.Page, l.Items = 3, items[:20]
	doc, _ = render(t, views.AssociationTable(l))
	if doc.Find(`nav.pager a[rel="next"]`).Length() != 0 || doc.Find(`nav.pager a[rel="prev"]`).Length() != 1 {
		t.Error("last page pager links wrong")
	}
	if got := text(testid(doc, "result-count")); got != "Showing 101–120 of 120 matching “a b&c”" {
		t.Errorf("last page count = %q", got)
	}
}

func TestListURL(t *testing.T) {
	for _, tc := range []struct {
		q, sort string
		page    int
		want    string
	}{
		{"", "", 1, "/associations"},
		{"", "-modified", 1, "/associations"},
		{"", "-modified", 0, "/associations"},
		{"", "name", 1, "/associations?sort=name"},
		{"", "", 2, "/associations?page=2"},
		{"x y", "-name", 3, "/associations?page=3&q=x+y&sort=-name"},
		{"a&sort=evil", "", 1, "/associations?q=a%26sort%3Devil"},
	} {
		if got := views.ListURL(tc.q, tc.sort, tc.page); got != tc.want {
			t.Errorf("ListURL(%q, %q, %d) = %q, want %q", tc.q, tc.sort, tc.page, got, tc.want)
		}
	}
}

func TestAssociationListURL(t *testing.T) {
	for _, tc := range []struct {
		l    views.AssociationList
		want string
	}{
		{views.AssociationList{Sort: "-modified", Page: 1}, "/associations"},
		{views.AssociationList{Query: "science ipads", Sort: "-modified", Page: 1}, "/associations?q=science+ipads"},
		{views.AssociationList{Query: "x", Sort: "name", Page: 2, NotSynced: true}, "/associations?page=2&q=x&sort=name&state=notsynced"},
		{views.AssociationList{Sort: "-modified", Page: 1, NotSynced: true}, "/associations?state=notsynced"},
	} {
		if got := tc.l.URL(); got != tc.want {
			t.Errorf("%+v.URL() = %q, want %q", tc.l, got, tc.want)
		}
	}
}

func TestAssociationListPages(t *testing.T) {
	for total, want := range map[int]int{0: 1, 1: 1, 50: 1, 51: 2, 100: 2, 101: 3} {
		if got := (views.AssociationList{PerPage: 50, Total: total}).Pages(); got != want {
			t.Errorf("Pages() with %d results = %d, want %d", total, got, want)
		}
	}
}

func TestValuesOf(t *testing.T) {
	v := views.ValuesOf(store.Fields{DisplayName: "n", Description: "d\ne", Version: 2147483647, DeviceCartIDs: []string{"b", "a"}})
	if v.DisplayName != "n" || v.Description != "d\ne" || v.Version != "2147483647" || v.DeviceCartIDs != "b\na" || v.ClassroomIDs != "" {
		t.Errorf("ValuesOf = %+v", v)
	}
}

var formFields = []struct{ name, label string }{
	{"displayName", "Display name"},
	{"description", "Description"},
	{"version", "Version"},
	{"deviceCartIds", "Device cart IDs"},
	{"classroomIds", "Classroom IDs"},
}

func TestAssociationFormViewWithErrors(t *testing.T) {
	f := views.AssociationForm{
		ID: 7, Revision: 3,
		Values: views.AssociationValues{DisplayName: "", Description: "kept\ntext", Version: "1.5", DeviceCartIDs: "A\nB", ClassroomIDs: "R"},
		Errors: map[string]string{"version": "Enter a whole number.", "displayName": "Enter a display name."},
	}
	doc, _ := render(t, views.AssociationFormView(f))
	form := testid(doc, "association-form")
	if attr(form, "action") != "/associations/7" || attr(form, "hx-post") != "/associations/7" || attr(form, "method") != "post" {
		t.Errorf("form action %q hx-post %q method %q", attr(form, "action"), attr(form, "hx-post"), attr(form, "method"))
	}
	if v := attr(form.Find(`input[name="revision"]`), "value"); v != "3" {
		t.Errorf("revision = %q", v)
	}

	for name, msg := range f.Errors {
		box := testid(doc, "field-"+name)
		m := box.Find(`[data-testid="error-` + name + `"]`)
		if text(m) != msg {
			t.Errorf("%s: message in its container = %q, want %q", name, text(m), msg)
		}
		ctl := doc.Find("#" + name)
		if attr(ctl, "aria-invalid") != "true" {
			t.Errorf("%s: aria-invalid = %q", name, attr(ctl, "aria-invalid"))
		}
		ids := strings.Fields(attr(ctl, "aria-describedby"))
		msgID := attr(m, "id")
		found := false
		for _, id := range ids {
			if id == msgID && msgID != "" {
				found = true
			}
			if doc.Find("#"+id).Length() != 1 {
				t.Errorf("%s: aria-describedby names %q, which is not one element", name, id)
			}
		}
		if !found {
			t.Errorf("%s: aria-describedby %q does not name the message id %q", name, ids, msgID)
		}
		if !box.HasClass("has-error") {
			t.Errorf("%s: container lacks has-error", name)
		}
	}
	for _, name := range []string{"description", "deviceCartIds", "classroomIds"} {
		if _, ok := doc.Find("#" + name).Attr("aria-invalid"); ok {
			t.Errorf("%s has aria-invalid without an error", name)
		}
		if testid(doc, "field-"+name).Find(".field-error").Length() != 0 {
			t.Errorf("%s shows a message", name)
		}
	}

	summary := testid(doc, "error-summary")
	if attr(summary, "role") != "alert" {
		t.Errorf("summary role = %q", attr(summary, "role"))
	}
	if got := text(summary.Find("h2")); got != "Please fix 2 problems" {
		t.Errorf("summary heading = %q", got)
	}
	links := summary.Find("a")
	if links.Length() != 2 ||
		attr(links.Eq(0), "href") != "#displayName" || text(links.Eq(0)) != "Display name: Enter a display name." ||
		attr(links.Eq(1), "href") != "#version" || text(links.Eq(1)) != "Version: Enter a whole number." {
		t.Errorf("summary links = %q", text(links))
	}
	// Values are kept.
	if v := attr(doc.Find("#version"), "value"); v != "1.5" {
		t.Errorf("version = %q", v)
	}
	if v := doc.Find("#description").Text(); v != "kept\ntext" {
		t.Errorf("description = %q", v)
	}
	if v := doc.Find("#deviceCartIds").Text(); v != "A\nB" {
		t.Errorf("cart ids = %q", v)
	}
}

func TestAssociationFormViewFresh(t *testing.T) {
	doc, _ := render(t, views.AssociationFormView(views.AssociationForm{Values: views.AssociationValues{Version: "1"}}))
	form := testid(doc, "association-form")
	if attr(form, "action") != "/associations" {
		t.Errorf("new form action = %q", attr(form, "action"))
	}
	if testid(doc, "error-summary").Length() != 0 || doc.Find("[aria-invalid]").Length() != 0 || doc.Find(".field-error").Length() != 0 {
		t.Error("a form without errors shows error markup")
	}
	for _, f := range formFields {
		label := doc.Find(`label[for="` + f.name + `"]`)
		own := label.Clone()
		own.Find(".optional").Remove()
		if text(own) != f.label {
			t.Errorf("label for %s = %q, want %q", f.name, text(label), f.label)
		}
		ctl := doc.Find("#" + f.name)
		if ctl.Length() != 1 || attr(ctl, "name") != f.name {
			t.Errorf("label for %s does not point at a control named so", f.name)
		}
		// Blur validation posts the form for this field and swaps only its message slot.
		if attr(ctl, "hx-post") != "/associations/validate?field="+f.name || attr(ctl, "hx-target") != "#"+f.name+"-msg" {
			t.Errorf("%s blur validation: hx-post %q target %q", f.name, attr(ctl, "hx-post"), attr(ctl, "hx-target"))
		}
		if doc.Find("#"+f.name+"-msg").Length() != 1 {
			t.Errorf("%s has no message slot", f.name)
		}
	}
	if got := text(testid(doc, "save")); got != "Save" {
		t.Errorf("save = %q", got)
	}
}

func TestFieldMessageContent(t *testing.T) {
	doc, _ := render(t, views.FieldMessageContent("version", "Too big & <b>bold</b>"))
	m := testid(doc, "error-version")
	if text(m) != "Too big & <b>bold</b>" || attr(m, "id") != "version-error" || m.Find("b").Length() != 0 {
		t.Errorf("message = %q id %q", text(m), attr(m, "id"))
	}
	_, html := render(t, views.FieldMessageContent("version", ""))
	if strings.TrimSpace(html) != "" {
		t.Errorf("empty message renders %q", html)
	}
}

func TestErrorView(t *testing.T) {
	doc, _ := render(t, views.ErrorView(views.ErrorInfo{Status: 404, Title: "Not found", Message: "Nothing <here>."}))
	page := testid(doc, "error-page")
	if got := text(page.Find(".error-code")); got != "404" {
		t.Errorf("code = %q", got)
	}
	if got := text(page.Find("h1")); got != "Not found" {
		t.Errorf("title = %q", got)
	}
	if got := text(page.Find("p").Eq(1)); got != "Nothing <here>." {
		t.Errorf("message = %q", got)
	}
	back := page.Find("a")
	if text(back) != "Back to associations" || attr(back, "href") != "/associations" {
		t.Errorf("action = %q → %q", text(back), attr(back, "href"))
	}

	doc, _ = render(t, views.ErrorView(views.ErrorInfo{Status: 401, Title: "Sign-in expired", Message: "m", ActionLabel: "Sign in again", ActionURL: "/signin"}))
	back = testid(doc, "error-page").Find("a")
	if text(back) != "Sign in again" || attr(back, "href") != "/signin" {
		t.Errorf("custom action = %q → %q", text(back), attr(back, "href"))
	}
	doc, _ = render(t, views.ErrorView(views.ErrorInfo{Status: 400, Title: "t", Message: "m", ActionLabel: "Go", ActionURL: "javascript:alert(1)"}))
	if href := attr(testid(doc, "error-page").Find("a"), "href"); strings.HasPrefix(href, "javascript:") {
		t.Errorf("a javascript: action URL was rendered: %q", href)
	}
}

func TestErrorPageCarriesNonce(t *testing.T) {
	doc, _ := render(t, views.ErrorPage(views.Page{Title: "Oops", Nonce: "n0nce-123"}, views.ErrorInfo{Status: 500, Title: "Something went wrong", Message: "m"}))
	scripts := doc.Find("script")
	if scripts.Length() == 0 {
		t.Fatal("page has no scripts")
	}
	scripts.Each(func(_ int, s *goquery.Selection) {
		if attr(s, "nonce") != "n0nce-123" {
			t.Errorf("script %q nonce = %q", attr(s, "src"), attr(s, "nonce"))
		}
	})
	if got := text(doc.Find("title")); got != "Oops · cartclass" {
		t.Errorf("title = %q", got)
	}
	cfg := attr(doc.Find(`meta[name="htmx-config"]`), "content")
	for _, want := range []string{`"allowEval":false`, `"allowScriptTags":false`, `"historyCacheSize":0`, `"selfRequestsOnly":true`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("htmx-config lacks %s: %s", want, cfg)
		}
	}
	if doc.Find("style").Length() != 0 || doc.Find("script:not([src])").Length() != 0 {
		t.Error("inline script or style would break the CSP")
	}
}

func TestSyncBadge(t *testing.T) {
	for state, want := range map[string]string{
		store.SyncWaiting: "Waiting",
		store.SyncSynced:  "Synced",
		store.SyncFailed:  "Failed",
		store.SyncDeleted: "Deleted in Intune",
	} {
		a := association(1, "x")
		a.Sync.State = state
		doc, _ := render(t, views.SyncBadge(a))
		if got := text(testid(doc, "sync-badge")); got != want {
			t.Errorf("badge for %s = %q, want %q", state, got, want)
		}
	}
}

func TestHostileTextIsEscaped(t *testing.T) {
	a := association(5, `<script>alert(1)</script>`)
	a.Description = `"><img src=x onerror=alert(1)>`
	a.DeviceCartIDs = []string{"javascript:alert(1)", `hx-get="/x"`}
	p := views.Page{Title: a.DisplayName, Nonce: "n", Breadcrumbs: []views.Crumb{{Label: "Associations", URL: "/associations"}, {Label: a.DisplayName}}}
	for name, c := range map[string]templ.Component{
		"table":  views.AssociationTable(views.AssociationList{Query: `"><script>q()</script>`, Page: 1, PerPage: 50, Total: 1, Items: []store.Association{a}}),
		"detail": views.AssociationDetailPage(p, a),
		"form":   views.AssociationFormView(views.AssociationForm{ID: 5, Revision: 1, Values: views.ValuesOf(a.Fields), Errors: map[string]string{"displayName": a.DisplayName}}),
		"conflict": views.ConflictView(views.Conflict{Mine: a.Fields, Current: a,
			Form: views.AssociationForm{ID: 5, Revision: 1, Values: views.ValuesOf(a.Fields)}}),
	} {
		t.Run(name, func(t *testing.T) {
			doc, html := render(t, c)
			for _, raw := range []string{"<script>alert", "<script>q(", "<img src=x", `"><img`} {
				if strings.Contains(html, raw) {
					t.Errorf("raw %q in the HTML", raw)
				}
			}
			if doc.Find("img, [onerror]").Length() != 0 || doc.Find(`[hx-get="/x"]`).Length() != 0 || doc.Find(`script:not([src])`).Length() != 0 {
				t.Error("hostile text became markup")
			}
			if doc.Find(`[href^="javascript:"]`).Length() != 0 {
				t.Error("a javascript: link was rendered")
			}
			all := doc.Text()
			for _, txt := range []string{"<script>alert(1)</script>"} {
				if !strings.Contains(all, txt) {
					t.Errorf("text %q not shown", txt)
				}
			}
		})
	}
}

// A capped count says so ("1,000+"), and the pager always offers the page after the
// counted ones.
func TestAssociationTableCappedCount(t *testing.T) {
	items := make([]store.Association, 50)
	for i := range items {
		items[i] = association(int64(i+1), fmt.Sprintf("n%d", i))
	}
	l := views.AssociationList{Query: "sci", Page: 20, PerPage: 50, Total: 1000, TotalCapped: true, Items: items}
	doc, _ := render(t, views.AssociationTable(l))
	if got := text(testid(doc, "result-count")); got != "Showing 951–1,000 of 1,000+ matching “sci”" {
		t.Errorf("count = %q", got)
	}
	if got := text(doc.Find(".pager-status")); got != "Page 20 of 21+" {
		t.Errorf("pager = %q", got)
	}
	if attr(doc.Find(`nav.pager a[rel="next"]`), "href") != "/associations?page=21&q=sci" {
		t.Error("no Next link past the counted pages")
	}
	l.TotalCapped, l.Total = false, 1000
	doc, _ = render(t, views.AssociationTable(l))
	if got := text(testid(doc, "result-count")); got != "Showing 951–1,000 of 1,000 matching “sci”" {
		t.Errorf("exact count = %q", got)
	}
	if doc.Find(`nav.pager a[rel="next"]`).Length() != 0 {
		t.Error("Next link on the last page of an exact count")
	}
}

// The Sessions page names each session's person as text, marks this browser (which has
// no sign-out button: the header has one) and posts sign-outs to the session's handle.
func TestSessionsPage(t *testing.T) {
	rows := []views.SessionRow{
		{Handle: "aa11", Name: "Ada Admin", Subject: "sub-ada", Role: "Admin", SignedInAt: when, LastSeenAt: when, Current: true},
		{Handle: "bb22", Name: `<img src=x onerror=alert(1)>`, Subject: "sub-eve", Role: "Viewer", SignedInAt: when, LastSeenAt: when},
	}
	doc, html := render(t, views.SessionsPage(views.Page{Title: "Sessions", User: &views.User{Name: "Ada Admin", Role: "Admin", CanEdit: true}}, rows))
	if strings.Contains(html, "<img src=x") {
		t.Error("a name from the identity provider was rendered as HTML")
	}
	got := testid(doc, "session-row")
	if got.Length() != 2 || text(got.Eq(1).Find(`[data-testid="session-name"]`)) != `<img src=x onerror=alert(1)>` {
		t.Fatalf("rows = %d, second name %q", got.Length(), text(got.Eq(1).Find(`[data-testid="session-name"]`)))
	}
	if got.Eq(0).Find("form").Length() != 0 || text(got.Eq(0).Find(`[data-testid="session-current"]`)) != "This browser" {
		t.Error("this browser's row: want the marker and no sign-out button")
	}
	if attr(got.Eq(1).Find("form"), "action") != "/sessions/bb22/end" || attr(got.Eq(1).Find("form"), "method") != "post" {
		t.Errorf("sign-out form = %q", attr(got.Eq(1).Find("form"), "action"))
	}
	if testid(doc, "end-others").Length() != 1 {
		t.Error("no “Sign out everyone else” with two sessions")
	}
}
