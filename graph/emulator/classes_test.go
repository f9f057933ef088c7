package emulator_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/google/uuid"
)

const classes = "/beta/education/classes"

// classPage decodes a classes page into its raw objects and nextLink.
func classPage(t *testing.T, r response) ([]map[string]any, string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	var page struct {
		Value    []map[string]any `json:"value"`
		NextLink string           `json:"@odata.nextLink"`
	}
	if err := json.Unmarshal(r.raw, &page); err != nil || page.Value == nil {
		t.Fatalf("not a page (%v): %s", err, r.raw)
	}
	return page.Value, page.NextLink
}

// relative turns an absolute nextLink into a path for call.
func relative(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.RequestURI()
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestDefaultClassesAreStableAndRealistic(t *testing.T) {
	t.Parallel()
	a, b := emulator.DefaultClasses(), emulator.New().Classes()
	if !slices.Equal(a, b) || !slices.Equal(a, emulator.DefaultClasses()) {
		t.Fatal("the default classes differ between calls or emulators")
	}
	if n := len(a); n < 250 || n > 350 {
		t.Errorf("%d default classes, want about 300", n)
	}
	name := regexp.MustCompile(`^(7|8|9|10|11|12|13)[A-E] (Science|Maths|English|History|Geography|Art|Music|Drama|Computing|French)$`)
	code := regexp.MustCompile(`^[A-Z]{3}-(7|8|9|10|11|12|13)[A-E]$`)
	ids, codes := map[string]bool{}, map[string]bool{}
	for _, c := range a {
		if u, err := uuid.Parse(c.ID); err != nil || u.String() != c.ID {
			t.Errorf("id %q is not a lower-case GUID", c.ID)
		}
		if !name.MatchString(c.DisplayName) || !code.MatchString(c.ClassCode) || c.ExternalID != "MIS-2026-"+c.ClassCode {
			t.Errorf("unrealistic class %+v", c)
		}
		if ids[c.ID] || codes[c.ClassCode] {
			t.Errorf("duplicate %+v", c)
		}
		ids[c.ID], codes[c.ClassCode] = true, true
	}
	i := slices.IndexFunc(a, func(c graph.Class) bool { return c.ClassCode == "SCI-7B" })
	if i < 0 || a[i].DisplayName != "7B Science" || a[i].ExternalID != "MIS-2026-SCI-7B" {
		t.Errorf("no 7B Science / SCI-7B / MIS-2026-SCI-7B")
	}
	// The ids are part of the dev data: changing how they are made would orphan stored references.
	if a[i].ID != uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://cartclass.invalid/emulator/education/classes/SCI-7B")).String() {
		t.Errorf("id of SCI-7B changed: %s", a[i].ID)
	}
}

func TestClassesListingPagesAndSelect(t *testing.T) {
	t.Parallel()
	em, srv := start(t, emulator.WithPageSize(7))
	want := em.Classes()

	// Follow every nextLink: $select is carried on, every object has only what was selected.
	path := classes + "?$select=id,displayName,classCode,externalId"
	var got []graph.Class
	pages := 0
	for path != "" {
		r := call(t, srv, "GET", path, "", "client-request-id", "crid-1")
		if r.header.Get("request-id") == "" || r.header.Get("client-request-id") != "crid-1" {
			t.Errorf("ids in headers: %v", r.header)
		}
		if ctx, _ := r.json["@odata.context"].(string); !strings.HasSuffix(ctx, "/beta/$metadata#education/classes(id,displayName,classCode,externalId)") {
			t.Errorf("@odata.context %q", ctx)
		}
		objs, next := classPage(t, r)
		if next != "" && len(objs) != 7 {
			t.Errorf("page %d has %d classes, want 7", pages, len(objs))
		}
		for _, o := range objs {
			if k := keys(o); !slices.Equal(k, []string{"classCode", "displayName", "externalId", "id"}) {
				t.Fatalf("properties %v", k)
			}
			got = append(got, graph.Class{ID: o["id"].(string), DisplayName: o["displayName"].(string),
				ClassCode: o["classCode"].(string), ExternalID: o["externalId"].(string)})
		}
		if next != "" {
			if !strings.HasPrefix(next, srv.URL+classes+"?") || !strings.Contains(next, "$select=id,displayName,classCode,externalId&") {
				t.Errorf("nextLink %q does not carry $select", next)
			}
			next = relative(t, next)
		}
		path = next
		pages++
	}
	if !slices.Equal(got, want) || pages != (len(want)+6)/7 {
		t.Errorf("%d classes in %d pages, want %d in %d", len(got), pages, len(want), (len(want)+6)/7)
	}
	if n := len(em.Requests()); n != pages {
		t.Errorf("%d requests recorded, want %d", n, pages)
	}

	for _, tt := range []struct {
		query string
		props []string
	}{
		{"", []string{"classCode", "displayName", "externalId", "id", "term"}},
		{"?$select=*", []string{"classCode", "displayName", "externalId", "id", "term"}},
		{"?$select=displayName", []string{"displayName", "id"}},
		{"?$select=id", []string{"id"}},
		{"?%24select=ClassCode,%20term", []string{"classCode", "id", "term"}},
	} {
		objs, _ := classPage(t, call(t, srv, "GET", classes+tt.query, ""))
		if k := keys(objs[0]); !slices.Equal(k, tt.props) {
			t.Errorf("%q: properties %v, want %v", tt.query, k, tt.props)
		}
		if term, ok := objs[0]["term"].(map[string]any); ok {
			if term["displayName"] != "2026–27" || term["startDate"] != "2026-09-01" || term["endDate"] != "2027-07-20" {
				t.Errorf("term %v", term)
			}
		}
	}

	r := call(t, srv, "GET", classes+"?$select=id,secret", "")
	if code, msg := graphError(t, r); r.status != 400 || code != "BadRequest" || !strings.Contains(msg, "'secret'") {
		t.Errorf("unknown $select: %d %s %q", r.status, code, msg)
	}
	if r := call(t, srv, "GET", classes+"?$skiptoken=s3", ""); r.status != 400 {
		t.Errorf("bad skiptoken: %d", r.status)
	}
}

