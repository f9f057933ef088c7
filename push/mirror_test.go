package push_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
	"golang.org/x/oauth2"
)

// These tests run the Worker's read of Intune (read.go) and the GET before each PATCH
// against the emulator, with a real store: what Graph received (emu.Requests) and what the
// store holds afterwards.

// collection is the path of the listing (no id): a GET on it is one list page.
const collection = emulator.BasePath + "/deviceManagement/cartToClassAssociations"

var admin = store.Actor{Subject: "sub-admin", Name: "Ada Admin"}

// newWrappedHarness is newHarness with wrap around the emulator, for answers the emulator
// cannot give on its own (a malformed object in a page, a signal when a request arrives).
func newWrappedHarness(t *testing.T, emuOpts []emulator.Option, wrap func(http.Handler) http.Handler, opts ...push.Option) *harness {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "cartclass.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	emu := emulator.New(emuOpts...)
	srv := httptest.NewServer(wrap(emu))
	t.Cleanup(srv.Close)
	gc, err := graph.New(srv.URL+emulator.BasePath, graph.WithTokenSource(appToken))
	if err != nil {
		t.Fatal(err)
	}
	w := push.New(st, gc, appTokens{appToken}, append(fastOptions(t), opts...)...)
	return &harness{t: t, st: st, emu: emu, srv: srv, gc: gc, w: w}
}

// readNow asks for a read of Intune as an admin pressing Refresh would (so no backoff
// after a failed read applies), waits until it has finished and returns the status.
func (h *harness) readNow() push.ReadStatus {
	h.t.Helper()
	h.waitFor("a read to be accepted", func() bool { return h.w.RequestRead(admin.Subject) })
	h.waitFor("the read to finish", func() bool { return !h.w.ReadStatus().Running })
	s := h.w.ReadStatus()
	if !s.HaveLast {
		h.t.Fatal("a read finished but ReadStatus has no last read")
	}
	return s
}

// all lists every association the filter selects, on one page.
func (h *harness) all(f store.ListFilter) []store.Association {
	h.t.Helper()
	f.PerPage = 100000
	p, err := h.st.ListAssociations(context.Background(), f)
	if err != nil {
		h.t.Fatal(err)
	}
	return p.Items
}

// byGraphID finds the association linked to the Graph object id among all (live and
// deleted) associations.
func (h *harness) byGraphID(id string) []store.Association {
	h.t.Helper()
	var out []store.Association
	for _, a := range append(h.all(store.ListFilter{}), h.all(store.ListFilter{Deleted: true})...) {
		if strings.EqualFold(a.GraphID, id) {
			out = append(out, a)
		}
	}
	return out
}

// writes are the requests that would change Intune.
func (h *harness) writes() []emulator.Request {
	return h.requests(http.MethodPost, http.MethodPatch, http.MethodDelete)
}

// listPages are the GETs of list pages; listings those that began a listing (no skiptoken).
func listPages(reqs []emulator.Request) (pages, listings int) {
	for _, r := range reqs {
		if r.Method == http.MethodGet && strings.TrimSuffix(r.Path, "/") == collection {
			pages++
			if r.Query == "" {
				listings++
			}
		}
	}
	return pages, listings
}

// itemRequests are the requests to one object's URL.
func itemRequests(reqs []emulator.Request, graphID string) []emulator.Request {
	var out []emulator.Request
	for _, r := range reqs {
		if strings.HasSuffix(strings.ToLower(r.Path), "/"+strings.ToLower(graphID)) {
			out = append(out, r)
		}
	}
	return out
}

func strp(s string) *string { return &s }

// closed is a waitFor condition: ch is closed.
func closed(ch <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// remoteFields is what Graph holds for o, as store fields.
func remoteFields(o graph.Association) store.Fields {
	return store.Fields{DisplayName: o.DisplayName, Description: o.Description, Version: o.Version,
		DeviceCartIDs: o.DeviceCartIDs, ClassroomIDs: o.ClassroomIDs}
}

// graphObject is the object Graph holds with id, or fails.
func (h *harness) graphObject(id string) graph.Association {
	h.t.Helper()
	for _, o := range h.emu.Objects() {
		if strings.EqualFold(o.ID, id) {
			return o
		}
	}
	h.t.Fatalf("Graph holds no object %s", id)
	return graph.Association{}
}

// putObjects creates n objects in Intune "as someone else", named prefix-000 onwards.
func putObjects(emu *emulator.Emulator, n int, prefix string) []graph.Association {
	out := make([]graph.Association, 0, n)
	for i := range n {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		out = append(out, emu.PutObject(graph.Association{
			DisplayName: "Cart set " + name, Description: "Made in PowerShell for " + name, Version: 7,
			DeviceCartIDs: []string{"cart-" + name}, ClassroomIDs: []string{"room-" + name, "room-shared"},
		}))
	}
	return out
}

// syncBuffer is a log sink a test can read while the worker writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logTo is a logger writing to the test's output and to buf.
func logTo(t *testing.T, buf *syncBuffer) push.Option {
	return push.WithLogger(slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), buf), &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// quiet asserts that no request reaches Graph for a while: long enough for an unpaused
// worker, which sends within milliseconds of a Kick, to have sent.
func (h *harness) quiet(what string) {
	h.t.Helper()
	before := len(h.emu.Requests())
	h.w.Kick()
	time.Sleep(150 * time.Millisecond)
	if reqs := h.emu.Requests(); len(reqs) != before {
		h.t.Fatalf("%s: %d requests reached Graph, want none: %+v", what, len(reqs)-before, reqs[before:])
	}
}

// Import of 250 objects over pages of 20: every one becomes a local association, synced,
// created by "Imported from Intune", searchable; nothing is written to Graph; a second
// read changes nothing.
func TestReadImportsEverythingInIntune(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []emulator.Option{emulator.WithPageSize(20)}, nil)
	remote := putObjects(h.emu, 250, "imp")
	h.start()
	rs := h.readNow()
	if !rs.Last.Complete || rs.Last.Error != "" || rs.Last.Objects != 250 || !rs.HaveLast {
		t.Fatalf("ReadStatus after the import = %+v", rs)
	}
	if rs.Last.StartedAt.IsZero() || rs.Last.FinishedAt.Before(rs.Last.StartedAt) {
		t.Fatalf("read times %v → %v", rs.Last.StartedAt, rs.Last.FinishedAt)
	}
	if w := h.writes(); len(w) != 0 {
		t.Fatalf("an import sent %d writes to Graph: %+v", len(w), w)
	}
	pages, listings := listPages(h.emu.Requests())
	if pages != 13 || listings != 1 || pages != len(h.emu.Requests()) {
		t.Fatalf("%d list pages in %d listings (of %d requests), want 13 pages (250 / 20) in 1", pages, listings, len(h.emu.Requests()))
	}

	local := h.all(store.ListFilter{})
	if len(local) != 250 {
		t.Fatalf("%d local associations after importing 250", len(local))
	}
	byID := map[string]store.Association{}
	for _, a := range local {
		byID[a.GraphID] = a
	}
	for _, o := range remote {
		a, ok := byID[o.ID]
		if !ok {
			t.Fatalf("object %s (%s) not imported", o.ID, o.DisplayName)
		}
		if !a.Fields.Equal(remoteFields(o)) || a.Sync.State != store.SyncSynced || a.Revision != 1 ||
			a.Sync.SyncedRevision != 1 || a.CreatedBy != store.ImportedBy || a.UpdatedBy != store.ImportedBy ||
			a.CreatedBy.Name != "Imported from Intune" || !a.GraphCreatedAt.Equal(o.CreatedDateTime) {
			t.Fatalf("imported %s: %+v, want %+v synced at revision 1 by %q", o.ID, a, o, store.ImportedBy.Name)
		}
	}
	if s, err := h.w.Stats(context.Background()); err != nil || s.Depth != 0 {
		t.Fatalf("queue after an import: %+v, %v", s, err)
	}
	// Searchable: by a classroom id only one of them has, and by one they all share.
	if got := h.all(store.ListFilter{Query: "room-imp-137"}); len(got) != 1 || got[0].GraphID != remote[137].ID {
		t.Fatalf("search for room-imp-137 found %d", len(got))
	}
	if got := h.all(store.ListFilter{Query: "powershell"}); len(got) != 250 {
		t.Fatalf("search for powershell found %d, want 250", len(got))
	}

	// A second read finds everything in step: no new revision, no new association, no write.
	rs2 := h.readNow()
	if !rs2.Last.Complete || rs2.Last.Objects != 250 || !rs2.Last.StartedAt.After(rs.Last.StartedAt) {
		t.Fatalf("second ReadStatus = %+v", rs2)
	}
	again := h.all(store.ListFilter{})
	if len(again) != 250 {
		t.Fatalf("%d local associations after a second read", len(again))
	}
	for _, a := range again {
		if before := byID[a.GraphID]; a.Revision != 1 || !a.UpdatedAt.Equal(before.UpdatedAt) || a.Sync.State != store.SyncSynced {
			t.Fatalf("second read changed %s: %+v, was %+v", a.GraphID, a, before)
		}
	}
	if pages, listings := listPages(h.emu.Requests()); pages != 26 || listings != 2 || len(h.writes()) != 0 {
		t.Fatalf("after two reads: %d pages in %d listings, %d writes", pages, listings, len(h.writes()))
	}
}

