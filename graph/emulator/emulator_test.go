package emulator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/google/uuid"
)

const collection = "/beta/deviceManagement/cartToClassAssociations"

const validBody = `{"@odata.type":"#microsoft.graph.cartToClassAssociation","version":7,"displayName":"Cart A",
	"description":"d","deviceCartIds":["c1"],"classroomIds":["r1"]}`

type response struct {
	status int
	header http.Header
	raw    []byte
	json   map[string]any
}

// call sends one raw request, with a bearer token unless headers say otherwise.
func call(t *testing.T, srv *httptest.Server, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer test")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.json); err != nil {
			t.Fatalf("response is not JSON: %s", raw)
		}
	}
	return r
}

func start(t *testing.T, opts ...emulator.Option) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	em := emulator.New(opts...)
	t.Cleanup(func() {
		if err := em.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close) // runs before em.Close
	return em, srv
}

// graphError checks the Graph error shape and returns code and message.
func graphError(t *testing.T, r response) (code, message string) {
	t.Helper()
	e, ok := r.json["error"].(map[string]any)
	if !ok {
		t.Fatalf("status %d body is not a Graph error: %s", r.status, r.raw)
	}
	inner, ok := e["innerError"].(map[string]any)
	if !ok {
		t.Fatalf("error lacks innerError: %s", r.raw)
	}
	if inner["request-id"] != r.header.Get("request-id") || inner["request-id"] == "" {
		t.Errorf("innerError request-id %v, header %q", inner["request-id"], r.header.Get("request-id"))
	}
	if inner["client-request-id"] != r.header.Get("client-request-id") || inner["client-request-id"] == "" {
		t.Errorf("innerError client-request-id %v, header %q", inner["client-request-id"], r.header.Get("client-request-id"))
	}
	if _, err := time.Parse("2006-01-02T15:04:05", fmt.Sprint(inner["date"])); err != nil {
		t.Errorf("innerError date %v: %v", inner["date"], err)
	}
	code, _ = e["code"].(string)
	message, _ = e["message"].(string)
	return code, message
}

func TestCreateGetListDelete(t *testing.T) {
	em, srv := start(t)
	r := call(t, srv, "POST", collection, validBody, "client-request-id", "my-crid")
	if r.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", r.status, r.raw)
	}
	if r.header.Get("client-request-id") != "my-crid" || r.header.Get("request-id") == "" {
		t.Errorf("correlation headers: %v", r.header)
	}
	id, _ := r.json["id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Errorf("id %q is not a GUID", id)
	}
	if r.json["@odata.type"] != "#microsoft.graph.cartToClassAssociation" {
		t.Errorf("@odata.type = %v", r.json["@odata.type"])
	}
	for _, k := range []string{"createdDateTime", "lastModifiedDateTime"} {
		s, _ := r.json[k].(string)
		if len(s) != len("2017-01-01T00:00:46.1697867+03:00") || s[19] != '.' || (s[27] != '+' && s[27] != '-') {
			t.Errorf("%s = %q, want 7 fraction digits and an offset", k, s)
		}
	}

	g := call(t, srv, "GET", collection+"/"+id, "")
	if g.status != 200 || g.json["id"] != id || g.json["displayName"] != "Cart A" {
		t.Errorf("GET: %d %s", g.status, g.raw)
	}
	if _, wrapped := g.json["value"]; wrapped {
		t.Error("GET wraps the object in value")
	}

	l := call(t, srv, "GET", collection, "")
	if l.status != 200 || !strings.Contains(fmt.Sprint(l.json["@odata.context"]), "$metadata#deviceManagement/cartToClassAssociations") {
		t.Errorf("list: %d %s", l.status, l.raw)
	}
	if v, _ := l.json["value"].([]any); len(v) != 1 {
		t.Errorf("list value = %v", l.json["value"])
	}
	if _, ok := l.json["@odata.nextLink"]; ok {
		t.Error("single page has a nextLink")
	}

	if d := call(t, srv, "DELETE", collection+"/"+id, ""); d.status != http.StatusNoContent || len(d.raw) != 0 {
		t.Errorf("DELETE: %d %s", d.status, d.raw)
	}
	d := call(t, srv, "DELETE", collection+"/"+id, "")
	if code, _ := graphError(t, d); d.status != 404 || code != "ResourceNotFound" {
		t.Errorf("second DELETE: %d %s", d.status, d.raw)
	}
	if len(em.Objects()) != 0 {
		t.Error("object survived DELETE")
	}
}