func TestClassesWithEmptyPages(t *testing.T) {
	t.Parallel()
	em, srv := start(t, emulator.WithPageSize(2), emulator.WithEmptyPages())
	em.SetClasses([]graph.Class{{ID: "1"}, {ID: "2"}, {ID: "3"}})
	var sizes []int
	for path := classes + "?$select=id"; path != ""; {
		objs, next := classPage(t, call(t, srv, "GET", path, ""))
		sizes = append(sizes, len(objs))
		path = ""
		if next != "" {
			path = relative(t, next)
		}
	}
	if !slices.Equal(sizes, []int{2, 0, 1}) {
		t.Errorf("page sizes %v, want [2 0 1]", sizes)
	}
}

func TestClassesRefusalsAndFaults(t *testing.T) {
	t.Parallel()
	em, srv := start(t)
	em.SetClassesForbidden(true)
	r := call(t, srv, "GET", classes, "", "client-request-id", "crid-f")
	code, msg := graphError(t, r)
	if r.status != 403 || code != "Authorization_RequestDenied" || msg != "Insufficient privileges to complete the operation." {
		t.Errorf("forbidden: %d %q %q", r.status, code, msg)
	}
	if rq := em.Requests(); len(rq) != 1 || rq[0].Status != 403 || rq[0].ClientRequestID != "crid-f" {
		t.Errorf("recorded %+v", rq)
	}
	// A missing token is still a 401 first.
	if r := call(t, srv, "GET", classes, "", "Authorization", ""); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	em.SetClassesForbidden(false)

	for _, m := range []string{"POST", "PATCH", "DELETE"} {
		r := call(t, srv, m, classes, `{}`)
		if code, _ := graphError(t, r); r.status != 405 || code != "MethodNotAllowed" || r.header.Get("Allow") != "GET" {
			t.Errorf("%s: %d %s Allow %q", m, r.status, code, r.header.Get("Allow"))
		}
	}
	if r := call(t, srv, "GET", "/beta/EDUCATION/Classes/", ""); r.status != 200 {
		t.Errorf("case-insensitive path: %d", r.status)
	}

	em.Inject(emulator.Fault{Path: "/education/classes", Count: 1, Status: 503, RetryAfter: "2"})
	r = call(t, srv, "GET", classes, "")
	if code, _ := graphError(t, r); r.status != 503 || code != "ServiceUnavailable" || r.header.Get("Retry-After") != "2" {
		t.Errorf("fault: %d %s", r.status, code)
	}
	if r := call(t, srv, "GET", classes, ""); r.status != 200 {
		t.Errorf("after the fault: %d", r.status)
	}
	if r := call(t, srv, "GET", collection, ""); r.status != 200 {
		t.Errorf("associations next to classes: %d", r.status)
	}
}