// A listing that fails on its third page proves nothing gone: objects removed in Intune
// stay synced until a complete read, which marks them deleted in Intune without sending
// anything for them.
func TestReadFailingMidwayDeletesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault emulator.Fault
	}{
		{"503", emulator.Fault{Method: http.MethodGet, Status: http.StatusServiceUnavailable, Count: 1}},
		// A 200 whose body is an error object, not a page: garbage for a listing.
		{"garbage", emulator.Fault{Method: http.MethodGet, Status: http.StatusOK, Count: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil, nil) // pages of 5
			remote := putObjects(h.emu, 20, "page")
			h.start()
			if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 20 {
				t.Fatalf("import: %+v", rs.Last)
			}
			gone := []graph.Association{remote[2], remote[17]} // on pages 1 and 4
			for _, o := range gone {
				if err := h.emu.RemoveObject(o.ID); err != nil {
					t.Fatal(err)
				}
			}
			before := len(h.emu.Requests())
			// The first two GETs pass; the third, page 3 of the listing, fails.
			h.emu.Inject(emulator.Fault{Method: http.MethodGet, Count: 2})
			h.emu.Inject(tc.fault)
			rs := h.readNow()
			if rs.Last.Complete || rs.Last.Error == "" || rs.Last.Objects != 10 {
				t.Fatalf("read failing on page 3: %+v, want incomplete with an error after 10 objects", rs.Last)
			}
			reqs := h.emu.Requests()[before:]
			if len(reqs) != 3 || reqs[2].Status != tc.fault.Status || !strings.Contains(reqs[2].Query, "skiptoken=") ||
				reqs[0].Query != "" || reqs[1].Query == reqs[2].Query {
				t.Fatalf("requests of the failed read: %+v, want pages 1, 2 and the failing page 3", reqs)
			}
			for _, o := range gone {
				a := h.byGraphID(o.ID)
				if len(a) != 1 || a[0].Sync.State != store.SyncSynced {
					t.Fatalf("after an incomplete read, %s is %+v, want still synced", o.ID, a)
				}
			}

			rs = h.readNow()
			if !rs.Last.Complete || rs.Last.Error != "" || rs.Last.Objects != 18 {
				t.Fatalf("complete read: %+v", rs.Last)
			}
			for _, o := range gone {
				a := h.byGraphID(o.ID)
				if len(a) != 1 || a[0].Sync.State != store.SyncDeleted || a[0].Sync.Error == nil || !a[0].DeletedAt.IsZero() {
					t.Fatalf("after a complete read, %s is %+v, want deleted in Intune", o.ID, a)
				}
				// One GET confirms what the listing no longer holds; nothing else is sent.
				if r := itemRequests(h.emu.Requests(), o.ID); len(r) != 1 || r[0].Method != http.MethodGet || r[0].Status != http.StatusNotFound {
					t.Fatalf("requests for %s, removed in Intune: %+v; want one GET answered 404", o.ID, r)
				}
			}
			h.quiet("deleted in Intune is parked")
			if w := h.writes(); len(w) != 0 {
				t.Fatalf("writes: %+v", w)
			}
			if n := len(h.all(store.ListFilter{NotSynced: true})); n != 2 {
				t.Fatalf("%d not synced, want the 2 deleted in Intune", n)
			}
		})
	}
}

// Drift taken: a change made in Intune becomes the local value, as a revision by "Intune",
// and nothing is sent.
func TestReadTakesDrift(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()
	a = h.get(a.ID)
	if _, err := h.emu.ChangeObject(a.GraphID, graph.Patch{Description: strp("edited in PowerShell")}); err != nil {
		t.Fatal(err)
	}
	if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 1 {
		t.Fatalf("read: %+v", rs.Last)
	}
	got := h.get(a.ID)
	want := a.Fields
	want.Description = "edited in PowerShell"
	if !got.Fields.Equal(want) || got.Revision != a.Revision+1 || got.UpdatedBy != store.IntuneActor ||
		got.Sync.State != store.SyncSynced || got.Sync.SyncedRevision != got.Revision {
		t.Fatalf("after drift: %+v, want %+v at revision %d by Intune, synced", got, want, a.Revision+1)
	}
	if got.CreatedBy.Subject != "sub-1" {
		t.Fatalf("created by %+v, want the original author", got.CreatedBy)
	}
	if f := h.all(store.ListFilter{Query: "powershell"}); len(f) != 1 {
		t.Fatalf("search for the value taken found %d", len(f))
	}
	h.quiet("after taking Intune's change")
	if w := h.writes(); len(w) != 1 || w[0].Method != http.MethodPost {
		t.Fatalf("writes %+v, want only the first POST", w)
	}
	// Read again: in step, nothing new.
	h.readNow()
	if again := h.get(a.ID); again.Revision != got.Revision {
		t.Fatalf("second read made revision %d", again.Revision)
	}
}

