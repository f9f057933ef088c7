package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// seedCreateBody is the request body of the create seed page
// (shared/seeds/001_…txt), which Create must reproduce exactly.
const seedCreateBody = `{
  "@odata.type": "#microsoft.graph.cartToClassAssociation",
  "version": 7,
  "displayName": "Display Name value",
  "description": "Description value",
  "deviceCartIds": [
    "Device Cart Ids value"
  ],
  "classroomIds": [
    "Classroom Ids value"
  ]
}`

func token(s string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: s})
}

// setup starts an emulator behind httptest and a client pointed at it.
func setup(t *testing.T, opts ...emulator.Option) (*emulator.Emulator, *graph.Client) {
	t.Helper()
	em := emulator.New(opts...)
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	c, err := graph.New(srv.URL+"/beta", graph.WithTokenSource(token("test-token")))
	if err != nil {
		t.Fatal(err)
	}
	return em, c
}

// clientFor returns a client for a hand-written handler.
func clientFor(t *testing.T, h http.HandlerFunc) *graph.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := graph.New(srv.URL+"/beta/", graph.WithTokenSource(token("t")))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func seedAssociation() graph.Association {
	return graph.Association{
		Version:       7,
		DisplayName:   "Display Name value",
		Description:   "Description value",
		DeviceCartIDs: []string{"Device Cart Ids value"},
		ClassroomIDs:  []string{"Classroom Ids value"},
	}
}

func lastRequest(t *testing.T, em *emulator.Emulator, method string) emulator.Request {
	t.Helper()
	reqs := em.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Method == method {
			return reqs[i]
		}
	}
	t.Fatalf("no %s request recorded", method)
	return emulator.Request{}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "graph.microsoft.com/beta", "ftp://x/beta", "https:///beta", "https://x/beta?a=b", "://"} {
		if _, err := graph.New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

func TestCreateSendsSeedShapedBody(t *testing.T) {
	em, c := setup(t)
	in := seedAssociation()
	// Server-owned fields must never be sent, whatever the caller holds.
	in.ID = "f4785119-5119-f478-1951-78f4195178f4"
	in.CreatedDateTime = time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)
	in.LastModifiedDateTime = in.CreatedDateTime

	got, err := c.Create(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	req := lastRequest(t, em, http.MethodPost)
	if req.Path != "/beta/deviceManagement/cartToClassAssociations" {
		t.Errorf("POST path = %q", req.Path)
	}
	if sent, want := decodeMap(t, req.Body), decodeMap(t, []byte(seedCreateBody)); !reflect.DeepEqual(sent, want) {
		t.Errorf("POST body = %s\nwant the seed's %s", req.Body, seedCreateBody)
	}

	if _, err := uuid.Parse(got.ID); err != nil || got.ID == in.ID {
		t.Errorf("created id = %q, want a new GUID", got.ID)
	}
	if got.CreatedDateTime.IsZero() || !got.LastModifiedDateTime.Equal(got.CreatedDateTime) {
		t.Errorf("timestamps = %v / %v", got.CreatedDateTime, got.LastModifiedDateTime)
	}
	want := seedAssociation()
	want.ID, want.CreatedDateTime, want.LastModifiedDateTime = got.ID, got.CreatedDateTime, got.LastModifiedDateTime
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Create returned %+v\nwant %+v", got, want)
	}
	if objs := em.Objects(); len(objs) != 1 || objs[0].ID != got.ID {
		t.Errorf("emulator holds %+v", objs)
	}
}

func TestCreateSendsEmptyCollectionsAsArrays(t *testing.T) {
	em, c := setup(t)
	if _, err := c.Create(context.Background(), graph.Association{DisplayName: "Cart 1"}); err != nil {
		t.Fatal(err)
	}
	body := string(lastRequest(t, em, http.MethodPost).Body)
	for _, want := range []string{`"deviceCartIds":[]`, `"classroomIds":[]`} {
		if !strings.Contains(body, want) {
			t.Errorf("POST body %s lacks %s", body, want)
		}
	}
	if strings.Contains(body, "null") {
		t.Errorf("POST body contains null: %s", body)
	}
}

