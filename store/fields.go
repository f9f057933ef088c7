package store

import "slices"

// FieldRule is one of the five writable properties, by Graph's name, with how to compare
// and copy it: the unit in which reconciliation (push.Decide) and the conflict choices
// (KeepIntune, PushMine) work.
type FieldRule struct {
	Name  string
	Equal func(a, b Fields) bool
	Copy  func(dst *Fields, src Fields)
}

// FieldRules lists the writable properties in Graph's order.
var FieldRules = []FieldRule{
	{"displayName", func(a, b Fields) bool { return a.DisplayName == b.DisplayName },
		func(d *Fields, s Fields) { d.DisplayName = s.DisplayName }},
	{"description", func(a, b Fields) bool { return a.Description == b.Description },
		func(d *Fields, s Fields) { d.Description = s.Description }},
	{"version", func(a, b Fields) bool { return a.Version == b.Version },
		func(d *Fields, s Fields) { d.Version = s.Version }},
	{"deviceCartIds", func(a, b Fields) bool { return slices.Equal(a.DeviceCartIDs, b.DeviceCartIDs) },
		func(d *Fields, s Fields) { d.DeviceCartIDs = slices.Clone(s.DeviceCartIDs) }},
	{"classroomIds", func(a, b Fields) bool { return slices.Equal(a.ClassroomIDs, b.ClassroomIDs) },
		func(d *Fields, s Fields) { d.ClassroomIDs = slices.Clone(s.ClassroomIDs) }},
}

// Clone returns f with its own copies of the id lists.
func (f Fields) Clone() Fields {
	f.DeviceCartIDs, f.ClassroomIDs = slices.Clone(f.DeviceCartIDs), slices.Clone(f.ClassroomIDs)
	return f
}

// resolve settles a conflict field by field: the conflicting fields take Intune's value
// (takeIntune) or keep cartclass's; every other field takes Intune's value where only
// Intune changed it (local still equals base) and keeps cartclass's where only cartclass
// did. base nil: nothing but the conflicting fields can differ.
func resolve(base *Fields, local, remote Fields, conflicts []string, takeIntune bool) Fields {
	out := local.Clone()
	for _, r := range FieldRules {
		switch {
		case slices.Contains(conflicts, r.Name):
			if takeIntune {
				r.Copy(&out, remote)
			}
		case base != nil && r.Equal(local, *base):
			r.Copy(&out, remote)
		}
	}
	return out
}