// editWhilePaused saves change to id and has the GET before its PATCH answer 403, so the
// worker pauses pushing (a missing permission) while reads go on: the edit stays queued
// through a read. It returns once the attempt is recorded (the item is no longer leased).
func (h *harness) editWhilePaused(id int64, change func(*store.Fields)) {
	h.t.Helper()
	h.emu.Inject(emulator.Fault{Method: http.MethodGet, Status: http.StatusForbidden, Code: "Forbidden", Message: "Missing scope.", Count: 1})
	h.edit(id, change)
	h.waitFor("the permission pause", func() bool {
		e := h.get(id).Sync.Error
		return h.w.Status().Reason == push.ReasonPermission && e != nil && e.Status == http.StatusForbidden
	})
}

// Merge: displayName edited locally (queued) while description changed in Intune: the read
// takes Intune's description and the one PATCH carries displayName alone.
func TestReadMergesChangesOnDifferentFields(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil, push.WithPermissionRecheck(time.Hour))
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()
	gid := h.get(a.ID).GraphID
	h.editWhilePaused(a.ID, func(f *store.Fields) { f.DisplayName = "alpha renamed here" })
	if _, err := h.emu.ChangeObject(gid, graph.Patch{Description: strp("described in Intune")}); err != nil {
		t.Fatal(err)
	}

	// Reads go on while pushing is paused for a permission.
	if rs := h.readNow(); !rs.Last.Complete {
		t.Fatalf("read during a permission pause: %+v", rs.Last)
	}
	mid := h.get(a.ID)
	if mid.DisplayName != "alpha renamed here" || mid.Description != "described in Intune" || mid.Sync.State != store.SyncWaiting {
		t.Fatalf("after the read: %q / %q, %s; want both changes, waiting", mid.DisplayName, mid.Description, mid.Sync.State)
	}
	if mid.UpdatedBy.Subject != "sub-1" {
		t.Fatalf("the edit to push is now by %+v, want its author", mid.UpdatedBy)
	}
	if n := len(h.requests(http.MethodPatch)); n != 0 {
		t.Fatalf("%d PATCHes while paused", n)
	}

	h.w.Resume()
	h.drained()
	patches := h.requests(http.MethodPatch)
	if len(patches) != 1 {
		t.Fatalf("PATCHes = %d, want 1", len(patches))
	}
	m, keys := bodyKeys(t, patches[0])
	if !slices.Equal(keys, []string{"@odata.type", "displayName"}) || m["displayName"] != "alpha renamed here" {
		t.Fatalf("PATCH body %s, want displayName only", patches[0].Body)
	}
	o := h.graphObject(gid)
	if o.DisplayName != "alpha renamed here" || o.Description != "described in Intune" {
		t.Fatalf("Graph holds %q / %q, want both changes", o.DisplayName, o.Description)
	}
	h.assertInGraph(a.ID)
}

// The same field changed on both sides: "Changed in Intune", parked with both values;
// Keep Intune's version sends nothing; Push my version sends one PATCH.
func TestReadParksSameFieldConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil, push.WithPermissionRecheck(time.Hour))
	h.start()
	keep := h.create("keep", "sub-1")
	mine := h.create("mine", "sub-1")
	h.drained()
	h.editWhilePaused(keep.ID, func(f *store.Fields) { f.Description = fmt.Sprintf("cartclass's description of %d", keep.ID) })
	// Paused: this edit is not even claimed.
	h.edit(mine.ID, func(f *store.Fields) { f.Description = fmt.Sprintf("cartclass's description of %d", mine.ID) })
	for _, id := range []int64{keep.ID, mine.ID} {
		if _, err := h.emu.ChangeObject(h.get(id).GraphID, graph.Patch{Description: strp(fmt.Sprintf("Intune's description of %d", id))}); err != nil {
			t.Fatal(err)
		}
	}
	if rs := h.readNow(); !rs.Last.Complete {
		t.Fatalf("read: %+v", rs.Last)
	}
	for _, id := range []int64{keep.ID, mine.ID} {
		a := h.get(id)
		if a.Sync.State != store.SyncChanged || !slices.Equal(a.Sync.ConflictFields, []string{"description"}) ||
			a.Sync.RemoteFields == nil || a.Sync.RemoteFields.Description != fmt.Sprintf("Intune's description of %d", id) ||
			a.Description != fmt.Sprintf("cartclass's description of %d", id) {
			t.Fatalf("association %d after the read: %+v (remote %+v)", id, a.Sync, a.Sync.RemoteFields)
		}
	}
	if n := len(h.all(store.ListFilter{NotSynced: true})); n != 2 {
		t.Fatalf("NotSynced lists %d, want both changed in Intune", n)
	}
	h.w.Resume()
	h.quiet("changed in Intune is parked")
	if n := len(h.requests(http.MethodPatch)); n != 0 {
		t.Fatalf("%d PATCHes for conflicts", n)
	}

	// Keep Intune's version: Intune's value locally, no request.
	cur := h.get(keep.ID)
	got, err := h.st.KeepIntune(context.Background(), keep.ID, cur.Revision, admin)
	if err != nil {
		t.Fatal(err)
	}
	if got.Description != fmt.Sprintf("Intune's description of %d", keep.ID) || got.Sync.State != store.SyncSynced ||
		got.Revision != cur.Revision+1 || got.UpdatedBy != admin || got.Sync.RemoteFields != nil {
		t.Fatalf("after Keep Intune's version: %+v", got)
	}
	h.quiet("Keep Intune's version")

	// Push my version: exactly one PATCH, of the description, and Graph holds it.
	cur = h.get(mine.ID)
	if _, err := h.st.PushMine(context.Background(), mine.ID, cur.Revision, admin); err != nil {
		t.Fatal(err)
	}
	h.w.Kick()
	h.drained()
	patches := h.requests(http.MethodPatch)
	if len(patches) != 1 || !strings.HasSuffix(patches[0].Path, "/"+cur.GraphID) {
		t.Fatalf("PATCHes %+v, want one for association %d", patches, mine.ID)
	}
	m, keys := bodyKeys(t, patches[0])
	if !slices.Equal(keys, []string{"@odata.type", "description"}) || m["description"] != fmt.Sprintf("cartclass's description of %d", mine.ID) {
		t.Fatalf("PATCH body %s", patches[0].Body)
	}
	h.assertInGraph(keep.ID, mine.ID)
	if _, err := h.st.PushMine(context.Background(), mine.ID, h.get(mine.ID).Revision, admin); !errors.Is(err, store.ErrUnchanged) {
		t.Fatalf("a repeated Push my version: %v, want ErrUnchanged", err)
	}
	h.quiet("a repeated Push my version")
}