func TestUpdateSendsOnlyChangedProperties(t *testing.T) {
	tests := []struct {
		name     string
		change   func(*graph.Association)
		wantKeys []string
	}{
		{"display name", func(a *graph.Association) { a.DisplayName = "Room 12 carts" }, []string{"displayName"}},
		{"cart added", func(a *graph.Association) { a.DeviceCartIDs = append(a.DeviceCartIDs, "cart-2") }, []string{"deviceCartIds"}},
		{"classrooms cleared", func(a *graph.Association) { a.ClassroomIDs = nil }, []string{"classroomIds"}},
		{"version and description", func(a *graph.Association) { a.Version = 8; a.Description = "" }, []string{"version", "description"}},
	}
	for _, status := range []int{http.StatusNoContent, http.StatusOK} {
		for _, tt := range tests {
			t.Run(http.StatusText(status)+"/"+tt.name, func(t *testing.T) {
				em, c := setup(t, emulator.WithPatchResponse(status))
				ctx := context.Background()
				old, err := c.Create(ctx, seedAssociation())
				if err != nil {
					t.Fatal(err)
				}
				next := old
				next.DeviceCartIDs = slices.Clone(old.DeviceCartIDs)
				next.ClassroomIDs = slices.Clone(old.ClassroomIDs)
				tt.change(&next)
				p := graph.Diff(old, next)

				got, err := c.Update(ctx, old.ID, p)
				if err != nil {
					t.Fatal(err)
				}

				req := lastRequest(t, em, http.MethodPatch)
				if req.Path != "/beta/deviceManagement/cartToClassAssociations/"+old.ID {
					t.Errorf("PATCH path = %q", req.Path)
				}
				sent := decodeMap(t, req.Body)
				keys := []string{}
				for k := range sent {
					keys = append(keys, k)
				}
				wantKeys := append([]string{"@odata.type"}, tt.wantKeys...)
				slices.Sort(keys)
				slices.Sort(wantKeys)
				if !slices.Equal(keys, wantKeys) {
					t.Errorf("PATCH body %s has keys %v, want %v", req.Body, keys, wantKeys)
				}
				if sent["@odata.type"] != "#microsoft.graph.cartToClassAssociation" {
					t.Errorf("@odata.type = %v", sent["@odata.type"])
				}

				remote := em.Objects()[0]
				if remote.DisplayName != next.DisplayName || remote.Description != next.Description ||
					remote.Version != next.Version || !slices.Equal(remote.DeviceCartIDs, next.DeviceCartIDs) ||
					!slices.Equal(remote.ClassroomIDs, next.ClassroomIDs) {
					t.Errorf("remote after PATCH = %+v, want values of %+v", remote, next)
				}

				switch status {
				case http.StatusNoContent:
					if got != nil {
						t.Errorf("204 PATCH returned %+v, want nil", got)
					}
				case http.StatusOK:
					if got == nil {
						t.Fatal("200 PATCH returned nil")
					}
					if got.ID != old.ID || got.DisplayName != next.DisplayName || !slices.Equal(got.DeviceCartIDs, next.DeviceCartIDs) {
						t.Errorf("200 PATCH returned %+v", got)
					}
					if got.LastModifiedDateTime.Before(old.LastModifiedDateTime) {
						t.Errorf("lastModifiedDateTime went back: %v < %v", got.LastModifiedDateTime, old.LastModifiedDateTime)
					}
				}
			})
		}
	}
}

