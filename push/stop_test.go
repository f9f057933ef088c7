package push_test

import (
	"context"
	"testing"
	"time"

	"github.com/cartclass/cartclass/store"
)

// Stop lets the change being sent finish (Graph's answer is recorded, nothing is cut off
// or sent twice) and takes no new one; Run then returns without its context ending.
func TestStopFinishesThePushInHand(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.emu.SetLatency(400 * time.Millisecond)
	first := h.create("first", "ada")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { h.w.Run(ctx); close(done) }()
	// The POST leaves at once and its answer takes 400 ms: Stop comes while it is out.
	time.Sleep(150 * time.Millisecond)
	if n := len(h.emu.Requests()); n != 0 {
		t.Fatalf("setup: the emulator answered %d requests within 150 ms; want the POST still in flight", n)
	}
	h.w.Stop()
	second := h.create("second", "ada") // queued after Stop: left for the next start
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	if a := h.get(first.ID); a.Sync.State != store.SyncSynced || a.GraphID == "" {
		t.Errorf("the push in hand at Stop: %s, graph id %q; want it finished (synced)", a.Sync.State, a.GraphID)
	}
	if a := h.get(second.ID); a.Sync.State != store.SyncWaiting {
		t.Errorf("a change queued after Stop is %s; want it left waiting for the next start", a.Sync.State)
	}
	posts := 0
	for _, r := range h.emu.Requests() {
		if r.Method == "POST" {
			posts++
		}
	}
	if posts != 1 || h.w.Drained() != 1 {
		t.Errorf("after Stop: %d POSTs, %d changes finished; want 1 and 1", posts, h.w.Drained())
	}
	if ctx.Err() != nil {
		t.Error("Run's context ended: the test cancelled it, not Stop")
	}
}
