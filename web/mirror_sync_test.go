package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
)

// The mirror against the Graph emulator with the real push worker: reading Intune as the
// sync panel and the empty list show it, and the admin's delete and choices reaching Graph.

// eventually polls cond every 20 ms for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// page GETs path as the admin and parses it.
func (g *graphEnv) page(t *testing.T, path string) *goquery.Document {
	t.Helper()
	h := do(t, g.admin, "GET", g.url+path, nil, nil)
	if h.status != http.StatusOK {
		t.Fatalf("GET %s = %d %.300s", path, h.status, h.body)
	}
	return parseDoc(t, h.body)
}

// post submits form to path as the admin, expects a 303 to wantLoc and returns the page
// it leads to.
func (g *graphEnv) post(t *testing.T, path string, form url.Values, wantLoc string) *goquery.Document {
	t.Helper()
	h := do(t, g.admin, "POST", g.url+path, form, nil)
	if h.status != http.StatusSeeOther || h.location != g.url+wantLoc {
		t.Fatalf("POST %s = %d → %q, want 303 → %s; %.300s", path, h.status, h.location, wantLoc, h.body)
	}
	return g.page(t, wantLoc)
}

func (g *graphEnv) requests(method string) []emulator.Request {
	var out []emulator.Request
	for _, r := range g.emu.Requests() {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func docText(d *goquery.Document, id string) string {
	return text(d.Find(`[data-testid="` + id + `"]`))
}

// slowFirstListing holds up the first listing of Intune (the read at start-up) so the
// pages can be seen while it runs.
func slowFirstListing(d time.Duration) emulator.Option {
	return func(e *emulator.Emulator) {
		e.Inject(emulator.Fault{Method: "GET", Path: "cartToClassAssociations", Count: 1, Latency: d})
	}
}

func withObjects(names ...string) emulator.Option {
	return func(e *emulator.Emulator) {
		for _, n := range names {
			e.PutObject(graph.Association{DisplayName: n, Version: 1, DeviceCartIDs: []string{"C-" + n}, ClassroomIDs: []string{"R-" + n}})
		}
	}
}

// App mode: cartclass reads with its own credentials, so the read at start-up does not
// wait for an admin to sign in.
var appMode = map[string]string{"CARTCLASS_GRAPH_AUTH": "app"}

func TestReadingIntuneShownOnEmptyListAndSyncPanel(t *testing.T) {
	g := newGraphEnvWith(t, appMode, withObjects("Hall A", "Hall B", "Hall C"), slowFirstListing(1500*time.Millisecond))

	// While the read at start-up runs, the empty list says so, and refreshes itself.
	var list *goquery.Document
	eventually(t, "the empty list to say Intune is being read", func() bool {
		list = g.page(t, "/associations")
		return docText(list, "empty-title") == "Reading Intune…"
	})
	if got := docText(list, "empty-reading"); !strings.Contains(got, "0 so far") {
		t.Errorf("progress = %q", got)
	}
	region := list.Find("#empty-state")
	if region.AttrOr("hx-trigger", "") == "" || region.AttrOr("hx-get", "") != "/associations" {
		t.Error("the empty list does not refresh itself while Intune is read")
	}

	// A second read cannot start while this one runs.
	panel := g.post(t, "/sync/refresh", url.Values{}, "/sync")
	if got := docText(panel, "flash"); got != "A read of Intune is already running." {
		t.Errorf("flash = %q", got)
	}
	if got := docText(panel, "read-progress"); !strings.HasPrefix(got, "Reading from Intune: ") || !strings.HasSuffix(got, " so far.") {
		t.Errorf("panel progress = %q", got)
	}

	// Once read, the three objects are listed; the empty list's poll is told to reload.
	eventually(t, "the imported associations", func() bool {
		return g.page(t, "/associations").Find(`[data-testid="association-row"]`).Length() == 3
	})
	h := do(t, g.admin, "GET", g.url+"/associations", nil, map[string]string{"HX-Request": "true", "HX-Target": "empty-state", "HX-Trigger": "empty-state"})
	if h.status != http.StatusNoContent || h.header.Get("HX-Refresh") != "true" {
		t.Errorf("empty-state poll after the import = %d, HX-Refresh %q", h.status, h.header.Get("HX-Refresh"))
	}
	eventually(t, "the finished read on the panel", func() bool {
		return strings.HasPrefix(docText(g.page(t, "/sync"), "last-read"), "Intune last read ")
	})
	panel = g.page(t, "/sync")
	last := docText(panel, "last-read")
	if !strings.Contains(last, " · 3 objects · took 1.") && !strings.Contains(last, " · 3 objects · took 2.") {
		t.Errorf("last read = %q, want 3 objects taking over 1.5 s", last)
	}
	if panel.Find(`[data-testid="read-progress"]`).Length() != 0 {
		t.Error("progress still shown after the read")
	}
	if panel.Find(`[data-testid="refresh"]`).Length() != 1 {
		t.Fatal("no Refresh from Intune button")
	}

	// Refresh starts a read now: an object added in Intune meanwhile is imported.
	g.emu.PutObject(graph.Association{DisplayName: "Hall D", Version: 1})
	panel = g.post(t, "/sync/refresh", url.Values{}, "/sync")
	if got := docText(panel, "flash"); got != "Reading Intune now." {
		t.Errorf("flash = %q", got)
	}
	eventually(t, "the object added in Intune", func() bool {
		return strings.Contains(text(g.page(t, "/associations").Find(`[data-testid="association-table"]`)), "Hall D")
	})
	if w := len(g.writes()); w != 0 {
		t.Errorf("reading Intune sent %d writes", w)
	}
}

func TestEmptyListAfterIntuneHeldNone(t *testing.T) {
	g := newGraphEnvWith(t, appMode)
	eventually(t, "the read at start-up", func() bool {
		return strings.Contains(docText(g.page(t, "/sync"), "last-read"), " · 0 objects · ")
	})
	list := g.page(t, "/associations")
	if got := docText(list, "empty-title"); got != "Intune holds no associations yet" {
		t.Errorf("empty list title = %q", got)
	}
	if list.Find("#empty-state").AttrOr("hx-trigger", "") != "" {
		t.Error("the empty list still polls after the read")
	}
	if list.Find(`[data-testid="new-association"]`).Length() != 1 {
		t.Error("no New association on the empty list")
	}
}

func TestDeleteReachesIntuneOnce(t *testing.T) {
	g := newGraphEnv(t)
	id := g.create(t, url.Values{"displayName": {"Room 9"}, "version": {"1"}})
	g.waitState(t, id, store.SyncSynced)
	path := "/associations/" + strconv.FormatInt(id, 10)

	confirm := g.page(t, path+"/delete")
	rev := confirm.Find(`[data-testid="confirm-delete"]`).Closest("form").Find(`input[name="revision"]`).AttrOr("value", "")
	list := g.post(t, path+"/delete", url.Values{"revision": {rev}}, "/associations")
	if got := docText(list, "flash"); got != "Deleted “Room 9”. It is being removed from Intune." {
		t.Errorf("flash = %q", got)
	}
	eventually(t, "the DELETE to settle", func() bool {
		return strings.Contains(do(t, g.admin, "GET", g.url+path+"/sync", nil, map[string]string{"HX-Request": "true"}).body, `data-delete-state="done"`)
	})
	if got := docText(g.page(t, path), "sync-note"); got != "Removed from Intune." {
		t.Errorf("sync note = %q", got)
	}
	if n := len(g.emu.Objects()); n != 0 {
		t.Errorf("Intune still holds %d objects", n)
	}
	// A repeated POST sends nothing more.
	g.post(t, path+"/delete", url.Values{"revision": {rev}}, path)
	time.Sleep(100 * time.Millisecond)
	if d := g.requests("DELETE"); len(d) != 1 {
		t.Errorf("Graph received %d DELETEs, want 1", len(d))
	}
}

// A field changed in Intune and here to different values: the page shows both, nothing is
// sent until the admin chooses, and each choice does what it says in Graph.
func TestChangedInIntuneChoicesReachGraph(t *testing.T) {
	g := newGraphEnv(t)
	for _, choice := range []string{"push-mine", "keep-intune"} {
		t.Run(choice, func(t *testing.T) {
			name := "Room " + choice
			id := g.create(t, url.Values{"displayName": {name}, "description": {"Old"}, "version": {"1"}})
			g.waitState(t, id, store.SyncSynced)
			path := "/associations/" + strconv.FormatInt(id, 10)
			a, err := g.store.GetAssociation(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.emu.ChangeObject(a.GraphID, graph.Patch{Description: ptr("Theirs")}); err != nil {
				t.Fatal(err)
			}
			patches := len(g.requests("PATCH"))
			h := do(t, g.admin, "POST", g.url+path, url.Values{"displayName": {name}, "description": {"Mine"}, "version": {"1"},
				"revision": {strconv.FormatInt(a.Revision, 10)}}, nil)
			if h.status != http.StatusSeeOther {
				t.Fatalf("edit = %d", h.status)
			}
			g.waitState(t, id, store.SyncChanged)
			if n := len(g.requests("PATCH")); n != patches {
				t.Fatalf("a PATCH was sent for a conflict (%d)", n-patches)
			}
			d := g.page(t, path)
			if got := text(d.Find(`[data-testid="drift-mine"] [data-testid="drift-value"]`)); got != "Mine" {
				t.Errorf("in cartclass = %q", got)
			}
			if got := text(d.Find(`[data-testid="drift-intune"] [data-testid="drift-value"]`)); got != "Theirs" {
				t.Errorf("in Intune = %q", got)
			}
			rev := d.Find(`[data-testid="`+choice+`"]`).Closest("form").Find(`input[name="revision"]`).AttrOr("value", "")
			g.post(t, path+"/"+choice, url.Values{"revision": {rev}}, path)
			g.waitState(t, id, store.SyncSynced)

			want := map[string]string{"push-mine": "Mine", "keep-intune": "Theirs"}[choice]
			if got := docText(g.page(t, path), "prop-description"); got != want {
				t.Errorf("cartclass holds %q, want %q", got, want)
			}
			for _, o := range g.emu.Objects() {
				if o.ID == a.GraphID && o.Description != want {
					t.Errorf("Intune holds %q, want %q", o.Description, want)
				}
			}
			sent := len(g.requests("PATCH")) - patches
			if wantSent := map[string]int{"push-mine": 1, "keep-intune": 0}[choice]; sent != wantSent {
				t.Errorf("%d PATCHes sent, want %d", sent, wantSent)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
