package graph

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestParseDateTimeOffset(t *testing.T) {
	plus3 := time.FixedZone("", 3*3600)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2017-01-01T00:02:37.446308+03:00", time.Date(2017, 1, 1, 0, 2, 37, 446308000, plus3)},
		{"2017-01-01T00:00:46.1697867+03:00", time.Date(2017, 1, 1, 0, 0, 46, 169786700, plus3)},
		{"2016-12-31T23:58:46.8102575+03:00", time.Date(2016, 12, 31, 23, 58, 46, 810257500, plus3)},
		{"2024-05-06T07:08:09Z", time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"2024-05-06T07:08:09.1234567Z", time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC)},
		{"2024-05-06T07:08:09.1234567", time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.UTC)}, // no offset: UTC
		{"", time.Time{}},
	}
	for _, tt := range tests {
		got, err := ParseDateTimeOffset(tt.in)
		if err != nil {
			t.Errorf("ParseDateTimeOffset(%q): %v", tt.in, err)
			continue
		}
		if !got.Equal(tt.want) {
			t.Errorf("ParseDateTimeOffset(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"yesterday", "2017-13-01T00:00:00Z", "2017-01-01 00:00:00"} {
		if _, err := ParseDateTimeOffset(bad); err == nil {
			t.Errorf("ParseDateTimeOffset(%q) succeeded, want error", bad)
		}
	}
}

func TestFormatDateTimeOffset(t *testing.T) {
	tm := time.Date(2017, 1, 1, 0, 0, 46, 169786700, time.FixedZone("", 3*3600))
	if got, want := FormatDateTimeOffset(tm), "2017-01-01T00:00:46.1697867+03:00"; got != want {
		t.Errorf("FormatDateTimeOffset = %q, want %q", got, want)
	}
	if got, want := FormatDateTimeOffset(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)), "2024-01-02T03:04:05.0000000+00:00"; got != want {
		t.Errorf("FormatDateTimeOffset(UTC) = %q, want %q", got, want)
	}
}

// The response example from the update seed decodes completely.
func TestAssociationUnmarshalSeedResponse(t *testing.T) {
	const body = `{
  "@odata.type": "#microsoft.graph.cartToClassAssociation",
  "id": "36aa71ae-71ae-36aa-ae71-aa36ae71aa36",
  "createdDateTime": "2017-01-01T00:00:46.1697867+03:00",
  "lastModifiedDateTime": "2016-12-31T23:58:46.8102575+03:00",
  "version": 7,
  "displayName": "Display Name value",
  "description": "Description value",
  "deviceCartIds": ["Device Cart Ids value"],
  "classroomIds": ["Classroom Ids value"]
}`
	var a Association
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	plus3 := time.FixedZone("", 3*3600)
	want := Association{
		ID:                   "36aa71ae-71ae-36aa-ae71-aa36ae71aa36",
		CreatedDateTime:      time.Date(2017, 1, 1, 0, 0, 46, 169786700, plus3),
		LastModifiedDateTime: time.Date(2016, 12, 31, 23, 58, 46, 810257500, plus3),
		Version:              7,
		DisplayName:          "Display Name value",
		Description:          "Description value",
		DeviceCartIDs:        []string{"Device Cart Ids value"},
		ClassroomIDs:         []string{"Classroom Ids value"},
	}
	if !a.CreatedDateTime.Equal(want.CreatedDateTime) || !a.LastModifiedDateTime.Equal(want.LastModifiedDateTime) {
		t.Errorf("timestamps = %v, %v; want %v, %v", a.CreatedDateTime, a.LastModifiedDateTime, want.CreatedDateTime, want.LastModifiedDateTime)
	}
	a.CreatedDateTime, a.LastModifiedDateTime = want.CreatedDateTime, want.LastModifiedDateTime
	if !reflect.DeepEqual(a, want) {
		t.Errorf("decoded %+v\nwant    %+v", a, want)
	}

	// Round trip through MarshalJSON keeps the 7-digit timestamps.
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["createdDateTime"] != "2017-01-01T00:00:46.1697867+03:00" {
		t.Errorf("createdDateTime marshalled as %v", m["createdDateTime"])
	}
}

