package emulator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/cartclass/cartclass/graph/emulator"
	"github.com/google/uuid"
)

func TestExternalChangesAreNotAPIRequests(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logBuf, mu: &mu}, nil))
	em, srv := start(t, emulator.WithClock(clock), emulator.WithWriteLimit(1, time.Hour), emulator.WithLogger(logger))
	// Every API request fails, and the write limit allows one write: neither applies to changes made elsewhere.
	em.Inject(emulator.Fault{Status: 500})

	a := em.PutObject(graph.Association{DisplayName: "made in PowerShell", DeviceCartIDs: []string{"c1"}})
	if _, err := uuid.Parse(a.ID); err != nil {
		t.Errorf("id %q is not a GUID", a.ID)
	}
	created := now.Truncate(100 * time.Nanosecond)
	if !a.CreatedDateTime.Equal(created) || !a.LastModifiedDateTime.Equal(created) {
		t.Errorf("timestamps %v %v, want %v", a.CreatedDateTime, a.LastModifiedDateTime, created)
	}
	b := em.PutObject(graph.Association{DisplayName: "second"})

	tick(time.Minute)
	changed, err := em.ChangeObject(strings.ToUpper(a.ID), graph.Patch{DisplayName: ptr("renamed"), ClassroomIDs: []string{"r9"}})
	if err != nil {
		t.Fatal(err)
	}
	if changed.DisplayName != "renamed" || !reflect.DeepEqual(changed.DeviceCartIDs, []string{"c1"}) ||
		!reflect.DeepEqual(changed.ClassroomIDs, []string{"r9"}) || !changed.CreatedDateTime.Equal(created) ||
		!changed.LastModifiedDateTime.Equal(now.Truncate(100*time.Nanosecond)) {
		t.Errorf("after ChangeObject: %+v", changed)
	}
	if err := em.RemoveObject(b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := em.ChangeObject(b.ID, graph.Patch{}); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("ChangeObject of a removed object: %v, want ErrNotFound", err)
	}
	if err := em.RemoveObject(b.ID); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("second RemoveObject: %v, want ErrNotFound", err)
	}
	if objs := em.Objects(); len(objs) != 1 || !reflect.DeepEqual(objs[0], changed) {
		t.Errorf("objects = %+v, want only %+v", objs, changed)
	}

	if n := len(em.Requests()); n != 0 {
		t.Errorf("%d API requests recorded, want 0", n)
	}
	em.ClearFaults()
	// The API sees the change, and the write limit still has its one write.
	g := call(t, srv, "GET", collection+"/"+a.ID, "")
	if g.status != 200 || g.json["displayName"] != "renamed" {
		t.Errorf("GET after ChangeObject: %d %s", g.status, g.raw)
	}
	if r := call(t, srv, "DELETE", collection+"/"+a.ID, ""); r.status != http.StatusNoContent {
		t.Errorf("first API write: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", collection, validBody); r.status != http.StatusTooManyRequests {
		t.Errorf("second API write: %d, want 429", r.status)
	}

	mu.Lock()
	logs := logBuf.String()
	mu.Unlock()
	for _, op := range []string{"create", "update", "delete"} {
		if !strings.Contains(logs, `"msg":"graph_emulator_external_change","op":"`+op+`"`) {
			t.Errorf("no Info log for %s in:\n%s", op, logs)
		}
	}
	if !strings.Contains(logs, `\"displayName\":\"renamed\"`) {
		t.Errorf("the change's body is not logged:\n%s", logs)
	}
}

func TestPutObjectWithKnownIDReplacesInPlace(t *testing.T) {
	em, srv := start(t, emulator.WithPageSize(10))
	first := em.PutObject(graph.Association{DisplayName: "one"})
	em.PutObject(graph.Association{DisplayName: "two"})
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	// A change Intune did not timestamp: same lastModifiedDateTime, other values.
	first.DisplayName, first.LastModifiedDateTime = "one, edited quietly", old
	got := em.PutObject(first)
	if !got.LastModifiedDateTime.Equal(old) || got.DisplayName != "one, edited quietly" {
		t.Errorf("PutObject = %+v", got)
	}
	r := call(t, srv, "GET", collection, "")
	v := r.json["value"].([]any)
	if len(v) != 2 || v[0].(map[string]any)["displayName"] != "one, edited quietly" ||
		v[0].(map[string]any)["lastModifiedDateTime"] != "2020-01-02T03:04:05.0000000+00:00" {
		t.Errorf("list after replace: %s", r.raw)
	}
}

