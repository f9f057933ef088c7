package push_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// harness is a real temp-file store, the Graph emulator on an httptest server, and a worker.
type harness struct {
	t   *testing.T
	st  *store.Store
	emu *emulator.Emulator
	srv *httptest.Server
	gc  *graph.Client
	w   *push.Worker
}

var appToken = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "app-token"})

// fastOptions keep tests quick: tiny backoff, no pacing, quiet logs unless -v, and no
// scheduled reads of Intune (tests of reading turn them on), so that the requests a test
// counts are its own.
func fastOptions(t *testing.T) []push.Option {
	return []push.Option{
		push.WithBackoff(10*time.Millisecond, 100*time.Millisecond),
		push.WithReadEvery(0),
		push.WithReadBackoff(10*time.Millisecond, 100*time.Millisecond),
		push.WithAwaitPoll(50 * time.Millisecond),
		push.WithWritesPer20s(0),
		push.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
}

func newHarness(t *testing.T, emuOpts []emulator.Option, tokens push.TokenSourcer, opts ...push.Option) *harness {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "cartclass.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	emu := emulator.New(emuOpts...)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	gc, err := graph.New(srv.URL+emulator.BasePath, graph.WithTokenSource(appToken))
	if err != nil {
		t.Fatal(err)
	}
	if tokens == nil {
		tokens = appTokens{appToken}
	}
	w := push.New(st, gc, tokens, append(fastOptions(t), opts...)...)
	return &harness{t: t, st: st, emu: emu, srv: srv, gc: gc, w: w}
}

// start runs the worker until the test ends.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.w.Run(ctx); close(done) }()
	h.t.Cleanup(func() { cancel(); <-done })
}

func fields(name string) store.Fields {
	return store.Fields{DisplayName: name, Description: "carts for " + name, Version: 7,
		DeviceCartIDs: []string{"cart-" + name + "-1", "cart-" + name + "-2"}, ClassroomIDs: []string{"room-" + name}}
}

func (h *harness) create(name string, by string) store.Association {
	h.t.Helper()
	a, err := h.st.CreateAssociation(context.Background(), fields(name), store.Actor{Subject: by, Name: by})
	if err != nil {
		h.t.Fatal(err)
	}
	h.w.Kick()
	return a
}

func (h *harness) edit(id int64, change func(*store.Fields)) store.Association {
	h.t.Helper()
	cur := h.get(id)
	f := cur.Fields
	f.DeviceCartIDs, f.ClassroomIDs = slices.Clone(f.DeviceCartIDs), slices.Clone(f.ClassroomIDs)
	change(&f)
	a, err := h.st.UpdateAssociation(context.Background(), id, cur.Revision, f, cur.UpdatedBy)
	if err != nil {
		h.t.Fatal(err)
	}
	h.w.Kick()
	return a
}