func TestListFollowsNextLinkAcrossPages(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []emulator.Option
		n         int
		wantPages int
	}{
		{"empty", []emulator.Option{emulator.WithPageSize(2)}, 0, 1},
		{"one page", []emulator.Option{emulator.WithPageSize(2)}, 2, 1},
		{"three pages", []emulator.Option{emulator.WithPageSize(2)}, 5, 3},
		{"default page size", nil, 11, 3},
		{"with empty pages between", []emulator.Option{emulator.WithPageSize(2), emulator.WithEmptyPages()}, 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			em, c := setup(t, tc.opts...)
			ctx := context.Background()
			var ids []string
			for i := range tc.n {
				a, err := c.Create(ctx, graph.Association{DisplayName: "cart " + string(rune('A'+i))})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, a.ID)
			}
			before := len(em.Requests())
			got, err := c.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, a := range got {
				gotIDs = append(gotIDs, a.ID)
			}
			if !slices.Equal(gotIDs, ids) {
				t.Errorf("List ids = %v, want %v (creation order)", gotIDs, ids)
			}
			reqs := em.Requests()[before:]
			if len(reqs) != tc.wantPages {
				t.Errorf("List made %d requests, want %d", len(reqs), tc.wantPages)
			}
			for i, r := range reqs {
				if r.Method != http.MethodGet || r.Status != http.StatusOK {
					t.Errorf("page request %d: %s %d", i, r.Method, r.Status)
				}
				if i > 0 && !strings.Contains(r.Query, "$skiptoken=") {
					t.Errorf("page request %d has no $skiptoken: %q", i, r.Query)
				}
			}
		})
	}
}

// A server that starts and ends with empty pages, linked by nextLinks.
func TestListToleratesEmptyPages(t *testing.T) {
	var calls []string
	var mu sync.Mutex
	var c *graph.Client
	c = clientFor(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.URL.RequestURI())
		mu.Unlock()
		base := "http://" + r.Host + "/beta/deviceManagement/cartToClassAssociations"
		switch r.URL.Query().Get("$skiptoken") {
		case "":
			io.WriteString(w, `{"@odata.context":"x","value":[],"@odata.nextLink":"`+base+`?$skiptoken=p2"}`)
		case "p2":
			io.WriteString(w, `{"value":[{"id":"a1","displayName":"A","createdDateTime":"2017-01-01T00:02:37.446308+03:00"}],"@odata.nextLink":"`+base+`?$skiptoken=p3"}`)
		case "p3":
			io.WriteString(w, `{"value":[],"@odata.nextLink":"`+base+`?$skiptoken=p4"}`)
		case "p4":
			io.WriteString(w, `{"value":[{"id":"a2","displayName":"B"}]}`)
		default:
			http.Error(w, "bad", 400)
		}
	})
	got, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "a1" || got[1].ID != "a2" {
		t.Errorf("List = %+v", got)
	}
	if len(calls) != 4 {
		t.Errorf("calls = %v, want 4", calls)
	}
}

func TestListRefusesForeignOrLoopingNextLink(t *testing.T) {
	// A foreign server that answers, so only the client's own check keeps the token from it.
	var foreignCalls atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignCalls.Add(1)
		io.WriteString(w, `{"value":[]}`)
	}))
	t.Cleanup(foreign.Close)
	for name, link := range map[string]string{
		"foreign host": foreign.URL + "/beta/deviceManagement/cartToClassAssociations?$skiptoken=x",
		"loop":         "SELF?$skiptoken=same",
	} {
		t.Run(name, func(t *testing.T) {
			var hosts []string
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
				hosts = append(hosts, r.Host)
				l := strings.Replace(link, "SELF", "http://"+r.Host+r.URL.Path, 1)
				io.WriteString(w, `{"value":[],"@odata.nextLink":"`+l+`"}`)
			})
			if _, err := c.List(context.Background()); err == nil {
				t.Fatal("List succeeded")
			}
			if len(hosts) > 2 {
				t.Errorf("List kept following: %d requests", len(hosts))
			}
			if n := foreignCalls.Load(); n != 0 {
				t.Errorf("the bearer token went to another host (%d requests)", n)
			}
		})
	}
}