func TestListPagingLinks(t *testing.T) {
	_, srv := start(t, emulator.WithPageSize(2))
	for i := range 5 {
		if r := call(t, srv, "POST", collection, fmt.Sprintf(`{"displayName":"cart %d"}`, i)); r.status != 201 {
			t.Fatalf("POST: %d %s", r.status, r.raw)
		}
	}
	var names []string
	path := collection
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		r := call(t, srv, "GET", path, "")
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
		}
		for _, v := range r.json["value"].([]any) {
			names = append(names, v.(map[string]any)["displayName"].(string))
		}
		path = ""
		if next, ok := r.json["@odata.nextLink"].(string); ok {
			if !strings.HasPrefix(next, srv.URL+collection+"?$skiptoken=") {
				t.Fatalf("nextLink %q is not an absolute URL with $skiptoken", next)
			}
			path = strings.TrimPrefix(next, srv.URL)
		}
	}
	if want := []string{"cart 0", "cart 1", "cart 2", "cart 3", "cart 4"}; !reflect.DeepEqual(names, want) {
		t.Errorf("paged names = %v, want %v", names, want)
	}
	if r := call(t, srv, "GET", collection+"?$skiptoken=garbage", ""); r.status != 400 {
		t.Errorf("bad skiptoken: %d", r.status)
	}
}

