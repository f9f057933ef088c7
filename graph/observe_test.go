package graph_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
)

// observed collects what an observer is told, safe for concurrent use.
type observed struct {
	mu    sync.Mutex
	infos []graph.RequestInfo
}

func (o *observed) observe(info graph.RequestInfo) {
	o.mu.Lock()
	o.infos = append(o.infos, info)
	o.mu.Unlock()
}

func (o *observed) all() []graph.RequestInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]graph.RequestInfo(nil), o.infos...)
}

// wantSameRequests fails unless infos describe exactly the requests the emulator
// received, in order: method, path, status and both ids.
func wantSameRequests(t *testing.T, infos []graph.RequestInfo, reqs []emulator.Request) {
	t.Helper()
	if len(infos) != len(reqs) {
		t.Fatalf("observer was told of %d requests, the emulator received %d", len(infos), len(reqs))
	}
	for i, r := range reqs {
		got := infos[i]
		if got.Method != r.Method || got.Path != r.Path || got.Status != r.Status ||
			got.RequestID != r.RequestID || got.ClientRequestID != r.ClientRequestID {
			t.Errorf("request %d: observed %s %s %d request-id %q client-request-id %q; emulator saw %s %s %d request-id %q client-request-id %q",
				i, got.Method, got.Path, got.Status, got.RequestID, got.ClientRequestID,
				r.Method, r.Path, r.Status, r.RequestID, r.ClientRequestID)
		}
	}
}

func TestObserverIsToldOfEveryRequestOnce(t *testing.T) {
	var o observed
	em, base := setup(t, emulator.WithPageSize(2))
	c := base.WithObserver(o.observe)
	ctx := context.Background()

	a, err := c.Create(ctx, seedAssociation())
	if err != nil {
		t.Fatal(err)
	}
	name := "renamed"
	if _, err := c.Update(ctx, a.ID, graph.Patch{DisplayName: &name}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		em.PutObject(graph.Association{DisplayName: fmt.Sprintf("other %d", i), Version: 1})
	}
	if _, err := c.List(ctx); err != nil { // 5 objects, 2 a page: 3 pages
		t.Fatal(err)
	}
	if err := c.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, a.ID); !graph.IsNotFound(err) {
		t.Fatalf("Get after Delete: %v, want not found", err)
	}

	infos := o.all()
	wantSameRequests(t, infos, em.Requests())
	var methods []string
	for _, in := range infos {
		methods = append(methods, fmt.Sprintf("%s %d", in.Method, in.Status))
	}
	want := "POST 201,PATCH 204,GET 200,GET 200,GET 200,GET 200,DELETE 204,GET 404"
	if got := strings.Join(methods, ","); got != want {
		t.Errorf("observed %s, want %s", got, want)
	}
	item := "/beta/deviceManagement/cartToClassAssociations/" + a.ID
	for i, in := range infos {
		if in.RequestID == "" || in.ClientRequestID == "" || in.Start.IsZero() || in.Duration <= 0 {
			t.Errorf("request %d (%s): ids %q/%q, start %v, duration %v", i, in.Method, in.RequestID, in.ClientRequestID, in.Start, in.Duration)
		}
		if strings.Contains(in.Path, "?") || strings.Contains(in.Path, "skiptoken") {
			t.Errorf("request %d: path %q carries the query", i, in.Path)
		}
		if in.Status < 300 && (in.Err != nil || in.Code != "") {
			t.Errorf("request %d (%s %d): err %v, code %q on success", i, in.Method, in.Status, in.Err, in.Code)
		}
	}
	if infos[1].Path != item || infos[6].Path != item {
		t.Errorf("PATCH path %q, DELETE path %q; want %q", infos[1].Path, infos[6].Path, item)
	}
	last := infos[len(infos)-1]
	var ae *graph.APIError
	if !errors.As(last.Err, &ae) || last.Code != "ResourceNotFound" || ae.RequestID != last.RequestID {
		t.Errorf("404: err %v, code %q, request-id %q", last.Err, last.Code, last.RequestID)
	}
	// The base client has no observer: nothing it sends is reported.
	if _, err := base.List(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(o.all()); n != len(infos) {
		t.Errorf("observer told of %d requests after the base client listed, want still %d", n, len(infos))
	}
}

