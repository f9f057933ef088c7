package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
)

// These tests check the Graph request log against what the emulator received: every
// request the worker makes for an association is recorded with that association, under
// the history entry it delivered, and a read's list pages are not.

// recorded is association id's recorded Graph requests, in the order they were made, and
// by the kind of history entry they are under.
func (h *harness) recorded(id int64) ([]store.GraphRequest, map[store.HistoryKind][]string) {
	h.t.Helper()
	h.w.FlushRequestLog(context.Background()) // the worker records in batches
	es, _, err := h.st.AssociationHistory(context.Background(), id, 0, 500)
	if err != nil {
		h.t.Fatal(err)
	}
	ids := make([]int64, len(es))
	kinds := map[int64]store.HistoryKind{}
	for i, e := range es {
		ids[i], kinds[e.ID] = e.ID, e.Kind
	}
	byEntry, err := h.st.GraphRequests(context.Background(), id, ids)
	if err != nil {
		h.t.Fatal(err)
	}
	var all []store.GraphRequest
	under := map[store.HistoryKind][]string{}
	for entry, rs := range byEntry {
		if _, ok := kinds[entry]; !ok {
			h.t.Fatalf("requests under entry %d, which is not one of association %d's", entry, id)
		}
		all = append(all, rs...)
	}
	slices.SortFunc(all, func(a, b store.GraphRequest) int { return int(a.ID - b.ID) })
	for _, r := range all {
		under[kinds[r.HistoryID]] = append(under[kinds[r.HistoryID]], fmt.Sprintf("%s %d", r.Method, r.Status))
	}
	return all, under
}

// sent is what the emulator received for association a: the POSTs of its values and
// every request on its item path; not the list pages.
func (h *harness) sent(a store.Association) []emulator.Request {
	h.t.Helper()
	var out []emulator.Request
	for _, r := range h.emu.Requests() {
		if r.Method == http.MethodPost && r.Path == collection {
			var body struct{ DisplayName string }
			if err := json.Unmarshal(r.Body, &body); err != nil {
				h.t.Fatalf("POST body %q: %v", r.Body, err)
			}
			if body.DisplayName == a.DisplayName {
				out = append(out, r)
			}
		} else if strings.HasSuffix(r.Path, "/"+a.GraphID) {
			out = append(out, r)
		}
	}
	return out
}

// wantRecorded fails unless got records exactly the requests in sent, in order.
func wantRecorded(t *testing.T, got []store.GraphRequest, sent []emulator.Request) {
	t.Helper()
	if len(got) != len(sent) {
		var g, s []string
		for _, r := range got {
			g = append(g, r.Method+" "+fmt.Sprint(r.Status))
		}
		for _, r := range sent {
			s = append(s, r.Method+" "+fmt.Sprint(r.Status))
		}
		t.Fatalf("recorded %d requests %v, Graph received %d %v", len(got), g, len(sent), s)
	}
	for i, r := range sent {
		g := got[i]
		if g.Method != r.Method || g.Status != r.Status || g.RequestID != r.RequestID || g.ClientRequestID != r.ClientRequestID {
			t.Errorf("request %d: recorded %s %d request-id %q client-request-id %q; Graph received %s %d request-id %q client-request-id %q",
				i, g.Method, g.Status, g.RequestID, g.ClientRequestID, r.Method, r.Status, r.RequestID, r.ClientRequestID)
		}
		if g.RequestID == "" || g.ClientRequestID == "" || g.Duration <= 0 || g.At.IsZero() {
			t.Errorf("request %d (%s): ids %q/%q, duration %v, at %v", i, g.Method, g.RequestID, g.ClientRequestID, g.Duration, g.At)
		}
		wantCode := map[int]string{http.StatusServiceUnavailable: "ServiceUnavailable", http.StatusNotFound: "ResourceNotFound"}[r.Status]
		if g.Code != wantCode {
			t.Errorf("request %d (%s %d): code %q, want %q", i, g.Method, g.Status, g.Code, wantCode)
		}
	}
}

func TestEveryRequestForAnAssociationIsRecorded(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.start()
	ctx := context.Background()

	// A POST answered 503 may have created the object: a read of Intune settles it (its
	// list page is for no association and is not recorded), then the POST goes again.
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, Count: 1, Status: http.StatusServiceUnavailable})
	a := h.create("alpha", "sub-1")
	h.drained()
	a = h.get(a.ID)
	if a.GraphID == "" || a.Sync.State != store.SyncSynced {
		t.Fatalf("after the create: %+v", a.Sync)
	}

	// An edit whose first PATCH meets a 503: GET, PATCH 503, then GET, PATCH 204.
	h.emu.Inject(emulator.Fault{Method: http.MethodPatch, Count: 1, Status: http.StatusServiceUnavailable})
	h.edit(a.ID, func(f *store.Fields) { f.Description = "Science block only" })
	h.waitFor("the edit to be synced", func() bool {
		g := h.get(a.ID)
		return g.Sync.State == store.SyncSynced && g.Sync.SyncedRevision == g.Revision
	})

	// The delete.
	cur := h.get(a.ID)
	if _, err := h.st.DeleteAssociation(ctx, a.ID, cur.Revision, admin); err != nil {
		t.Fatal(err)
	}
	h.w.Kick()
	h.waitFor("the DELETE to be done", func() bool { return !h.get(a.ID).Sync.DeletePending })

	if lists := h.countList(); lists == 0 {
		t.Fatal("no read of Intune ran after the POST's 503; the test does not cover list pages")
	}
	got, under := h.recorded(a.ID)
	wantRecorded(t, got, h.sent(a))
	want := map[store.HistoryKind][]string{
		store.HistoryCreated: {"POST 503", "POST 201"},
		store.HistoryEdited:  {"GET 200", "PATCH 503", "GET 200", "PATCH 204"},
		store.HistoryDeleted: {"DELETE 204"},
	}
	for kind, w := range want {
		if !slices.Equal(under[kind], w) {
			t.Errorf("under the %s entry: %v, want %v", kind, under[kind], w)
		}
	}
	if len(under) != len(want) {
		t.Errorf("requests under %d kinds of entries, want %d: %v", len(under), len(want), under)
	}
}

