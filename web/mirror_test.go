package web_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/web"
	"github.com/cartclass/cartclass/web/devidp"
)

// Tests of deleting, restoring and of the choices Intune's own changes call for, as the
// pages show them. The states the worker would reach (synced, changed in Intune, deleted
// in Intune) are set up through the store's worker-facing API: claim the outbox row, then
// record what Graph answered, exactly as the worker does.

// claim leases association id's outbox row to the test, as the worker would.
func (a *testApp) claim(t testing.TB, id int64) store.OutboxItem {
	t.Helper()
	it, err := a.store.ClaimOutbox(context.Background(), "test", a.clock.Now(), time.Hour)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if it.Association.ID != id {
		t.Fatalf("claimed association %d, want %d", it.Association.ID, id)
	}
	return it
}

// pushed records that Graph now holds association id (created as graphID).
func (a *testApp) pushed(t testing.TB, id int64, graphID string) store.Association {
	t.Helper()
	it := a.claim(t, id)
	p := store.Pushed{GraphID: graphID, Revision: it.Association.Revision, Fields: it.Association.Fields,
		GraphCreatedAt: a.clock.Now(), GraphModifiedAt: a.clock.Now()}
	var err error
	if it.Association.GraphID == "" {
		err = a.store.CompleteCreate(context.Background(), id, "test", p)
	} else {
		err = a.store.CompleteUpdate(context.Background(), id, "test", p)
	}
	if err != nil {
		t.Fatalf("complete push: %v", err)
	}
	return a.get1(t, id)
}

// changedInIntune makes association id (synced) Changed in Intune: a local edit to mine
// while Intune now holds remote, conflicting on the fields named.
func (a *testApp) changedInIntune(t testing.TB, id int64, mine, remote store.Fields, conflicts ...string) store.Association {
	t.Helper()
	cur := a.get1(t, id)
	edited, err := a.store.UpdateAssociation(context.Background(), id, cur.Revision, mine, store.Actor{Subject: devidp.SubjectAdmin, Name: "Dev Admin"})
	if err != nil {
		t.Fatalf("local edit: %v", err)
	}
	a.claim(t, id)
	if err := a.store.MarkChanged(context.Background(), id, "test", edited.Revision, remote, conflicts); err != nil {
		t.Fatalf("mark changed: %v", err)
	}
	return a.get1(t, id)
}

// deletedInIntune makes association id (synced) Deleted in Intune, as a PATCH answered 404.
func (a *testApp) deletedInIntune(t testing.TB, id int64) store.Association {
	t.Helper()
	cur := a.get1(t, id)
	f := cur.Fields
	f.Description += " (edited)"
	if _, err := a.store.UpdateAssociation(context.Background(), id, cur.Revision, f, store.Actor{}); err != nil {
		t.Fatalf("local edit: %v", err)
	}
	a.claim(t, id)
	if err := a.store.MarkDeleted(context.Background(), id, "test", &store.SyncError{Status: 404, Code: "ResourceNotFound"}); err != nil {
		t.Fatalf("mark deleted: %v", err)
	}
	return a.get1(t, id)
}

func (a *testApp) get1(t testing.TB, id int64) store.Association {
	t.Helper()
	as, err := a.store.GetAssociation(context.Background(), id)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return as
}

func assocPath(id int64, suffix string) string {
	return "/associations/" + strconv.FormatInt(id, 10) + suffix
}

func revisionForm(rev int64) url.Values { return url.Values{"revision": {strconv.FormatInt(rev, 10)}} }

// rowNames are the display names the list's rows link to.
func rowNames(r *response) []string {
	var names []string
	r.testid("association-link").Each(func(_ int, s *goquery.Selection) { names = append(names, text(s)) })
	return names
}

// valueText is a shown value: its text, or its ids joined by ", " when it is an id list.
func valueText(s *goquery.Selection) string {
	if li := s.Find("li"); li.Length() > 0 {
		var ids []string
		li.Each(func(_ int, l *goquery.Selection) { ids = append(ids, text(l)) })
		return strings.Join(ids, ", ")
	}
	return text(s)
}

// wantFlash fails unless the page shows the flash message want.
func wantFlash(t testing.TB, r *response, want string) {
	t.Helper()
	if got := text(r.testid("flash")); got != want {
		t.Errorf("flash = %q, want %q", got, want)
	}
}