func TestObserverSeesFailuresWithCodeAndNoToken(t *testing.T) {
	var o observed
	em, base := setup(t)
	c := base.WithObserver(o.observe)
	ctx := context.Background()

	em.Inject(emulator.Fault{Method: "POST", Count: 1, Status: http.StatusServiceUnavailable})
	if _, err := c.Create(ctx, seedAssociation()); err == nil {
		t.Fatal("Create succeeded despite the injected 503")
	}
	em.Inject(emulator.Fault{Method: "POST", Count: 1, DropAfterApply: true})
	if _, err := c.Create(ctx, seedAssociation()); !graph.OutcomeUnknown(err) {
		t.Fatalf("lost answer: %v, want outcome unknown", err)
	}

	infos := o.all()
	reqs := em.Requests()
	if len(infos) != 2 || len(reqs) != 2 {
		t.Fatalf("observed %d requests, emulator received %d; want 2 each", len(infos), len(reqs))
	}
	failed, lost := infos[0], infos[1]
	if failed.Status != 503 || failed.Code != "ServiceUnavailable" || failed.RequestID != reqs[0].RequestID ||
		failed.ClientRequestID != reqs[0].ClientRequestID {
		t.Errorf("503: observed %+v, emulator %+v", failed, reqs[0])
	}
	var ae *graph.APIError
	if !errors.As(failed.Err, &ae) || ae.Status != 503 {
		t.Errorf("503: err = %v", failed.Err)
	}
	// No answer: no status, no request-id, but our client-request-id.
	var te *graph.TransportError
	if lost.Status != 0 || lost.RequestID != "" || lost.Code != "" || !errors.As(lost.Err, &te) ||
		lost.ClientRequestID != reqs[1].ClientRequestID {
		t.Errorf("lost answer: observed %+v (err %v), emulator %+v", lost, lost.Err, reqs[1])
	}
	for _, in := range infos {
		if s := fmt.Sprintf("%+v %v", in, in.Err); strings.Contains(s, "test-token") {
			t.Errorf("request info carries the token: %s", s)
		}
	}
}

func TestObserverTimesTheRequest(t *testing.T) {
	var o observed
	em, base := setup(t)
	em.SetLatency(40 * time.Millisecond)
	before := time.Now()
	if _, err := base.WithObserver(o.observe).List(context.Background()); err != nil {
		t.Fatal(err)
	}
	infos := o.all()
	if len(infos) != 1 {
		t.Fatalf("observed %d requests, want 1", len(infos))
	}
	if d := infos[0].Duration; d < 40*time.Millisecond || d > 10*time.Second {
		t.Errorf("duration = %v, want at least the emulator's 40 ms latency", d)
	}
	if s := infos[0].Start; s.Before(before) || s.After(before.Add(time.Second)) {
		t.Errorf("start = %v, want just after %v", s, before)
	}
}

func TestObserverOptionAndCopies(t *testing.T) {
	em := emulator.New()
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	var o observed
	c, err := graph.New(srv.URL+"/beta", graph.WithObserver(o.observe))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// No token source: nothing is sent, so nothing is reported.
	if _, err := c.List(ctx); !errors.Is(err, graph.ErrNoTokenSource) {
		t.Fatalf("List without a token source: %v", err)
	}
	if n := len(o.all()); n != 0 {
		t.Fatalf("observer told of %d requests that were never sent", n)
	}
	// A copy with a token source keeps the observer.
	if _, err := c.WithTokenSource(token("alice")).List(ctx); err != nil {
		t.Fatal(err)
	}
	// A copy with another observer tells only that one.
	var other observed
	if _, err := c.WithTokenSource(token("bob")).WithObserver(other.observe).List(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := len(o.all()), 1; got != want {
		t.Errorf("first observer told of %d requests, want %d", got, want)
	}
	if got, want := len(other.all()), 1; got != want {
		t.Errorf("second observer told of %d requests, want %d", got, want)
	}
	wantSameRequests(t, append(o.all(), other.all()...), em.Requests())
}