func (h *harness) get(id int64) store.Association {
	h.t.Helper()
	a, err := h.st.GetAssociation(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// waitFor polls cond; the 20 s bound only turns a hang into a failure.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// drained waits until the queue is empty (failed and deleted ones are parked, not queued).
func (h *harness) drained() {
	h.t.Helper()
	h.waitFor("an empty queue", func() bool {
		s, err := h.w.Stats(context.Background())
		return err == nil && s.Depth == 0
	})
	s, _ := h.w.Stats(context.Background())
	if !s.OldestWaiting.IsZero() || s.OldestAge != 0 {
		h.t.Fatalf("empty queue has oldest waiting %v (age %v)", s.OldestWaiting, s.OldestAge)
	}
}

func (h *harness) requests(methods ...string) []emulator.Request {
	var out []emulator.Request
	for _, r := range h.emu.Requests() {
		if len(methods) == 0 || slices.Contains(methods, r.Method) {
			out = append(out, r)
		}
	}
	return out
}

// assertInGraph checks that every association is synced and exists in Graph exactly once,
// linked, with its latest values, and that Graph holds nothing else.
func (h *harness) assertInGraph(ids ...int64) {
	h.t.Helper()
	objs := h.emu.Objects()
	if len(objs) != len(ids) {
		h.t.Fatalf("Graph holds %d objects, want %d", len(objs), len(ids))
	}
	for _, id := range ids {
		a := h.get(id)
		if a.Sync.State != store.SyncSynced || a.GraphID == "" || a.Sync.SyncedRevision != a.Revision {
			h.t.Fatalf("association %d: state %s graph %q synced rev %d of %d", id, a.Sync.State, a.GraphID, a.Sync.SyncedRevision, a.Revision)
		}
		n := 0
		for _, o := range objs {
			if o.ID != a.GraphID {
				continue
			}
			n++
			got := store.Fields{DisplayName: o.DisplayName, Description: o.Description, Version: o.Version,
				DeviceCartIDs: o.DeviceCartIDs, ClassroomIDs: o.ClassroomIDs}
			if !got.Equal(a.Fields) {
				h.t.Fatalf("association %d: Graph holds %+v, local %+v", id, got, a.Fields)
			}
		}
		if n != 1 {
			h.t.Fatalf("association %d (graph id %s) found %d times in Graph", id, a.GraphID, n)
		}
	}
}

func bodyKeys(t *testing.T, r emulator.Request) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("%s body %s: %v", r.Method, r.Body, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return m, keys
}

func TestCreateSendsOnePost(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()
	posts := h.requests(http.MethodPost)
	if len(posts) != 1 || len(h.emu.Requests()) != 1 {
		t.Fatalf("requests = %+v, want exactly one POST", h.emu.Requests())
	}
	_, keys := bodyKeys(t, posts[0])
	want := []string{"@odata.type", "classroomIds", "description", "deviceCartIds", "displayName", "version"}
	if !slices.Equal(keys, want) {
		t.Fatalf("POST body keys %v, want %v", keys, want)
	}
	h.assertInGraph(a.ID)
	got := h.get(a.ID)
	if got.GraphCreatedAt.IsZero() || got.Sync.Error != nil || got.Sync.Attempts != 0 {
		t.Fatalf("after create: %+v", got)
	}
	if st := h.w.Status(); st.Paused || st.Reason != "" || st.LastSuccess.IsZero() {
		t.Fatalf("Status = %+v", st)
	}
}

func TestEditSendsOnlyChangedProperties(t *testing.T) {
	for _, status := range []int{http.StatusNoContent, http.StatusOK} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			h := newHarness(t, []emulator.Option{emulator.WithPatchResponse(status)}, nil)
			h.start()
			a := h.create("alpha", "sub-1")
			h.drained()

			h.edit(a.ID, func(f *store.Fields) { f.Description = "new description" })
			h.drained()
			patches := h.requests(http.MethodPatch)
			if len(patches) != 1 {
				t.Fatalf("PATCHes = %d, want 1", len(patches))
			}
			m, keys := bodyKeys(t, patches[0])
			if !slices.Equal(keys, []string{"@odata.type", "description"}) || m["description"] != "new description" {
				t.Fatalf("PATCH body %s, want only @odata.type and description", patches[0].Body)
			}
			if !strings.HasSuffix(patches[0].Path, "/"+h.get(a.ID).GraphID) {
				t.Fatalf("PATCH path %s", patches[0].Path)
			}

			// The diff base follows what Graph holds: a second edit sends only its own change.
			h.edit(a.ID, func(f *store.Fields) { f.ClassroomIDs = append(f.ClassroomIDs, "room-extra") })
			h.drained()
			patches = h.requests(http.MethodPatch)
			m, keys = bodyKeys(t, patches[len(patches)-1])
			if len(patches) != 2 || !slices.Equal(keys, []string{"@odata.type", "classroomIds"}) ||
				fmt.Sprint(m["classroomIds"]) != "[room-alpha room-extra]" {
				t.Fatalf("second PATCH body %s, want the whole classroomIds only", patches[len(patches)-1].Body)
			}
			h.assertInGraph(a.ID)
			if n := len(h.requests(http.MethodPost)); n != 1 {
				t.Fatalf("POSTs = %d, want 1", n)
			}
		})
	}
}