// With scheduled reads off, the GET before each PATCH reconciles: Intune's change to
// another field is taken and only the admin's field is sent; Intune's change to the same
// field parks the association as changed in Intune, with no PATCH.
func TestGetBeforePatch(t *testing.T) {
	t.Parallel()
	var outcomes outcomeLog
	h := newHarness(t, nil, nil, push.WithOutcomes(outcomes.add))
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()
	gid := h.get(a.ID).GraphID

	if _, err := h.emu.ChangeObject(gid, graph.Patch{Description: strp("described in Intune")}); err != nil {
		t.Fatal(err)
	}
	before := len(h.emu.Requests())
	h.edit(a.ID, func(f *store.Fields) { f.DisplayName = "renamed in cartclass" })
	h.drained()
	reqs := h.emu.Requests()[before:]
	if len(reqs) != 2 || reqs[0].Method != http.MethodGet || reqs[1].Method != http.MethodPatch ||
		!strings.HasSuffix(reqs[0].Path, "/"+gid) {
		t.Fatalf("requests for the edit: %+v, want GET then PATCH of %s", reqs, gid)
	}
	m, keys := bodyKeys(t, reqs[1])
	if !slices.Equal(keys, []string{"@odata.type", "displayName"}) || m["displayName"] != "renamed in cartclass" {
		t.Fatalf("PATCH body %s, want displayName only", reqs[1].Body)
	}
	got := h.get(a.ID)
	if got.Description != "described in Intune" || got.DisplayName != "renamed in cartclass" {
		t.Fatalf("local after the merge: %q / %q", got.DisplayName, got.Description)
	}
	h.assertInGraph(a.ID)

	// The same field, to another value: parked, nothing sent.
	if _, err := h.emu.ChangeObject(gid, graph.Patch{Description: strp("Intune's second thought")}); err != nil {
		t.Fatal(err)
	}
	before = len(h.emu.Requests())
	h.edit(a.ID, func(f *store.Fields) { f.Description = "cartclass's second thought" })
	h.waitFor("changed in Intune", func() bool { return h.get(a.ID).Sync.State == store.SyncChanged })
	h.quiet("a conflict found by the GET")
	// What cartclass_pushes_total counts: the create and the merged edit delivered, the
	// conflicting edit parked.
	if got := outcomes.all(); !slices.Equal(got, []string{"delivered", "delivered", "conflict"}) {
		t.Errorf("push outcomes = %v, want delivered, delivered, conflict", got)
	}
	reqs = h.emu.Requests()[before:]
	if len(reqs) != 1 || reqs[0].Method != http.MethodGet {
		t.Fatalf("requests for the conflicting edit: %+v, want the GET alone", reqs)
	}
	got = h.get(a.ID)
	if !slices.Equal(got.Sync.ConflictFields, []string{"description"}) || got.Sync.RemoteFields == nil ||
		got.Sync.RemoteFields.Description != "Intune's second thought" || got.Description != "cartclass's second thought" {
		t.Fatalf("parked: %+v (remote %+v), local %q", got.Sync, got.Sync.RemoteFields, got.Description)
	}
	if o := h.graphObject(gid); o.Description != "Intune's second thought" {
		t.Fatalf("Graph's description overwritten: %q", o.Description)
	}
	if pages, _ := listPages(h.emu.Requests()); pages != 0 {
		t.Fatalf("%d list pages with reads off", pages)
	}
}