func TestClassesControlEndpoints(t *testing.T) {
	t.Parallel()
	em, srv := start(t)
	ctl := func(method, path, body string) response {
		return call(t, srv, method, path, body, "Authorization", "")
	}
	hostile := `[{"id":"x1","displayName":"<script>alert(1)</script>","classCode":"\"q\"","externalId":"\u202eRTL"},{"id":"x2"}]`
	if r := ctl("POST", "/_emulator/classes", hostile); r.status != 204 {
		t.Fatalf("set: %d %s", r.status, r.raw)
	}
	want := []graph.Class{{ID: "x1", DisplayName: "<script>alert(1)</script>", ClassCode: `"q"`, ExternalID: "\u202eRTL"}, {ID: "x2"}}
	if got := em.Classes(); !slices.Equal(got, want) {
		t.Errorf("classes %+v", got)
	}
	var listed []graph.Class
	if r := ctl("GET", "/_emulator/classes", ""); r.status != 200 || json.Unmarshal(r.raw, &listed) != nil || !slices.Equal(listed, want) {
		t.Errorf("GET control classes: %d %s", r.status, r.raw)
	}
	objs, _ := classPage(t, call(t, srv, "GET", classes, ""))
	if objs[0]["displayName"] != "<script>alert(1)</script>" || objs[0]["externalId"] != "\u202eRTL" {
		t.Errorf("served %v", objs[0])
	}
	// Unset properties are served as null, as Graph does.
	if v, ok := objs[1]["displayName"]; !ok || v != nil {
		t.Errorf("empty displayName served as %v (present %v), want null", v, ok)
	}

	if r := ctl("POST", "/_emulator/classes", `[]`); r.status != 204 || len(em.Classes()) != 0 {
		t.Errorf("set []: %d, %d classes", r.status, len(em.Classes()))
	}
	if objs, next := classPage(t, call(t, srv, "GET", classes, "")); len(objs) != 0 || next != "" {
		t.Errorf("empty list served %v %q", objs, next)
	}
	for _, body := range []string{"", "null", " null \n"} {
		em.SetClasses([]graph.Class{{ID: "y"}})
		if r := ctl("POST", "/_emulator/classes", body); r.status != 204 || !slices.Equal(em.Classes(), emulator.DefaultClasses()) {
			t.Errorf("set %q: %d, want the defaults back", body, r.status)
		}
	}
	for _, body := range []string{`{"id":"a"}`, `[{"id":1}]`, `[{"id":"a","colour":"red"}]`, `[] []`, `[`} {
		if r := ctl("POST", "/_emulator/classes", body); r.status != 400 {
			t.Errorf("set %s: %d, want 400", body, r.status)
		}
	}
	if !slices.Equal(em.Classes(), emulator.DefaultClasses()) {
		t.Error("a refused body changed the classes")
	}

	if r := ctl("POST", "/_emulator/classes/forbidden", `{"forbidden":true}`); r.status != 204 {
		t.Fatalf("forbidden: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "GET", classes, ""); r.status != 403 {
		t.Errorf("after forbidden true: %d", r.status)
	}
	if r := ctl("POST", "/_emulator/classes/forbidden/", `{"forbidden":false}`); r.status != 204 {
		t.Errorf("forbidden false: %d", r.status)
	}
	if r := call(t, srv, "GET", classes, ""); r.status != 200 {
		t.Errorf("after forbidden false: %d", r.status)
	}
	for _, body := range []string{`{}`, `{"forbidden":"yes"}`, `x`} {
		if r := ctl("POST", "/_emulator/classes/forbidden", body); r.status != 400 {
			t.Errorf("forbidden %s: %d, want 400", body, r.status)
		}
	}

	// Control requests are not API requests; Reset restores the defaults, readable.
	n := len(em.Requests())
	em.SetClasses(nil)
	em.SetClasses([]graph.Class{{ID: "z"}})
	em.SetClassesForbidden(true)
	if r := ctl("POST", "/_emulator/reset", ""); r.status != 204 {
		t.Fatalf("reset: %d", r.status)
	}
	if !slices.Equal(em.Classes(), emulator.DefaultClasses()) || call(t, srv, "GET", classes, "").status != 200 {
		t.Error("Reset did not restore the default, readable classes")
	}
	if n == 0 {
		t.Error("no API requests recorded before Reset")
	}
}

func TestSetClassesCopies(t *testing.T) {
	t.Parallel()
	em := emulator.New()
	in := []graph.Class{{ID: "a"}}
	em.SetClasses(in)
	in[0].ID = "changed"
	out := em.Classes()
	out[0].ID = "changed too"
	if got := em.Classes(); got[0].ID != "a" {
		t.Errorf("the emulator's classes were changed through a caller's slice: %+v", got)
	}
}