// Create, then three quick edits while Graph answers 503: one POST, then PATCH(es), never
// a PATCH first, and Graph ends with the latest values.
func TestEditsWhileGraphIsDown(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.emu.Inject(emulator.Fault{Status: http.StatusServiceUnavailable})
	h.start()
	a := h.create("alpha", "sub-1")
	for i := range 3 {
		h.edit(a.ID, func(f *store.Fields) { f.Description = fmt.Sprintf("edit %d", i) })
	}
	h.waitFor("503s", func() bool { return len(h.requests()) >= 3 })
	if st := h.get(a.ID); st.Sync.State != store.SyncWaiting || st.Sync.Error == nil || st.Sync.Error.Status != 503 {
		t.Fatalf("while down: %+v (error %+v)", st.Sync, st.Sync.Error)
	}
	h.emu.ClearFaults()
	h.drained()

	firstApplied := -1
	for i, r := range h.requests() {
		switch {
		case r.Method == http.MethodPatch && firstApplied < 0:
			t.Fatalf("request %d is a PATCH before any applied POST", i)
		case r.Method == http.MethodPost && r.Applied:
			if firstApplied >= 0 {
				t.Fatalf("second applied POST at %d", i)
			}
			firstApplied = i
		}
	}
	if firstApplied < 0 {
		t.Fatal("no POST applied")
	}
	h.assertInGraph(a.ID)
	if got := h.get(a.ID); got.Description != "edit 2" || got.Sync.Error != nil {
		t.Fatalf("final local %q error %+v", got.Description, got.Sync.Error)
	}
}

// A 429 with Retry-After on one record stops requests for every record until it has passed.
func TestRetryAfterPausesTheWholeQueue(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.start()
	var ids []int64
	for i := range 5 {
		ids = append(ids, h.create(fmt.Sprint("rec", i), "sub-1").ID)
	}
	h.drained()
	h.emu.Inject(emulator.Fault{Method: http.MethodPatch, Status: http.StatusTooManyRequests, RetryAfter: "0.3", Count: 1})
	h.edit(ids[0], func(f *store.Fields) { f.Description = "first" })
	h.waitFor("the throttle pause", func() bool { return h.w.Status().Reason == push.ReasonThrottled })
	st := h.w.Status()
	if !st.Paused || st.Until.IsZero() {
		t.Fatalf("Status = %+v", st)
	}
	for _, id := range ids[1:] {
		h.edit(id, func(f *store.Fields) { f.Description = "later" })
	}
	h.drained()

	var t429 time.Time
	for _, r := range h.requests() {
		if r.Status == http.StatusTooManyRequests {
			t429 = r.Time
		}
	}
	if t429.IsZero() {
		t.Fatal("no 429 recorded")
	}
	after := 0
	for _, r := range h.requests() {
		if r.Time.After(t429) {
			if r.Method == http.MethodPatch {
				after++
			}
			// Reads too: the GET before each PATCH waits out the pause.
			if d := r.Time.Sub(t429); d < 300*time.Millisecond {
				t.Errorf("%s %s arrived %v after the 429, before Retry-After 0.3 s", r.Method, r.Path, d)
			}
		}
	}
	if after != 5 {
		t.Fatalf("PATCHes after the 429 = %d, want 5", after)
	}
	h.assertInGraph(ids...)
}

func TestTooManyRequestsWithoutRetryAfterBacksOff(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, Status: http.StatusTooManyRequests, Count: 2})
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()
	var statuses []int
	for _, r := range h.requests() {
		statuses = append(statuses, r.Status)
	}
	// A 429 is a definite refusal: no list is needed before re-posting.
	if !slices.Equal(statuses, []int{429, 429, 201}) {
		t.Fatalf("statuses %v, want [429 429 201]", statuses)
	}
	h.assertInGraph(a.ID)
	if got := h.get(a.ID); got.Sync.Attempts != 0 || got.Sync.Error != nil {
		t.Fatalf("after success: attempts %d error %+v", got.Sync.Attempts, got.Sync.Error)
	}
}

