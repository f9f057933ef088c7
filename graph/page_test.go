package graph_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
)

// pagedServer serves the listing bodies in order: body i answers the request
// with $skiptoken=p<i> (the first has none), and "NEXT" in a body becomes
// the absolute link to the following page. It records the requests.
type pagedServer struct {
	mu     sync.Mutex
	bodies []string
	calls  []string
}

func (s *pagedServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *pagedServer) client(t *testing.T) *graph.Client {
	return clientFor(t, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls = append(s.calls, r.Method+" "+r.URL.RequestURI())
		s.mu.Unlock()
		i := 0
		if tok := r.URL.Query().Get("$skiptoken"); tok != "" {
			i = int(tok[1] - '0')
		}
		if r.Method != http.MethodGet || r.URL.Path != "/beta/deviceManagement/cartToClassAssociations" || i >= len(s.bodies) {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		next := "http://" + r.Host + r.URL.Path + "?$skiptoken=p" + string(rune('0'+i+1))
		io.WriteString(w, strings.ReplaceAll(s.bodies[i], "NEXT", next))
	})
}

func ids(as []graph.Association) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func TestPagesYieldsEachPageLazily(t *testing.T) {
	s := &pagedServer{bodies: []string{
		`{"@odata.context":"x","value":[{"id":"a1"},{"id":"a2"}],"@odata.nextLink":"NEXT"}`,
		`{"value":[],"@odata.nextLink":"NEXT"}`, // an empty page in the middle
		`{"value":[{"id":"a3","displayName":"C"}],"@odata.nextLink":"NEXT"}`,
		`{"value":[{"id":"a4"}]}`,
	}}
	c := s.client(t)
	want := [][]string{{"a1", "a2"}, nil, {"a3"}, {"a4"}}
	n := 0
	for page, err := range c.Pages(context.Background()) {
		if err != nil {
			t.Fatalf("page %d: %v", n, err)
		}
		// The next page is requested only after the body returns.
		if got := s.count(); got != n+1 {
			t.Errorf("during page %d the server had %d requests, want %d", n, got, n+1)
		}
		if n >= len(want) {
			t.Fatalf("extra page %+v", page)
		}
		if !slices.Equal(ids(page.Objects), want[n]) || len(page.Skipped) != 0 {
			t.Errorf("page %d = %+v, want ids %v", n, page, want[n])
		}
		if page.Last != (n == len(want)-1) {
			t.Errorf("page %d Last = %v", n, page.Last)
		}
		n++
	}
	if n != len(want) || s.count() != len(want) {
		t.Errorf("%d pages from %d requests (%v), want %d", n, s.count(), s.calls, len(want))
	}
	if s.calls[1] != "GET /beta/deviceManagement/cartToClassAssociations?$skiptoken=p1" {
		t.Errorf("second request %q does not follow the nextLink", s.calls[1])
	}
}