// Delete from cartclass, every way: synced, never pushed, create in flight, already gone
// in Intune; and Restore after the delete is done.
func TestDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("synced, then restore", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.start()
		a := h.create("alpha", "sub-1")
		h.drained()
		a = h.get(a.ID)
		del, err := h.st.DeleteAssociation(ctx, a.ID, a.Revision, admin)
		if err != nil {
			t.Fatal(err)
		}
		if del.DeletedAt.IsZero() || del.DeletedBy != admin || len(h.all(store.ListFilter{})) != 0 {
			t.Fatalf("deleted: %+v; still listed: %d", del, len(h.all(store.ListFilter{})))
		}
		h.w.Kick()
		h.waitFor("the DELETE to be done", func() bool { return !h.get(a.ID).Sync.DeletePending })
		dels := h.requests(http.MethodDelete)
		if len(dels) != 1 || dels[0].Status != http.StatusNoContent || !strings.HasSuffix(dels[0].Path, "/"+a.GraphID) {
			t.Fatalf("DELETEs %+v, want one of %s answered 204", dels, a.GraphID)
		}
		if n := len(h.emu.Objects()); n != 0 {
			t.Fatalf("Graph still holds %d objects", n)
		}
		if d := h.all(store.ListFilter{Deleted: true}); len(d) != 1 || d[0].ID != a.ID || d[0].Sync.DeletePending {
			t.Fatalf("Deleted filter: %+v", d)
		}
		if _, err := h.st.DeleteAssociation(ctx, a.ID, h.get(a.ID).Revision, admin); !errors.Is(err, store.ErrUnchanged) {
			t.Fatalf("a repeated delete: %v, want ErrUnchanged", err)
		}
		h.quiet("a repeated delete")

		// Restore: one new POST, a new object.
		if _, err := h.st.RestoreAssociation(ctx, a.ID, admin); err != nil {
			t.Fatal(err)
		}
		h.w.Kick()
		h.drained()
		posts := h.requests(http.MethodPost)
		if len(posts) != 2 {
			t.Fatalf("POSTs = %d, want the first and one for the restore", len(posts))
		}
		got := h.get(a.ID)
		if got.GraphID == "" || got.GraphID == a.GraphID || !got.DeletedAt.IsZero() {
			t.Fatalf("restored: graph id %q (was %q), deleted at %v", got.GraphID, a.GraphID, got.DeletedAt)
		}
		h.assertInGraph(a.ID)
		if n := len(h.requests(http.MethodDelete)); n != 1 {
			t.Fatalf("DELETEs = %d after the restore", n)
		}
	})

	t.Run("never pushed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		a := h.create("alpha", "sub-1") // the worker is not running
		if _, err := h.st.DeleteAssociation(ctx, a.ID, a.Revision, admin); err != nil {
			t.Fatal(err)
		}
		if got := h.get(a.ID); got.Sync.DeletePending {
			t.Fatalf("a never-pushed delete is pending: %+v", got.Sync)
		}
		h.start()
		h.quiet("a never-pushed delete")
		if n := len(h.emu.Requests()); n != 0 {
			t.Fatalf("%d requests for a never-pushed association", n)
		}
	})

	t.Run("create in flight", func(t *testing.T) {
		t.Parallel()
		posted := make(chan struct{})
		var once sync.Once
		wrap := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					once.Do(func() { close(posted) })
				}
				next.ServeHTTP(w, r)
			})
		}
		h := newWrappedHarness(t, nil, wrap)
		h.emu.Inject(emulator.Fault{Method: http.MethodPost, Latency: 300 * time.Millisecond, Count: 1})
		h.start()
		a := h.create("alpha", "sub-1")
		h.waitFor("the POST to reach Graph", closed(posted)) // it waits there 300 ms
		if _, err := h.st.DeleteAssociation(ctx, a.ID, a.Revision, admin); err != nil {
			t.Fatal(err)
		}
		if got := h.get(a.ID); !got.Sync.DeletePending {
			t.Fatalf("delete during the create is not pending: %+v", got.Sync)
		}
		h.waitFor("the DELETE to be done", func() bool { return !h.get(a.ID).Sync.DeletePending })
		reqs := h.emu.Requests()
		if len(reqs) != 2 || reqs[0].Method != http.MethodPost || reqs[0].Status != http.StatusCreated ||
			reqs[1].Method != http.MethodDelete || reqs[1].Status != http.StatusNoContent {
			t.Fatalf("requests %+v, want POST 201 then DELETE 204", reqs)
		}
		if n := len(h.emu.Objects()); n != 0 {
			t.Fatalf("Graph holds %d objects, want none (no orphan)", n)
		}
		h.quiet("after the delete")
	})

	t.Run("already gone in Intune", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.start()
		a := h.create("alpha", "sub-1")
		h.drained()
		a = h.get(a.ID)
		if err := h.emu.RemoveObject(a.GraphID); err != nil {
			t.Fatal(err)
		}
		if _, err := h.st.DeleteAssociation(ctx, a.ID, a.Revision, admin); err != nil {
			t.Fatal(err)
		}
		h.w.Kick()
		h.waitFor("the DELETE to be done", func() bool { return !h.get(a.ID).Sync.DeletePending })
		dels := h.requests(http.MethodDelete)
		if len(dels) != 1 || dels[0].Status != http.StatusNotFound {
			t.Fatalf("DELETEs %+v, want one answered 404", dels)
		}
		got := h.get(a.ID)
		if got.Sync.State == store.SyncFailed || got.Sync.Error != nil || got.DeletedAt.IsZero() {
			t.Fatalf("a delete answered 404: %+v (error %+v), want done", got.Sync, got.Sync.Error)
		}
		h.quiet("a delete answered 404")
	})

	t.Run("restored while the DELETE's answer was lost", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.start()
		a := h.create("alpha", "sub-1")
		h.drained()
		a = h.get(a.ID)
		old := a.GraphID
		// The DELETE removes the object but its answer is lost; every retry meets a 503.
		h.emu.Inject(emulator.Fault{Method: http.MethodDelete, DropAfterApply: true, Count: 1})
		h.emu.Inject(emulator.Fault{Method: http.MethodDelete, Status: http.StatusServiceUnavailable})
		if _, err := h.st.DeleteAssociation(ctx, a.ID, a.Revision, admin); err != nil {
			t.Fatal(err)
		}
		h.w.Kick()
		h.waitFor("the DELETE to reach Graph", func() bool { return len(h.emu.Objects()) == 0 })
		if _, err := h.st.RestoreAssociation(ctx, a.ID, admin); err != nil {
			t.Fatal(err)
		}
		h.emu.ClearFaults()
		h.w.Kick()
		h.waitFor("the restored association to be in Graph again", func() bool {
			got := h.get(a.ID)
			return got.Sync.State == store.SyncSynced && got.GraphID != "" && got.GraphID != old
		})
		if got := h.get(a.ID); !got.DeletedAt.IsZero() || len(h.emu.Objects()) != 1 {
			t.Fatalf("after restore: %+v, %d objects in Graph; want it re-created, once", got, len(h.emu.Objects()))
		}
		h.assertInGraph(a.ID)
	})

	t.Run("refused, then retried", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.start()
		a := h.create("alpha", "sub-1")
		h.drained()
		a = h.get(a.ID)
		h.emu.Inject(emulator.Fault{Method: http.MethodDelete, Status: http.StatusBadRequest, Code: "BadRequest", Count: 1})
		if _, err := h.st.DeleteAssociation(ctx, a.ID, a.Revision, admin); err != nil {
			t.Fatal(err)
		}
		h.w.Kick()
		h.waitFor("the refused DELETE", func() bool { return h.get(a.ID).Sync.State == store.SyncFailed })
		if got := h.get(a.ID); !got.Sync.DeletePending || got.Sync.Error == nil || got.Sync.Error.Status != 400 {
			t.Fatalf("a refused delete: %+v", got.Sync)
		}
		// Retry sends it again; the tombstone is not restored by it.
		if err := h.st.Retry(ctx, a.ID); err != nil {
			t.Fatalf("Retry of a refused delete: %v", err)
		}
		h.w.Kick()
		h.waitFor("the DELETE to be done", func() bool { return !h.get(a.ID).Sync.DeletePending })
		if dels := h.requests(http.MethodDelete); len(dels) != 2 || dels[1].Status != http.StatusNoContent {
			t.Fatalf("DELETEs %+v, want 400 then 204", dels)
		}
		if n := len(h.emu.Objects()); n != 0 || h.get(a.ID).DeletedAt.IsZero() {
			t.Fatalf("after the retried delete: %d objects in Graph, deleted at %v", n, h.get(a.ID).DeletedAt)
		}
	})
}

// 80 creates whose answers are lost (their POSTs did create the objects): each ends in
// Graph exactly once, and one or a few reads of Intune settle them all, not one listing
// per create (the O(N²): ~1,200 pages for 80).
func TestAmbiguousCreatesShareOneRead(t *testing.T) {
	t.Parallel()
	// Pages of 5: 80 objects are 16 pages. A create waiting for a read asks again after a
	// second (30 s by default), not fastOptions' 50 ms: the end of each read expedites
	// them anyway, and constant re-claims would hold leases that make a read skip them.
	h := newHarness(t, nil, nil, push.WithAwaitPoll(time.Second))
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 80})
	// The first listing is slow, so all 80 answers are lost while it runs (like the
	// outage in the issue); it then finds all 80 objects.
	h.emu.Inject(emulator.Fault{Method: http.MethodGet, Latency: 500 * time.Millisecond, Count: 1})
	var ids []int64
	for i := range 80 {
		ids = append(ids, h.create(fmt.Sprint("lost-", i), "sub-1").ID)
	}
	h.start()
	h.drained()
	h.assertInGraph(ids...)
	posts := h.requests(http.MethodPost)
	if len(posts) != 80 {
		t.Fatalf("POSTs = %d, want 80 (none re-sent: every object was adopted)", len(posts))
	}
	for _, p := range posts {
		if !p.Dropped || !p.Applied {
			t.Fatalf("POST %+v, want applied with its answer lost", p)
		}
	}
	pages, listings := listPages(h.emu.Requests())
	if listings > 3 || pages > 3*17 {
		t.Fatalf("%d listings, %d list pages for 80 unanswered creates, want at most 3 reads (≤ 51 pages)", listings, pages)
	}
	t.Logf("80 unanswered creates settled by %d listings (%d pages)", listings, pages)
}