// The answer to a POST is lost: exactly one remote object afterwards, linked locally.
func TestLostCreateAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault emulator.Fault
		posts int
	}{
		{"after apply", emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 1}, 1},
		{"before apply", emulator.Fault{Method: http.MethodPost, DropBeforeApply: true, Count: 1}, 2},
		{"503, not applied", emulator.Fault{Method: http.MethodPost, Status: 503, Count: 1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, []emulator.Option{emulator.WithPageSize(2)}, nil)
			// Unrelated remote objects, one of them equal to the record but linked to
			// another local association: never adopted.
			h.start()
			other := h.create("alpha", "sub-1")
			h.create("beta", "sub-1")
			h.drained()
			h.emu.Inject(tc.fault)
			a := h.create("alpha", "sub-1") // same fields as other
			h.drained()
			if got := len(h.requests(http.MethodPost)); got != 2+tc.posts {
				t.Fatalf("POSTs = %d, want %d", got, 2+tc.posts)
			}
			if len(h.requests(http.MethodGet)) == 0 {
				t.Fatal("no list before re-sending an unanswered create")
			}
			h.assertInGraph(other.ID, other.ID+1, a.ID)
		})
	}
}

// The answer to a POST is lost and the admin edits before the worker reconciles: the
// object the POST made is adopted (it holds the old values) and then patched.
func TestLostCreateAnswerThenEdit(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, DropAfterApply: true, Count: 1})
	h.emu.Inject(emulator.Fault{Method: http.MethodGet, Status: 503})
	h.start()
	a := h.create("alpha", "sub-1")
	h.waitFor("a failed list", func() bool { return len(h.requests(http.MethodGet)) > 0 })
	h.edit(a.ID, func(f *store.Fields) { f.Description = "edited" })
	h.emu.ClearFaults()
	h.drained()
	if p, q := len(h.requests(http.MethodPost)), len(h.requests(http.MethodPatch)); p != 1 || q != 1 {
		t.Fatalf("POSTs %d PATCHes %d, want 1 and 1", p, q)
	}
	h.assertInGraph(a.ID)
}

// 400 from Graph: the record fails with Graph's error, the others flow, Retry re-sends.
func TestRejectedRecordFails(t *testing.T) {
	h := newHarness(t, nil, nil, push.WithConcurrency(1))
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, Status: http.StatusBadRequest, Code: "BadRequest",
		Message: "displayName contains invalid characters", Count: 1})
	a := h.create("alpha", "sub-1")
	b := h.create("beta", "sub-1")
	c := h.create("gamma", "sub-1")
	h.start()
	h.drained()
	got := h.get(a.ID)
	reqs := h.requests()
	if got.Sync.State != store.SyncFailed || got.Sync.Error == nil {
		t.Fatalf("rejected record: %+v", got.Sync)
	}
	e := got.Sync.Error
	if e.Status != 400 || e.Code != "BadRequest" || !strings.Contains(e.Message, "displayName contains invalid characters") ||
		e.RequestID == "" || e.RequestID != reqs[0].RequestID {
		t.Fatalf("sync error %+v, want 400 BadRequest with the message and request-id %s", e, reqs[0].RequestID)
	}
	if got.Sync.NextAttemptAt != (time.Time{}) {
		t.Fatalf("failed record still scheduled at %v", got.Sync.NextAttemptAt)
	}
	objs := h.emu.Objects()
	if len(objs) != 2 {
		t.Fatalf("Graph holds %d objects, want the 2 others", len(objs))
	}
	for _, id := range []int64{b.ID, c.ID} {
		if s := h.get(id).Sync.State; s != store.SyncSynced {
			t.Fatalf("association %d: %s", id, s)
		}
	}
	if err := h.st.Retry(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
	h.w.Kick()
	h.drained()
	h.assertInGraph(a.ID, b.ID, c.ID)
}

