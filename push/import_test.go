package push_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
)

// A CSV import lands as one transaction of many new associations: the worker must spread
// their POSTs under Intune's write limit. These tests run the limit at a tenth of its
// window (100 writes per 2 s instead of per 20 s) and the worker's pacing likewise (90 per
// 2 s, its default rate for 20 s), so a 200-row import crosses the limit's window twice in
// a few seconds.

const (
	paceRows   = 200
	paceWindow = 2 * time.Second
	paceLimit  = 100 // the emulator's writes per paceWindow, as Intune's per 20 s
	paceRate   = 90  // the worker's writes per paceWindow, as its default per 20 s
)

var paceImporter = store.Actor{Subject: "sub-importer", Name: "Ines Importer"}

// paceApplyImport saves and applies an import of paceRows new associations, as the web
// layer does after Preview and Apply, and kicks the worker as its handler does. It returns
// the associations' ids.
func paceApplyImport(h *harness) []int64 {
	h.t.Helper()
	ctx := context.Background()
	rows := make([]store.ImportRow, paceRows)
	for i := range rows {
		rows[i] = store.ImportRow{Row: i + 2, Fields: fields(fmt.Sprintf("import-%03d", i))}
	}
	p, err := h.st.SaveImport(ctx, paceImporter, "carts.csv", rows)
	if err != nil {
		h.t.Fatal(err)
	}
	if p.New != paceRows || p.Changed+p.Unchanged+p.Invalid != 0 {
		h.t.Fatalf("preview counts %d new, %d changed, %d unchanged, %d invalid; want %d new", p.New, p.Changed, p.Unchanged, p.Invalid, paceRows)
	}
	p, err = h.st.ApplyImport(ctx, p.ID, paceImporter)
	if err != nil {
		h.t.Fatal(err)
	}
	h.w.Kick()
	ids := make([]int64, len(p.Rows))
	for i, r := range p.Rows {
		if r.AssociationID == 0 {
			h.t.Fatalf("applied row %d links no association", r.Row)
		}
		ids[i] = r.AssociationID
	}
	return ids
}

// paceCount is how many of the emulator's requests are POSTs and how many were answered 429.
func paceCount(h *harness) (posts, throttled int) {
	for _, r := range h.emu.Requests() {
		if r.Method == http.MethodPost {
			posts++
		}
		if r.Status == http.StatusTooManyRequests {
			throttled++
		}
	}
	return posts, throttled
}

// A 200-row import earns no 429: paced at 90 writes per window, no window of the limit's
// length sees more than 90 + 9 (the burst), under the limit of 100; every association
// reaches Graph with exactly one POST. The margin is one write, but a write held up
// between its turn and the emulator only moves to a later window: it takes the first
// writes held up some 40 ms longer than those a window later for one window to see 101
// (at 20 s, as in production, 400 ms).
func TestImportOf200RowsEarnsNo429(t *testing.T) {
	h := newHarness(t, nil, nil, push.WithWriteRate(paceRate, paceWindow))
	h.emu.SetWriteLimit(paceLimit, paceWindow)
	h.start()
	start := time.Now()
	ids := paceApplyImport(h)
	h.drained()
	elapsed := time.Since(start)

	posts, throttled := paceCount(h)
	if throttled != 0 {
		for _, r := range h.emu.Requests() {
			if r.Status == http.StatusTooManyRequests {
				t.Logf("429 for %s %s at %v", r.Method, r.Path, r.Time.Format("15:04:05.000"))
			}
		}
		t.Fatalf("the paced import earned %d 429s", throttled)
	}
	if posts != paceRows {
		t.Fatalf("Graph received %d POSTs; want exactly %d, one per row", posts, paceRows)
	}
	h.assertInGraph(ids...)
	// The pacing held the pushes back (else the test proves nothing about it): 200 writes
	// at 45 per second after a burst of 9 take at least (200-9)/45 s.
	if floor := time.Duration(float64(paceRows-paceRate/10) / (paceRate / paceWindow.Seconds()) * float64(time.Second)); elapsed < floor*9/10 {
		t.Errorf("200 paced pushes took %v; pacing at %d per %v takes at least %v", elapsed, paceRate, paceWindow, floor)
	}
	t.Logf("200 paced pushes in %v; at most %d writes in any %v (limit %d)", elapsed.Round(time.Millisecond), paceBusiestWindow(h), paceWindow, paceLimit)
}

// paceBusiestWindow is the most writes the emulator received within paceWindow, as its
// limit counts them.
func paceBusiestWindow(h *harness) int {
	var at []time.Time
	for _, r := range h.emu.Requests() {
		if r.Method == http.MethodPost || r.Method == http.MethodPatch {
			at = append(at, r.Time)
		}
	}
	slices.SortFunc(at, time.Time.Compare)
	most := 0
	for i, j := 0, 0; j < len(at); j++ {
		for at[j].Sub(at[i]) >= paceWindow {
			i++
		}
		most = max(most, j-i+1)
	}
	return most
}

// The control: the same import with pacing lifted meets the limit, so the test above shows
// that pacing avoids it, not that the worker happens to be slow. Unpaced, the worker pushes
// some 200 a second against the in-process emulator (the 101st POST comes about half a
// second after the first), four times the 50 a second it takes to put 101 writes in one
// 2 s window; the test stops at the first 429.
func TestImportOf200RowsUnpacedMeets429(t *testing.T) {
	h := newHarness(t, nil, nil, push.WithWriteRate(0, paceWindow))
	h.emu.SetWriteLimit(paceLimit, paceWindow)
	h.start()
	paceApplyImport(h)
	h.waitFor("a 429 or an empty queue", func() bool {
		if _, throttled := paceCount(h); throttled > 0 {
			return true
		}
		s, err := h.w.Stats(context.Background())
		return err == nil && s.Depth == 0
	})
	if posts, throttled := paceCount(h); throttled == 0 {
		t.Fatalf("%d unpaced POSTs and no 429: the paced test proves nothing", posts)
	}
	reqs := h.emu.Requests()
	for i, r := range reqs {
		if r.Status == http.StatusTooManyRequests {
			t.Logf("unpaced: the first 429 came %v after the first POST, as write %d", r.Time.Sub(reqs[0].Time).Round(time.Millisecond), i+1)
			break
		}
	}
}