// blockingTokens hands out the app token, but blocks the author subject's token while
// hold is set, so a test can keep that author's item leased (claimed, not yet sent).
type blockingTokens struct {
	subject string
	mu      sync.Mutex
	calls   int
	blockAt int           // the call from which the subject's token source blocks
	release chan struct{} // closed to let blocked calls go on
	blocked chan struct{} // closed when the first call blocks
	once    sync.Once
}

func (b *blockingTokens) TokenSource(ctx context.Context, subject string) (oauth2.TokenSource, error) {
	if subject == b.subject {
		b.mu.Lock()
		b.calls++
		n := b.calls
		b.mu.Unlock()
		if n >= b.blockAt {
			b.once.Do(func() { close(b.blocked) })
			select {
			case <-b.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return appToken, nil
}

// An unanswered create whose item is leased (its worker checking whether a read has
// settled it) while a read lists its object: the read leaves it to that worker, so it must
// not count as the read that settled it; otherwise the worker posts again and Intune gets
// a duplicate.
func TestLeasedUnansweredCreateIsNotSettledByTheReadThatSkippedIt(t *testing.T) {
	t.Parallel()
	tokens := &blockingTokens{subject: "sub-slow", blockAt: 3, release: make(chan struct{}), blocked: make(chan struct{})}
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "cartclass.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	emu := emulator.New()
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	gc, err := graph.New(srv.URL+emulator.BasePath, graph.WithTokenSource(appToken))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, emu: emu, srv: srv, gc: gc, w: push.New(st, gc, tokens, fastOptions(t)...)}
	// Call 1 of the author's token source: the POST, whose answer is lost. Call 2: the
	// next claim, which asks for a read. Call 3 blocks, holding the lease while that
	// read (its first page slowed) lists the object.
	emu.Inject(emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 1})
	emu.Inject(emulator.Fault{Method: http.MethodGet, Latency: 400 * time.Millisecond, Count: 1})
	a := h.create("alpha", "sub-slow")
	h.start()
	h.waitFor("the blocked claim", closed(tokens.blocked))
	h.waitFor("the read to finish", func() bool {
		s := h.w.ReadStatus()
		return s.HaveLast && !s.Running
	})
	close(tokens.release)
	h.drained()
	if n := len(h.requests(http.MethodPost)); n != 1 {
		t.Fatalf("POSTs = %d, want 1 (the object the lost answer made is adopted)", n)
	}
	h.assertInGraph(a.ID)
}

// A 429 with Retry-After on a list page pauses pushes too, and a 429 on a push pauses reads.
func TestThrottledReadPausesWrites(t *testing.T) {
	t.Parallel()
	t.Run("429 on a read", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.emu.Inject(emulator.Fault{Method: http.MethodGet, Status: http.StatusTooManyRequests, RetryAfter: "0.5", Count: 1})
		h.start()
		if !h.w.RequestRead(admin.Subject) {
			t.Fatal("RequestRead refused with no read running")
		}
		h.waitFor("the throttle pause", func() bool { return h.w.Status().Reason == push.ReasonThrottled })
		st := h.w.Status()
		if !st.Paused || st.Until.IsZero() {
			t.Fatalf("Status = %+v", st)
		}
		a := h.create("alpha", "sub-1")
		// The throttled read is tried again by itself once the pause is over.
		h.waitFor("the read to be tried again", func() bool { rs := h.w.ReadStatus(); return !rs.Running && rs.Last.Complete })
		h.drained()
		var t429 time.Time
		for _, r := range h.emu.Requests() {
			if r.Status == http.StatusTooManyRequests {
				t429 = r.Time
			}
		}
		posts := h.requests(http.MethodPost)
		if t429.IsZero() || len(posts) != 1 {
			t.Fatalf("requests %+v", h.emu.Requests())
		}
		if d := posts[0].Time.Sub(t429); d < 500*time.Millisecond {
			t.Fatalf("POST %v after the read's 429, before its Retry-After of 0.5 s", d)
		}
		for _, r := range h.requests(http.MethodGet) {
			if d := r.Time.Sub(t429); d > 0 && d < 500*time.Millisecond {
				t.Fatalf("the read was tried again %v after its 429, before its Retry-After of 0.5 s", d)
			}
		}
		h.assertInGraph(a.ID)
		if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 1 {
			t.Fatalf("read after the pause: %+v", rs.Last)
		}
	})
	t.Run("429 on a push", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.emu.Inject(emulator.Fault{Method: http.MethodPost, Status: http.StatusTooManyRequests, RetryAfter: "0.5", Count: 1})
		h.start()
		a := h.create("alpha", "sub-1")
		h.waitFor("the throttle pause", func() bool { return h.w.Status().Reason == push.ReasonThrottled })
		rs := h.readNow()
		if !rs.Last.Complete {
			t.Fatalf("read: %+v", rs.Last)
		}
		reqs := h.emu.Requests()
		t429 := reqs[0].Time
		if reqs[0].Status != http.StatusTooManyRequests {
			t.Fatalf("first request %+v, want the 429", reqs[0])
		}
		for _, r := range reqs[1:] {
			if d := r.Time.Sub(t429); d < 500*time.Millisecond {
				t.Fatalf("%s %s %v after a push's 429, before its Retry-After of 0.5 s", r.Method, r.Path, d)
			}
		}
		h.drained()
		h.assertInGraph(a.ID)
	})
}

// corruptObject rewrites, in every list page, the object with id (once known) so that prop
// has a value of the wrong type.
type corruptObject struct {
	mu   sync.Mutex
	id   string
	prop string
	val  any
}

func (c *corruptObject) set(id, prop string, val any) {
	c.mu.Lock()
	c.id, c.prop, c.val = id, prop, val
	c.mu.Unlock()
}