// 403: pushing pauses with the missing permission named, until resumed.
func TestForbiddenPausesUntilResumed(t *testing.T) {
	h := newHarness(t, nil, nil, push.WithPermissionRecheck(time.Hour))
	h.emu.Inject(emulator.Fault{Status: http.StatusForbidden, Code: "Forbidden", Count: 1,
		Message: "Application is not authorized to perform this operation. Application must have one of the following scopes: DeviceManagementServiceConfig.ReadWrite.All - Operation ID: x"})
	h.start()
	a := h.create("alpha", "sub-1")
	h.waitFor("the permission pause", func() bool { return h.w.Status().Reason == push.ReasonPermission })
	st := h.w.Status()
	if !st.Paused || st.Scope != "DeviceManagementServiceConfig.ReadWrite.All" {
		t.Fatalf("Status = %+v", st)
	}
	b := h.create("beta", "sub-1") // Kicks: must not lift the pause
	h.edit(a.ID, func(f *store.Fields) { f.Description = "edited" })
	time.Sleep(150 * time.Millisecond)
	if n := len(h.requests()); n != 1 {
		t.Fatalf("%d requests while paused for permission, want only the 403", n)
	}
	if s, _ := h.w.Stats(context.Background()); s.Depth != 2 {
		t.Fatalf("queue depth while paused = %d, want 2", s.Depth)
	}
	h.w.Resume()
	h.drained()
	h.assertInGraph(a.ID, b.ID)
	if st := h.w.Status(); st.Paused || st.Reason != "" {
		t.Fatalf("Status after resume = %+v", st)
	}
}

// A PATCH answered 404: the object was deleted in Intune; Recreate posts it again.
func TestDeletedRemotelyThenRecreate(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.start()
	a := h.create("alpha", "sub-1")
	h.drained()
	old := h.get(a.ID).GraphID
	if err := h.gc.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	h.edit(a.ID, func(f *store.Fields) { f.Description = "edited" })
	h.waitFor("the deleted state", func() bool { return h.get(a.ID).Sync.State == store.SyncDeleted })
	if e := h.get(a.ID).Sync.Error; e == nil || e.Status != 404 {
		t.Fatalf("sync error %+v, want the 404", e)
	}
	if s, _ := h.w.Stats(context.Background()); s.Depth != 0 {
		t.Fatalf("queue depth = %d, want 0 (deleted is parked)", s.Depth)
	}
	if err := h.st.Recreate(context.Background(), a.ID, admin); err != nil {
		t.Fatal(err)
	}
	h.w.Kick()
	h.drained()
	h.assertInGraph(a.ID)
	if h.get(a.ID).GraphID == old {
		t.Fatal("recreated association kept the deleted object's id")
	}
	if n := len(h.requests(http.MethodPost)); n != 2 {
		t.Fatalf("POSTs = %d, want 2", n)
	}
}

// fakeTokens hands out, per subject, a sequence of tokens (the last one repeats) or an error.
type fakeTokens struct {
	mu     sync.Mutex
	tokens map[string][]string
	errs   map[string]error
	calls  map[string]int
}

func (f *fakeTokens) TokenSource(_ context.Context, subject string) (oauth2.TokenSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[subject]++
	if err := f.errs[subject]; err != nil {
		return nil, err
	}
	seq := f.tokens[subject]
	tok := seq[0]
	if len(seq) > 1 {
		f.tokens[subject] = seq[1:]
	}
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}), nil
}

func (f *fakeTokens) set(subject string, toks ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[subject] = toks
	delete(f.errs, subject)
}

func (f *fakeTokens) callsOf(subject string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[subject]
}

