package push

import (
	"github.com/cartclass/cartclass/store"
)

// This file is the reconciliation rule, in one place: how an association's values in
// cartclass and in Intune are brought together when Intune is read (a full listing, or the
// GET before each PATCH). It is a three-way comparison per field between the values last
// known to be in Graph (the base), the local values and Graph's values now:
//
//	changed only in Intune        take Intune's value, send nothing
//	changed only locally          keep it: the PATCH of the changed fields sends it
//	changed in both, to the same  nothing to do for that field
//	changed in both, differently  a conflict: nothing is sent until an admin chooses
//
// Fields changed on different sides merge: cartclass takes Intune's fields and PATCHes
// only its own.

// Outcome is what reconciling one association decides.
type Outcome int

// The outcomes.
const (
	// InStep: Graph holds what cartclass holds; nothing to take, nothing to send.
	InStep Outcome = iota
	// TakeIntune: only Intune changed: cartclass takes its values and sends nothing.
	TakeIntune
	// PushLocal: cartclass has changes Graph lacks (perhaps after taking Intune's changes
	// to other fields): PATCH the difference between Decision.Base and Decision.Local.
	PushLocal
	// Conflict: a field was changed on both sides to different values: nothing is sent
	// for the association until an admin keeps Intune's version or pushes theirs.
	Conflict
)

func (o Outcome) String() string {
	return [...]string{"in step", "take Intune", "push local", "conflict"}[o]
}

// Decision is the outcome for one association and the values it leads to.
type Decision struct {
	Outcome Outcome
	// Local is what cartclass should hold: its own values with Intune's changes taken.
	// For a Conflict it is the local values unchanged.
	Local store.Fields
	// Base is what Graph holds now: the base of the next comparison and of the PATCH.
	Base store.Fields
	// Taken names the fields whose values came from Intune (Graph's property names).
	Taken []string
	// Conflicts names the fields changed on both sides to different values.
	Conflicts []string
}

// Decide reconciles one association: base is what Graph was last known to hold (nil when
// unknown: linked before cartclass kept it), local what cartclass holds, remote what Graph
// holds now. It is a pure function of its arguments.
func Decide(base *store.Fields, local, remote store.Fields) Decision {
	d := Decision{Local: local.Clone(), Base: remote.Clone()}
	for _, f := range store.FieldRules {
		if f.Equal(local, remote) {
			continue // in step, or both changed to the same value
		}
		switch {
		case base == nil:
			// Nobody knows who changed it: never overwrite either side on a guess.
			d.Conflicts = append(d.Conflicts, f.Name)
		case f.Equal(local, *base):
			f.Copy(&d.Local, remote) // changed only in Intune
			d.Taken = append(d.Taken, f.Name)
		case f.Equal(remote, *base):
			// changed only locally: the PATCH sends it
		default:
			d.Conflicts = append(d.Conflicts, f.Name)
		}
	}
	switch {
	case len(d.Conflicts) > 0:
		d.Outcome, d.Local, d.Taken = Conflict, local.Clone(), nil
	case !d.Local.Equal(d.Base):
		d.Outcome = PushLocal
	case len(d.Taken) > 0:
		d.Outcome = TakeIntune
	default:
		d.Outcome = InStep
	}
	return d
}
