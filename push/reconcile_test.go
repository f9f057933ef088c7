package push_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
)

func TestDecide(t *testing.T) {
	base := store.Fields{DisplayName: "Science", Description: "Block A", Version: 1,
		DeviceCartIDs: []string{"cart-1"}, ClassroomIDs: []string{"room-1"}}
	with := func(f store.Fields, change func(*store.Fields)) store.Fields {
		f.DeviceCartIDs, f.ClassroomIDs = slices.Clone(f.DeviceCartIDs), slices.Clone(f.ClassroomIDs)
		change(&f)
		return f
	}
	renamed := func(f *store.Fields) { f.DisplayName = "Science labs" }
	moved := func(f *store.Fields) { f.ClassroomIDs = []string{"room-2"} }
	redescribed := func(f *store.Fields) { f.Description = "Block B" }
	otherName := func(f *store.Fields) { f.DisplayName = "Sci" }

	for _, tc := range []struct {
		name          string
		base          *store.Fields
		local, remote store.Fields
		want          push.Outcome
		wantLocal     store.Fields
		taken, confl  []string
	}{
		{name: "nothing changed", base: &base, local: base, remote: base, want: push.InStep, wantLocal: base},
		{name: "changed only in Intune", base: &base, local: base, remote: with(base, renamed),
			want: push.TakeIntune, wantLocal: with(base, renamed), taken: []string{"displayName"}},
		{name: "a collection changed only in Intune", base: &base, local: base, remote: with(base, moved),
			want: push.TakeIntune, wantLocal: with(base, moved), taken: []string{"classroomIds"}},
		{name: "changed only locally", base: &base, local: with(base, renamed), remote: base,
			want: push.PushLocal, wantLocal: with(base, renamed)},
		{name: "both, different fields: merged", base: &base, local: with(base, renamed), remote: with(base, moved),
			want: push.PushLocal, wantLocal: with(with(base, renamed), moved), taken: []string{"classroomIds"}},
		{name: "both, same field, same value", base: &base, local: with(base, renamed), remote: with(base, renamed),
			want: push.InStep, wantLocal: with(base, renamed)},
		{name: "both, same field, different values", base: &base, local: with(base, renamed), remote: with(base, otherName),
			want: push.Conflict, wantLocal: with(base, renamed), confl: []string{"displayName"}},
		{name: "a conflict and a change elsewhere take nothing", base: &base,
			local: with(base, renamed), remote: with(with(base, otherName), redescribed),
			want: push.Conflict, wantLocal: with(base, renamed), confl: []string{"displayName"}},
		{name: "unknown base, equal values", base: nil, local: base, remote: base, want: push.InStep, wantLocal: base},
		{name: "unknown base, different values: never guessed", base: nil, local: with(base, renamed), remote: base,
			want: push.Conflict, wantLocal: with(base, renamed), confl: []string{"displayName"}},
		{name: "nil and empty collections are equal", base: &base,
			local: with(base, func(f *store.Fields) { f.DeviceCartIDs = nil }), remote: with(base, func(f *store.Fields) { f.DeviceCartIDs = []string{} }),
			want: push.InStep, wantLocal: with(base, func(f *store.Fields) { f.DeviceCartIDs = nil })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := push.Decide(tc.base, tc.local, tc.remote)
			if d.Outcome != tc.want {
				t.Errorf("outcome = %v, want %v", d.Outcome, tc.want)
			}
			if !d.Local.Equal(tc.wantLocal) {
				t.Errorf("local = %+v, want %+v", d.Local, tc.wantLocal)
			}
			if !d.Base.Equal(tc.remote) {
				t.Errorf("base = %+v, want Graph's values %+v", d.Base, tc.remote)
			}
			if !reflect.DeepEqual(d.Taken, tc.taken) || !reflect.DeepEqual(d.Conflicts, tc.confl) {
				t.Errorf("taken %q conflicts %q, want %q %q", d.Taken, d.Conflicts, tc.taken, tc.confl)
			}
		})
	}

	// The decision never shares memory with its inputs.
	local := with(base, renamed)
	d := push.Decide(&base, local, with(base, moved))
	d.Local.ClassroomIDs[0], d.Base.ClassroomIDs[0] = "x", "y"
	if local.ClassroomIDs[0] != "room-1" {
		t.Error("Decide's result aliases its input")
	}
}