func TestGetBareAndWrapped(t *testing.T) {
	const obj = `{"@odata.type":"#microsoft.graph.cartToClassAssociation","id":"36aa71ae-71ae-36aa-ae71-aa36ae71aa36",
		"createdDateTime":"2017-01-01T00:00:46.1697867+03:00","lastModifiedDateTime":"2016-12-31T23:58:46.8102575+03:00",
		"version":7,"displayName":"Display Name value","description":"Description value",
		"deviceCartIds":["Device Cart Ids value"],"classroomIds":["Classroom Ids value"]}`
	for name, body := range map[string]string{
		"bare":    obj,
		"wrapped": `{"@odata.context":"https://graph.microsoft.com/beta/$metadata#x","value":` + obj + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			var path string
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path
				io.WriteString(w, body)
			})
			got, err := c.Get(context.Background(), "36aa71ae-71ae-36aa-ae71-aa36ae71aa36")
			if err != nil {
				t.Fatal(err)
			}
			if path != "/beta/deviceManagement/cartToClassAssociations/36aa71ae-71ae-36aa-ae71-aa36ae71aa36" {
				t.Errorf("path = %q", path)
			}
			want := time.Date(2017, 1, 1, 0, 0, 46, 169786700, time.FixedZone("", 3*3600))
			if got.ID != "36aa71ae-71ae-36aa-ae71-aa36ae71aa36" || got.DisplayName != "Display Name value" ||
				got.Version != 7 || !got.CreatedDateTime.Equal(want) ||
				!slices.Equal(got.ClassroomIDs, []string{"Classroom Ids value"}) {
				t.Errorf("Get = %+v", got)
			}
		})
	}
}

func TestGetFromEmulatorAndNotFound(t *testing.T) {
	em, c := setup(t)
	ctx := context.Background()
	a, err := c.Create(ctx, seedAssociation())
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("Get = %+v\nwant %+v", got, a)
	}
	if err := c.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if len(em.Objects()) != 0 {
		t.Errorf("objects after delete: %+v", em.Objects())
	}
	for name, call := range map[string]func() error{
		"get":    func() error { _, err := c.Get(ctx, a.ID); return err },
		"update": func() error { _, err := c.Update(ctx, a.ID, graph.Patch{DisplayName: new(string)}); return err },
		"delete": func() error { return c.Delete(ctx, a.ID) },
	} {
		err := call()
		var ae *graph.APIError
		if !graph.IsNotFound(err) || !errors.As(err, &ae) || ae.Code != "ResourceNotFound" {
			t.Errorf("%s after delete: %v, want 404 ResourceNotFound", name, err)
		}
		if graph.OutcomeUnknown(err) {
			t.Errorf("%s: 404 reported as outcome unknown", name)
		}
	}
	if _, err := c.Get(ctx, " "); err == nil {
		t.Error("Get with an empty id succeeded")
	}
}

