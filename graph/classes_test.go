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

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
)

// classesURI is the first request of a classes listing.
const classesURI = "/beta/education/classes?$select=id,displayName,classCode,externalId"

// readClasses runs a whole ClassPages listing and returns its pages and errors.
func readClasses(t *testing.T, c *graph.Client) ([]graph.ClassPage, []error) {
	t.Helper()
	var pages []graph.ClassPage
	var errs []error
	for p, err := range c.ClassPages(context.Background()) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pages = append(pages, p)
	}
	return pages, errs
}

func allClasses(pages []graph.ClassPage) []graph.Class {
	var out []graph.Class
	for _, p := range pages {
		out = append(out, p.Classes...)
	}
	return out
}

func TestClassPagesReadsEveryPageOfTheEmulator(t *testing.T) {
	t.Parallel()
	em, c := setup(t, emulator.WithPageSize(40), emulator.WithEmptyPages())
	pages, errs := readClasses(t, c)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got, want := allClasses(pages), em.Classes(); !slices.Equal(got, want) {
		t.Errorf("read %d classes, want the emulator's %d", len(got), len(want))
	}
	lasts := 0
	for i, p := range pages {
		if p.Last {
			lasts++
			if i != len(pages)-1 {
				t.Errorf("page %d of %d is Last", i, len(pages))
			}
		}
		if len(p.Skipped) != 0 {
			t.Errorf("page %d skipped %v", i, p.Skipped)
		}
	}
	if lasts != 1 || len(pages) < 8 {
		t.Errorf("%d pages, %d last: want many pages (with empty ones) and one last", len(pages), lasts)
	}
	reqs := em.Requests()
	if len(reqs) != len(pages) {
		t.Errorf("%d requests for %d pages", len(reqs), len(pages))
	}
	if got := reqs[0].Path + "?" + reqs[0].Query; got != classesURI {
		t.Errorf("first request %q, want %q", got, classesURI)
	}
	for _, r := range reqs {
		// Every nextLink followed still asks only for the four properties.
		if r.Method != "GET" || r.Path != "/beta/education/classes" || !strings.Contains(r.Query, "$select=id,displayName,classCode,externalId") {
			t.Errorf("request %s %s?%s", r.Method, r.Path, r.Query)
		}
	}
}

func TestClassPagesRequestsLazilyAndStopsOnBreak(t *testing.T) {
	t.Parallel()
	em, c := setup(t, emulator.WithPageSize(3))
	n := 0
	for p, err := range c.ClassPages(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if got := len(em.Requests()); got != n+1 {
			t.Errorf("during page %d the emulator had %d requests, want %d", n, got, n+1)
		}
		if len(p.Classes) != 3 || p.Last {
			t.Errorf("page %d = %+v", n, p)
		}
		if n++; n == 2 {
			break
		}
	}
	if got := len(em.Requests()); got != 2 {
		t.Errorf("break after two pages: %d requests, want 2", got)
	}
}

func TestClassPagesForbiddenIsAnAPIError(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, c *graph.Client) {
		t.Helper()
		pages, errs := readClasses(t, c)
		var ae *graph.APIError
		if len(pages) != 0 || len(errs) != 1 || !errors.As(errs[0], &ae) {
			t.Fatalf("pages %v, errors %v: want one *APIError", pages, errs)
		}
		if ae.Status != http.StatusForbidden || ae.Code != "Authorization_RequestDenied" || ae.RequestID == "" {
			t.Errorf("APIError = %+v, want 403 Authorization_RequestDenied with a request-id", ae)
		}
		if graph.OutcomeUnknown(errs[0]) || graph.IsNotFound(errs[0]) {
			t.Errorf("403 classified as outcome unknown or not found")
		}
	}
	t.Run("switch", func(t *testing.T) {
		t.Parallel()
		em, c := setup(t)
		em.SetClassesForbidden(true)
		check(t, c)
		em.SetClassesForbidden(false)
		if _, errs := readClasses(t, c); len(errs) != 0 {
			t.Errorf("after SetClassesForbidden(false): %v", errs)
		}
	})
	t.Run("authorizer", func(t *testing.T) {
		t.Parallel()
		_, c := setup(t, emulator.WithAuthorizer(func(string, *http.Request) int { return http.StatusForbidden }))
		check(t, c)
	})
}