func TestAssociationMarshalNeverNull(t *testing.T) {
	out, err := json.Marshal(Association{DisplayName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"deviceCartIds", "classroomIds"} {
		if v, ok := m[k].([]any); !ok || len(v) != 0 {
			t.Errorf("%s = %#v, want []", k, m[k])
		}
	}
	for _, k := range []string{"id", "createdDateTime", "lastModifiedDateTime"} {
		if _, ok := m[k]; ok {
			t.Errorf("zero %s was marshalled: %s", k, out)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDiff(t *testing.T) {
	base := Association{
		ID: "a", Version: 7, DisplayName: "Cart A", Description: "d",
		DeviceCartIDs: []string{"c1", "c2"}, ClassroomIDs: []string{"r1"},
	}
	tests := []struct {
		name   string
		change func(*Association)
		want   Patch
		body   string
	}{
		{"nothing", func(*Association) {}, Patch{}, `{"@odata.type":"#microsoft.graph.cartToClassAssociation"}`},
		{"timestamps and id ignored", func(a *Association) { a.ID = "b"; a.CreatedDateTime = time.Now() }, Patch{},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation"}`},
		{"name", func(a *Association) { a.DisplayName = "Cart B" }, Patch{DisplayName: ptr("Cart B")},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation","displayName":"Cart B"}`},
		{"description emptied", func(a *Association) { a.Description = "" }, Patch{Description: ptr("")},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation","description":""}`},
		{"version", func(a *Association) { a.Version = 8 }, Patch{Version: ptr[int32](8)},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation","version":8}`},
		{"cart added: whole list", func(a *Association) { a.DeviceCartIDs = []string{"c1", "c2", "c3"} },
			Patch{DeviceCartIDs: []string{"c1", "c2", "c3"}},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation","deviceCartIds":["c1","c2","c3"]}`},
		{"classrooms emptied", func(a *Association) { a.ClassroomIDs = nil }, Patch{ClassroomIDs: []string{}},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation","classroomIds":[]}`},
		{"reordered", func(a *Association) { a.DeviceCartIDs = []string{"c2", "c1"} }, Patch{DeviceCartIDs: []string{"c2", "c1"}},
			`{"@odata.type":"#microsoft.graph.cartToClassAssociation","deviceCartIds":["c2","c1"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base
			next.DeviceCartIDs = append([]string(nil), base.DeviceCartIDs...)
			next.ClassroomIDs = append([]string(nil), base.ClassroomIDs...)
			tt.change(&next)
			p := Diff(base, next)
			if !reflect.DeepEqual(p, tt.want) {
				t.Errorf("Diff = %+v, want %+v", p, tt.want)
			}
			if p.IsEmpty() != tt.want.IsEmpty() {
				t.Errorf("IsEmpty = %v", p.IsEmpty())
			}
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.body {
				t.Errorf("body = %s\nwant   %s", b, tt.body)
			}
			applied := p.Apply(base)
			if applied.DisplayName != next.DisplayName || applied.Description != next.Description ||
				applied.Version != next.Version || !slices.Equal(applied.DeviceCartIDs, next.DeviceCartIDs) ||
				!slices.Equal(applied.ClassroomIDs, next.ClassroomIDs) {
				t.Errorf("Apply = %+v, want values of %+v", applied, next)
			}
			// Apply copies: changing the patch afterwards must not change the result.
			if len(p.DeviceCartIDs) > 0 {
				p.DeviceCartIDs[0] = "changed later"
				if slices.Contains(applied.DeviceCartIDs, "changed later") {
					t.Error("Apply shares the patch's slice")
				}
			}
		})
	}
	if !(Patch{}).IsEmpty() {
		t.Error("zero Patch not empty")
	}
	if (Patch{ClassroomIDs: []string{}}).IsEmpty() {
		t.Error("Patch emptying a collection reported empty")
	}
	// nil and empty collections are the same value.
	if p := Diff(Association{DeviceCartIDs: nil}, Association{DeviceCartIDs: []string{}}); !p.IsEmpty() {
		t.Errorf("nil vs empty produced %+v", p)
	}
}