func TestAPIErrorDecoding(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		want    graph.APIError
		errText string
	}{
		{
			name:   "nested innerError",
			status: 400,
			header: map[string]string{"request-id": "header-rid"},
			body: `{"error":{"code":"BadRequest","message":"Property 'foo' is bad.","innerError":{"date":"2024-03-01T12:00:00",
				"innerError":{"request-id":"body-rid","client-request-id":"crid-1","innerError":{"code":"deeper"}}}}}`,
			want: graph.APIError{Status: 400, Code: "BadRequest", Message: "Property 'foo' is bad.",
				RequestID: "body-rid", ClientRequestID: "crid-1", Date: "2024-03-01T12:00:00"},
			errText: "graph: 400 BadRequest: Property 'foo' is bad. (request-id body-rid)",
		},
		{
			name:   "flat innerError",
			status: 403,
			body: `{"error":{"code":"Forbidden","message":"Application must have one of the following scopes: X",
				"innerError":{"request-id":"r2","date":"2024-03-01T12:00:01","client-request-id":"c2"}}}`,
			want: graph.APIError{Status: 403, Code: "Forbidden", Message: "Application must have one of the following scopes: X",
				RequestID: "r2", ClientRequestID: "c2", Date: "2024-03-01T12:00:01"},
		},
		{
			name:    "not JSON: request-id from header",
			status:  502,
			header:  map[string]string{"request-id": "gw-rid", "Date": "Fri, 01 Mar 2024 12:00:00 GMT"},
			body:    "<html><body>Bad Gateway</body></html>",
			want:    graph.APIError{Status: 502, Message: "<html><body>Bad Gateway</body></html>", RequestID: "gw-rid", Date: "Fri, 01 Mar 2024 12:00:00 GMT"},
			errText: "graph: 502: <html><body>Bad Gateway</body></html> (request-id gw-rid)",
		},
		{
			name:   "empty body with fractional Retry-After",
			status: 429,
			header: map[string]string{"Retry-After": "2.128", "request-id": "r4"},
			want:   graph.APIError{Status: 429, RequestID: "r4", RetryAfter: 2128 * time.Millisecond, HasRetryAfter: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sentCRID string
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
				sentCRID = r.Header.Get("client-request-id")
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			_, err := c.Get(context.Background(), "x")
			var ae *graph.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			want := tt.want
			if want.ClientRequestID == "" {
				want.ClientRequestID = sentCRID // the request's own id, when Graph echoes none
			}
			if want.Date == "" {
				want.Date = ae.Date // net/http's Date header: only check it is set
				if ae.Date == "" {
					t.Error("Date empty")
				}
			}
			if !reflect.DeepEqual(*ae, want) {
				t.Errorf("APIError = %+v\nwant       %+v", *ae, want)
			}
			if tt.errText != "" && ae.Error() != tt.errText {
				t.Errorf("Error() = %q\nwant      %q", ae.Error(), tt.errText)
			}
		})
	}
}

func TestThrottleRetryAfterFromEmulator(t *testing.T) {
	em, c := setup(t)
	em.Inject(emulator.Fault{Method: "POST", Count: 1, Status: 429, RetryAfter: "2.128"})
	ctx := context.Background()
	_, err := c.Create(ctx, seedAssociation())
	var ae *graph.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if ae.Status != 429 || ae.Code != "TooManyRequests" || !ae.HasRetryAfter || ae.RetryAfter != 2128*time.Millisecond {
		t.Errorf("APIError = %+v, want 429 TooManyRequests with Retry-After 2.128s", ae)
	}
	req := lastRequest(t, em, http.MethodPost)
	if ae.RequestID != req.RequestID || ae.ClientRequestID != req.ClientRequestID {
		t.Errorf("ids = %q/%q, emulator recorded %q/%q", ae.RequestID, ae.ClientRequestID, req.RequestID, req.ClientRequestID)
	}
	if graph.OutcomeUnknown(err) {
		t.Error("429 reported as outcome unknown")
	}
	if len(em.Objects()) != 0 {
		t.Error("throttled create was applied")
	}
	// The fault was for one request only.
	if _, err := c.Create(ctx, seedAssociation()); err != nil {
		t.Fatal(err)
	}
}