func TestControlObjectEndpoints(t *testing.T) {
	em, srv := start(t, emulator.WithWriteLimit(1, time.Hour))
	ctl := func(method, path, body string) response {
		t.Helper()
		return call(t, srv, method, path, body, "Authorization", "")
	}
	r := ctl("POST", "/_emulator/objects", validBody)
	if r.status != http.StatusCreated || r.json["displayName"] != "Cart A" || r.json["@odata.type"] != graph.ODataType {
		t.Fatalf("POST object: %d %s", r.status, r.raw)
	}
	id, _ := r.json["id"].(string)
	if _, err := uuid.Parse(id); err != nil || r.json["createdDateTime"] == "" {
		t.Errorf("server did not set id and timestamps: %s", r.raw)
	}
	for name, body := range map[string]string{
		"id given":       `{"id":"x","displayName":"a"}`,
		"wrong type":     `{"version":"seven"}`,
		"unknown":        `{"roomNumber":"12"}`,
		"not JSON":       `{"displayName":`,
		"collection str": `{"deviceCartIds":"x"}`,
	} {
		if r := ctl("POST", "/_emulator/objects", body); r.status != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s", name, r.status, r.raw)
		}
	}

	before := em.Objects()[0].LastModifiedDateTime
	time.Sleep(time.Millisecond)
	r = ctl("PATCH", "/_emulator/objects/"+id, `{"description":"from Graph Explorer","classroomIds":[]}`)
	if r.status != http.StatusOK || r.json["description"] != "from Graph Explorer" || r.json["displayName"] != "Cart A" {
		t.Errorf("PATCH object: %d %s", r.status, r.raw)
	}
	if after := em.Objects()[0]; !after.LastModifiedDateTime.After(before) || len(after.ClassroomIDs) != 0 {
		t.Errorf("after PATCH: %+v (modified before: %v)", after, before)
	}
	if r := ctl("PATCH", "/_emulator/objects/"+uuid.NewString(), `{"description":"x"}`); r.status != http.StatusNotFound {
		t.Errorf("PATCH unknown: %d", r.status)
	}
	if r := ctl("PATCH", "/_emulator/objects/"+id, `{"createdDateTime":"2017-01-01T00:00:00Z"}`); r.status != http.StatusBadRequest {
		t.Errorf("PATCH read-only property: %d", r.status)
	}
	if r := ctl("DELETE", "/_emulator/objects/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("DELETE object: %d %s", r.status, r.raw)
	}
	if r := ctl("DELETE", "/_emulator/objects/"+id, ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d", r.status)
	}
	if len(em.Objects()) != 0 || len(em.Requests()) != 0 {
		t.Errorf("objects %v, requests %v: want none of either", em.Objects(), em.Requests())
	}
	// None of that used the API's single write.
	if r := call(t, srv, "POST", collection, validBody); r.status != http.StatusCreated {
		t.Errorf("API write after control changes: %d %s", r.status, r.raw)
	}
}

func TestControlPageSize(t *testing.T) {
	em, srv := start(t, emulator.WithPageSize(100))
	for range 5 {
		em.PutObject(graph.Association{DisplayName: "x"})
	}
	ctl := func(body string) int {
		return call(t, srv, "POST", "/_emulator/pagesize", body, "Authorization", "").status
	}
	if st := ctl(`{"pageSize":2}`); st != http.StatusNoContent {
		t.Fatalf("pagesize: %d", st)
	}
	r := call(t, srv, "GET", collection, "")
	if v := r.json["value"].([]any); len(v) != 2 || r.json["@odata.nextLink"] == nil {
		t.Errorf("page after pagesize 2: %s", r.raw)
	}
	for _, body := range []string{`{"pageSize":0}`, `{"pageSize":-3}`, `{"pageSize":"20"}`, `x`} {
		if st := ctl(body); st != http.StatusBadRequest {
			t.Errorf("pagesize %s: %d, want 400", body, st)
		}
	}
}

func TestControlWriteLimit(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	em, srv := start(t, emulator.WithClock(clock))
	ctl := func(body string) int {
		return call(t, srv, "POST", "/_emulator/writelimit", body, "Authorization", "").status
	}
	if st := ctl(`{"writes":3,"window":"20s"}`); st != http.StatusNoContent {
		t.Fatalf("writelimit: %d", st)
	}
	id := call(t, srv, "POST", collection, validBody).json["id"].(string)
	for range 5 { // reads do not count
		if r := call(t, srv, "GET", collection+"/"+id, ""); r.status != 200 {
			t.Fatalf("GET: %d", r.status)
		}
	}
	if r := call(t, srv, "PATCH", collection+"/"+id, `{"displayName":"b"}`); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "DELETE", collection+"/"+id, ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.raw)
	}
	mu.Lock()
	now = now.Add(2500 * time.Millisecond)
	mu.Unlock()
	for _, m := range []string{"POST", "PATCH", "DELETE"} {
		path := collection
		if m != "POST" {
			path += "/" + id
		}
		r := call(t, srv, m, path, `{"displayName":"c"}`)
		code, msg := graphError(t, r)
		// 17.5 s until the first write leaves the window, in whole seconds, rounded up.
		if r.status != http.StatusTooManyRequests || code != "TooManyRequests" || msg == "" || r.header.Get("Retry-After") != "18" {
			t.Errorf("%s past the limit: %d %q Retry-After %q, want 429 TooManyRequests 18", m, r.status, code, r.header.Get("Retry-After"))
		}
	}
	if n := len(em.Objects()); n != 0 {
		t.Errorf("a throttled write was applied: %d objects", n)
	}
	if st := ctl(`{"writes":0}`); st != http.StatusNoContent {
		t.Fatalf("writelimit off: %d", st)
	}
	for i := range 5 {
		if r := call(t, srv, "POST", collection, validBody); r.status != http.StatusCreated {
			t.Errorf("write %d with the limit off: %d", i, r.status)
		}
	}
	// The window defaults to Intune's 20 s.
	if st := ctl(`{"writes":1}`); st != http.StatusNoContent {
		t.Fatalf("writelimit: %d", st)
	}
	call(t, srv, "POST", collection, validBody)
	if r := call(t, srv, "POST", collection, validBody); r.status != 429 || r.header.Get("Retry-After") != "20" {
		t.Errorf("default window: %d Retry-After %q, want 429 and 20", r.status, r.header.Get("Retry-After"))
	}
	for _, body := range []string{`{"writes":-1}`, `{"writes":5,"window":"soon"}`, `{"writes":5,"window":"-1s"}`} {
		if st := ctl(body); st != http.StatusBadRequest {
			t.Errorf("writelimit %s: %d, want 400", body, st)
		}
	}
}