// 401: the token source is asked once more (a refresh); if that fails too, the author's
// changes wait for a sign-in while the others flow.
func TestUnauthorizedRefreshesOnceThenWaitsForSignIn(t *testing.T) {
	tokens := &fakeTokens{
		tokens: map[string][]string{"sub-refresh": {"stale", "good"}, "sub-revoked": {"stale"}, "sub-ok": {"good"}},
		errs:   map[string]error{"sub-gone": fmt.Errorf("no refresh token for sub-gone: %w", push.ErrSignInNeeded)},
		calls:  map[string]int{},
	}
	auth := emulator.WithAuthorizer(func(tok string, _ *http.Request) int {
		if tok == "good" {
			return 0
		}
		return http.StatusUnauthorized
	})
	h := newHarness(t, []emulator.Option{auth}, tokens, push.WithSignInRecheck(time.Hour), push.WithConcurrency(1))
	refreshed := h.create("refreshed", "sub-refresh")
	revoked := h.create("revoked", "sub-revoked")
	gone := h.create("gone", "sub-gone")
	ok := h.create("ok", "sub-ok")
	h.start()
	h.waitFor("the others to sync", func() bool {
		return h.get(refreshed.ID).Sync.State == store.SyncSynced && h.get(ok.ID).Sync.State == store.SyncSynced &&
			h.w.Status().Reason == push.ReasonSignIn && len(h.w.Status().Subjects) == 2
	})
	if n := tokens.callsOf("sub-refresh"); n != 2 {
		t.Fatalf("token source asked %d times for sub-refresh, want 2", n)
	}
	if n := tokens.callsOf("sub-revoked"); n != 2 {
		t.Fatalf("token source asked %d times for sub-revoked, want 2 (once, then one refresh)", n)
	}
	st := h.w.Status()
	if st.Paused || !slices.Equal(st.Subjects, []string{"sub-gone", "sub-revoked"}) {
		t.Fatalf("Status = %+v", st)
	}
	for _, id := range []int64{revoked.ID, gone.ID} {
		s := h.get(id).Sync
		if s.State != store.SyncWaiting || s.Error == nil || s.Error.Code != "SignInNeeded" || !strings.Contains(s.Error.Message, "sign in again") || strings.Contains(s.Error.Message, "sub-") {
			t.Fatalf("association %d: %+v (error %+v)", id, s, s.Error)
		}
	}
	unauthorized := 0
	for _, r := range h.requests() {
		if r.Status == http.StatusUnauthorized {
			unauthorized++
		}
	}
	if unauthorized != 3 { // sub-refresh once, sub-revoked twice; sub-gone never sent
		t.Fatalf("401s = %d, want 3", unauthorized)
	}

	tokens.set("sub-revoked", "good")
	tokens.set("sub-gone", "good")
	for _, sub := range []string{"sub-revoked", "sub-gone"} {
		if err := h.w.SignedIn(context.Background(), sub); err != nil {
			t.Fatal(err)
		}
	}
	h.drained()
	h.assertInGraph(refreshed.ID, revoked.ID, gone.ID, ok.ID)
	if st := h.w.Status(); st.Reason != "" || len(st.Subjects) != 0 {
		t.Fatalf("Status after sign-in = %+v", st)
	}
}

// Paced below the emulator's write limit, a bulk change earns no 429.
func TestPacingAvoidsThrottling(t *testing.T) {
	h := newHarness(t, []emulator.Option{emulator.WithWriteLimit(10, 500*time.Millisecond)}, nil,
		push.WithWriteRate(8, 500*time.Millisecond))
	var ids []int64
	for i := range 24 {
		ids = append(ids, h.create(fmt.Sprint("bulk", i), "sub-1").ID)
	}
	h.start()
	h.drained()
	for _, r := range h.requests() {
		if r.Status == http.StatusTooManyRequests {
			t.Fatalf("paced worker got a 429 at %v", r.Time)
		}
	}
	h.assertInGraph(ids...)
}