func TestPagesSkipsMalformedObjects(t *testing.T) {
	const page = `{"value":[
		{"id":"good1","displayName":"<script>alert(1)</script>","description":"Straße ✓ \u202e עברית 😀",
		 "roleScopeTagIds":["0"],"someFutureProperty":{"nested":[1,2]},"@odata.type":"#microsoft.graph.cartToClassAssociation"},
		{"id":"bad-version","version":"seven"},
		{"id":"bad-carts","deviceCartIds":"x"},
		{"id":"bad-rooms","classroomIds":[1]},
		{"id":"bad-date","createdDateTime":"yesterday"},
		{"displayName":"no id"},
		{"id":"","displayName":"empty id"},
		{"id":"   "},
		{"id":7},
		null,
		"a string",
		[1],
		{"id":"good2","version":3,"deviceCartIds":null,"classroomIds":["r1"]}
	]}`
	s := &pagedServer{bodies: []string{page}}
	c := s.client(t)
	var pages []graph.Page
	for p, err := range c.Pages(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p)
	}
	if len(pages) != 1 || !pages[0].Last {
		t.Fatalf("pages = %+v, want one last page", pages)
	}
	p := pages[0]
	if got := ids(p.Objects); !slices.Equal(got, []string{"good1", "good2"}) {
		t.Errorf("objects = %v, want good1, good2", got)
	}
	if g := p.Objects[0]; g.DisplayName != "<script>alert(1)</script>" || g.Description != "Straße ✓ \u202e עברית 😀" {
		t.Errorf("strings were altered: %q %q", g.DisplayName, g.Description)
	}
	if g := p.Objects[1]; g.Version != 3 || g.DeviceCartIDs != nil || !slices.Equal(g.ClassroomIDs, []string{"r1"}) {
		t.Errorf("good2 = %+v", g)
	}
	wantSkipped := []string{"bad-version", "bad-carts", "bad-rooms", "bad-date", "", "", "", "", "", "", ""}
	var gotSkipped []string
	for _, sk := range p.Skipped {
		gotSkipped = append(gotSkipped, sk.ID)
		if sk.Err == nil || sk.Error() == "" {
			t.Errorf("skipped %q without a reason", sk.ID)
		}
	}
	if !slices.Equal(gotSkipped, wantSkipped) {
		t.Errorf("skipped ids = %q, want %q", gotSkipped, wantSkipped)
	}
	if !strings.Contains(p.Skipped[0].Err.Error(), "version") {
		t.Errorf("reason %q does not name the property", p.Skipped[0].Err)
	}

	// List keeps failing on an object it cannot read, as before Pages existed.
	if got, err := c.List(context.Background()); err == nil {
		t.Errorf("List = %v, want an error for the unreadable objects", ids(got))
	} else if !strings.Contains(err.Error(), "11 object(s)") {
		t.Errorf("List error %q does not count the skipped objects", err)
	}
}

func TestPagesBrokenBodyIsAnError(t *testing.T) {
	for name, body := range map[string]string{
		"html":            `<html><body>Service Unavailable</body></html>`,
		"truncated":       `{"value":[{"id":"a1"},{"id":"a`,
		"empty":           ``,
		"null":            `null`,
		"array":           `[{"id":"a1"}]`,
		"no value":        `{"@odata.context":"x"}`,
		"value null":      `{"value":null}`,
		"value object":    `{"value":{"id":"a1"}}`,
		"value string":    `{"value":"a1"}`,
		"nextLink number": `{"value":[],"@odata.nextLink":7}`,
	} {
		t.Run(name, func(t *testing.T) {
			// The broken page comes second, after a good one.
			s := &pagedServer{bodies: []string{`{"value":[{"id":"a1"}],"@odata.nextLink":"NEXT"}`, body, `{"value":[]}`}}
			c := s.client(t)
			var got []string
			errs := 0
			for p, err := range c.Pages(context.Background()) {
				if err != nil {
					errs++
					var te *graph.TransportError
					if !errors.As(err, &te) || te.Status != 200 {
						t.Errorf("err = %v, want a TransportError after status 200", err)
					}
					if p.Objects != nil || p.Last {
						t.Errorf("error came with a page: %+v", p)
					}
					continue
				}
				got = append(got, ids(p.Objects)...)
			}
			if errs != 1 || !slices.Equal(got, []string{"a1"}) {
				t.Errorf("got ids %v and %d errors, want a1 then one error", got, errs)
			}
			if s.count() != 2 {
				t.Errorf("%d requests, want 2 (nothing after the failure)", s.count())
			}
			if _, err := c.List(context.Background()); err == nil {
				t.Error("List succeeded")
			}
		})
	}
}