func (c *corruptObject) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		id, prop, val := c.id, c.prop, c.val
		c.mu.Unlock()
		if id == "" || r.Method != http.MethodGet || strings.TrimSuffix(r.URL.Path, "/") != collection {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var page map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(body, &page) == nil {
			if vals, ok := page["value"].([]any); ok {
				for _, v := range vals {
					if o, ok := v.(map[string]any); ok && o["id"] == id {
						o[prop] = val
					}
				}
				body, _ = json.Marshal(page)
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// Garbage in a listing: an object with a property of the wrong type is skipped and logged,
// the rest imported; it is never taken for deleted. An object whose id a local tombstone
// holds is not imported again.
func TestReadSkipsGarbageAndTombstones(t *testing.T) {
	t.Parallel()
	t.Run("wrong type", func(t *testing.T) {
		t.Parallel()
		var logs syncBuffer
		bad := &corruptObject{}
		h := newWrappedHarness(t, nil, bad.wrap, logTo(t, &logs))
		remote := putObjects(h.emu, 6, "odd")
		bad.set(remote[3].ID, "deviceCartIds", "cart-1, cart-2") // a string, not a collection
		h.start()
		rs := h.readNow()
		if !rs.Last.Complete || rs.Last.Objects != 5 {
			t.Fatalf("read with one malformed object: %+v", rs.Last)
		}
		local := h.all(store.ListFilter{})
		if len(local) != 5 {
			t.Fatalf("%d imported, want the 5 good ones", len(local))
		}
		if got := h.byGraphID(remote[3].ID); len(got) != 0 {
			t.Fatalf("the malformed object was imported: %+v", got)
		}
		if n := strings.Count(logs.String(), "graph_read_object_skipped graph_id="+remote[3].ID); n != 1 {
			t.Fatalf("skip logged %d times, want once:\n%s", n, logs.String())
		}

		// Readable again: imported now. Malformed again later: skipped, not deleted.
		bad.set("", "", nil)
		h.readNow()
		if got := h.byGraphID(remote[3].ID); len(got) != 1 || got[0].Sync.State != store.SyncSynced {
			t.Fatalf("the object, readable again: %+v", got)
		}
		bad.set(remote[3].ID, "version", "seven")
		if rs := h.readNow(); !rs.Last.Complete {
			t.Fatalf("read: %+v", rs.Last)
		}
		if got := h.byGraphID(remote[3].ID); len(got) != 1 || got[0].Sync.State != store.SyncSynced || got[0].Version != 7 {
			t.Fatalf("an unreadable object was taken for deleted or changed: %+v", got)
		}
		if w := h.writes(); len(w) != 0 {
			t.Fatalf("writes: %+v", w)
		}
	})

	t.Run("no id", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		remote := putObjects(h.emu, 4, "noid")
		h.start()
		h.readNow()
		// An object without a usable id may be any of them: a listing holding one
		// proves no object gone.
		h.emu.PutObject(graph.Association{ID: " ", DisplayName: "no id"})
		if err := h.emu.RemoveObject(remote[0].ID); err != nil {
			t.Fatal(err)
		}
		if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 3 {
			t.Fatalf("read: %+v", rs.Last)
		}
		if got := h.byGraphID(remote[0].ID); len(got) != 1 || got[0].Sync.State != store.SyncSynced {
			t.Fatalf("marked deleted by a listing with an unidentified object: %+v", got)
		}
		if n := len(h.all(store.ListFilter{})); n != 4 {
			t.Fatalf("%d associations, want the 4 imported", n)
		}
	})

	t.Run("tombstone", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		remote := putObjects(h.emu, 3, "tomb")
		h.start()
		h.readNow()
		victim := h.byGraphID(remote[1].ID)[0]
		// The DELETE cannot get through yet: the object stays listed while its
		// tombstone waits.
		h.emu.Inject(emulator.Fault{Method: http.MethodDelete, Status: http.StatusServiceUnavailable})
		if _, err := h.st.DeleteAssociation(context.Background(), victim.ID, victim.Revision, admin); err != nil {
			t.Fatal(err)
		}
		h.w.Kick()
		h.waitFor("a refused DELETE", func() bool { return len(h.requests(http.MethodDelete)) > 0 })
		if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 3 {
			t.Fatalf("read: %+v", rs.Last)
		}
		if got := h.byGraphID(remote[1].ID); len(got) != 1 || got[0].ID != victim.ID || got[0].DeletedAt.IsZero() {
			t.Fatalf("associations for the deleted one's object: %+v, want only its tombstone", got)
		}
		if n := len(h.all(store.ListFilter{})); n != 2 {
			t.Fatalf("%d live associations, want 2", n)
		}
		h.emu.ClearFaults()
		h.waitFor("the DELETE to be done", func() bool { return !h.get(victim.ID).Sync.DeletePending })
		if n := len(h.emu.Objects()); n != 2 {
			t.Fatalf("Graph holds %d objects", n)
		}

		// Someone puts an object with that very id back in Intune: the tombstone still
		// holds the id; it is not imported as a second association.
		h.emu.PutObject(remote[1])
		h.readNow()
		if got := h.byGraphID(remote[1].ID); len(got) != 1 || got[0].ID != victim.ID {
			t.Fatalf("associations for the returned id: %+v, want only the tombstone", got)
		}
		if n := len(h.all(store.ListFilter{})); n != 2 {
			t.Fatalf("%d live associations, want 2", n)
		}
	})
}

// Only one read at a time: a second request while one runs is refused, and a read shows
// its progress.
func TestOnlyOneReadAtATime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	putObjects(h.emu, 15, "one") // 3 pages of 5
	h.emu.SetLatency(100 * time.Millisecond)
	h.start()
	if !h.w.RequestRead(admin.Subject) {
		t.Fatal("the first RequestRead was refused")
	}
	if h.w.RequestRead("sub-other") {
		t.Fatal("a second RequestRead was accepted while the first is queued")
	}
	sawProgress := false
	h.waitFor("the read to finish", func() bool {
		s := h.w.ReadStatus()
		if s.Running {
			if h.w.RequestRead("sub-other") {
				t.Fatal("RequestRead accepted while a read runs")
			}
			if s.SoFar > 0 && s.SoFar < 15 && !s.StartedAt.IsZero() {
				sawProgress = true
			}
		}
		return !s.Running
	})
	if !sawProgress {
		t.Error("no progress seen while the read ran")
	}
	rs := h.w.ReadStatus()
	if !rs.Last.Complete || rs.Last.Objects != 15 {
		t.Fatalf("ReadStatus = %+v", rs)
	}
	if _, listings := listPages(h.emu.Requests()); listings != 1 {
		t.Fatalf("%d listings, want 1", listings)
	}
	if !h.w.RequestRead(admin.Subject) {
		t.Fatal("RequestRead refused after the read finished")
	}
}