func TestWriteLimitAnswers429(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	em, c := setup(t, emulator.WithWriteLimit(2, 20*time.Second), emulator.WithClock(func() time.Time { return now }))
	ctx := context.Background()
	for range 2 {
		if _, err := c.Create(ctx, seedAssociation()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Create(ctx, seedAssociation())
	var ae *graph.APIError
	if !errors.As(err, &ae) || ae.Status != 429 || !ae.HasRetryAfter || ae.RetryAfter != 20*time.Second {
		t.Fatalf("third write: %v (%+v), want 429 with Retry-After 20s", err, ae)
	}
	if n := len(em.Objects()); n != 2 {
		t.Errorf("emulator holds %d objects, want 2", n)
	}
	// Reads are not limited.
	if _, err := c.List(ctx); err != nil {
		t.Errorf("List under write limit: %v", err)
	}
}

func TestClientRequestIDIsFreshGUID(t *testing.T) {
	em, c := setup(t, emulator.WithPageSize(1))
	ctx := context.Background()
	a, err := c.Create(ctx, seedAssociation())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, seedAssociation()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx); err != nil { // two pages: two requests
		t.Fatal(err)
	}
	if _, err := c.Update(ctx, a.ID, graph.Patch{Version: new(int32)}); err != nil {
		t.Fatal(err)
	}
	reqs := em.Requests()
	if len(reqs) != 6 {
		t.Fatalf("recorded %d requests, want 6", len(reqs))
	}
	seen := map[string]bool{}
	for _, r := range reqs {
		u, err := uuid.Parse(r.ClientRequestID)
		if err != nil || u.Version() != 4 {
			t.Errorf("%s %s: client-request-id %q is not a random GUID", r.Method, r.Path, r.ClientRequestID)
		}
		if seen[r.ClientRequestID] {
			t.Errorf("client-request-id %q reused", r.ClientRequestID)
		}
		seen[r.ClientRequestID] = true
	}
}

func TestRequestHeaders(t *testing.T) {
	var got http.Header
	c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"abc"}`)
	})
	if _, err := c.Create(context.Background(), seedAssociation()); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"Authorization": "Bearer t", "Accept": "application/json", "Content-Type": "application/json"} {
		if got.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, got.Get(k), want)
		}
	}
}

func TestLostCreateResponseIsOutcomeUnknown(t *testing.T) {
	em, c := setup(t)
	em.Inject(emulator.Fault{Method: "POST", Count: 1, DropAfterApply: true})
	ctx := context.Background()
	_, err := c.Create(ctx, seedAssociation())
	if err == nil {
		t.Fatal("Create succeeded despite the dropped response")
	}
	var te *graph.TransportError
	if !errors.As(err, &te) || !te.Written {
		t.Fatalf("err = %v (%T), want *TransportError with Written", err, err)
	}
	if !graph.OutcomeUnknown(err) {
		t.Error("OutcomeUnknown = false for a lost response")
	}
	objs := em.Objects()
	if len(objs) != 1 {
		t.Fatalf("emulator holds %d objects, want exactly 1", len(objs))
	}
	// What the caller does next: list and adopt the match instead of re-sending.
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != objs[0].ID || list[0].DisplayName != "Display Name value" {
		t.Errorf("List after lost create = %+v", list)
	}
	if posts := countMethod(em.Requests(), http.MethodPost); posts != 1 {
		t.Errorf("%d POSTs reached the emulator, want 1 (the client must not retry)", posts)
	}
}

func TestLostUpdateResponseIsOutcomeUnknown(t *testing.T) {
	em, c := setup(t)
	ctx := context.Background()
	a, err := c.Create(ctx, seedAssociation())
	if err != nil {
		t.Fatal(err)
	}
	em.Inject(emulator.Fault{Method: "PATCH", Count: 1, DropAfterApply: true})
	name := "renamed"
	_, err = c.Update(ctx, a.ID, graph.Patch{DisplayName: &name})
	if !graph.OutcomeUnknown(err) {
		t.Fatalf("err = %v, want outcome unknown", err)
	}
	if got := em.Objects()[0].DisplayName; got != name {
		t.Errorf("remote name = %q; DropAfterApply must apply the change", got)
	}
}

func TestDroppedBeforeApplyIsStillAmbiguousToTheClient(t *testing.T) {
	em, c := setup(t)
	em.Inject(emulator.Fault{Method: "POST", Count: 1, DropBeforeApply: true})
	_, err := c.Create(context.Background(), seedAssociation())
	// The request was written, so the client cannot know it was not applied.
	if !graph.OutcomeUnknown(err) {
		t.Fatalf("err = %v, want outcome unknown", err)
	}
	if n := len(em.Objects()); n != 0 {
		t.Errorf("emulator holds %d objects, want 0", n)
	}
}

func TestDialFailureIsNotOutcomeUnknown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := graph.New("http://"+addr+"/beta", graph.WithTokenSource(token("t")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Create(context.Background(), seedAssociation())
	var te *graph.TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T), want *TransportError", err, err)
	}
	if te.Written || graph.OutcomeUnknown(err) {
		t.Errorf("dial failure reported as outcome unknown: %v", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Errorf("err does not unwrap to the dial error: %v", err)
	}
}

func TestCanceledContextBeforeSendIsNotOutcomeUnknown(t *testing.T) {
	em, c := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Create(ctx, seedAssociation())
	if !errors.Is(err, context.Canceled) || graph.OutcomeUnknown(err) {
		t.Errorf("err = %v, want context.Canceled, outcome known", err)
	}
	if len(em.Requests()) != 0 {
		t.Error("a request reached the emulator")
	}
}

func TestTimeoutAfterSendIsOutcomeUnknown(t *testing.T) {
	em, c := setup(t)
	em.Inject(emulator.Fault{Method: "POST", Count: 1, Latency: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Create(ctx, seedAssociation())
	if !errors.Is(err, context.DeadlineExceeded) || !graph.OutcomeUnknown(err) {
		t.Errorf("err = %v, want deadline exceeded with outcome unknown", err)
	}
}

func TestServerErrorsAreOutcomeUnknown(t *testing.T) {
	for status, want := range map[int]bool{500: true, 502: true, 503: true, 504: true, 501: false, 400: false, 409: false, 429: false} {
		em, c := setup(t)
		em.Inject(emulator.Fault{Status: status})
		_, err := c.Create(context.Background(), seedAssociation())
		if got := graph.OutcomeUnknown(err); got != want {
			t.Errorf("status %d: OutcomeUnknown = %v, want %v (err %v)", status, got, want, err)
		}
	}
}

func TestAuthFailures(t *testing.T) {
	em, c := setup(t, emulator.WithAuthorizer(func(tok string, r *http.Request) int {
		switch tok {
		case "expired":
			return http.StatusUnauthorized
		case "reader":
			if r.Method != http.MethodGet {
				return http.StatusForbidden
			}
		}
		return 0
	}))
	ctx := context.Background()

	_, err := c.WithTokenSource(token("expired")).List(ctx)
	var ae *graph.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "InvalidAuthenticationToken" {
		t.Errorf("expired token: %v", err)
	}

	_, err = c.WithTokenSource(token("reader")).Create(ctx, seedAssociation())
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "Forbidden" {
		t.Fatalf("reader create: %v", err)
	}
	if !strings.Contains(ae.Message, "DeviceManagementConfiguration.ReadWrite.All") ||
		!strings.Contains(ae.Short(), "DeviceManagementConfiguration.ReadWrite.All") {
		t.Errorf("403 does not name the permission: message %q, short %q", ae.Message, ae.Short())
	}
	if _, err := c.WithTokenSource(token("reader")).List(ctx); err != nil {
		t.Errorf("reader list: %v", err)
	}
	if len(em.Objects()) != 0 {
		t.Error("refused create was applied")
	}

	if _, err := c.WithTokenSource(nil).List(ctx); !errors.Is(err, graph.ErrNoTokenSource) {
		t.Errorf("no token source: %v", err)
	}
	failing := oauth2.ReuseTokenSource(nil, tokenFunc(func() (*oauth2.Token, error) {
		return nil, &oauth2.RetrieveError{ErrorCode: "invalid_grant"}
	}))
	_, err = c.WithTokenSource(failing).List(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || graph.OutcomeUnknown(err) {
		t.Errorf("failing token source: %v", err)
	}
}

type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }

func TestWithTokenSourceIsACopy(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	em, base := setup(t, emulator.WithAuthorizer(func(tok string, r *http.Request) int {
		mu.Lock()
		seen = append(seen, tok)
		mu.Unlock()
		return 0
	}))
	_ = em
	ctx := context.Background()
	alice := base.WithTokenSource(token("alice"))
	if _, err := alice.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := base.List(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"alice", "test-token"}) {
		t.Errorf("tokens seen = %v", seen)
	}
}

func TestTimestampsFromEmulatorHaveSevenDigitsAndOffset(t *testing.T) {
	zone := time.FixedZone("", 3*3600)
	now := time.Date(2017, 1, 1, 0, 2, 37, 446308123, zone)
	em, c := setup(t, emulator.WithClock(func() time.Time { return now }))
	a, err := c.Create(context.Background(), seedAssociation())
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2017, 1, 1, 0, 2, 37, 446308100, zone) // Graph keeps 100 ns ticks
	if !a.CreatedDateTime.Equal(want) || !a.LastModifiedDateTime.Equal(want) {
		t.Errorf("timestamps = %v, %v; want %v", a.CreatedDateTime, a.LastModifiedDateTime, want)
	}
	if _, off := a.CreatedDateTime.Zone(); off != 3*3600 {
		t.Errorf("offset lost: %v", a.CreatedDateTime)
	}
	// Check the wire form through the emulator's raw answer.
	srv := httptest.NewServer(em)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/beta/deviceManagement/cartToClassAssociations/"+a.ID, nil)
	req.Header.Set("Authorization", "Bearer x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !regexp.MustCompile(`"createdDateTime":"2017-01-01T00:02:37\.4463081\+03:00"`).Match(body) {
		t.Errorf("wire form: %s", body)
	}
}

func countMethod(reqs []emulator.Request, method string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method {
			n++
		}
	}
	return n
}

func TestGetRejectsAnswersWithoutAnObject(t *testing.T) {
	for name, body := range map[string]string{
		"value null":  `{"value":null}`,
		"value array": `{"value":[{"id":"a1"}]}`,
		"no id":       `{"displayName":"x"}`,
		"garbage":     `<html></html>`,
	} {
		t.Run(name, func(t *testing.T) {
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
			if a, err := c.Get(context.Background(), "a1"); err == nil {
				t.Errorf("Get = %+v, want an error", a)
			}
		})
	}
	// Unknown properties, bare or wrapped, are ignored.
	c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"value":{"id":"a1","displayName":"A","roleScopeTagIds":["0"],"future":{"x":1}}}`)
	})
	if a, err := c.Get(context.Background(), "a1"); err != nil || a.ID != "a1" || a.DisplayName != "A" {
		t.Errorf("Get = %+v, %v", a, err)
	}
}

