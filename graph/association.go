package graph

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// ODataType is the @odata.type value Graph uses for the resource.
const ODataType = "#microsoft.graph.cartToClassAssociation"

// Association is a cartToClassAssociation: a set of shared device carts
// linked to a set of classrooms. ID and the two timestamps are set by Graph.
type Association struct {
	ID                   string    `json:"id,omitempty"`
	CreatedDateTime      time.Time `json:"createdDateTime"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	Version              int32     `json:"version"`
	DisplayName          string    `json:"displayName"`
	Description          string    `json:"description"`
	DeviceCartIDs        []string  `json:"deviceCartIds"`
	ClassroomIDs         []string  `json:"classroomIds"`
}

// associationWire is Association as it appears on the wire, with the
// timestamps kept as text so they can be parsed leniently.
type associationWire struct {
	ID                   string   `json:"id,omitempty"`
	CreatedDateTime      string   `json:"createdDateTime,omitempty"`
	LastModifiedDateTime string   `json:"lastModifiedDateTime,omitempty"`
	Version              int32    `json:"version"`
	DisplayName          string   `json:"displayName"`
	Description          string   `json:"description"`
	DeviceCartIDs        []string `json:"deviceCartIds"`
	ClassroomIDs         []string `json:"classroomIds"`
}

// UnmarshalJSON decodes Graph's representation, parsing the DateTimeOffset
// timestamps (RFC 3339 with up to 7 fraction digits). Unknown properties
// such as @odata.type and @odata.context are ignored; null is read as the
// zero value.
func (a *Association) UnmarshalJSON(b []byte) error {
	var w associationWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	created, err := ParseDateTimeOffset(w.CreatedDateTime)
	if err != nil {
		return fmt.Errorf("createdDateTime: %w", err)
	}
	modified, err := ParseDateTimeOffset(w.LastModifiedDateTime)
	if err != nil {
		return fmt.Errorf("lastModifiedDateTime: %w", err)
	}
	*a = Association{
		ID:                   w.ID,
		CreatedDateTime:      created,
		LastModifiedDateTime: modified,
		Version:              w.Version,
		DisplayName:          w.DisplayName,
		Description:          w.Description,
		DeviceCartIDs:        w.DeviceCartIDs,
		ClassroomIDs:         w.ClassroomIDs,
	}
	return nil
}

// MarshalJSON encodes a with Graph's property names, timestamps in Graph's
// 7-digit form (omitted when zero) and collections as arrays, never null.
// It is meant for storing and displaying objects; requests to Graph use
// their own bodies (see Client.Create and Patch), which never carry id or
// timestamps.
func (a Association) MarshalJSON() ([]byte, error) {
	w := associationWire{
		ID:            a.ID,
		Version:       a.Version,
		DisplayName:   a.DisplayName,
		Description:   a.Description,
		DeviceCartIDs: nonNil(a.DeviceCartIDs),
		ClassroomIDs:  nonNil(a.ClassroomIDs),
	}
	if !a.CreatedDateTime.IsZero() {
		w.CreatedDateTime = FormatDateTimeOffset(a.CreatedDateTime)
	}
	if !a.LastModifiedDateTime.IsZero() {
		w.LastModifiedDateTime = FormatDateTimeOffset(a.LastModifiedDateTime)
	}
	return json.Marshal(w)
}

// dateTimeOffsetLayout is how Graph writes DateTimeOffset values: 7 fraction
// digits and a numeric offset.
const dateTimeOffsetLayout = "2006-01-02T15:04:05.0000000-07:00"

// FormatDateTimeOffset formats t the way Graph does, e.g.
// 2017-01-01T00:00:46.1697867+03:00. Precision below 100 ns is dropped.
func FormatDateTimeOffset(t time.Time) string {
	return t.Format(dateTimeOffsetLayout)
}

// ParseDateTimeOffset parses a Graph DateTimeOffset: RFC 3339 with any
// number of fraction digits (Graph uses up to 7) and an offset or Z. A value
// without an offset is read as UTC, since some services omit it. The empty
// string gives the zero time.
func ParseDateTimeOffset(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("graph: bad DateTimeOffset %q", s)
	}
	return t, nil
}

// Patch is a partial update: nil fields are left unchanged on the server.
// A non-nil collection (even an empty one) replaces the remote collection
// whole, because Graph has no way to add or remove single entries.
type Patch struct {
	Version       *int32
	DisplayName   *string
	Description   *string
	DeviceCartIDs []string
	ClassroomIDs  []string
}

// IsEmpty reports whether p changes nothing.
func (p Patch) IsEmpty() bool {
	return p.Version == nil && p.DisplayName == nil && p.Description == nil &&
		p.DeviceCartIDs == nil && p.ClassroomIDs == nil
}

// Apply returns a with p's changes applied, which is what Graph holds after
// a successful PATCH (useful when Graph answers 204 with no body). The
// timestamps are left as they were.
func (p Patch) Apply(a Association) Association {
	if p.Version != nil {
		a.Version = *p.Version
	}
	if p.DisplayName != nil {
		a.DisplayName = *p.DisplayName
	}
	if p.Description != nil {
		a.Description = *p.Description
	}
	if p.DeviceCartIDs != nil {
		a.DeviceCartIDs = slices.Clone(p.DeviceCartIDs)
	}
	if p.ClassroomIDs != nil {
		a.ClassroomIDs = slices.Clone(p.ClassroomIDs)
	}
	return a
}

// patchWire is the PATCH body. Pointers to slices let an empty collection be
// sent as [] while an unchanged one is omitted.
type patchWire struct {
	ODataType     string    `json:"@odata.type"`
	Version       *int32    `json:"version,omitempty"`
	DisplayName   *string   `json:"displayName,omitempty"`
	Description   *string   `json:"description,omitempty"`
	DeviceCartIDs *[]string `json:"deviceCartIds,omitempty"`
	ClassroomIDs  *[]string `json:"classroomIds,omitempty"`
}

// MarshalJSON encodes the PATCH body: @odata.type plus only the changed
// properties.
func (p Patch) MarshalJSON() ([]byte, error) {
	w := patchWire{
		ODataType:   ODataType,
		Version:     p.Version,
		DisplayName: p.DisplayName,
		Description: p.Description,
	}
	if p.DeviceCartIDs != nil {
		s := p.DeviceCartIDs
		w.DeviceCartIDs = &s
	}
	if p.ClassroomIDs != nil {
		s := p.ClassroomIDs
		w.ClassroomIDs = &s
	}
	return json.Marshal(w)
}

// Diff returns the Patch that turns old into new. Collections are compared
// in order, with nil and empty treated as equal; a changed collection is
// carried whole (an emptied one as a non-nil empty slice).
func Diff(old, new Association) Patch {
	var p Patch
	if old.Version != new.Version {
		v := new.Version
		p.Version = &v
	}
	if old.DisplayName != new.DisplayName {
		s := new.DisplayName
		p.DisplayName = &s
	}
	if old.Description != new.Description {
		s := new.Description
		p.Description = &s
	}
	if !slices.Equal(old.DeviceCartIDs, new.DeviceCartIDs) {
		p.DeviceCartIDs = append([]string{}, new.DeviceCartIDs...)
	}
	if !slices.Equal(old.ClassroomIDs, new.ClassroomIDs) {
		p.ClassroomIDs = append([]string{}, new.ClassroomIDs...)
	}
	return p
}

// FullPatch sets every writable property of a: the POST body, or a PATCH when what Graph
// holds is unknown. Collections are non-nil, so they are sent as [] rather than left out.
func FullPatch(a Association) Patch {
	return Patch{Version: &a.Version, DisplayName: &a.DisplayName, Description: &a.Description,
		DeviceCartIDs: append([]string{}, a.DeviceCartIDs...), ClassroomIDs: append([]string{}, a.ClassroomIDs...)}
}

// nonNil returns s, or an empty slice when s is nil, so JSON gets [] not null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
