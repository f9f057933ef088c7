package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web/devidp"
)

// historyEntries is the detail page's history, newest first: each entry's lines.
func historyEntries(r *response) [][]string {
	var out [][]string
	r.testid("history-entry").Each(func(_ int, e *goquery.Selection) {
		var lines []string
		e.Find(`[data-testid="history-line"]`).Each(func(_ int, l *goquery.Selection) {
			lines = append(lines, text(l))
		})
		out = append(out, lines)
	})
	return out
}

// wantHistory fails unless the page's history holds exactly want, newest first.
func wantHistory(t *testing.T, r *response, want ...[]string) {
	t.Helper()
	got := historyEntries(r)
	if len(got) != len(want) {
		t.Fatalf("history has %d entries, want %d:\n%s", len(got), len(want), joinEntries(got))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("history entry %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
}

func joinEntries(es [][]string) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString("  " + strings.Join(e, " | ") + "\n")
	}
	return b.String()
}

func TestDetailShowsHistoryInWords(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cartclass.db")
	app := newSignedOutApp(t, db)
	app.signIn(t, devidp.SubjectAdmin)
	at := func(h, m int) time.Time { return time.Date(2025, 3, 14, h, m, 0, 0, time.UTC) }

	app.clock.freeze(at(9, 30))
	created := app.postForm(t, "/associations", with(validForm(), "description", "Shared by Science"), false)
	created.wantStatus(t, http.StatusSeeOther)
	path := created.header.Get("Location")
	if _, err := strconv.ParseInt(strings.TrimPrefix(path, "/associations/"), 10, 64); err != nil {
		t.Fatalf("Location %q", path)
	}

	app.clock.freeze(at(14, 2))
	edit := with(validForm(), "description", "Science block only")
	edit.Set("deviceCartIds", "CART-002\ncart-12")
	edit.Set("revision", "1")
	app.postForm(t, path, edit, false).wantStatus(t, http.StatusSeeOther)

	app.clock.freeze(at(15, 45))
	edit2 := with(edit, "description", `<script>alert(1)</script>`)
	edit2.Set("version", "4")
	edit2.Set("revision", "2")
	app.postForm(t, path, edit2, false).wantStatus(t, http.StatusSeeOther)

	app.clock.freeze(at(16, 0))
	app.postForm(t, path+"/delete", url.Values{"revision": {"3"}}, false).wantStatus(t, http.StatusSeeOther)
	app.clock.freeze(at(16, 5))
	app.postForm(t, path+"/restore", url.Values{}, false).wantStatus(t, http.StatusSeeOther)

	d := app.get(t, path, false)
	d.wantStatus(t, http.StatusOK)
	if got := text(d.doc.Find(`#history > h2`)); got != "History" {
		t.Errorf("history heading = %q", got)
	}
	wantHistory(t, d,
		[]string{"Dev Admin restored it · 14 Mar 2025, 16:05 UTC"},
		[]string{"Dev Admin deleted it · 14 Mar 2025, 16:00 UTC"},
		[]string{
			"Dev Admin changed Description from “Science block only” to “<script>alert(1)</script>” · 14 Mar 2025, 15:45 UTC",
			"Dev Admin changed Version from 3 to 4",
		},
		[]string{
			"Dev Admin changed Description from “Shared by Science” to “Science block only” · 14 Mar 2025, 14:02 UTC",
			"Dev Admin changed Device cart IDs: added cart-12; removed CART-001",
		},
		[]string{
			"Dev Admin created it · 14 Mar 2025, 09:30 UTC",
			"Display name: “Science block iPads”",
			"Description: “Shared by Science”",
			"Version: 3",
			"Device cart IDs: CART-001, CART-002",
			"Classroom IDs: S201, S202",
		},
	)
	if dt, _ := d.testid("history-entry").First().Find("time").Attr("datetime"); dt != "2025-03-14T16:05:00Z" {
		t.Errorf("newest entry's datetime = %q", dt)
	}
	// Shown as text, never as markup.
	if d.doc.Find("#history script").Length() != 0 || strings.Contains(d.body, "<script>alert(1)") {
		t.Error("a value in the history became markup")
	}
	// Everything fits on one page: no pager, and the history starts at the creation.
	if d.testid("history-older").Length() != 0 || d.testid("history-newest").Length() != 0 || d.testid("history-start").Length() != 0 {
		t.Error("a one-page history offers paging, or says it starts late")
	}
	// The created and last-modified lines stay.
	if got := text(d.testid("local-props")); !strings.Contains(got, "Last modified14 Mar 2025, 16:05 UTC by Dev Admin") {
		t.Errorf("local props = %q", got)
	}

	// A viewer reads the same history.
	viewer := newSignedOutApp(t, db)
	viewer.signIn(t, devidp.SubjectViewer)
	v := viewer.get(t, path, false)
	v.wantStatus(t, http.StatusOK)
	if got := historyEntries(v); len(got) != 5 || got[0][0] != "Dev Admin restored it · 14 Mar 2025, 16:05 UTC" {
		t.Errorf("viewer's history:\n%s", joinEntries(got))
	}
}

