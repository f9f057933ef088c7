package views_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

func TestSyncBadgeMirrorStates(t *testing.T) {
	changed := association(1, "x")
	changed.Sync.State = store.SyncChanged
	deleting := association(2, "y")
	deleting.DeletedAt, deleting.Sync.DeletePending, deleting.Sync.State = when, true, store.SyncWaiting
	deleted := association(3, "z")
	deleted.DeletedAt, deleted.Sync.State = when, store.SyncSynced
	for _, c := range []struct {
		a    store.Association
		want string
	}{{changed, "Changed in Intune"}, {deleting, "Deleting…"}, {deleted, "Deleted"}} {
		doc, _ := render(t, views.SyncBadge(c.a))
		if got := text(testid(doc, "sync-badge")); got != c.want {
			t.Errorf("badge for %+v = %q, want %q", c.a.Sync, got, c.want)
		}
	}
}

func TestDeletedRowShowsWhenAndWho(t *testing.T) {
	a := association(7, "Old carts")
	a.DeletedAt, a.DeletedBy = when, store.Actor{Name: "Ada"}
	l := views.AssociationList{Page: 1, PerPage: 50, Total: 1, Deleted: true, Items: []store.Association{a}}
	doc, _ := render(t, views.AssociationTable(l))
	if got := text(testid(doc, "deleted-at")); got != "Deleted 30 Jun 2025, 14:05 UTC by Ada" {
		t.Errorf("deleted row says %q", got)
	}
	if got := attr(testid(doc, "deleted-at").Find("time"), "datetime"); got != "2025-06-30T14:05:09Z" {
		t.Errorf("datetime = %q", got)
	}
	// Paging and sorting keep the filter.
	if got := l.URL(); got != "/associations?state=deleted" {
		t.Errorf("URL = %q", got)
	}

	empty := views.AssociationList{Page: 1, PerPage: 50, Deleted: true}
	doc, _ = render(t, views.AssociationTable(empty))
	if got := text(testid(doc, "no-results")); !strings.HasPrefix(got, "Nothing was deleted in the last 30 days.") {
		t.Errorf("empty Deleted filter says %q", got)
	}
	if empty.Empty() {
		t.Error("an empty Deleted filter counts as no associations at all (the toolbar would vanish)")
	}
}

func TestEmptyStateWhileReadingIntune(t *testing.T) {
	for _, c := range []struct {
		name   string
		intune *views.IntuneReading
		title  string
		polls  bool
	}{
		{"no graph", nil, "No associations yet", false},
		{"never read", &views.IntuneReading{}, "No associations yet", false},
		{"reading", &views.IntuneReading{Running: true, SoFar: 1200}, "Reading Intune…", true},
		{"read, none", &views.IntuneReading{FoundNone: true}, "Intune holds no associations yet", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, _ := render(t, views.EmptyState(views.AssociationList{Intune: c.intune}, true))
			region := testid(doc, "empty-state")
			if got := text(testid(doc, "empty-title")); got != c.title {
				t.Errorf("title = %q, want %q", got, c.title)
			}
			if attr(region, "id") != views.EmptyStateID {
				t.Errorf("id = %q", attr(region, "id"))
			}
			if _, polls := region.Attr("hx-trigger"); polls != c.polls {
				t.Errorf("polls = %v, want %v", polls, c.polls)
			}
			if c.polls && !strings.Contains(text(testid(doc, "empty-reading")), "1,200 so far") {
				t.Errorf("progress = %q", text(testid(doc, "empty-reading")))
			}
			if testid(doc, "new-association").Length() != 1 {
				t.Error("no New association for an admin")
			}
		})
	}
}

func TestSyncStatsReadingIntune(t *testing.T) {
	start := time.Date(2025, 6, 30, 14, 2, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		read     push.ReadStatus
		last     string
		progress string
	}{
		{"never", push.ReadStatus{}, "Intune has not been read yet.", ""},
		{"first read running", push.ReadStatus{Running: true, SoFar: 1200}, "", "Reading from Intune: 1,200 so far."},
		{"done", push.ReadStatus{HaveLast: true, Last: store.ReadInfo{StartedAt: start, FinishedAt: start.Add(3250 * time.Millisecond), Objects: 1234, Complete: true}},
			"Intune last read 14:02:03 UTC · 1,234 objects · took 3.2 s", ""},
		{"long", push.ReadStatus{HaveLast: true, Last: store.ReadInfo{StartedAt: start, FinishedAt: start.Add(125 * time.Second), Objects: 1, Complete: true}},
			"Intune last read 14:04:05 UTC · 1 object · took 2 min 5 s", ""},
		{"quick", push.ReadStatus{HaveLast: true, Last: store.ReadInfo{StartedAt: start, FinishedAt: start.Add(4500 * time.Microsecond), Objects: 3, Complete: true}},
			"Intune last read 14:02:00 UTC · 3 objects · took 4 ms", ""},
		{"failed, reading again", push.ReadStatus{Running: true, SoFar: 40, HaveLast: true, Last: store.ReadInfo{StartedAt: start, FinishedAt: start.Add(time.Second), Objects: 40, Error: "Graph answered 503 ServiceUnavailable."}},
			"The last read of Intune, at 14:02:01 UTC, failed after 40 objects: Graph answered 503 ServiceUnavailable. Nothing was concluded from it: no association was marked as deleted in Intune.",
			"Reading from Intune: 40 so far."},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, _ := render(t, views.SyncStats(views.SyncOverview{Read: c.read}))
			if got := text(testid(doc, "last-read")); got != c.last {
				t.Errorf("last read = %q, want %q", got, c.last)
			}
			if got := text(testid(doc, "read-progress")); got != c.progress {
				t.Errorf("progress = %q, want %q", got, c.progress)
			}
			form := testid(doc, "refresh").Closest("form")
			if text(testid(doc, "refresh")) != "Refresh from Intune" || attr(form, "action") != "/sync/refresh" || attr(form, "method") != "post" {
				t.Errorf("Refresh button %q posts to %q", text(testid(doc, "refresh")), attr(form, "action"))
			}
		})
	}
}

func TestSyncPageWithoutGraph(t *testing.T) {
	doc, _ := render(t, views.SyncPage(views.Page{Title: "Sync"}, views.SyncOverview{NoGraph: true}))
	if got := text(testid(doc, "sync-off")); !strings.Contains(got, "reading Intune is off") {
		t.Errorf("sync page without Graph = %q", got)
	}
	if testid(doc, "refresh").Length()+testid(doc, "sync-stats").Length() != 0 {
		t.Error("sync page without Graph offers a refresh or polls")
	}
}

func TestDeletePageNamesTheAssociation(t *testing.T) {
	a := association(12, `Room <12>`)
	a.Revision, a.GraphID = 4, "g-12"
	doc, html := render(t, views.DeletePage(views.Page{Title: "Delete"}, a))
	if got := text(testid(doc, "delete-name")); got != "Room <12>" {
		t.Errorf("name = %q", got)
	}
	if strings.Contains(html, "<12>") {
		t.Error("the name is not escaped")
	}
	form := testid(doc, "confirm-delete").Closest("form")
	if attr(form, "action") != "/associations/12/delete" || attr(form.Find(`input[name="revision"]`), "value") != "4" {
		t.Errorf("form posts to %q with revision %q", attr(form, "action"), attr(form.Find(`input[name="revision"]`), "value"))
	}
	if attr(testid(doc, "cancel-delete"), "href") != "/associations/12" {
		t.Errorf("Cancel → %q", attr(testid(doc, "cancel-delete"), "href"))
	}
}
