package web_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/cartclass/cartclass/store"
)

// shownRequest is one Graph request as the detail page shows it under a history entry.
type shownRequest struct {
	outcome, requestID, clientRequestID, line string
}

// shownRequests is the detail page's Graph requests by the kind of their history entry,
// newest entry first, each entry's in the order shown.
func shownRequests(d *goquery.Document) map[string][]shownRequest {
	out := map[string][]shownRequest{}
	d.Find(`[data-testid="history-entry"]`).Each(func(_ int, e *goquery.Selection) {
		kind, _ := e.Attr("data-kind")
		e.Find(`[data-testid="graph-request"]`).Each(func(_ int, r *goquery.Selection) {
			out[kind] = append(out[kind], shownRequest{
				outcome:         text(r.Find(`[data-testid="graph-request-outcome"]`)),
				requestID:       text(r.Find(`[data-testid="graph-request-id"]`)),
				clientRequestID: text(r.Find(`[data-testid="graph-client-request-id"]`)),
				line:            text(r),
			})
		})
	})
	return out
}

func outcomes(rs []shownRequest) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.outcome)
	}
	return out
}

func TestDetailShowsTheGraphRequestsUnderTheirEntry(t *testing.T) {
	g := newGraphEnv(t)
	form := url.Values{"displayName": {"Room 12 iPads"}, "description": {"Science"}, "version": {"1"},
		"deviceCartIds": {"cart-1\ncart-2"}, "classroomIds": {"r12"}}
	id := g.create(t, form)
	g.waitState(t, id, store.SyncSynced)

	// The edit's first PATCH meets a 503; the retry gets Intune's 204.
	g.emu.Inject(emulator.Fault{Method: http.MethodPatch, Count: 1, Status: http.StatusServiceUnavailable})
	path := g.url + "/associations/" + strconv.FormatInt(id, 10)
	edit := url.Values{}
	for k, v := range form {
		edit[k] = v
	}
	edit.Set("description", "Science block only")
	edit.Set("revision", "1")
	if h := do(t, g.admin, "POST", path, edit, nil); h.status != http.StatusSeeOther {
		t.Fatalf("edit = %d %.300s", h.status, h.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.requests(http.MethodPatch)) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	g.waitState(t, id, store.SyncSynced)

	// The worker records its requests in batches, within a moment of making them.
	var shown map[string][]shownRequest
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		h := do(t, g.admin, "GET", path, nil, nil)
		if h.status != http.StatusOK {
			t.Fatalf("detail = %d", h.status)
		}
		shown = shownRequests(parseDoc(t, h.body))
		if len(shown["edited"]) >= 4 || time.Now().After(deadline) {
			break
		}
	}

	posts, patches := g.requests(http.MethodPost), g.requests(http.MethodPatch)
	if len(posts) != 1 || len(patches) != 2 || patches[0].Status != 503 || patches[1].Status != 204 {
		t.Fatalf("Graph received POSTs %+v, PATCHes %+v", posts, patches)
	}
	if got := outcomes(shown["created"]); !slices.Equal(got, []string{"POST 201"}) {
		t.Errorf("under the creation: %v, want [POST 201]", got)
	}
	edited := shown["edited"]
	if got := outcomes(edited); !slices.Equal(got, []string{"GET 200", "PATCH 503 ServiceUnavailable", "GET 200", "PATCH 204"}) {
		t.Fatalf("under the edit: %v", got)
	}
	// The ids are Graph's and ours as Graph received them.
	for _, c := range []struct {
		shown shownRequest
		sent  emulator.Request
	}{{shown["created"][0], posts[0]}, {edited[1], patches[0]}, {edited[3], patches[1]}} {
		if c.shown.requestID != c.sent.RequestID || c.shown.clientRequestID != c.sent.ClientRequestID {
			t.Errorf("%s shows request-id %q client-request-id %q; Graph received request-id %q client-request-id %q",
				c.shown.outcome, c.shown.requestID, c.shown.clientRequestID, c.sent.RequestID, c.sent.ClientRequestID)
		}
	}
	delivered := edited[3].line
	if !strings.HasPrefix(delivered, "PATCH 204 · ") || !strings.Contains(delivered, " ms · request-id "+patches[1].RequestID+" · client-request-id "+patches[1].ClientRequestID) {
		t.Errorf("the delivering PATCH reads %q", delivered)
	}
}

func TestDetailShowsGraphRequestsAsText(t *testing.T) {
	app := newTestApp(t)
	a := app.create(t, store.Fields{DisplayName: "Room 12", Version: 1})
	ctx := context.Background()
	for _, r := range []store.GraphRequest{
		{Method: "POST", Status: 503, Code: `<b>Busy</b>`, Duration: 84 * time.Millisecond,
			RequestID: `<script>alert(1)</script>`, ClientRequestID: "crid-1"},
		{Method: "POST", Duration: 30 * time.Second, ClientRequestID: "crid-2"},
		{Method: "POST", Status: 201, Duration: 1500 * time.Microsecond, RequestID: "req-3", ClientRequestID: "crid-3"},
	} {
		r.AssociationID, r.Revision = a.ID, a.Revision
		if err := app.store.RecordGraphRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	d := app.get(t, "/associations/"+strconv.FormatInt(a.ID, 10), false)
	d.wantStatus(t, http.StatusOK)
	var lines []string
	for _, r := range shownRequests(d.doc)["created"] {
		lines = append(lines, r.line)
	}
	want := []string{
		"POST 503 <b>Busy</b> · 84 ms · request-id <script>alert(1)</script> · client-request-id crid-1",
		"POST, no answer · 30.0 s · client-request-id crid-2",
		"POST 201 · 1 ms · request-id req-3 · client-request-id crid-3",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("requests shown:\n got %q\nwant %q", lines, want)
	}
	if d.doc.Find("#history script, #history b").Length() != 0 {
		t.Error("a recorded value became markup")
	}
}