func TestDetailShowsChangesReadFromIntune(t *testing.T) {
	app := newTestApp(t)
	ctx := context.Background()
	app.clock.freeze(time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC))
	a, err := app.store.CreateAssociation(ctx, store.Fields{DisplayName: "Library carts", Version: 1,
		DeviceCartIDs: []string{"cart-3"}}, store.Actor{Subject: "sub-ada", Name: "Ada Admin"})
	if err != nil {
		t.Fatal(err)
	}
	it, err := app.store.ClaimOutbox(ctx, "w", time.Date(2025, 3, 14, 11, 0, 0, 0, time.UTC), time.Minute)
	if err != nil || it.Association.ID != a.ID {
		t.Fatalf("claim: %+v, %v", it.Association, err)
	}
	if err := app.store.CompleteCreate(ctx, a.ID, "w", store.Pushed{GraphID: "g-lib", Revision: 1, Fields: a.Fields}); err != nil {
		t.Fatal(err)
	}
	remote := a.Fields.Clone()
	remote.Description, remote.DeviceCartIDs = "Moved by PowerShell", []string{"cart-3", "cart-12"}
	app.clock.freeze(time.Date(2025, 3, 14, 12, 30, 0, 0, time.UTC))
	objs := []store.RemoteObject{
		{GraphID: "g-lib", Fields: remote},
		{GraphID: "g-new", Fields: store.Fields{DisplayName: "Made in Intune", Version: 2, ClassroomIDs: []string{"room-9"}}},
	}
	if _, err := app.store.ApplyRemotePage(ctx, objs, time.Date(2025, 3, 14, 12, 30, 0, 0, time.UTC),
		func(o store.RemoteObject, l *store.Local, _ []store.Local) store.Verdict {
			if l == nil {
				return store.Verdict{Kind: store.VerdictImport}
			}
			return store.Verdict{Kind: store.VerdictTake, Local: o.Fields}
		}); err != nil {
		t.Fatal(err)
	}

	d := app.get(t, fmt.Sprintf("/associations/%d", a.ID), false)
	d.wantStatus(t, http.StatusOK)
	if href, _ := d.testid("history-activity").Attr("href"); href != fmt.Sprintf("/activity?association=%d", a.ID) {
		t.Errorf("the history's Activity link goes to %q", href)
	}
	wantHistory(t, d,
		[]string{
			"Intune set Description to “Moved by PowerShell” · 14 Mar 2025, 12:30 UTC",
			"Intune changed Device cart IDs: added cart-12",
		},
		[]string{"Ada Admin created it · 14 Mar 2025, 10:00 UTC", "Display name: “Library carts”", "Version: 1", "Device cart IDs: cart-3"},
	)

	page, err := app.store.ListAssociations(ctx, store.ListFilter{Query: "Made in Intune"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("imported association: %+v, %v", page.Items, err)
	}
	imp := app.get(t, fmt.Sprintf("/associations/%d", page.Items[0].ID), false)
	wantHistory(t, imp, []string{"Imported from Intune · 14 Mar 2025, 12:30 UTC", "Display name: “Made in Intune”", "Version: 2", "Classroom IDs: room-9"})
}