// The same bulk change without pacing does meet the limit (so the test above shows something).
func TestWithoutPacingTheLimitBites(t *testing.T) {
	h := newHarness(t, []emulator.Option{emulator.WithWriteLimit(10, 500*time.Millisecond)}, nil)
	var ids []int64
	for i := range 24 {
		ids = append(ids, h.create(fmt.Sprint("bulk", i), "sub-1").ID)
	}
	h.start()
	h.drained()
	n := 0
	for _, r := range h.requests() {
		if r.Status == http.StatusTooManyRequests {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no 429 without pacing: the pacing test proves nothing")
	}
	h.assertInGraph(ids...)
}

// appTokens gives every change the same token source, whoever made it: app-only mode as
// these tests need it (the web layer has the real one, with discovery and Invalidate).
type appTokens struct{ ts oauth2.TokenSource }

func (a appTokens) TokenSource(context.Context, string) (oauth2.TokenSource, error) { return a.ts, nil }

// A restart inside a pause keeps the pause: the Retry-After still running holds every
// record back, and whose sign-in is awaited is still known (the banner, Push now).
func TestRestartKeepsPauses(t *testing.T) {
	tokens := &fakeTokens{tokens: map[string][]string{"sub-ok": {"t"}}, errs: map[string]error{"sub-gone": push.ErrSignInNeeded}, calls: map[string]int{}}
	h := newHarness(t, nil, tokens, push.WithSignInRecheck(time.Hour))
	h.emu.Inject(emulator.Fault{Method: http.MethodPost, Status: http.StatusTooManyRequests, RetryAfter: "30", Count: 1})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.w.Run(ctx); close(done) }()
	h.create("waits-for-sign-in", "sub-gone")
	h.create("throttled", "sub-ok")
	h.waitFor("both pauses", func() bool {
		st := h.w.Status()
		return st.Reason == push.ReasonThrottled && slices.Contains(st.Subjects, "sub-gone")
	})
	until := h.w.Status().Until
	stop()
	<-done

	// A new process: a new worker on the same database and Graph.
	w2 := push.New(h.st, h.gc, tokens, fastOptions(t)...)
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { w2.Run(ctx2); close(done2) }()
	t.Cleanup(func() { stop2(); <-done2 })
	h.waitFor("the restored pauses", func() bool {
		st := w2.Status()
		return st.Reason == push.ReasonThrottled && !st.Until.Before(until.Add(-time.Millisecond)) && slices.Contains(st.Subjects, "sub-gone")
	})
	before := len(h.requests())
	h.create("after-restart", "sub-ok")
	w2.Kick()
	// Nothing may reach Graph before the Retry-After of 30 s has passed; a stats read is
	// enough of a round trip for an unpaused worker to have sent (it sends within ms).
	for range 20 {
		if _, err := w2.Stats(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(h.requests()) - before; n != 0 {
		t.Errorf("%d requests reached Graph inside the Retry-After after a restart", n)
	}
}

// A permission pause also ends without anyone pressing a button: at a new sign-in (it may
// carry the missing consent), and on its own at the re-check.
func TestPermissionPauseEndsAtSignInOrRecheck(t *testing.T) {
	forbidden := emulator.Fault{Status: http.StatusForbidden, Code: "Forbidden", Count: 1, Message: "Missing scope."}
	t.Run("sign-in", func(t *testing.T) {
		h := newHarness(t, nil, nil, push.WithPermissionRecheck(time.Hour))
		h.emu.Inject(forbidden)
		h.start()
		a := h.create("alpha", "sub-1")
		h.waitFor("the permission pause", func() bool { return h.w.Status().Reason == push.ReasonPermission })
		if err := h.w.SignedIn(context.Background(), "sub-1"); err != nil {
			t.Fatal(err)
		}
		h.drained()
		h.assertInGraph(a.ID)
	})
	t.Run("re-check", func(t *testing.T) {
		h := newHarness(t, nil, nil, push.WithPermissionRecheck(100*time.Millisecond))
		h.emu.Inject(forbidden)
		h.start()
		a := h.create("alpha", "sub-1")
		h.waitFor("the permission pause", func() bool { return h.w.Status().Reason == push.ReasonPermission })
		h.drained() // no Resume, no sign-in
		h.assertInGraph(a.ID)
	})
}