func TestDeleteAnswers(t *testing.T) {
	var got []string
	c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.EscapedPath())
		switch r.URL.Path {
		case "/beta/deviceManagement/cartToClassAssociations/gone":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"ResourceNotFound","message":"gone","innerError":{"request-id":"r1"}}}`)
		case "/beta/deviceManagement/cartToClassAssociations/bare404":
			http.NotFound(w, r) // a 404 without Graph's envelope still means gone
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	ctx := context.Background()
	if err := c.Delete(ctx, "a/1"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	for _, id := range []string{"gone", "bare404"} {
		err := c.Delete(ctx, id)
		if !graph.IsNotFound(err) || graph.OutcomeUnknown(err) {
			t.Errorf("Delete %s: %v, want IsNotFound and a definite answer", id, err)
		}
	}
	if want := []string{
		"DELETE /beta/deviceManagement/cartToClassAssociations/a%2F1",
		"DELETE /beta/deviceManagement/cartToClassAssociations/gone",
		"DELETE /beta/deviceManagement/cartToClassAssociations/bare404",
	}; !slices.Equal(got, want) {
		t.Errorf("requests %q, want %q", got, want)
	}
	if err := c.Delete(ctx, ""); err == nil {
		t.Error("Delete with an empty id succeeded")
	}
}