func TestDeleteConfirmThenGoneFromList(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Room 12 iPads", Version: 2, DeviceCartIDs: []string{"CART-1"}, ClassroomIDs: []string{"R12"}})
	a = app.pushed(t, a.ID, "6f1c9a52-0000-4000-8000-000000000012")
	keep := app.create(t, store.Fields{DisplayName: "Library carts", Version: 1})

	detail := app.get(t, assocPath(a.ID, ""), false)
	detail.wantStatus(t, http.StatusOK)
	del := detail.testid("delete")
	if href, _ := del.Attr("href"); del.Length() != 1 || href != assocPath(a.ID, "/delete") {
		t.Fatalf("detail page's Delete = %d links to %q", del.Length(), href)
	}

	// The confirmation names the association, says what happens in Intune and that it can
	// be restored, and posts the revision shown.
	confirm := app.get(t, assocPath(a.ID, "/delete"), false)
	confirm.wantStatus(t, http.StatusOK)
	wantFullPage(t, confirm)
	if got := text(confirm.testid("delete-name")); got != "Room 12 iPads" {
		t.Errorf("confirmation names %q", got)
	}
	if got := text(confirm.testid("delete-local-id")); got != strconv.FormatInt(a.ID, 10) {
		t.Errorf("confirmation shows local id %q, want %d", got, a.ID)
	}
	if got := text(confirm.testid("delete-graph-id")); got != a.GraphID {
		t.Errorf("confirmation shows Graph id %q, want %q", got, a.GraphID)
	}
	explain := text(confirm.testid("delete-explain"))
	for _, want := range []string{"deleted from Microsoft Intune too", "30 days", "Deleted", "Restore"} {
		if !strings.Contains(explain, want) {
			t.Errorf("confirmation lacks %q: %q", want, explain)
		}
	}
	form := confirm.testid("confirm-delete").Closest("form")
	if action, _ := form.Attr("action"); action != assocPath(a.ID, "/delete") || strings.ToLower(form.AttrOr("method", "")) != "post" {
		t.Errorf("Delete association posts to %q (%s)", action, form.AttrOr("method", ""))
	}
	if rev := form.Find(`input[name="revision"]`).AttrOr("value", ""); rev != strconv.FormatInt(a.Revision, 10) {
		t.Errorf("form carries revision %q, want %d", rev, a.Revision)
	}
	if text(confirm.testid("confirm-delete")) != "Delete association" {
		t.Errorf("button reads %q", text(confirm.testid("confirm-delete")))
	}
	if href := confirm.testid("cancel-delete").AttrOr("href", ""); href != assocPath(a.ID, "") {
		t.Errorf("Cancel goes to %q", href)
	}
	if app.count(t) != 2 {
		t.Fatal("showing the confirmation deleted something")
	}

	res := app.postForm(t, assocPath(a.ID, "/delete"), formValues(form), false)
	res.wantStatus(t, http.StatusSeeOther)
	if loc := res.header.Get("Location"); loc != "/associations" {
		t.Errorf("delete redirects to %q", loc)
	}
	list := app.follow(t, res)
	wantFlash(t, list, "Deleted “Room 12 iPads”. It is being removed from Intune.")
	if names := rowNames(list); len(names) != 1 || names[0] != keep.DisplayName {
		t.Errorf("list after delete = %q, want only %q", names, keep.DisplayName)
	}

	// Under the Deleted filter, with the deletion time and who deleted it.
	deleted := app.get(t, "/associations?state=deleted", false)
	deleted.wantStatus(t, http.StatusOK)
	if names := rowNames(deleted); len(names) != 1 || names[0] != "Room 12 iPads" {
		t.Fatalf("Deleted filter lists %q", names)
	}
	if sel := deleted.testid("state-filter").Find("option[selected]"); sel.AttrOr("value", "") != "deleted" || text(sel) != "Deleted" {
		t.Errorf("filter shows %q selected", text(sel))
	}
	row := deleted.testid("association-row")
	if got := text(row.Find(`[data-testid="sync-badge"]`)); got != "Deleting…" {
		t.Errorf("deleted row's badge = %q, want Deleting… (no worker has sent the DELETE)", got)
	}
	if got := text(row.Find(`[data-testid="deleted-at"]`)); !strings.HasPrefix(got, "Deleted 14 Mar 2025, ") || !strings.HasSuffix(got, "by Dev Admin") {
		t.Errorf("deleted row says %q", got)
	}

	// Its page says who deleted it, offers Restore only, and follows the DELETE.
	detail = app.get(t, assocPath(a.ID, ""), false)
	detail.wantStatus(t, http.StatusOK)
	if got := text(detail.testid("deleted-banner")); !strings.HasPrefix(got, "Deleted by Dev Admin at 14 Mar 2025, ") {
		t.Errorf("deleted banner = %q", got)
	}
	if detail.testid("edit").Length()+detail.testid("delete").Length() != 0 {
		t.Error("a deleted association still offers Edit or Delete")
	}
	if detail.testid("restore").Length() != 1 {
		t.Error("no Restore for an admin")
	}
	if got := text(detail.testid("sync-note")); got != "Deleting from Intune…" {
		t.Errorf("sync note = %q", got)
	}
	if trig := detail.doc.Find("#sync-status").AttrOr("hx-trigger", ""); trig == "" {
		t.Error("the sync panel does not follow the pending DELETE")
	}
}