func TestBodyValidation(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		mention    string // the message must name this
	}{
		{"malformed JSON", `{"displayName":`, 400, "Invalid JSON"},
		{"not an object", `["x"]`, 400, "JSON object"},
		{"null body", `null`, 400, "JSON object"},
		{"empty body", ``, 400, "Empty Payload"},
		{"trailing data", `{"displayName":"a"} {}`, 400, "Unexpected content"},
		{"duplicate property", `{"displayName":"a","displayName":"b"}`, 400, "displayName"},
		{"unknown property", `{"displayName":"a","roomNumber":"12"}`, 400, "roomNumber"},
		{"wrong case", `{"DisplayName":"a"}`, 400, "DisplayName"},
		{"unknown annotation", `{"displayName":"a","owner@odata.bind":"x"}`, 400, "owner@odata.bind"},
		{"id", `{"id":"f4785119-5119-f478-1951-78f4195178f4","displayName":"a"}`, 400, "'id'"},
		{"createdDateTime", `{"createdDateTime":"2017-01-01T00:02:37.446308+03:00"}`, 400, "createdDateTime"},
		{"lastModifiedDateTime", `{"lastModifiedDateTime":"2017-01-01T00:02:37.446308+03:00"}`, 400, "lastModifiedDateTime"},
		{"version as string", `{"version":"7"}`, 400, "version"},
		{"version fractional", `{"version":7.5}`, 400, "version"},
		{"version overflow", `{"version":2147483648}`, 400, "version"},
		{"version null", `{"version":null}`, 400, "version"},
		{"displayName number", `{"displayName":12}`, 400, "displayName"},
		{"description null", `{"description":null}`, 400, "description"},
		{"collection is a string", `{"deviceCartIds":"c1"}`, 400, "deviceCartIds"},
		{"collection null", `{"classroomIds":null}`, 400, "classroomIds"},
		{"null in collection", `{"deviceCartIds":["c1",null]}`, 400, "deviceCartIds"},
		{"number in collection", `{"classroomIds":[1]}`, 400, "classroomIds"},
		{"other @odata.type", `{"@odata.type":"#microsoft.graph.deviceConfiguration","displayName":"a"}`, 400, "deviceConfiguration"},
		{"@odata.type not a string", `{"@odata.type":7}`, 400, "@odata.type"},
		{"seed body", validBody, 0, ""},
		{"no @odata.type", `{"displayName":"a","version":-2147483648}`, 0, ""},
		{"@odata.type without #", `{"@odata.type":"microsoft.graph.cartToClassAssociation"}`, 0, ""},
		{"empty collections", `{"deviceCartIds":[],"classroomIds":[]}`, 0, ""},
	}
	em, srv := start(t, emulator.WithPatchResponse(200))
	orig := call(t, srv, "POST", collection, validBody)
	id := orig.json["id"].(string)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range []string{"POST", "PATCH"} {
				path := collection
				want := tt.status
				if m == "PATCH" {
					path += "/" + id
					if want == 0 {
						want = 200
					}
				} else if want == 0 {
					want = 201
				}
				before := em.Objects()
				r := call(t, srv, m, path, tt.body)
				if r.status != want {
					t.Errorf("%s: status %d, want %d: %s", m, r.status, want, r.raw)
					continue
				}
				if want != 400 {
					continue
				}
				code, msg := graphError(t, r)
				if code != "BadRequest" || !strings.Contains(msg, tt.mention) {
					t.Errorf("%s: error %q %q, want BadRequest naming %q", m, code, msg, tt.mention)
				}
				if after := em.Objects(); !reflect.DeepEqual(after, before) {
					t.Errorf("%s: rejected body changed the state:\n%+v\n%+v", m, before, after)
				}
			}
		})
	}
	if r := call(t, srv, "POST", collection, validBody, "Content-Type", "text/plain"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d", r.status)
	}
	if r := call(t, srv, "POST", collection, validBody, "Content-Type", ""); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("body without Content-Type: %d", r.status)
	}
	if r := call(t, srv, "POST", collection, `{"description":"`+strings.Repeat("x", 1<<20)+`"}`); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", r.status)
	}
}

func TestPatchChangesOnlyPresentProperties(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	em, srv := start(t, emulator.WithClock(clock))
	id := call(t, srv, "POST", collection, validBody).json["id"].(string)
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	r := call(t, srv, "PATCH", collection+"/"+id, `{"@odata.type":"#microsoft.graph.cartToClassAssociation","deviceCartIds":["c2","c3"]}`)
	if r.status != http.StatusNoContent || len(r.raw) != 0 {
		t.Fatalf("PATCH: %d %s (want 204 with no body by default)", r.status, r.raw)
	}
	got := em.Objects()[0]
	if got.DisplayName != "Cart A" || got.Description != "d" || got.Version != 7 ||
		!reflect.DeepEqual(got.DeviceCartIDs, []string{"c2", "c3"}) || !reflect.DeepEqual(got.ClassroomIDs, []string{"r1"}) {
		t.Errorf("after PATCH: %+v", got)
	}
	if !got.LastModifiedDateTime.Equal(now) || got.CreatedDateTime.Equal(now) {
		t.Errorf("timestamps after PATCH: created %v, modified %v", got.CreatedDateTime, got.LastModifiedDateTime)
	}
	if r := call(t, srv, "PATCH", collection+"/"+uuid.NewString(), `{"displayName":"x"}`); r.status != 404 {
		t.Errorf("PATCH unknown id: %d", r.status)
	}
}

