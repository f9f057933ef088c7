package web_test

import (
	"context"
	"encoding/csv"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// activityItem is one entry of the Activity page as a person sees it.
type activityItem struct {
	assoc  string // the association's name
	href   string // where it links; empty when it does not
	person string // who, as the link names them
	who    string // the person link's address
	when   string // the time's datetime
	lines  []string
}

func activityItems(r *response) []activityItem {
	var out []activityItem
	r.testid("activity-entry").Each(func(_ int, e *goquery.Selection) {
		a := e.Find(`[data-testid="activity-association"]`)
		it := activityItem{assoc: text(a), person: text(e.Find(`[data-testid="activity-person"]`))}
		if a.Is("a") {
			it.href, _ = a.Attr("href")
		}
		it.who, _ = e.Find(`[data-testid="activity-person"]`).Attr("href")
		it.when, _ = e.Find("time").Attr("datetime")
		e.Find(`[data-testid="activity-line"]`).Each(func(_ int, l *goquery.Selection) { it.lines = append(it.lines, text(l)) })
		out = append(out, it)
	})
	return out
}

// activitySummary is each entry as "<association>: <first line>".
func activitySummary(r *response) []string {
	var out []string
	for _, it := range activityItems(r) {
		out = append(out, it.assoc+": "+it.lines[0])
	}
	return out
}

var ada = store.Actor{Subject: "sub-ada", Name: "Ada Lovelace"}

// activitySeed makes, on app's clock, newest first:
//
//	16 Mar 12:05  Old lab deleted by Ada Lovelace, then purged
//	16 Mar 12:00  Old lab created by Ada Lovelace
//	15 Mar 08:00  Science block iPads: Description changed by Dev Admin (through the form)
//	14 Mar 10:00  Music room created by Ada Lovelace
//	14 Mar 09:30  Science block iPads created by Dev Admin (through the form)
//
// and returns the ids of Science block iPads and Old lab.
func activitySeed(t *testing.T, app *testApp) (science, oldLab int64) {
	t.Helper()
	ctx := context.Background()
	at := func(day, h, m int) { app.clock.freeze(time.Date(2025, 3, day, h, m, 0, 0, time.UTC)) }
	at(14, 9, 30)
	r := app.postForm(t, "/associations", validForm(), false)
	r.wantStatus(t, http.StatusSeeOther)
	science, err := strconv.ParseInt(strings.TrimPrefix(r.header.Get("Location"), "/associations/"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	at(14, 10, 0)
	if _, err := app.store.CreateAssociation(ctx, store.Fields{DisplayName: "Music room", Version: 1}, ada); err != nil {
		t.Fatal(err)
	}
	at(15, 8, 0)
	edit := with(validForm(), "description", "Science block only")
	edit.Set("revision", "1")
	app.postForm(t, assocPath(science, ""), edit, false).wantStatus(t, http.StatusSeeOther)
	at(16, 12, 0)
	lab, err := app.store.CreateAssociation(ctx, store.Fields{DisplayName: "Old lab", Version: 1}, ada)
	if err != nil {
		t.Fatal(err)
	}
	at(16, 12, 5)
	if _, err := app.store.DeleteAssociation(ctx, lab.ID, lab.Revision, ada); err != nil {
		t.Fatal(err)
	}
	if n, err := app.store.PurgeDeleted(ctx, time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != 1 {
		t.Fatalf("PurgeDeleted = %d, %v", n, err)
	}
	return science, lab.ID
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

func TestActivityListsEveryChangeNewestFirst(t *testing.T) {
	app := newTestApp(t)
	science, _ := activitySeed(t, app)

	r := app.get(t, "/activity", false)
	r.wantStatus(t, http.StatusOK)
	if got := text(r.doc.Find("h1")); got != "Activity" {
		t.Errorf("heading = %q", got)
	}
	if cur := r.doc.Find(`.site-nav a[aria-current="page"]`); text(cur) != "Activity" {
		t.Errorf("current navigation entry = %q, want Activity", text(cur))
	}
	items := activityItems(r)
	want := []activityItem{
		{assoc: "Old lab", person: "Ada Lovelace", who: "/activity?person=sub-ada", when: "2025-03-16T12:05:00Z",
			lines: []string{"Ada Lovelace deleted it"}},
		{assoc: "Old lab", person: "Ada Lovelace", who: "/activity?person=sub-ada", when: "2025-03-16T12:00:00Z",
			lines: []string{"Ada Lovelace created it", "Display name: “Old lab”", "Version: 1"}},
		{assoc: "Science block iPads", href: assocPath(science, ""), person: "Dev Admin", who: "/activity?person=dev-admin",
			when: "2025-03-15T08:00:00Z", lines: []string{"Dev Admin changed Description from “Two carts on the second floor” to “Science block only”"}},
		{assoc: "Music room", href: "/associations/2", person: "Ada Lovelace", who: "/activity?person=sub-ada", when: "2025-03-14T10:00:00Z",
			lines: []string{"Ada Lovelace created it", "Display name: “Music room”", "Version: 1"}},
		{assoc: "Science block iPads", href: assocPath(science, ""), person: "Dev Admin", who: "/activity?person=dev-admin",
			when: "2025-03-14T09:30:00Z", lines: []string{"Dev Admin created it", "Display name: “Science block iPads”",
				"Description: “Two carts on the second floor”", "Version: 3", "Device cart IDs: CART-001, CART-002", "Classroom IDs: S201, S202"}},
	}
	if len(items) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(items), len(want), items)
	}
	for i := range want {
		if items[i].assoc != want[i].assoc || items[i].href != want[i].href || items[i].person != want[i].person ||
			items[i].who != want[i].who || items[i].when != want[i].when || !slices.Equal(items[i].lines, want[i].lines) {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, items[i], want[i])
		}
	}
	// The purged association is named, not linked, and said to be gone.
	if n := r.testid("activity-purged").Length(); n != 2 {
		t.Errorf("%d entries say their association is gone, want Old lab's 2", n)
	}
	// Everything on one page: no pager; nothing filtered: no Clear.
	if r.testid("activity-older").Length()+r.testid("activity-newest").Length()+r.testid("activity-clear").Length() != 0 {
		t.Error("one page of everything shows a pager or Clear")
	}
	if href, _ := r.testid("activity-csv").Attr("href"); href != "/activity.csv" {
		t.Errorf("download link = %q", href)
	}

	// The association's later name is what names it; the detail page link works.
	d := app.get(t, items[2].href, false)
	d.wantStatus(t, http.StatusOK)

	// Nothing yet: a sentence, not an empty list.
	empty := newTestApp(t)
	e := empty.get(t, "/activity", false)
	e.wantStatus(t, http.StatusOK)
	if got := text(e.testid("activity-none")); got != "No changes recorded yet." || e.testid("activity-entry").Length() != 0 {
		t.Errorf("empty activity: %q", got)
	}
}

func TestActivityFilters(t *testing.T) {
	app := newTestApp(t)
	science, oldLab := activitySeed(t, app)
	all := activitySummary(app.get(t, "/activity", false))
	for _, c := range []struct {
		query string
		want  []int // indexes into all
	}{
		{"person=dev-admin", []int{2, 4}},
		{"person=ada+lovelace", []int{0, 1, 3}}, // a name, in any case
		{"person=+sub-ada+", []int{0, 1, 3}},    // trimmed
		{"person=Dev", nil},                     // a whole name, not a part
		{"association=" + itoa(science), []int{2, 4}},
		{"association=" + itoa(oldLab), []int{0, 1}}, // purged: its entries remain
		{"from=2025-03-15&to=2025-03-15", []int{2}},  // both days included
		{"to=2025-03-14", []int{3, 4}},
		{"from=2025-03-16", []int{0, 1}},
		{"person=sub-ada&from=2025-03-14&to=2025-03-15", []int{3}},
		{"person=dev-admin&association=" + itoa(oldLab), nil},
	} {
		r := app.get(t, "/activity?"+c.query, false)
		r.wantStatus(t, http.StatusOK)
		var want []string
		for _, i := range c.want {
			want = append(want, all[i])
		}
		if got := activitySummary(r); !slices.Equal(got, want) {
			t.Errorf("?%s:\n got %q\nwant %q", c.query, got, want)
		}
		if len(want) == 0 && text(r.testid("activity-none")) != "No changes match these filters." {
			t.Errorf("?%s: no entries, and no sentence saying so: %q", c.query, text(r.testid("activity-none")))
		}
		if r.testid("activity-clear").Length() != 1 {
			t.Errorf("?%s: no Clear link", c.query)
		}
	}

	// The form shows the filters; the download and the person links keep them.
	r := app.get(t, "/activity?person=sub-ada&from=2025-03-14&to=2025-03-15&association=2", false)
	for field, want := range map[string]string{"person": "sub-ada", "association": "2", "from": "2025-03-14", "to": "2025-03-15"} {
		in := r.testid("filter-" + field)
		if v, _ := in.Attr("value"); v != want {
			t.Errorf("%s input holds %q, want %q", field, v, want)
		}
		if id, _ := in.Attr("id"); r.doc.Find(`label[for="`+id+`"]`).Length() != 1 {
			t.Errorf("%s input has no label", field)
		}
	}
	if href, _ := r.testid("activity-csv").Attr("href"); href != "/activity.csv?association=2&from=2025-03-14&person=sub-ada&to=2025-03-15" {
		t.Errorf("download link = %q", href)
	}
	if href, _ := r.testid("activity-person").First().Attr("href"); href != "/activity?association=2&from=2025-03-14&person=sub-ada&to=2025-03-15" {
		t.Errorf("person link = %q", href)
	}
}

func TestActivityRefusesBadFiltersBesideTheField(t *testing.T) {
	app := newTestApp(t)
	activitySeed(t, app)
	all := activitySummary(app.get(t, "/activity", false))

	// A date that is no date: the message beside From, the rest of the filters applied.
	r := app.get(t, "/activity?from=2025-02-30&to=2025-03-15", false)
	r.wantStatus(t, http.StatusUnprocessableEntity)
	msg := r.testid("activity-error-from")
	if text(msg) != "Enter a date as YYYY-MM-DD, such as 2025-03-14." {
		t.Errorf("From's message = %q", text(msg))
	}
	if msg.Parent().Find(`input[name="from"]`).Length() != 1 {
		t.Error("the message is not beside the From field")
	}
	in := r.testid("filter-from")
	if v, _ := in.Attr("value"); v != "2025-02-30" {
		t.Errorf("From keeps %q, want what was typed", v)
	}
	if inv, _ := in.Attr("aria-invalid"); inv != "true" {
		t.Error("From is not marked invalid")
	}
	if d, _ := in.Attr("aria-describedby"); d != "activity-from-error" {
		t.Errorf("From's aria-describedby = %q", d)
	}
	if r.testid("activity-error-to").Length() != 0 {
		t.Error("To is blamed too")
	}
	if got := activitySummary(r); !slices.Equal(got, all[2:]) {
		t.Errorf("with a bad From, entries = %q; want To alone applied: %q", got, all[2:])
	}
	if href, _ := r.testid("activity-csv").Attr("href"); href != "/activity.csv?to=2025-03-15" {
		t.Errorf("download link = %q, want the applied filter only", href)
	}

	for _, c := range []struct{ query, field, msg string }{
		{"to=14/03/2025", "to", "Enter a date as YYYY-MM-DD, such as 2025-03-14."},
		{"from=0001-01-01", "from", "Enter a date from 1970 to 2261."},
		{"to=9999-12-31", "to", "Enter a date from 1970 to 2261."},
		{"from=2025-03-16&to=2025-03-14", "to", "“To” is before “From”: enter the same day or a later one."},
		{"association=Science", "association", "Enter the association’s local ID: a whole number, shown on its detail page."},
		{"association=-3", "association", "Enter the association’s local ID: a whole number, shown on its detail page."},
	} {
		r := app.get(t, "/activity?"+c.query, false)
		r.wantStatus(t, http.StatusUnprocessableEntity)
		if got := text(r.testid("activity-error-" + c.field)); got != c.msg {
			t.Errorf("?%s: %s's message = %q, want %q", c.query, c.field, got, c.msg)
		}
		if r.testid("activity-entry").Length() == 0 {
			t.Errorf("?%s: the page lists nothing", c.query)
		}
	}

	// The download of a bad filter goes to the page, which says what is wrong.
	d := app.get(t, "/activity.csv?from=2025-02-30&person=x", false)
	if d.status != http.StatusSeeOther || d.header.Get("Location") != "/activity?from=2025-02-30&person=x" || d.header.Get("Content-Disposition") != "" {
		t.Errorf("download with a bad date = %d → %q", d.status, d.header.Get("Location"))
	}
}

func TestActivityPages(t *testing.T) {
	app := newTestApp(t)
	ctx := context.Background()
	a := app.create(t, store.Fields{DisplayName: "Room 1", Version: 1})
	app.create(t, store.Fields{DisplayName: "Room 2", Version: 1})
	for v := 2; v <= 120; v++ {
		cur, err := app.store.GetAssociation(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		f := cur.Fields
		f.Version = int32(v)
		if _, err := app.store.UpdateAssociation(ctx, a.ID, cur.Revision, f, ada); err != nil {
			t.Fatal(err)
		}
	}
	// Room 1: 120 entries (versions 1 to 120), on pages of 50, 50 and 20, newest first.
	path := "/activity?association=" + itoa(a.ID)
	var versions []string
	for page := 1; ; page++ {
		r := app.get(t, path, false)
		r.wantStatus(t, http.StatusOK)
		items := activityItems(r)
		wantLen := map[int]int{1: 50, 2: 50, 3: 20}[page]
		if len(items) != wantLen {
			t.Fatalf("page %d (%s): %d entries, want %d", page, path, len(items), wantLen)
		}
		for _, it := range items {
			if it.assoc != "Room 1" {
				t.Fatalf("page %d lists %q", page, it.assoc)
			}
			versions = append(versions, it.lines[len(it.lines)-1])
		}
		if newest := r.testid("activity-newest"); (page > 1) != (newest.Length() == 1) {
			t.Errorf("page %d: %d ← Newest links", page, newest.Length())
		} else if page > 1 {
			if href, _ := newest.Attr("href"); href != "/activity?association="+itoa(a.ID) {
				t.Errorf("← Newest = %q", href)
			}
		}
		older := r.testid("activity-older")
		if page == 3 {
			if older.Length() != 0 {
				t.Error("the last page offers Older")
			}
			break
		}
		href, ok := older.Attr("href")
		u, err := url.Parse(href)
		if !ok || err != nil || u.Query().Get("association") != itoa(a.ID) || u.Query().Get("before") == "" || u.Query().Has("page") {
			t.Fatalf("page %d: Older → %q; want the filter kept and a before entry", page, href)
		}
		path = href
	}
	want := []string{"Ada Lovelace changed Version from 119 to 120", "Ada Lovelace changed Version from 69 to 70",
		"Ada Lovelace changed Version from 19 to 20", "Ada Lovelace changed Version from 2 to 3", "Version: 1"}
	for i, at := range []int{0, 50, 100, 117, 119} {
		if versions[at] != want[i] {
			t.Errorf("entry %d says %q, want %q", at, versions[at], want[i])
		}
	}

	// Unfiltered: 121 entries, the third page holds 21.
	r := app.get(t, "/activity", false)
	for range 2 {
		href, _ := r.testid("activity-older").Attr("href")
		r = app.get(t, href, false)
	}
	items := activityItems(r)
	// Newest first: Room 1's edits, Room 2's creation, Room 1's creation.
	if len(items) != 21 || items[18].assoc != "Room 1" || items[19].assoc != "Room 2" || items[20].assoc != "Room 1" ||
		items[20].lines[len(items[20].lines)-1] != "Version: 1" {
		t.Errorf("last page of everything: %d entries, %+v", len(items), items[len(items)-3:])
	}
	// A start that is no entry: nothing older, and a way back.
	r = app.get(t, "/activity?before=99999", false)
	r.wantStatus(t, http.StatusOK)
	if text(r.testid("activity-none")) != "No older changes." || r.testid("activity-newest").Length() != 1 {
		t.Errorf("unknown before: %q", text(r.testid("activity-none")))
	}
}

func TestActivityAccess(t *testing.T) {
	// A viewer: the header link (without Sync), the page and the download.
	viewer, _ := newExportApp(t, devidp.SubjectViewer)
	viewer.create(t, store.Fields{DisplayName: "Music room"})
	r := viewer.get(t, "/associations", false)
	var nav []string
	r.doc.Find(".site-nav a").Each(func(_ int, a *goquery.Selection) { nav = append(nav, text(a)) })
	if !slices.Equal(nav, []string{"Associations", "Carts", "Classrooms", "Activity"}) {
		t.Errorf("viewer's header links = %q", nav)
	}
	r = viewer.get(t, "/activity", false)
	r.wantStatus(t, http.StatusOK)
	if got := activitySummary(r); !slices.Equal(got, []string{"Music room: Someone created it"}) {
		t.Errorf("viewer's activity = %q", got)
	}
	viewer.get(t, "/activity.csv", false).wantStatus(t, http.StatusOK)

	// An admin: Activity next to Sync.
	admin := newTestApp(t)
	nav = nil
	admin.get(t, "/activity", false).doc.Find(".site-nav a").Each(func(_ int, a *goquery.Selection) { nav = append(nav, text(a)) })
	if !slices.Equal(nav, []string{"Associations", "Carts", "Classrooms", "Activity", "Sync", "Sessions"}) {
		t.Errorf("admin's header links = %q", nav)
	}

	// Signed out: sign in first, then back to the page asked for.
	out := newSignedOutApp(t, t.TempDir()+"/cartclass.db")
	for path, next := range map[string]string{
		"/activity?person=sub-ada": "/signin?next=%2Factivity%3Fperson%3Dsub-ada",
		"/activity.csv":            "/signin?next=%2Factivity.csv",
	} {
		r := out.get(t, path, false)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != next {
			t.Errorf("signed-out %s = %d → %q, want %q", path, r.status, r.header.Get("Location"), next)
		}
		if r.header.Get("Content-Disposition") != "" || strings.Contains(r.body, "activity-entry") {
			t.Errorf("signed-out %s got the activity", path)
		}
	}

	// Signed in without a role: 403.
	nobody, _ := newExportApp(t, devidp.SubjectNobody)
	nobody.get(t, "/activity", false).wantStatus(t, http.StatusForbidden)
	nobody.get(t, "/activity.csv", false).wantStatus(t, http.StatusForbidden)
}

const activityHeaderLine = "at,associationId,displayName,kind,actorName,actorSubject,revision,details"

func TestActivityCSV(t *testing.T) {
	app, _ := newExportApp(t, devidp.SubjectAdmin)
	science, oldLab := activitySeed(t, app)
	// Cells a spreadsheet would run, from a person and an association.
	app.clock.freeze(time.Date(2025, 3, 17, 7, 0, 0, 0, time.UTC))
	hostile, err := app.store.CreateAssociation(context.Background(),
		store.Fields{DisplayName: `=HYPERLINK("http://evil.example","x")`, Version: 1}, store.Actor{Subject: "-sub", Name: "@SUM(A1)"})
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now().UTC().Format(time.DateOnly)
	r := app.get(t, "/activity.csv", false)
	after := time.Now().UTC().Format(time.DateOnly)
	r.wantStatus(t, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cd := r.header.Get("Content-Disposition"); cd != "attachment; filename=cartclass-activity-"+before+".csv" && cd != "attachment; filename=cartclass-activity-"+after+".csv" {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if !strings.HasPrefix(r.body, bom+activityHeaderLine+"\n") {
		t.Fatalf("file starts %q; want the byte-order mark and the header", r.body[:min(len(r.body), 100)])
	}
	recs := readActivityCSV(t, r.body)
	want := [][]string{
		{"2025-03-17T07:00:00Z", itoa(hostile.ID), `'=HYPERLINK("http://evil.example","x")`, "created", "'@SUM(A1)", "'-sub", "1",
			"'@SUM(A1) created it\nDisplay name: “=HYPERLINK(\"http://evil.example\",\"x\")”\nVersion: 1"},
		{"2025-03-16T12:05:00Z", itoa(oldLab), "Old lab", "deleted", "Ada Lovelace", "sub-ada", "2", "Ada Lovelace deleted it"},
		{"2025-03-16T12:00:00Z", itoa(oldLab), "Old lab", "created", "Ada Lovelace", "sub-ada", "1", "Ada Lovelace created it\nDisplay name: “Old lab”\nVersion: 1"},
		{"2025-03-15T08:00:00Z", itoa(science), "Science block iPads", "edited", "Dev Admin", "dev-admin", "2",
			"Dev Admin changed Description from “Two carts on the second floor” to “Science block only”"},
		{"2025-03-14T10:00:00Z", "2", "Music room", "created", "Ada Lovelace", "sub-ada", "1", "Ada Lovelace created it\nDisplay name: “Music room”\nVersion: 1"},
		{"2025-03-14T09:30:00Z", itoa(science), "Science block iPads", "created", "Dev Admin", "dev-admin", "1",
			"Dev Admin created it\nDisplay name: “Science block iPads”\nDescription: “Two carts on the second floor”\nVersion: 3\nDevice cart IDs: CART-001, CART-002\nClassroom IDs: S201, S202"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d rows, want %d: %q", len(recs), len(want), recs)
	}
	for i := range want {
		if !slices.Equal(recs[i], want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i, recs[i], want[i])
		}
	}
	// A multi-line cell is quoted in the file, not split into rows.
	if !strings.Contains(r.body, "\"Ada Lovelace created it\nDisplay name: “Old lab”\nVersion: 1\"") {
		t.Error("the details of an entry are not one quoted cell")
	}

	// The page's filters, the same rows as the page.
	for _, q := range []string{"person=ada+lovelace", "association=" + itoa(science) + "&from=2025-03-15", "to=2025-03-14"} {
		page := activityItems(app.get(t, "/activity?"+q, false))
		recs := readActivityCSV(t, app.get(t, "/activity.csv?"+q, false).body)
		if len(recs) != len(page) || len(page) == 0 {
			t.Fatalf("?%s: %d rows, the page shows %d", q, len(recs), len(page))
		}
		for i := range page {
			if recs[i][0] != page[i].when || recs[i][7] != strings.Join(page[i].lines, "\n") {
				t.Errorf("?%s row %d = %q, the page shows %+v", q, i, recs[i], page[i])
			}
		}
	}
	// No match: the header alone.
	if r := app.get(t, "/activity.csv?person=nobody", false); r.body != bom+activityHeaderLine+"\n" {
		t.Errorf("download of no matches = %q", r.body)
	}
}

func readActivityCSV(t *testing.T, body string) [][]string {
	t.Helper()
	if !strings.HasPrefix(body, bom+activityHeaderLine+"\n") {
		t.Fatalf("not the activity file: %q", body[:min(len(body), 100)])
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, bom))).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v", err)
	}
	return recs[1:]
}

// With CARTCLASS_HISTORY_KEEP set, the periodic clean-up prunes older entries and no
// others; the associations stay.
func TestHistoryKeepPrunesInTheCleanup(t *testing.T) {
	clock := time.Now().Add(40 * 24 * time.Hour) // the server's "now": 40 days on
	e := newAuthEnv(t, map[string]string{"CARTCLASS_HISTORY_KEEP": "720h"}, web.WithClock(func() time.Time { return clock }))
	if e.cfg.HistoryKeep != 720*time.Hour {
		t.Fatalf("HistoryKeep = %v", e.cfg.HistoryKeep)
	}
	ctx := context.Background()
	a, err := e.store.CreateAssociation(ctx, store.Fields{DisplayName: "Room 1", Version: 1}, ada) // 40 days old
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, e.dbPath)
	// 20 days old, then: kept.
	mustExec(t, db, `INSERT INTO history (association_id, at, kind, actor_sub, actor_name, revision, display_name)
		VALUES (?, ?, 'edited', 'sub-ada', 'Ada Lovelace', 2, 'Room 1')`, a.ID, time.Now().Add(20*24*time.Hour).UnixNano())

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.app.RunSessionCleanup(runCtx, time.Hour) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		es, _, err := e.store.ListHistory(ctx, store.HistoryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 1 && es[0].Kind == store.HistoryEdited {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history after the clean-up: %d entries, want the 20-day-old one alone", len(es))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.store.GetAssociation(ctx, a.ID); err != nil {
		t.Errorf("the association went with its history: %v", err)
	}
	for time.Now().Before(deadline) && !slices.Contains(e.logs.at(slog.LevelInfo), "INFO old history entries pruned") {
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Contains(e.logs.at(slog.LevelInfo), "INFO old history entries pruned") {
		t.Errorf("logged %q, want the prune", e.logs.at(slog.LevelInfo))
	}
}

// Without CARTCLASS_HISTORY_KEEP, the clean-up deletes no entry, however old.
func TestHistoryKeptForEverByDefault(t *testing.T) {
	clock := time.Now().Add(10 * 365 * 24 * time.Hour)
	e := newAuthEnv(t, nil, web.WithClock(func() time.Time { return clock }))
	if e.cfg.HistoryKeep != 0 {
		t.Fatalf("default HistoryKeep = %v, want 0", e.cfg.HistoryKeep)
	}
	ctx := context.Background()
	deleted := func(name string) int64 {
		a, err := e.store.CreateAssociation(ctx, store.Fields{DisplayName: name, Version: 1}, ada)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.DeleteAssociation(ctx, a.ID, a.Revision, ada); err != nil {
			t.Fatal(err)
		}
		return a.ID
	}
	purged := func(id int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := e.store.GetAssociation(ctx, id); errors.Is(err, store.ErrNotFound) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("association %d not purged by the clean-up", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	first := deleted("Room 1")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.app.RunSessionCleanup(runCtx, 5*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	purged(first)
	// A second round purges the next: the round that purged the first is over, prune step
	// and all.
	purged(deleted("Room 2"))
	es, _, err := e.store.ListHistory(ctx, store.HistoryFilter{})
	if err != nil || len(es) != 4 {
		t.Fatalf("history after clean-ups: %d entries, %v; want all 4 (two created, two deleted)", len(es), err)
	}
}