func TestDeleteNeverPushedSendsNothing(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Typo", Version: 1})

	confirm := app.get(t, assocPath(a.ID, "/delete"), false)
	if got := text(confirm.testid("delete-explain")); !strings.Contains(got, "otherwise nothing is sent there") {
		t.Errorf("confirmation for one not in Intune = %q", got)
	}
	res := app.postForm(t, assocPath(a.ID, "/delete"), revisionForm(a.Revision), false)
	list := app.follow(t, res)
	wantFlash(t, list, "Deleted “Typo”. It never reached Intune, so nothing was sent.")
	// Nothing else is left: the page is the empty state again.
	if list.testid("empty-state").Length() != 1 {
		t.Error("list with only a deleted association is not the empty state")
	}
	deleted := app.get(t, "/associations?state=deleted", false)
	if got := text(deleted.testid("sync-badge")); got != "Deleted" {
		t.Errorf("badge = %q, want Deleted", got)
	}
	detail := app.get(t, assocPath(a.ID, ""), false)
	if got := text(detail.testid("sync-note")); got != "It never reached Intune, so nothing was sent there." {
		t.Errorf("sync note = %q", got)
	}
	if _, polls := detail.doc.Find("#sync-status").Attr("hx-trigger"); polls {
		t.Error("the sync panel polls although nothing is left to send")
	}
}

// A DELETE that Graph refused: the detail page says so, with Graph's words, stops polling,
// and offers Retry, which queues the DELETE again (the association stays deleted).
func TestRefusedDeleteCanBeRetried(t *testing.T) {
	app := newTestApp(t)
	a := app.pushed(t, app.create(t, store.Fields{DisplayName: "Old cart", Version: 1}).ID, "g-old")
	res := app.postForm(t, assocPath(a.ID, "/delete"), revisionForm(a.Revision), false)
	app.follow(t, res)
	it := app.claim(t, a.ID)
	if it.Association.DeletedAt.IsZero() {
		t.Fatal("the claimed item is not the DELETE")
	}
	refusal := &store.SyncError{Status: 400, Code: "BadRequest", Message: "Cannot delete an association in use"}
	if err := app.store.Fail(context.Background(), a.ID, "test", refusal, it.Association.Revision); err != nil {
		t.Fatal(err)
	}
	detail := app.get(t, assocPath(a.ID, ""), false)
	if got := text(detail.testid("sync-note")); !strings.Contains(got, "refused to delete it") {
		t.Errorf("sync note = %q", got)
	}
	if got := text(detail.testid("sync-error")); !strings.Contains(got, "Cannot delete an association in use") {
		t.Errorf("sync error = %q", got)
	}
	if _, polls := detail.doc.Find("#sync-status").Attr("hx-trigger"); polls {
		t.Error("the sync panel polls although the delete is parked")
	}
	if detail.testid("retry").Length() != 1 {
		t.Fatal("no Retry for the refused delete")
	}
	app.postForm(t, assocPath(a.ID, "/retry"), url.Values{}, false)
	got := app.get1(t, a.ID)
	if got.DeletedAt.IsZero() || got.Sync.State != store.SyncWaiting || !got.Sync.DeletePending || got.Sync.NextAttemptAt.IsZero() {
		t.Fatalf("after Retry: deleted %v, sync %+v; want the DELETE queued again", got.DeletedAt, got.Sync)
	}
}