func TestRoutingMethodsAndAuth(t *testing.T) {
	_, srv := start(t)
	id := call(t, srv, "POST", collection, validBody).json["id"].(string)
	tests := []struct {
		name, method, path string
		headers            []string
		status             int
		code               string
	}{
		{"no token", "GET", collection, []string{"Authorization", ""}, 401, "InvalidAuthenticationToken"},
		{"basic auth", "GET", collection, []string{"Authorization", "Basic dTpw"}, 401, "InvalidAuthenticationToken"},
		{"empty bearer", "GET", collection, []string{"Authorization", "Bearer "}, 401, "InvalidAuthenticationToken"},
		{"PUT item", "PUT", collection + "/" + id, nil, 405, "MethodNotAllowed"},
		{"DELETE collection", "DELETE", collection, nil, 405, "MethodNotAllowed"},
		{"PATCH collection", "PATCH", collection, nil, 405, "MethodNotAllowed"},
		{"unknown id", "GET", collection + "/" + uuid.NewString(), nil, 404, "ResourceNotFound"},
		{"unknown segment", "GET", "/beta/deviceManagement/somethingElse", nil, 400, "BadRequest"},
		{"too deep", "GET", collection + "/" + id + "/extra", nil, 400, "BadRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, tt.method, tt.path, "", tt.headers...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if code, _ := graphError(t, r); code != tt.code {
				t.Errorf("code %q, want %q", code, tt.code)
			}
		})
	}
	// Graph paths are case-insensitive.
	if r := call(t, srv, "GET", "/beta/devicemanagement/carttoclassassociations/"+strings.ToUpper(id), ""); r.status != 200 {
		t.Errorf("case-insensitive GET: %d", r.status)
	}
}

func TestAuthorizer(t *testing.T) {
	_, srv := start(t, emulator.WithAuthorizer(func(tok string, r *http.Request) int {
		if tok == "expired" {
			return 401
		}
		if tok == "readonly" && r.Method != "GET" {
			return 403
		}
		return 0
	}))
	r := call(t, srv, "GET", collection, "", "Authorization", "Bearer expired")
	if code, _ := graphError(t, r); r.status != 401 || code != "InvalidAuthenticationToken" {
		t.Errorf("expired: %d %s", r.status, r.raw)
	}
	r = call(t, srv, "PATCH", collection+"/x", `{}`, "Authorization", "Bearer readonly")
	code, msg := graphError(t, r)
	if r.status != 403 || code != "Forbidden" || !strings.Contains(msg, "DeviceManagementConfiguration.ReadWrite.All") {
		t.Errorf("readonly PATCH: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "GET", collection, "", "Authorization", "Bearer readonly"); r.status != 200 {
		t.Errorf("readonly GET: %d", r.status)
	}
}

func TestWriteLimit(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	em, srv := start(t, emulator.WithWriteLimit(3, 20*time.Second), emulator.WithClock(clock))
	for i := range 3 {
		if r := call(t, srv, "POST", collection, validBody); r.status != 201 {
			t.Fatalf("write %d: %d", i, r.status)
		}
	}
	mu.Lock()
	now = now.Add(7 * time.Second)
	mu.Unlock()
	r := call(t, srv, "POST", collection, validBody)
	code, _ := graphError(t, r)
	if r.status != 429 || code != "TooManyRequests" || r.header.Get("Retry-After") != "13" {
		t.Errorf("4th write: %d %q Retry-After %q, want 429 TooManyRequests 13", r.status, code, r.header.Get("Retry-After"))
	}
	if r := call(t, srv, "GET", collection, ""); r.status != 200 {
		t.Errorf("read while throttled: %d", r.status)
	}
	mu.Lock()
	now = now.Add(13 * time.Second)
	mu.Unlock()
	if r := call(t, srv, "POST", collection, validBody); r.status != 201 {
		t.Errorf("write after the window: %d %s", r.status, r.raw)
	}
	if n := len(em.Objects()); n != 4 {
		t.Errorf("%d objects, want 4", n)
	}
}

func TestFaults(t *testing.T) {
	em, srv := start(t)
	em.Inject(emulator.Fault{Method: "POST", Count: 2, Status: 503, RetryAfter: "2.128"})
	em.Inject(emulator.Fault{Method: "GET", Status: 500, Code: "UnknownError", Message: "boom"})
	for i := range 2 {
		r := call(t, srv, "POST", collection, validBody)
		code, _ := graphError(t, r)
		if r.status != 503 || code != "ServiceUnavailable" || r.header.Get("Retry-After") != "2.128" {
			t.Errorf("POST %d: %d %q %q", i, r.status, code, r.header.Get("Retry-After"))
		}
	}
	if r := call(t, srv, "POST", collection, validBody); r.status != 201 {
		t.Errorf("POST after Count ran out: %d", r.status)
	}
	for range 2 { // Count 0: until cleared
		r := call(t, srv, "GET", collection, "")
		if code, msg := graphError(t, r); r.status != 500 || code != "UnknownError" || msg != "boom" {
			t.Errorf("GET: %d %s", r.status, r.raw)
		}
	}
	em.ClearFaults()
	if r := call(t, srv, "GET", collection, ""); r.status != 200 {
		t.Errorf("GET after ClearFaults: %d", r.status)
	}
	if n := len(em.Objects()); n != 1 {
		t.Errorf("%d objects, want 1", n)
	}

	// Latency is applied, and a path filter narrows a fault.
	em.SetLatency(5 * time.Millisecond)
	em.Inject(emulator.Fault{Path: "/nope", Status: 500})
	start := time.Now()
	if r := call(t, srv, "GET", collection, ""); r.status != 200 {
		t.Errorf("GET with latency: %d", r.status)
	}
	if d := time.Since(start); d < 5*time.Millisecond {
		t.Errorf("latency not applied: %v", d)
	}

	// DropAfterApply: no answer, but the change happened and is recorded.
	em.Reset()
	em.Inject(emulator.Fault{Method: "POST", Count: 1, DropAfterApply: true})
	req, _ := http.NewRequest("POST", srv.URL+collection, strings.NewReader(validBody))
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Content-Type", "application/json")
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped POST got a response: %d", resp.StatusCode)
	}
	reqs := em.Requests()
	if len(em.Objects()) != 1 || len(reqs) != 1 || !reqs[0].Dropped || !reqs[0].Applied || reqs[0].Status != 0 {
		t.Errorf("after drop: objects %d, requests %+v", len(em.Objects()), reqs)
	}
}