func TestClassPagesSkipsMalformedClasses(t *testing.T) {
	t.Parallel()
	const body = `{"value":[
		{"id":"c1","displayName":"7B Science","classCode":"SCI-7B","externalId":"MIS-2026-SCI-7B",
		 "term":{"displayName":"2026–27"},"@odata.type":"#microsoft.graph.educationClass","grade":null},
		{"id":"c2"},
		{"id":"c3","displayName":null,"classCode":null,"externalId":null},
		{"id":"bad-name","displayName":7},
		{"id":"bad-code","classCode":["x"]},
		{"id":7,"displayName":"number id"},
		{"id":null,"displayName":"null id"},
		{"displayName":"no id"},
		{"id":"  "},
		null,
		"c4",
		{"id":"c5","displayName":"<script>alert(1)</script>","classCode":"\"quoted\" & 'single'","externalId":"\u202eevil"}
	]}`
	c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RequestURI() != classesURI {
			http.Error(w, "unexpected "+r.URL.RequestURI(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, body)
	})
	pages, errs := readClasses(t, c)
	if len(errs) != 0 || len(pages) != 1 || !pages[0].Last {
		t.Fatalf("pages %+v, errors %v: want one last page", pages, errs)
	}
	want := []graph.Class{
		{ID: "c1", DisplayName: "7B Science", ClassCode: "SCI-7B", ExternalID: "MIS-2026-SCI-7B"},
		{ID: "c2"},
		{ID: "c3"},
		{ID: "c5", DisplayName: "<script>alert(1)</script>", ClassCode: `"quoted" & 'single'`, ExternalID: "\u202eevil"},
	}
	if got := pages[0].Classes; !slices.Equal(got, want) {
		t.Errorf("classes = %+v\nwant      %+v", got, want)
	}
	var skipped []string
	for _, s := range pages[0].Skipped {
		skipped = append(skipped, s.ID)
		if s.Err == nil {
			t.Errorf("skipped %q without a reason", s.ID)
		}
	}
	if want := []string{"bad-name", "bad-code", "", "", "", "", "", ""}; !slices.Equal(skipped, want) {
		t.Errorf("skipped ids %q, want %q", skipped, want)
	}
	if !strings.Contains(pages[0].Skipped[0].Err.Error(), "displayName") {
		t.Errorf("reason %q does not name the property", pages[0].Skipped[0].Err)
	}
}

func TestClassPagesBrokenEnvelopeIsAnError(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"html":       `<html>Service Unavailable</html>`,
		"truncated":  `{"value":[{"id":"c1"},{"id":"c`,
		"no value":   `{"@odata.context":"x"}`,
		"value null": `{"value":null}`,
		"array":      `[{"id":"c1"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
			pages, errs := readClasses(t, c)
			var te *graph.TransportError
			if len(pages) != 0 || len(errs) != 1 || !errors.As(errs[0], &te) || te.Status != 200 {
				t.Errorf("pages %v, errors %v: want one TransportError after 200", pages, errs)
			}
		})
	}
}

func TestClassPagesRefusesForeignAndRepeatedNextLinks(t *testing.T) {
	t.Parallel()
	var foreignCalls atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignCalls.Add(1)
		io.WriteString(w, `{"value":[]}`)
	}))
	t.Cleanup(foreign.Close)
	for name, link := range map[string]string{
		"foreign host":  foreign.URL + "/beta/education/classes?$skiptoken=x",
		"other scheme":  "https://SELFHOST/beta/education/classes?$skiptoken=x",
		"back to first": "http://SELFHOST" + classesURI,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			c := clientFor(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				l := strings.ReplaceAll(link, "SELFHOST", r.Host)
				io.WriteString(w, `{"value":[{"id":"c1"}],"@odata.nextLink":"`+l+`"}`)
			})
			pages, errs := readClasses(t, c)
			if len(pages) != 1 || pages[0].Last || pages[0].Classes[0].ID != "c1" {
				t.Errorf("pages %+v, want the page carrying the link, not Last", pages)
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), "nextLink") {
				t.Errorf("errors %v, want one about the nextLink", errs)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
	if n := foreignCalls.Load(); n != 0 {
		t.Errorf("the bearer token went to another host (%d requests)", n)
	}
}

func TestClassPagesHostileNamesRoundTrip(t *testing.T) {
	t.Parallel()
	em, c := setup(t, emulator.WithPageSize(2))
	in := []graph.Class{
		{ID: "h1", DisplayName: "<script>alert('x')</script>", ClassCode: `"><img src=x onerror=alert(1)>`, ExternalID: "a\\b\"c"},
		{ID: "h2", DisplayName: "\u202eecneicS B7", ClassCode: "SCI\u200f-7B", ExternalID: "עברית 😀 Straße"},
		{ID: "h3"}, // served with nulls
		{ID: "", DisplayName: "no id"},
		{ID: "h5", DisplayName: "  spaced  \n\ttabs ", ClassCode: "{{.}}", ExternalID: "${jndi:x}"},
	}
	em.SetClasses(in)
	pages, errs := readClasses(t, c)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got, want := allClasses(pages), slices.Delete(slices.Clone(in), 3, 4); !slices.Equal(got, want) {
		t.Errorf("classes = %q\nwant      %q", got, want)
	}
	skipped := 0
	for _, p := range pages {
		skipped += len(p.Skipped)
	}
	if skipped != 1 {
		t.Errorf("%d skipped, want the one without an id", skipped)
	}
}

func TestClassPagesConcurrentWithSetClasses(t *testing.T) {
	t.Parallel()
	em, c := setup(t, emulator.WithPageSize(50))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 50 {
			if i%2 == 0 {
				em.SetClasses([]graph.Class{{ID: "only"}})
			} else {
				em.SetClasses(nil)
			}
		}
	})
	for range 3 {
		if _, errs := readClasses(t, c); len(errs) != 0 {
			t.Error(errs)
		}
	}
	wg.Wait()
}