// After a failed read, the read an unanswered create asks for waits out a backoff; an
// admin's Refresh meanwhile is not refused as "already running" (nothing runs): it starts
// the read now.
func TestRefreshCutsReadBackoffShort(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 1})
	h.emu.Inject(emulator.Fault{Method: http.MethodGet, Status: http.StatusServiceUnavailable, Count: 1})
	a := h.create("alpha", "sub-1")
	h.start()
	h.waitFor("a failed read", func() bool { s := h.w.ReadStatus(); return s.HaveLast && !s.Running && !s.Last.Complete })
	// The create asks again after fastOptions' 50 ms, and that read backs off (0-10 s).
	time.Sleep(200 * time.Millisecond)
	failed := h.w.ReadStatus().Last
	start := time.Now()
	if !h.w.RequestRead(admin.Subject) {
		// Refused: right only if the backoff drawn was under ~150 ms and that read is
		// running now (a chance of about 1 in 1,000).
		h.waitFor("the read", func() bool { return !h.w.ReadStatus().Running })
		if rs := h.w.ReadStatus(); !rs.Last.StartedAt.After(failed.StartedAt) || time.Since(start) > 100*time.Millisecond {
			t.Fatal("Refresh refused while no read runs (the queued one backs off)")
		}
		t.Log("the backoff was short: the queued read ran before the Refresh")
		return
	}
	if h.w.RequestRead("sub-other") {
		t.Fatal("a second Refresh accepted")
	}
	h.waitFor("the read", func() bool { return !h.w.ReadStatus().Running })
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the admin's read took %v", d)
	}
	if rs := h.w.ReadStatus(); !rs.Last.Complete {
		t.Fatalf("read: %+v", rs.Last)
	}
	h.drained()
	h.assertInGraph(a.ID)
	if n := len(h.requests(http.MethodPost)); n != 1 {
		t.Fatalf("POSTs = %d, want 1", n)
	}
}

// hideObject leaves one object out of every listing page, as a listing whose pages shifted
// while it was read would; a GET of it still answers.
type hideObject struct {
	mu sync.Mutex
	id string
}

func (h *hideObject) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		id := h.id
		h.mu.Unlock()
		if id == "" || r.Method != http.MethodGet || strings.TrimSuffix(r.URL.Path, "/") != collection {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var page map[string]any
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && json.Unmarshal(body, &page) == nil {
			if vals, ok := page["value"].([]any); ok {
				kept := vals[:0]
				for _, v := range vals {
					if o, ok := v.(map[string]any); !ok || o["id"] != id {
						kept = append(kept, v)
					}
				}
				page["value"] = kept
				body, _ = json.Marshal(page)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

// A complete listing that misses an object still in Intune (its pages shifted while it was
// read) does not make it "Deleted in Intune": the GET that confirms each absence finds it,
// and what changed in it is taken.
func TestListingThatMissesAnObjectIsConfirmedByGet(t *testing.T) {
	t.Parallel()
	hide := &hideObject{}
	h := newWrappedHarness(t, nil, hide.wrap)
	remote := putObjects(h.emu, 4, "shift")
	h.start()
	if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 4 {
		t.Fatalf("first read: %+v", rs.Last)
	}
	missed := remote[2]
	if _, err := h.emu.ChangeObject(missed.ID, graph.Patch{Description: strp("changed while hidden")}); err != nil {
		t.Fatal(err)
	}
	hide.mu.Lock()
	hide.id = missed.ID
	hide.mu.Unlock()
	if rs := h.readNow(); !rs.Last.Complete || rs.Last.Objects != 3 {
		t.Fatalf("read missing one: %+v", rs.Last)
	}
	got := h.byGraphID(missed.ID)
	if len(got) != 1 || got[0].Sync.State != store.SyncSynced || got[0].Description != "changed while hidden" {
		t.Fatalf("the object the listing missed: %+v; want synced with Intune's change taken", got)
	}
	if r := itemRequests(h.emu.Requests(), missed.ID); len(r) != 1 || r[0].Method != http.MethodGet || r[0].Status != http.StatusOK {
		t.Fatalf("requests for the missed object: %+v; want the one confirming GET", r)
	}
	if w := h.writes(); len(w) != 0 {
		t.Fatalf("writes: %+v", w)
	}
}

// readersOnly lends a token for reading Intune only to subjects that signed in (as the web
// layer's delegated tokens do: nobody's token before the first admin signs in).
type readersOnly struct {
	mu      sync.Mutex
	present map[string]bool
}

func (r *readersOnly) TokenSource(_ context.Context, subject string) (oauth2.TokenSource, error) {
	return r.ReadTokenSource(context.Background(), subject)
}

func (r *readersOnly) ReadTokenSource(_ context.Context, preferred string) (oauth2.TokenSource, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.present[preferred] {
		return nil, fmt.Errorf("%w: nobody signed in", push.ErrSignInNeeded)
	}
	return appToken, nil
}

// In delegated mode the start-up read has no admin's token; it happens when the first
// admin signs in, not a backoff or a schedule later. With reads off, signing in reads
// nothing.
func TestFirstAdminSignInStartsTheFirstRead(t *testing.T) {
	t.Parallel()
	for _, every := range []time.Duration{time.Hour, 0} {
		tokens := &readersOnly{present: map[string]bool{}}
		h := newHarness(t, nil, tokens, push.WithReadEvery(every), push.WithReadBackoff(time.Hour, time.Hour))
		putObjects(h.emu, 3, "existing")
		h.start()
		if every > 0 {
			h.waitFor("the start-up read to fail", func() bool { rs := h.w.ReadStatus(); return rs.HaveLast && !rs.Running })
			if rs := h.w.ReadStatus(); rs.Last.Complete || !strings.Contains(rs.Last.Error, "sign-in") {
				t.Fatalf("start-up read without a token: %+v", rs.Last)
			}
		}
		tokens.mu.Lock()
		tokens.present["sub-1"] = true
		tokens.mu.Unlock()
		if err := h.w.SignedIn(context.Background(), "sub-1"); err != nil {
			t.Fatal(err)
		}
		if every == 0 {
			time.Sleep(100 * time.Millisecond)
			if rs := h.w.ReadStatus(); rs.HaveLast || rs.Running || len(h.requests(http.MethodGet)) != 0 {
				t.Fatalf("reads off, yet signing in read Intune: %+v", rs)
			}
			continue
		}
		h.waitFor("the read after the sign-in", func() bool { rs := h.w.ReadStatus(); return rs.Last.Complete && !rs.Running })
		if n := len(h.all(store.ListFilter{})); n != 3 {
			t.Fatalf("%d associations after the first read; want the 3 in Intune", n)
		}
	}
}

// outcomeLog keeps the outcomes WithOutcomes reports, in order.
type outcomeLog struct {
	mu  sync.Mutex
	log []string
}

func (o *outcomeLog) add(outcome string) {
	o.mu.Lock()
	o.log = append(o.log, outcome)
	o.mu.Unlock()
}

func (o *outcomeLog) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.log)
}