func TestControlEndpoints(t *testing.T) {
	em, srv := start(t)
	ctl := func(method, path, body string) response {
		t.Helper()
		return call(t, srv, method, path, body, "Authorization", "")
	}
	if r := ctl("POST", "/_emulator/faults", `{"method":"POST","count":1,"status":429,"retryAfter":"1.5","latency":"1ms"}`); r.status != 204 {
		t.Fatalf("inject: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", collection, validBody); r.status != 429 || r.header.Get("Retry-After") != "1.5" {
		t.Errorf("injected 429: %d %v", r.status, r.header)
	}
	if r := ctl("POST", "/_emulator/faults", `[{"status":500},{"status":503}]`); r.status != 204 {
		t.Fatalf("inject list: %d", r.status)
	}
	if r := ctl("DELETE", "/_emulator/faults", ""); r.status != 204 {
		t.Fatalf("clear: %d", r.status)
	}
	if r := call(t, srv, "POST", collection, validBody); r.status != 201 {
		t.Errorf("POST after clear: %d", r.status)
	}
	if r := ctl("POST", "/_emulator/faults", `{"latency":"soon"}`); r.status != 400 {
		t.Errorf("bad fault: %d", r.status)
	}
	if r := ctl("POST", "/_emulator/latency", `{"latency":"1ms"}`); r.status != 204 {
		t.Errorf("latency: %d", r.status)
	}
	r := ctl("GET", "/_emulator/requests", "")
	var reqs []emulator.Request
	if err := json.Unmarshal(r.raw, &reqs); err != nil || len(reqs) != 2 || reqs[0].Status != 429 || reqs[1].Status != 201 {
		t.Errorf("requests: %s", r.raw)
	}
	if string(reqs[1].Body) != validBody {
		t.Errorf("recorded body %q", reqs[1].Body)
	}
	r = ctl("GET", "/_emulator/objects", "")
	if !bytes.Contains(r.raw, []byte(`"displayName":"Cart A"`)) {
		t.Errorf("objects: %s", r.raw)
	}
	if r := ctl("POST", "/_emulator/reset", ""); r.status != 204 || len(em.Objects()) != 0 || len(em.Requests()) != 0 {
		t.Errorf("reset: %d", r.status)
	}

	_, off := start(t, emulator.WithControl(false))
	if r := call(t, off, "GET", "/_emulator/requests", ""); r.status != 404 {
		t.Errorf("control disabled: %d", r.status)
	}
}

func TestStateFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "graph.json")
	em, srv := start(t, emulator.WithStateFile(path))
	var ids []string
	for i := range 3 {
		r := call(t, srv, "POST", collection, fmt.Sprintf(`{"displayName":"cart %d","deviceCartIds":["c%d"]}`, i, i))
		ids = append(ids, r.json["id"].(string))
	}
	call(t, srv, "PATCH", collection+"/"+ids[1], `{"description":"edited"}`)
	call(t, srv, "DELETE", collection+"/"+ids[0], "")
	want := em.Objects()
	// Saving is write-behind: Close writes what is pending.
	if err := em.Close(); err != nil {
		t.Fatal(err)
	}

	again := emulator.New(emulator.WithStateFile(path))
	got := again.Objects()
	if len(got) != 2 || !reflect.DeepEqual(got, want) {
		t.Errorf("reloaded %+v\nwant     %+v", got, want)
	}
	// New objects after a restart list after the old ones.
	srv2 := httptest.NewServer(again)
	defer srv2.Close()
	newID := call(t, srv2, "POST", collection, `{"displayName":"cart 3"}`).json["id"].(string)
	objs := again.Objects()
	if len(objs) != 3 || objs[0].ID != ids[1] || objs[2].ID != newID {
		t.Errorf("order after restart: %+v", objs)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
	// Only its owner may read the dev state (it is a copy of a school's data).
	if fi, err := os.Stat(path); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %v, want 0600", fi.Mode().Perm())
	}

	// A corrupt file is kept aside, not overwritten.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := emulator.New(emulator.WithStateFile(path))
	defer fresh.Close()
	if len(fresh.Objects()) != 0 {
		t.Error("corrupt file produced objects")
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Errorf("corrupt file not moved aside: %v", matches)
	}
}