func TestDetailHistoryPages(t *testing.T) {
	app := newTestApp(t)
	ctx := context.Background()
	start := time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC)
	app.clock.freeze(start)
	a := app.create(t, store.Fields{DisplayName: "Busy cart", Version: 0})
	by := store.Actor{Subject: "sub-ada", Name: "Ada Admin"}
	for i := 1; i <= 25; i++ {
		app.clock.freeze(start.Add(time.Duration(i) * time.Minute))
		cur, err := app.store.GetAssociation(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		f := cur.Fields
		f.Version = int32(i)
		if _, err := app.store.UpdateAssociation(ctx, a.ID, cur.Revision, f, by); err != nil {
			t.Fatal(err)
		}
	}
	version := func(i int) string {
		return fmt.Sprintf("Ada Admin changed Version from %d to %d · 14 Mar 2025, 08:%02d UTC", i-1, i, i)
	}
	path := fmt.Sprintf("/associations/%d", a.ID)

	first := app.get(t, path, false)
	first.wantStatus(t, http.StatusOK)
	got := historyEntries(first)
	if len(got) != 20 {
		t.Fatalf("first page: %d entries, want 20", len(got))
	}
	for i, e := range got {
		if want := version(25 - i); len(e) != 1 || e[0] != want {
			t.Errorf("first page, entry %d = %q, want %q", i, e, want)
		}
	}
	if first.testid("history-newest").Length() != 0 {
		t.Error("the newest page links to the newest page")
	}
	older, ok := first.testid("history-older").Attr("href")
	entries, _, err := app.store.AssociationHistory(ctx, a.ID, 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	if wantHref := fmt.Sprintf("%s?history=%d#history", path, entries[19].ID); !ok || older != wantHref {
		t.Fatalf("Older link = %q, want %q", older, wantHref)
	}

	second := app.get(t, strings.TrimSuffix(older, "#history"), false)
	second.wantStatus(t, http.StatusOK)
	want := [][]string{}
	for i := 5; i >= 1; i-- {
		want = append(want, []string{version(i)})
	}
	want = append(want, []string{"Someone created it · 14 Mar 2025, 08:00 UTC", "Display name: “Busy cart”", "Version: 0"})
	wantHistory(t, second, want...)
	if second.testid("history-older").Length() != 0 {
		t.Error("the last page offers older entries")
	}
	if href, _ := second.testid("history-newest").Attr("href"); href != path+"#history" {
		t.Errorf("Newest link = %q", href)
	}
	// The rest of the page is the same association's.
	if got := text(second.testid("detail-title")); got != "Busy cart" {
		t.Errorf("title on the older page = %q", got)
	}

	// Anything but an entry id shows the newest; an id past the last shows none.
	for _, q := range []string{"abc", "-3", "0", ""} {
		r := app.get(t, path+"?history="+url.QueryEscape(q), false)
		r.wantStatus(t, http.StatusOK)
		if got := historyEntries(r); len(got) != 20 || got[0][0] != version(25) {
			t.Errorf("?history=%q: %d entries, first %q", q, len(got), got[0])
		}
	}
	all, _, err := app.store.AssociationHistory(ctx, a.ID, 0, 100)
	if err != nil || len(all) != 26 {
		t.Fatalf("whole history: %d entries, %v", len(all), err)
	}
	last := app.get(t, fmt.Sprintf("%s?history=%d", path, all[25].ID), false)
	last.wantStatus(t, http.StatusOK)
	if len(historyEntries(last)) != 0 || text(last.testid("history-none")) != "No older changes." {
		t.Errorf("past the end: %q", historyEntries(last))
	}
}

// linkedAssociation creates name through the store and completes its create as Graph
// object gid, as the push worker would. No other association may be due.
func linkedAssociation(t *testing.T, app *testApp, name, gid string) store.Association {
	t.Helper()
	ctx := context.Background()
	a, err := app.store.CreateAssociation(ctx, store.Fields{DisplayName: name, Description: "d " + name, Version: 1},
		store.Actor{Subject: "sub-ada", Name: "Ada Admin"})
	if err != nil {
		t.Fatal(err)
	}
	it, err := app.store.ClaimOutbox(ctx, "w", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute)
	if err != nil || it.Association.ID != a.ID {
		t.Fatalf("claim %s: %+v, %v", name, it.Association, err)
	}
	if err := app.store.CompleteCreate(ctx, a.ID, "w", store.Pushed{GraphID: gid, Revision: a.Revision, Fields: a.Fields}); err != nil {
		t.Fatal(err)
	}
	a, err = app.store.GetAssociation(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDetailShowsResolutionsRemovalAndRecreation(t *testing.T) {
	app := newTestApp(t)
	ctx := context.Background()
	app.clock.freeze(time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC))
	keep := linkedAssociation(t, app, "Keep", "g-keep")
	push := linkedAssociation(t, app, "Push", "g-push")
	remove := linkedAssociation(t, app, "Remove", "g-remove")
	recreate := linkedAssociation(t, app, "Recreate", "g-recreate")
	// Keep and Push: changed here and in Intune, on the description.
	var objs []store.RemoteObject
	for _, a := range []store.Association{keep, push} {
		f := a.Fields
		f.Description = "mine"
		if _, err := app.store.UpdateAssociation(ctx, a.ID, a.Revision, f, store.Actor{Subject: "sub-ada", Name: "Ada Admin"}); err != nil {
			t.Fatal(err)
		}
		f.Description = "theirs"
		objs = append(objs, store.RemoteObject{GraphID: a.GraphID, Fields: f})
	}
	if _, err := app.store.ApplyRemotePage(ctx, objs, time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC),
		func(store.RemoteObject, *store.Local, []store.Local) store.Verdict {
			return store.Verdict{Kind: store.VerdictConflict, Conflicts: []string{"description"}}
		}); err != nil {
		t.Fatal(err)
	}
	// Remove and Recreate: deleted in Intune.
	started := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	cands, err := app.store.MissingCandidates(ctx, []string{"g-keep", "g-push"}, started)
	if err != nil {
		t.Fatal(err)
	}
	var gone []int64
	for _, c := range cands {
		gone = append(gone, c.ID)
	}
	if n, err := app.store.MarkGone(ctx, gone, started); err != nil || n != 2 {
		t.Fatalf("MarkMissing = %d, %v", n, err)
	}

	app.clock.freeze(time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC))
	app.postForm(t, fmt.Sprintf("/associations/%d/keep-intune", keep.ID), url.Values{"revision": {"2"}}, false).wantStatus(t, http.StatusSeeOther)
	app.postForm(t, fmt.Sprintf("/associations/%d/push-mine", push.ID), url.Values{"revision": {"2"}}, false).wantStatus(t, http.StatusSeeOther)
	app.postForm(t, fmt.Sprintf("/associations/%d/remove", remove.ID), url.Values{}, false).wantStatus(t, http.StatusSeeOther)
	app.postForm(t, fmt.Sprintf("/associations/%d/recreate", recreate.ID), url.Values{}, false).wantStatus(t, http.StatusSeeOther)

	created := func(name string) []string {
		return []string{"Ada Admin created it · 14 Mar 2025, 09:00 UTC", "Display name: “" + name + "”", "Description: “d " + name + "”", "Version: 1"}
	}
	edited := func(name string) []string {
		return []string{"Ada Admin changed Description from “d " + name + "” to “mine” · 14 Mar 2025, 09:00 UTC"}
	}
	for _, c := range []struct {
		a    store.Association
		want [][]string
	}{
		{keep, [][]string{{"Dev Admin kept Intune's version · 14 Mar 2025, 10:00 UTC", "Took Intune's Description: “mine” → “theirs”"},
			edited("Keep"), created("Keep")}},
		{push, [][]string{{"Dev Admin pushed their version to Intune · 14 Mar 2025, 10:00 UTC"}, edited("Push"), created("Push")}},
		{remove, [][]string{{"Dev Admin removed it from cartclass (it had been deleted in Intune) · 14 Mar 2025, 10:00 UTC"}, created("Remove")}},
		{recreate, [][]string{{"Dev Admin re-created it in Intune · 14 Mar 2025, 10:00 UTC"}, created("Recreate")}},
	} {
		t.Run(c.a.DisplayName, func(t *testing.T) {
			d := app.get(t, fmt.Sprintf("/associations/%d", c.a.ID), false)
			d.wantStatus(t, http.StatusOK)
			wantHistory(t, d, c.want...)
		})
	}
}