func TestWriteLimitSetAtRunTime(t *testing.T) {
	em, srv := start(t)
	em.SetWriteLimit(1, time.Hour)
	call(t, srv, "POST", collection, validBody)
	if r := call(t, srv, "POST", collection, validBody); r.status != http.StatusTooManyRequests {
		t.Errorf("second write: %d, want 429", r.status)
	}
	em.SetWriteLimit(2, time.Hour) // a new limit starts counting afresh
	for i := range 2 {
		if r := call(t, srv, "POST", collection, validBody); r.status != http.StatusCreated {
			t.Errorf("write %d under the new limit: %d", i, r.status)
		}
	}
	reqs := em.Requests()
	var statuses []int
	for _, r := range reqs {
		statuses = append(statuses, r.Status)
	}
	if !reflect.DeepEqual(statuses, []int{201, 429, 201, 201}) {
		t.Errorf("statuses %v", statuses)
	}
}

func TestExternalObjectsPersist(t *testing.T) {
	path := t.TempDir() + "/graph.json"
	em := emulator.New(emulator.WithStateFile(path))
	a := em.PutObject(graph.Association{DisplayName: "a", ClassroomIDs: []string{"r"}})
	b := em.PutObject(graph.Association{DisplayName: "b"})
	if _, err := em.ChangeObject(a.ID, graph.Patch{Description: ptr("d")}); err != nil {
		t.Fatal(err)
	}
	if err := em.RemoveObject(b.ID); err != nil {
		t.Fatal(err)
	}
	want := em.Objects()
	if err := em.Close(); err != nil {
		t.Fatal(err)
	}
	again := emulator.New(emulator.WithStateFile(path))
	defer again.Close()
	if got := again.Objects(); !reflect.DeepEqual(got, want) {
		t.Errorf("reloaded %+v\nwant     %+v", got, want)
	}
	data, _ := json.Marshal(want)
	if !bytes.Contains(data, []byte(`"description":"d"`)) {
		t.Errorf("objects %s", data)
	}
}

func ptr[T any](v T) *T { return &v }

// A listing under way sees later pages as they are when it reaches them:
// objects deleted behind it stay out, new ones come at the end.
func TestListingWhileObjectsChange(t *testing.T) {
	em, srv := start(t, emulator.WithPageSize(2))
	var ids []string
	for i := range 6 {
		ids = append(ids, em.PutObject(graph.Association{DisplayName: fmt.Sprint(i)}).ID)
	}
	page := func(path string) ([]string, string) {
		t.Helper()
		r := call(t, srv, "GET", path, "")
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
		}
		var got []string
		for _, v := range r.json["value"].([]any) {
			got = append(got, v.(map[string]any)["id"].(string))
		}
		next, _ := r.json["@odata.nextLink"].(string)
		return got, strings.TrimPrefix(next, srv.URL)
	}
	got, next := page(collection)
	if !reflect.DeepEqual(got, ids[:2]) {
		t.Fatalf("page 1 = %v, want %v", got, ids[:2])
	}
	for _, id := range []string{ids[0], ids[2], ids[5]} {
		if err := em.RemoveObject(id); err != nil {
			t.Fatal(err)
		}
	}
	added := em.PutObject(graph.Association{DisplayName: "new"}).ID
	got, next = page(next)
	if !reflect.DeepEqual(got, []string{ids[3], ids[4]}) || next == "" {
		t.Errorf("page 2 = %v (next %q), want %v", got, next, ids[3:5])
	}
	got, next = page(next)
	if !reflect.DeepEqual(got, []string{added}) || next != "" {
		t.Errorf("page 3 = %v (next %q), want only %s", got, next, added)
	}
	want := []string{ids[1], ids[3], ids[4], added}
	var all []string
	for _, o := range em.Objects() {
		all = append(all, o.ID)
	}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("Objects = %v, want %v", all, want)
	}
}