func TestLogsWriteBodiesAsReceived(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	_, srv := start(t, emulator.WithLogger(logger))
	id := call(t, srv, "POST", collection, validBody).json["id"].(string)
	call(t, srv, "GET", collection, "") // Debug: not logged at Info
	call(t, srv, "DELETE", collection+"/"+id, "")
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"method":"DELETE"`) || !strings.Contains(lines[1], `"status":204`) {
		t.Fatalf("log lines: %q", lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "graph_emulator_request" || rec["method"] != "POST" || rec["body"] != validBody ||
		rec["status"] != float64(201) || rec["path"] != collection {
		t.Errorf("log record %v", rec)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestConcurrentCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	em, srv := start(t, emulator.WithStateFile(path))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", srv.URL+collection, strings.NewReader(validBody))
			req.Header.Set("Authorization", "Bearer x")
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 201 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, o := range em.Objects() {
		seen[o.ID] = true
	}
	if len(seen) != 20 {
		t.Errorf("%d distinct objects, want 20", len(seen))
	}
	if err := em.Close(); err != nil {
		t.Fatal(err)
	}
	if got := reload(t, path); !reflect.DeepEqual(got, em.Objects()) {
		t.Errorf("reloaded %d objects, want the %d served", len(got), len(em.Objects()))
	}
}