func TestPagesRefusesForeignAndRepeatedNextLinks(t *testing.T) {
	var foreignCalls atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignCalls.Add(1)
		io.WriteString(w, `{"value":[]}`)
	}))
	t.Cleanup(foreign.Close)
	for name, link := range map[string]string{
		"foreign host":   foreign.URL + "/beta/deviceManagement/cartToClassAssociations?$skiptoken=x",
		"other scheme":   "https://SELFHOST/beta/deviceManagement/cartToClassAssociations?$skiptoken=x",
		"back to first":  "http://SELFHOST/beta/deviceManagement/cartToClassAssociations",
		"repeats itself": "http://SELFHOST/beta/deviceManagement/cartToClassAssociations?$skiptoken=p0",
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				l := strings.ReplaceAll(link, "SELFHOST", r.Host)
				if n == 1 && strings.HasSuffix(link, "p0") {
					l = "http://" + r.Host + r.URL.Path + "?$skiptoken=p0"
				}
				io.WriteString(w, `{"value":[{"id":"a`+string(rune('0'+n))+`"}],"@odata.nextLink":"`+l+`"}`)
			})
			var pages []graph.Page
			var errs []error
			for p, err := range c.Pages(context.Background()) {
				if err != nil {
					errs = append(errs, err)
				} else {
					pages = append(pages, p)
				}
			}
			if len(errs) != 1 {
				t.Fatalf("errors = %v, want one", errs)
			}
			for _, p := range pages {
				if p.Last {
					t.Error("a page of a failed listing is marked Last")
				}
			}
			if len(pages) == 0 || pages[0].Objects[0].ID != "a1" {
				t.Errorf("pages = %+v, want the page carrying the link first", pages)
			}
			if n := calls.Load(); n > 2 {
				t.Errorf("kept following: %d requests", n)
			}
			if n := foreignCalls.Load(); n != 0 {
				t.Errorf("the bearer token went to another host (%d requests)", n)
			}
		})
	}
}

func TestPagesStopsWhenTheCallerStops(t *testing.T) {
	s := &pagedServer{bodies: []string{
		`{"value":[{"id":"a1"}],"@odata.nextLink":"NEXT"}`,
		`{"value":[{"id":"a2"}],"@odata.nextLink":"NEXT"}`,
		`{"value":[{"id":"a3"}]}`,
	}}
	c := s.client(t)
	for range c.Pages(context.Background()) {
		break
	}
	time.Sleep(20 * time.Millisecond) // nothing may be sent in the background either
	if n := s.count(); n != 1 {
		t.Errorf("break after the first page: %d requests, want 1", n)
	}

	// A context canceled in the body stops the listing before the next request.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errs []error
	for _, err := range c.Pages(ctx) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cancel()
	}
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) || graph.OutcomeUnknown(errs[0]) {
		t.Errorf("errors = %v, want one context.Canceled, not outcome unknown", errs)
	}
	if n := s.count(); n != 2 {
		t.Errorf("%d requests in all, want 2", n)
	}
}

func TestPagesOverTheEmulator(t *testing.T) {
	em, c := setup(t, emulator.WithPageSize(2), emulator.WithEmptyPages())
	ctx := context.Background()
	var want []string
	for i := range 5 {
		a, err := c.Create(ctx, graph.Association{DisplayName: "cart " + string(rune('A'+i))})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, a.ID)
	}
	var got []string
	var sizes []int
	lasts := 0
	for p, err := range c.Pages(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(p.Objects)...)
		sizes = append(sizes, len(p.Objects))
		if p.Last {
			lasts++
		}
	}
	if !slices.Equal(got, want) || lasts != 1 {
		t.Errorf("ids %v (%d last pages), want %v and one last page", got, lasts, want)
	}
	if !slices.Equal(sizes, []int{2, 0, 2, 0, 1}) {
		t.Errorf("page sizes %v, want [2 0 2 0 1]", sizes)
	}

	// A failure part-way is reported after the pages already read, never as a complete listing.
	var errs []error
	pages := 0
	for p, err := range c.Pages(ctx) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p.Last {
			t.Error("a listing that failed part-way reached Last")
		}
		if pages++; pages == 1 {
			em.Inject(emulator.Fault{Method: "GET", Count: 1, Status: 503})
		}
	}
	var ae *graph.APIError
	if pages != 1 || len(errs) != 1 || !errors.As(errs[0], &ae) || ae.Status != 503 {
		t.Errorf("%d pages then %v, want one page then a 503", pages, errs)
	}
}