// A repeated, stale or forged delete gets a page that says so, never a 500.
func TestDeleteRepeatedStaleOrForged(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Music room", Version: 1})
	first := app.postForm(t, assocPath(a.ID, "/delete"), revisionForm(a.Revision), false)
	first.wantStatus(t, http.StatusSeeOther)
	app.follow(t, first) // consume the flash

	// The same POST again (a double click, a reload): back to the association, which says
	// it is deleted.
	again := app.postForm(t, assocPath(a.ID, "/delete"), revisionForm(a.Revision), false)
	again.wantStatus(t, http.StatusSeeOther)
	if loc := again.header.Get("Location"); loc != assocPath(a.ID, "") {
		t.Errorf("repeated delete → %q", loc)
	}
	page := app.follow(t, again)
	wantFlash(t, page, "Nothing to do: “Music room” was already deleted.")
	if page.testid("deleted-banner").Length() != 1 {
		t.Error("the association does not show it is deleted")
	}
	// The confirmation page of a deleted one leads there too.
	if r := app.get(t, assocPath(a.ID, "/delete"), false); r.status != http.StatusSeeOther || r.header.Get("Location") != assocPath(a.ID, "") {
		t.Errorf("confirmation of a deleted association = %d → %q", r.status, r.header.Get("Location"))
	}

	// Unknown or malformed ids.
	for _, path := range []string{"/associations/99999/delete", "/associations/abc/delete", "/associations/0/delete"} {
		wantErrorPage(t, app.postForm(t, path, revisionForm(1), false), http.StatusNotFound, "Not found")
		wantErrorPage(t, app.get(t, path, false), http.StatusNotFound, "Not found")
	}

	// A revision that is no longer current: someone saved in between.
	b := app.create(t, store.Fields{DisplayName: "Art room", Version: 1})
	if _, err := app.store.UpdateAssociation(context.Background(), b.ID, b.Revision, store.Fields{DisplayName: "Art room 2", Version: 1}, store.Actor{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	stale := app.postForm(t, assocPath(b.ID, "/delete"), revisionForm(b.Revision), false)
	wantErrorPage(t, stale, http.StatusConflict, "Someone changed this association")
	if got := text(stale.testid("error-page")); !strings.Contains(got, "Ada changed it") || !strings.Contains(got, "nothing was done") {
		t.Errorf("409 page = %q", got)
	}
	if got := app.get1(t, b.ID); !got.DeletedAt.IsZero() {
		t.Error("a stale delete deleted it")
	}
	// No revision at all: the form was not one of ours.
	for _, form := range []url.Values{{}, {"revision": {"x"}}, {"revision": {"0"}}} {
		wantErrorPage(t, app.postForm(t, assocPath(b.ID, "/delete"), form, false), http.StatusBadRequest, "Bad request")
	}
	if got := app.get1(t, b.ID); !got.DeletedAt.IsZero() {
		t.Error("a malformed delete deleted it")
	}
}

// A deleted association cannot be edited, retried or re-created: each says to restore it.
func TestDeletedCannotBeChanged(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Gym", Version: 1})
	a, err := app.store.DeleteAssociation(context.Background(), a.ID, a.Revision, store.Actor{Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	edit := app.get(t, assocPath(a.ID, "/edit"), false)
	wantErrorPage(t, edit, http.StatusConflict, "This association was deleted")
	if edit.testid("association-form").Length() != 0 {
		t.Error("the edit page of a deleted association shows a form")
	}
	if href := edit.testid("error-page").Find("a.btn").AttrOr("href", ""); href != assocPath(a.ID, "") {
		t.Errorf("409 page leads to %q", href)
	}
	for _, rev := range []int64{a.Revision, a.Revision - 1} {
		upd := app.postForm(t, assocPath(a.ID, ""), with(editForm("Gym 2", strconv.FormatInt(rev, 10)), "version", "1"), false)
		wantErrorPage(t, upd, http.StatusConflict, "This association was deleted")
	}
	for _, action := range []string{"/retry", "/recreate", "/keep-intune", "/push-mine"} {
		wantErrorPage(t, app.postForm(t, assocPath(a.ID, action), revisionForm(a.Revision), false), http.StatusConflict, "This association was deleted")
	}
	if got := app.get1(t, a.ID); got.DisplayName != "Gym" || got.Revision != a.Revision {
		t.Errorf("a deleted association changed: %+v", got)
	}
}

func TestRestore(t *testing.T) {
	app := newTestApp(t)

	// Deleted while in Intune, its DELETE not sent yet: Restore calls the removal off.
	b := app.create(t, store.Fields{DisplayName: "Drama studio", Version: 1})
	b = app.pushed(t, b.ID, "6f1c9a52-0000-4000-8000-0000000000d5")
	if _, err := app.store.DeleteAssociation(context.Background(), b.ID, b.Revision, store.Actor{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	page := app.follow(t, app.postForm(t, assocPath(b.ID, "/restore"), url.Values{}, false))
	wantFlash(t, page, "Restored. Its removal from Intune is called off, or, if it had already gone through, it is created there again.")
	if got := text(page.testid("graph-id")); got != b.GraphID {
		t.Errorf("restored association shows Graph id %q, want %q", got, b.GraphID)
	}

	// Deleted before anything was sent: Restore queues it to be created in Intune.
	a := app.create(t, store.Fields{DisplayName: "Science lab", Version: 1})
	if _, err := app.store.DeleteAssociation(context.Background(), a.ID, a.Revision, store.Actor{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if names := rowNames(app.get(t, "/associations?state=deleted", false)); len(names) != 1 || names[0] != "Science lab" {
		t.Fatalf("Deleted filter before restore = %q", names)
	}
	res := app.postForm(t, assocPath(a.ID, "/restore"), url.Values{}, false)
	res.wantStatus(t, http.StatusSeeOther)
	if loc := res.header.Get("Location"); loc != assocPath(a.ID, "") {
		t.Errorf("restore → %q", loc)
	}
	page = app.follow(t, res)
	wantFlash(t, page, "Restored; it will be created again in Intune.")
	if page.testid("deleted-banner").Length() != 0 || page.testid("edit").Length() != 1 || page.testid("delete").Length() != 1 {
		t.Error("a restored association still looks deleted")
	}
	if got := text(page.testid("sync-badge")); got != "Waiting" {
		t.Errorf("restored badge = %q", got)
	}
	if names := rowNames(app.get(t, "/associations?sort=name", false)); strings.Join(names, ", ") != "Drama studio, Science lab" {
		t.Errorf("list after restore = %q", names)
	}
	if names := rowNames(app.get(t, "/associations?state=deleted", false)); len(names) != 0 {
		t.Errorf("Deleted filter after restore = %q", names)
	}

	// A second Restore: nothing to do, and it says so.
	again := app.follow(t, app.postForm(t, assocPath(a.ID, "/restore"), url.Values{}, false))
	wantFlash(t, again, "It is not deleted, so there was nothing to restore.")

	wantErrorPage(t, app.postForm(t, "/associations/99999/restore", url.Values{}, false), http.StatusNotFound, "Not found")
}

func TestChangedInIntuneShowsBothVersions(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Room 4", Description: "Old", Version: 1, DeviceCartIDs: []string{"C1"}, ClassroomIDs: []string{"R4"}})
	app.pushed(t, a.ID, "6f1c9a52-0000-4000-8000-000000000004")
	mine := store.Fields{DisplayName: "Room 4", Description: "Mine", Version: 1, DeviceCartIDs: []string{"C1", "C2"}, ClassroomIDs: []string{"R4"}}
	theirs := store.Fields{DisplayName: "Room 4", Description: "Theirs", Version: 1, DeviceCartIDs: []string{"C9"}, ClassroomIDs: []string{"R4"}}
	a = app.changedInIntune(t, a.ID, mine, theirs, "description", "deviceCartIds")

	detail := app.get(t, assocPath(a.ID, ""), false)
	detail.wantStatus(t, http.StatusOK)
	if got := text(detail.testid("sync-badge")); got != "Changed in Intune" {
		t.Errorf("badge = %q", got)
	}
	for side, want := range map[string]map[string]string{
		"drift-mine":   {"Description": "Mine", "Device cart IDs": "C1, C2"},
		"drift-intune": {"Description": "Theirs", "Device cart IDs": "C9"},
	} {
		got := map[string]string{}
		detail.testid(side).Find(`[data-testid="drift-field"]`).Each(func(_ int, s *goquery.Selection) {
			got[text(s.Find("dt"))] = valueText(s.Find(`[data-testid="drift-value"]`))
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s shows %v, want %v", side, got, want)
		}
	}
	for _, b := range []struct{ id, label, action string }{
		{"keep-intune", "Keep Intune's version", assocPath(a.ID, "/keep-intune")},
		{"push-mine", "Push my version", assocPath(a.ID, "/push-mine")},
	} {
		btn := detail.testid(b.id)
		form := btn.Closest("form")
		if text(btn) != b.label || form.AttrOr("action", "") != b.action || form.Find(`input[name="revision"]`).AttrOr("value", "") != strconv.FormatInt(a.Revision, 10) {
			t.Errorf("%s: button %q posts to %q with revision %q", b.id, text(btn), form.AttrOr("action", ""), form.Find(`input[name="revision"]`).AttrOr("value", ""))
		}
	}
	// The list shows the state, and "not synced" includes it.
	list := app.get(t, "/associations?state=notsynced", false)
	if got := text(list.testid("association-row").Find(`[data-testid="sync-badge"]`)); got != "Changed in Intune" {
		t.Errorf("not-synced list badge = %q", got)
	}
}

func TestKeepIntunesVersion(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Room 5", Description: "Old", Version: 1})
	app.pushed(t, a.ID, "6f1c9a52-0000-4000-8000-000000000005")
	a = app.changedInIntune(t, a.ID, store.Fields{DisplayName: "Room 5", Description: "Mine", Version: 1},
		store.Fields{DisplayName: "Room 5", Description: "Theirs", Version: 1}, "description")

	// A choice made on an out-of-date page is refused.
	stale := app.postForm(t, assocPath(a.ID, "/keep-intune"), revisionForm(a.Revision-1), false)
	wantErrorPage(t, stale, http.StatusConflict, "Someone changed this association")
	if got := app.get1(t, a.ID); got.Sync.State != store.SyncChanged {
		t.Fatalf("after a stale choice the state is %q", got.Sync.State)
	}

	res := app.postForm(t, assocPath(a.ID, "/keep-intune"), revisionForm(a.Revision), false)
	res.wantStatus(t, http.StatusSeeOther)
	page := app.follow(t, res)
	wantFlash(t, page, "Kept Intune's version.")
	if got := text(page.testid("prop-description")); got != "Theirs" {
		t.Errorf("description = %q, want Intune's", got)
	}
	if got := text(page.testid("sync-badge")); got != "Synced" {
		t.Errorf("badge = %q", got)
	}
	if page.testid("keep-intune").Length()+page.testid("push-mine").Length() != 0 {
		t.Error("the choice is still offered")
	}

	// Pressed again (or by another admin meanwhile): nothing to choose.
	for _, action := range []string{"/keep-intune", "/push-mine"} {
		again := app.follow(t, app.postForm(t, assocPath(a.ID, action), revisionForm(a.Revision), false))
		wantFlash(t, again, "Nothing to choose any more: it is no longer changed in Intune.")
	}
	wantErrorPage(t, app.postForm(t, "/associations/99999/keep-intune", revisionForm(1), false), http.StatusNotFound, "Not found")
	wantErrorPage(t, app.postForm(t, assocPath(a.ID, "/keep-intune"), url.Values{}, false), http.StatusBadRequest, "Bad request")
}

func TestPushMyVersion(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Room 6", Description: "Old", Version: 1})
	app.pushed(t, a.ID, "6f1c9a52-0000-4000-8000-000000000006")
	a = app.changedInIntune(t, a.ID, store.Fields{DisplayName: "Room 6", Description: "Mine", Version: 1},
		store.Fields{DisplayName: "Room 6", Description: "Theirs", Version: 1}, "description")

	wantErrorPage(t, app.postForm(t, assocPath(a.ID, "/push-mine"), revisionForm(a.Revision+1), false), http.StatusConflict, "Someone changed this association")

	page := app.follow(t, app.postForm(t, assocPath(a.ID, "/push-mine"), revisionForm(a.Revision), false))
	wantFlash(t, page, "Sending your version to Intune.")
	if got := text(page.testid("prop-description")); got != "Mine" {
		t.Errorf("description = %q, want cartclass's", got)
	}
	if got := text(page.testid("sync-badge")); got != "Waiting" {
		t.Errorf("badge = %q, want Waiting (queued to be sent)", got)
	}
	// What the worker will send: Intune's values are now the base of the PATCH.
	it := app.claim(t, a.ID)
	if it.SyncedFields == nil || it.SyncedFields.Description != "Theirs" || it.Association.Description != "Mine" {
		t.Errorf("queued item: base %+v, local %q", it.SyncedFields, it.Association.Description)
	}
}

func TestDeletedInIntuneRemoveFromCartclass(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Room 7", Version: 1})
	app.pushed(t, a.ID, "6f1c9a52-0000-4000-8000-000000000007")
	a = app.deletedInIntune(t, a.ID)

	detail := app.get(t, assocPath(a.ID, ""), false)
	if got := text(detail.testid("sync-badge")); got != "Deleted in Intune" {
		t.Errorf("badge = %q", got)
	}
	if note := text(detail.testid("sync-note")); !strings.Contains(note, "deleted in Intune") || !strings.Contains(note, "complete listing of Intune no longer held it") {
		t.Errorf("note = %q", note)
	}
	if detail.testid("recreate").Length() != 1 || text(detail.testid("remove-local")) != "Remove from cartclass" {
		t.Fatal("Deleted in Intune lacks Re-create or Remove from cartclass")
	}
	if action := detail.testid("remove-local").Closest("form").AttrOr("action", ""); action != assocPath(a.ID, "/remove") {
		t.Errorf("Remove posts to %q", action)
	}

	res := app.postForm(t, assocPath(a.ID, "/remove"), url.Values{}, false)
	res.wantStatus(t, http.StatusSeeOther)
	if loc := res.header.Get("Location"); loc != "/associations" {
		t.Errorf("remove → %q", loc)
	}
	list := app.follow(t, res)
	wantFlash(t, list, "Removed “Room 7” from cartclass. It was already gone from Intune.")
	if names := rowNames(app.get(t, "/associations?state=deleted", false)); len(names) != 1 || names[0] != "Room 7" {
		t.Errorf("Deleted filter = %q", names)
	}
	if got := app.get1(t, a.ID); got.Sync.DeletePending {
		t.Error("removing from cartclass queued a DELETE")
	}

	again := app.follow(t, app.postForm(t, assocPath(a.ID, "/remove"), url.Values{}, false))
	wantFlash(t, again, "Nothing to do: “Room 7” was already deleted.")

	// Remove of one Intune still holds removes nothing.
	b := app.create(t, store.Fields{DisplayName: "Room 8", Version: 1})
	app.pushed(t, b.ID, "6f1c9a52-0000-4000-8000-000000000008")
	page := app.follow(t, app.postForm(t, assocPath(b.ID, "/remove"), url.Values{}, false))
	wantFlash(t, page, "Nothing was removed: it is no longer marked as deleted in Intune.")
	if got := app.get1(t, b.ID); !got.DeletedAt.IsZero() {
		t.Error("Remove deleted an association Intune holds")
	}
	wantErrorPage(t, app.postForm(t, "/associations/99999/remove", url.Values{}, false), http.StatusNotFound, "Not found")
}

// Viewers see the states and values, with no button, and every new route answers them 403.
func TestViewerSeesMirrorStatesReadOnly(t *testing.T) {
	app := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"))
	by := store.Actor{Subject: devidp.SubjectAdmin, Name: "Dev Admin"}
	changed := app.create(t, store.Fields{DisplayName: "Changed", Description: "Old", Version: 1})
	app.pushed(t, changed.ID, "6f1c9a52-0000-4000-8000-0000000000c1")
	changed = app.changedInIntune(t, changed.ID, store.Fields{DisplayName: "Changed", Description: "Mine", Version: 1},
		store.Fields{DisplayName: "Changed", Description: "Theirs", Version: 1}, "description")
	gone := app.create(t, store.Fields{DisplayName: "Gone in Intune", Version: 1})
	app.pushed(t, gone.ID, "6f1c9a52-0000-4000-8000-0000000000c2")
	gone = app.deletedInIntune(t, gone.ID)
	deleted := app.create(t, store.Fields{DisplayName: "Deleted here", Version: 1})
	deleted, err := app.store.DeleteAssociation(context.Background(), deleted.ID, deleted.Revision, by)
	if err != nil {
		t.Fatal(err)
	}
	plain := app.create(t, store.Fields{DisplayName: "Plain", Version: 1})
	app.signIn(t, devidp.SubjectViewer)

	buttons := []string{"delete", "restore", "keep-intune", "push-mine", "recreate", "remove-local", "edit"}
	for _, id := range []int64{changed.ID, gone.ID, deleted.ID, plain.ID} {
		page := app.get(t, assocPath(id, ""), false)
		page.wantStatus(t, http.StatusOK)
		for _, b := range buttons {
			if page.testid(b).Length() != 0 {
				t.Errorf("viewer sees %s on association %d", b, id)
			}
		}
		if n := page.doc.Find(`main form[method="post"]`).Length(); n != 0 {
			t.Errorf("viewer's page of association %d has %d forms", id, n)
		}
	}
	page := app.get(t, assocPath(changed.ID, ""), false)
	if got := text(page.testid("drift-intune").Find(`[data-testid="drift-value"]`)); got != "Theirs" {
		t.Errorf("viewer sees Intune's value %q", got)
	}
	if got := text(app.get(t, assocPath(deleted.ID, ""), false).testid("deleted-banner")); !strings.Contains(got, "Deleted by Dev Admin") {
		t.Errorf("viewer's deleted banner = %q", got)
	}
	if names := rowNames(app.get(t, "/associations?state=deleted", false)); len(names) != 1 || names[0] != "Deleted here" {
		t.Errorf("viewer's Deleted filter = %q", names)
	}

	app.get(t, assocPath(plain.ID, "/delete"), false).wantStatus(t, http.StatusForbidden)
	posts := []struct {
		path string
		form url.Values
	}{
		{assocPath(plain.ID, "/delete"), revisionForm(plain.Revision)},
		{assocPath(deleted.ID, "/restore"), url.Values{}},
		{assocPath(gone.ID, "/remove"), url.Values{}},
		{assocPath(changed.ID, "/keep-intune"), revisionForm(changed.Revision)},
		{assocPath(changed.ID, "/push-mine"), revisionForm(changed.Revision)},
		{"/sync/refresh", url.Values{}},
	}
	for _, p := range posts {
		for _, htmx := range []bool{false, true} {
			if r := app.postForm(t, p.path, p.form, htmx); r.status != http.StatusForbidden {
				t.Errorf("viewer POST %s (htmx %v) = %d, want 403", p.path, htmx, r.status)
			}
		}
	}
	for id, want := range map[int64]store.Association{plain.ID: plain, deleted.ID: deleted, gone.ID: gone, changed.ID: changed} {
		got := app.get1(t, id)
		if got.Revision != want.Revision || got.Sync.State != want.Sync.State || got.DeletedAt != want.DeletedAt {
			t.Errorf("a viewer's POST changed association %d: %+v", id, got)
		}
	}
}

// Without Graph the sync panel says that nothing is pushed or read, and Refresh has
// nothing to start.
func TestSyncPanelWithoutGraph(t *testing.T) {
	app := newTestApp(t)
	panel := app.get(t, "/sync", false)
	panel.wantStatus(t, http.StatusOK)
	if got := text(panel.testid("sync-off")); !strings.Contains(got, "reading Intune is off") {
		t.Errorf("sync panel without Graph = %q", got)
	}
	if panel.testid("refresh").Length() != 0 {
		t.Error("Refresh offered without Graph")
	}
	wantErrorPage(t, app.postForm(t, "/sync/refresh", url.Values{}, false), http.StatusNotFound, "Not found")
}

// The periodic clean-up purges associations deleted more than 30 days ago; newer ones stay
// under the Deleted filter, restorable.
func TestCleanupPurgesDeletionsOlderThan30Days(t *testing.T) {
	t.Parallel()
	var clock *fakeClock
	a := newSignedOutApp(t, filepath.Join(t.TempDir(), "cartclass.db"), web.WithClock(func() time.Time { return clock.Now() }))
	clock = a.clock
	ctx := context.Background()
	deleteAt := func(at time.Time, name string) int64 {
		a.clock.freeze(at)
		c, err := a.store.CreateAssociation(ctx, store.Fields{DisplayName: name, Version: 1}, store.Actor{Subject: "s", Name: "S"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.store.DeleteAssociation(ctx, c.ID, c.Revision, store.Actor{Subject: "s", Name: "S"}); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	old := deleteAt(clockStart, "Deleted long ago")
	recent := deleteAt(clockStart.Add(store.DeletedFor+24*time.Hour), "Deleted yesterday")

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.handler.(*web.Server).RunSessionCleanup(runCtx, time.Hour) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := a.store.GetAssociation(ctx, old)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the association deleted 31 days ago is still there (err %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := a.store.GetAssociation(ctx, recent); err != nil || got.DeletedAt.IsZero() {
		t.Fatalf("the association deleted yesterday: %+v, %v; want it kept as deleted", got, err)
	}
}