// countList is how many list pages Graph received.
func (h *harness) countList() int {
	n := 0
	for _, r := range h.emu.Requests() {
		if r.Method == http.MethodGet && r.Path == collection {
			n++
		}
	}
	return n
}

func TestReadRecordsItsConfirmingGETButNotItsPages(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.start()
	a := h.create("alpha", "sub-1")
	keep := h.create("beta", "sub-1")
	h.drained()
	a, keep = h.get(a.ID), h.get(keep.ID)
	if err := h.emu.RemoveObject(a.GraphID); err != nil {
		t.Fatal(err)
	}

	if s := h.readNow(); !s.Last.Complete {
		t.Fatalf("read: %+v", s.Last)
	}
	if st := h.get(a.ID).Sync.State; st != store.SyncDeleted {
		t.Fatalf("the association removed in Intune is %s after a read, want %s", st, store.SyncDeleted)
	}
	if h.countList() == 0 {
		t.Fatal("the read sent no list page")
	}

	// alpha: its POST, then the read's GET that confirmed it gone (404).
	got, under := h.recorded(a.ID)
	wantRecorded(t, got, h.sent(a))
	if !slices.Equal(under[store.HistoryCreated], []string{"POST 201", "GET 404"}) || len(got) != 2 {
		t.Errorf("alpha's requests: %v", under)
	}
	// beta: only its POST; the listing that held it is recorded for nobody.
	other, _ := h.recorded(keep.ID)
	if len(other) != 1 || other[0].Method != http.MethodPost || other[0].Status != http.StatusCreated {
		t.Errorf("beta's requests: %+v, want only its POST", other)
	}
}

func TestRequestInFlightDuringASaveStaysWithWhatItDelivered(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()

	// The PATCH of the first edit takes a while; the second edit is saved meanwhile. The
	// PATCH delivered the first edit, whatever the newest entry is when it is recorded.
	h.emu.Inject(emulator.Fault{Method: http.MethodPatch, Count: 1, Latency: 300 * time.Millisecond})
	h.edit(a.ID, func(f *store.Fields) { f.Description = "first" })
	h.waitFor("the GET before the PATCH", func() bool { return len(h.requests(http.MethodGet)) == 1 })
	h.edit(a.ID, func(f *store.Fields) { f.Description = "second" })
	h.waitFor("both edits to be synced", func() bool {
		g := h.get(a.ID)
		return g.Sync.State == store.SyncSynced && g.Sync.SyncedRevision == g.Revision && len(h.requests(http.MethodPatch)) == 2
	})
	if got := h.emu.Objects()[0].Description; got != "second" {
		t.Fatalf("Graph holds description %q", got)
	}

	got, _ := h.recorded(a.ID)
	wantRecorded(t, got, h.sent(h.get(a.ID)))
	es, _, err := h.st.AssociationHistory(context.Background(), a.ID, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].Kind != store.HistoryEdited || es[1].Kind != store.HistoryEdited {
		t.Fatalf("history: %+v", es)
	}
	byEntry, err := h.st.GraphRequests(context.Background(), a.ID, []int64{es[0].ID, es[1].ID})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es[:2] {
		var seen []string
		for _, r := range byEntry[e.ID] {
			seen = append(seen, fmt.Sprintf("%s %d", r.Method, r.Status))
		}
		if !slices.Equal(seen, []string{"GET 200", "PATCH 204"}) {
			t.Errorf("under edit %d (revision %d): %v, want its own GET and PATCH", 2-i, e.Revision, seen)
		}
	}
}

func TestAStoppingWorkerStillRecordsItsRequest(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, Count: 1, Latency: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.w.Run(ctx); close(done) }()
	a := h.create("alpha", "sub-1")
	time.Sleep(300 * time.Millisecond) // the POST is on its way, its answer 5 s off
	cancel()
	<-done

	got, under := h.recorded(a.ID)
	if len(got) != 1 || got[0].Method != http.MethodPost || got[0].Status != 0 || got[0].RequestID != "" ||
		got[0].ClientRequestID == "" || !slices.Equal(under[store.HistoryCreated], []string{"POST 0"}) {
		t.Fatalf("recorded %+v (under %v), want the POST cut short by the stop", got, under)
	}
}
