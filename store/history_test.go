package store

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of the history: an entry for every kind of change, written with the change, by the
// right actor, with the fields it changed; none for a change that changes nothing; kept
// after the association is purged; paged newest first. They use the outbox and mirror
// tests' fixed clock and helpers.

// hsAll returns association id's whole history, newest first.
func hsAll(t *testing.T, s *Store, id int64) []HistoryEntry {
	t.Helper()
	es, more, err := s.AssociationHistory(t.Context(), id, 0, maxHistoryPage)
	if err != nil {
		t.Fatalf("AssociationHistory(%d): %v", id, err)
	}
	if more {
		t.Fatalf("AssociationHistory(%d): more than %d entries", id, maxHistoryPage)
	}
	return es
}

// hsKinds is the kinds of es, in order.
func hsKinds(es []HistoryEntry) []HistoryKind {
	out := make([]HistoryKind, len(es))
	for i, e := range es {
		out[i] = e.Kind
	}
	return out
}

// hsWantKinds fails unless id's history holds exactly these kinds, newest first, and
// returns it.
func hsWantKinds(t *testing.T, s *Store, id int64, want ...HistoryKind) []HistoryEntry {
	t.Helper()
	es := hsAll(t, s, id)
	if got := hsKinds(es); !slices.Equal(got, want) {
		t.Fatalf("history of %d = %v, want %v", id, got, want)
	}
	return es
}

// hsWant checks one entry against what it should record.
func hsWant(t *testing.T, e HistoryEntry, a Association, kind HistoryKind, by Actor, at time.Time, changes ...FieldChange) {
	t.Helper()
	if e.Kind != kind || e.AssociationID != a.ID || e.Actor != by || e.Revision != a.Revision ||
		e.DisplayName != a.DisplayName || !e.At.Equal(at) || e.At.Location() != time.UTC {
		t.Errorf("%s entry = {assoc %d, by %+v, rev %d, name %q, at %v}; want {%d, %+v, %d, %q, %v}", kind,
			e.AssociationID, e.Actor, e.Revision, e.DisplayName, e.At, a.ID, by, a.Revision, a.DisplayName, at)
	}
	if changes == nil {
		changes = []FieldChange{}
	}
	if e.Changes == nil {
		e.Changes = []FieldChange{}
	}
	if !reflect.DeepEqual(e.Changes, changes) {
		t.Errorf("%s entry changes:\n got %+v\nwant %+v", kind, e.Changes, changes)
	}
	if kind != HistoryResolved && e.Choice != "" {
		t.Errorf("%s entry has choice %q", kind, e.Choice)
	}
}

// obInitial is what the created entry of obFields(name) records.
func obInitial(name string) []FieldChange {
	return []FieldChange{
		{Field: "displayName", New: name},
		{Field: "description", New: "d " + name},
		{Field: "version", New: "7"},
		{Field: "deviceCartIds", Added: []string{"cart-" + name}},
		{Field: "classroomIds", Added: []string{"room-" + name}},
	}
}

func TestHistoryOfCreateAndEdit(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha")
	es := hsWantKinds(t, s, a.ID, HistoryCreated)
	hsWant(t, es[0], a, HistoryCreated, obActor, obT0, obInitial("alpha")...)

	*now = obT0.Add(time.Minute)
	f := a.Fields.Clone()
	f.Description = "Science block only"
	f.Version = 8
	f.DeviceCartIDs = []string{"cart-12", "cart-13"}
	ada := Actor{Subject: "sub-ada", Name: "Ada Admin"}
	e, err := s.UpdateAssociation(ctx, a.ID, a.Revision, f, ada)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, a.ID, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], e, HistoryEdited, ada, *now,
		FieldChange{Field: "description", Old: "d alpha", New: "Science block only"},
		FieldChange{Field: "version", Old: "7", New: "8"},
		FieldChange{Field: "deviceCartIds", Added: []string{"cart-12", "cart-13"}, Removed: []string{"cart-alpha"}})
	hsWant(t, es[1], a, HistoryCreated, obActor, obT0, obInitial("alpha")...)

	// A rename, an emptied description and lists whose order alone changed.
	*now = obT0.Add(2 * time.Minute)
	g := e.Fields.Clone()
	g.DisplayName, g.Description = "beta", ""
	g.DeviceCartIDs = []string{"cart-13", "cart-12"}
	g.ClassroomIDs = nil
	e2, err := s.UpdateAssociation(ctx, a.ID, e.Revision, g, ada)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, a.ID, HistoryEdited, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], e2, HistoryEdited, ada, *now,
		FieldChange{Field: "displayName", Old: "alpha", New: "beta"},
		FieldChange{Field: "description", Old: "Science block only"},
		FieldChange{Field: "deviceCartIds", Old: "cart-12, cart-13", New: "cart-13, cart-12"},
		FieldChange{Field: "classroomIds", Removed: []string{"room-alpha"}})
	if es[1].DisplayName != "alpha" {
		t.Errorf("the earlier entry's name became %q: entries keep the name as it was", es[1].DisplayName)
	}

	// Nothing written, nothing recorded: an unchanged save, a stale one, a deleted one.
	if _, err := s.UpdateAssociation(ctx, a.ID, e2.Revision, g.Clone(), ada); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("unchanged save: %v, want ErrUnchanged", err)
	}
	stale := g.Clone()
	stale.Version = 99
	if _, err := s.UpdateAssociation(ctx, a.ID, e.Revision, stale, ada); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale save: %v, want ErrConflict", err)
	}
	if _, err := s.UpdateAssociation(ctx, 999, 1, stale, ada); !errors.Is(err, ErrNotFound) {
		t.Fatalf("save of 999: %v, want ErrNotFound", err)
	}
	hsWantKinds(t, s, a.ID, HistoryEdited, HistoryEdited, HistoryCreated)

	// A version of 0 and no ids are recorded as they are.
	z, err := s.CreateAssociation(ctx, Fields{DisplayName: "zero"}, ada)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, z.ID, HistoryCreated)
	hsWant(t, es[0], z, HistoryCreated, ada, *now, FieldChange{Field: "displayName", New: "zero"}, FieldChange{Field: "version", New: "0"})
}

func TestHistoryOfDeleteRestoreSurvivesPurge(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha") // never pushed: its delete needs no request
	*now = obT0.Add(time.Minute)
	d := mrDelete(t, s, a.ID)
	es := hsWantKinds(t, s, a.ID, HistoryDeleted, HistoryCreated)
	hsWant(t, es[0], d, HistoryDeleted, mrAdmin, *now)
	if d.Revision != a.Revision+1 {
		t.Fatalf("delete revision %d", d.Revision)
	}
	if _, err := s.DeleteAssociation(ctx, a.ID, d.Revision, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second delete: %v, want ErrUnchanged", err)
	}
	hsWantKinds(t, s, a.ID, HistoryDeleted, HistoryCreated)

	*now = obT0.Add(2 * time.Minute)
	bob := Actor{Subject: "sub-bob", Name: "Bob"}
	r, err := s.RestoreAssociation(ctx, a.ID, bob)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, a.ID, HistoryRestored, HistoryDeleted, HistoryCreated)
	hsWant(t, es[0], r, HistoryRestored, bob, *now)
	if _, err := s.RestoreAssociation(ctx, a.ID, bob); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second restore: %v, want ErrUnchanged", err)
	}
	if _, err := s.DeleteAssociation(ctx, a.ID, r.Revision-1, mrAdmin); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale delete: %v, want ErrConflict", err)
	}
	hsWantKinds(t, s, a.ID, HistoryRestored, HistoryDeleted, HistoryCreated)

	// Deleted for good: the association goes, its history stays, with its name.
	*now = obT0.Add(3 * time.Minute)
	d2 := mrDelete(t, s, a.ID)
	if n, err := s.PurgeDeleted(ctx, obT0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("PurgeDeleted = %d, %v; want 1", n, err)
	}
	if _, err := s.GetAssociation(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged association: %v, want ErrNotFound", err)
	}
	es = hsWantKinds(t, s, a.ID, HistoryDeleted, HistoryRestored, HistoryDeleted, HistoryCreated)
	hsWant(t, es[0], d2, HistoryDeleted, mrAdmin, *now)
	for _, e := range es {
		if e.DisplayName != "alpha" {
			t.Errorf("purged association's %s entry names %q", e.Kind, e.DisplayName)
		}
	}
	// A new association never takes over the purged one's history.
	b := obCreate(t, s, "beta")
	if b.ID == a.ID {
		t.Fatalf("purged id %d reused", a.ID)
	}
	hsWantKinds(t, s, b.ID, HistoryCreated)
}

func TestHistoryOfRemoveAndRecreate(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	b := mrLinked(t, s, "beta", "g-b")
	if n, err := markMissing(s, ctx, nil, obT0.Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("MarkMissing = %d, %v; want 2", n, err)
	}
	*now = obT0.Add(time.Minute)

	r, err := s.RemoveLocal(ctx, a.ID, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	es := hsWantKinds(t, s, a.ID, HistoryRemoved, HistoryCreated)
	hsWant(t, es[0], r, HistoryRemoved, mrAdmin, *now)
	if _, err := s.RemoveLocal(ctx, a.ID, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second RemoveLocal: %v, want ErrUnchanged", err)
	}
	hsWantKinds(t, s, a.ID, HistoryRemoved, HistoryCreated)

	if err := s.Recreate(ctx, b.ID, mrAdmin); err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, b.ID, HistoryRecreated, HistoryCreated)
	hsWant(t, es[0], obGet(t, s, b.ID), HistoryRecreated, mrAdmin, *now)
	if err := s.Recreate(ctx, b.ID, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second Recreate: %v, want ErrUnchanged", err)
	}
	if err := s.Recreate(ctx, a.ID, mrAdmin); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Recreate of a removed association: %v, want ErrDeleted", err)
	}
	hsWantKinds(t, s, b.ID, HistoryRecreated, HistoryCreated)
	hsWantKinds(t, s, a.ID, HistoryRemoved, HistoryCreated)
}

func TestHistoryOfResolvedConflicts(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	bob := Actor{Subject: "sub-2", Name: "Bob"} // obUpdate's editor
	a, _ := mrChanged(t, s, "alpha", "g-a")     // description: mine here, theirs in Intune
	// b: the same conflict, and Intune changed the version too (cartclass did not).
	b := mrLinked(t, s, "beta", "g-b")
	b = obUpdate(t, s, b.ID, "mine")
	remote := b.Fields.Clone()
	remote.Description, remote.Version = "theirs", 9
	mrApply(t, s, []RemoteObject{mrRemote("g-b", remote)}, s.Now(), func(RemoteObject, *Local, []Local) Verdict {
		return Verdict{Kind: VerdictConflict, Conflicts: []string{"description"}}
	})
	// Parking a conflict changes nothing in cartclass: no entry.
	hsWantKinds(t, s, a.ID, HistoryEdited, HistoryCreated)
	hsWantKinds(t, s, b.ID, HistoryEdited, HistoryCreated)

	*now = obT0.Add(time.Minute)
	k, err := s.KeepIntune(ctx, a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	es := hsWantKinds(t, s, a.ID, HistoryResolved, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], k, HistoryResolved, mrAdmin, *now, FieldChange{Field: "description", Old: "mine", New: "theirs"})
	if es[0].Choice != ChoiceKeepIntune {
		t.Errorf("KeepIntune's choice = %q", es[0].Choice)
	}
	hsWant(t, es[1], Association{ID: a.ID, Revision: a.Revision, Fields: Fields{DisplayName: "alpha"}}, HistoryEdited, bob, obT0,
		FieldChange{Field: "description", Old: "d alpha", New: "mine"})
	if _, err := s.KeepIntune(ctx, a.ID, k.Revision, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second KeepIntune: %v, want ErrUnchanged", err)
	}
	hsWantKinds(t, s, a.ID, HistoryResolved, HistoryEdited, HistoryCreated)

	p, err := s.PushMine(ctx, b.ID, b.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, b.ID, HistoryResolved, HistoryEdited, HistoryCreated)
	// Mine kept; what only Intune changed taken along.
	hsWant(t, es[0], p, HistoryResolved, mrAdmin, *now, FieldChange{Field: "version", Old: "7", New: "9"})
	if es[0].Choice != ChoicePushMine || p.Description != "mine" || p.Revision != b.Revision+1 {
		t.Errorf("PushMine: choice %q, description %q, revision %d", es[0].Choice, p.Description, p.Revision)
	}
	if _, err := s.PushMine(ctx, b.ID, p.Revision, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second PushMine: %v, want ErrUnchanged", err)
	}
	hsWantKinds(t, s, b.ID, HistoryResolved, HistoryEdited, HistoryCreated)
}

// PushMine when nothing but the conflicting field differs: the choice is recorded with no
// field changes, at the revision it leaves (unchanged).
func TestHistoryOfPushMineWithoutFieldChanges(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	a, _ := mrChanged(t, s, "alpha", "g-a")
	p, err := s.PushMine(t.Context(), a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	es := hsWantKinds(t, s, a.ID, HistoryResolved, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], p, HistoryResolved, mrAdmin, obT0)
	if es[0].Choice != ChoicePushMine || p.Revision != a.Revision {
		t.Errorf("choice %q, revision %d (was %d)", es[0].Choice, p.Revision, a.Revision)
	}
}

func TestHistoryOfTakeRemote(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	e := obUpdate(t, s, a.ID, "mine") // by Bob, to be pushed
	mrClaimID(t, s, "w1", a.ID)
	remote := a.Fields.Clone()
	remote.Version = 9
	merged := e.Fields.Clone()
	merged.Version = 9
	*now = obT0.Add(10 * time.Second)

	// PushLocal after taking Intune's version: credited to Bob still, recorded as Intune's.
	got, err := s.TakeRemote(ctx, a.ID, "w1", e.Revision, merged, remote, *now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.UpdatedBy != e.UpdatedBy {
		t.Fatalf("revision credited to %+v, want %+v", got.UpdatedBy, e.UpdatedBy)
	}
	es := hsWantKinds(t, s, a.ID, HistoryTaken, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], got, HistoryTaken, IntuneActor, *now, FieldChange{Field: "version", Old: "7", New: "9"})

	// The same values again: nothing written, nothing recorded.
	if _, err := s.TakeRemote(ctx, a.ID, "w1", got.Revision, merged, remote, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	// Refused: an old revision, or no lease.
	other := merged.Clone()
	other.DisplayName = "renamed in Intune"
	if _, err := s.TakeRemote(ctx, a.ID, "w1", e.Revision, other, remote, time.Time{}, &IntuneActor); !errors.Is(err, ErrConflict) {
		t.Fatalf("TakeRemote at an old revision: %v, want ErrConflict", err)
	}
	if _, err := s.TakeRemote(ctx, a.ID, "w2", got.Revision, other, remote, time.Time{}, &IntuneActor); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("TakeRemote without the lease: %v, want ErrLeaseLost", err)
	}
	hsWantKinds(t, s, a.ID, HistoryTaken, HistoryEdited, HistoryCreated)

	// TakeIntune: credited to Intune as well.
	*now = obT0.Add(20 * time.Second)
	took, err := s.TakeRemote(ctx, a.ID, "w1", got.Revision, other, remote, time.Time{}, &IntuneActor)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, a.ID, HistoryTaken, HistoryTaken, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], took, HistoryTaken, IntuneActor, *now, FieldChange{Field: "displayName", Old: "alpha", New: "renamed in Intune"})
}

func TestHistoryOfAReadOfIntune(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	take := mrLinked(t, s, "take", "g-take")
	push := mrLinked(t, s, "push", "g-push")
	inStep := mrLinked(t, s, "instep", "g-instep")
	conflict := mrLinked(t, s, "conflict", "g-conflict")
	skip := mrLinked(t, s, "skip", "g-skip")
	pushEdited := obUpdate(t, s, push.ID, "mine") // by Bob, not yet pushed
	*now = obT0.Add(time.Minute)

	imported := Fields{DisplayName: "Made in PowerShell", Version: 3, DeviceCartIDs: []string{"cart-9", "cart-9", "cart-8"}, ClassroomIDs: []string{"room-9"}}
	takeRemote := take.Fields.Clone()
	takeRemote.Description, takeRemote.ClassroomIDs = "changed in Intune", []string{"room-take", "room-new"}
	pushRemote := push.Fields.Clone()
	pushRemote.Version = 9
	pushLocal := pushEdited.Fields.Clone()
	pushLocal.Version = 9
	conflictRemote := conflict.Fields.Clone()
	conflictRemote.DisplayName = "renamed"
	objs := []RemoteObject{
		mrRemote("g-new", imported), mrRemote("g-take", takeRemote), mrRemote("g-push", pushRemote),
		mrRemote("g-instep", inStep.Fields), mrRemote("g-conflict", conflictRemote), mrRemote("g-skip", Fields{DisplayName: "ignored"}),
	}
	res := mrApply(t, s, objs, *now, func(o RemoteObject, l *Local, _ []Local) Verdict {
		switch o.GraphID {
		case "g-new":
			return Verdict{Kind: VerdictImport}
		case "g-take":
			return Verdict{Kind: VerdictTake, Local: takeRemote}
		case "g-push":
			return Verdict{Kind: VerdictPush, Local: pushLocal}
		case "g-instep":
			return Verdict{Kind: VerdictInStep}
		case "g-conflict":
			return Verdict{Kind: VerdictConflict, Conflicts: []string{"displayName"}}
		}
		return Verdict{Kind: VerdictSkip}
	})
	if res != (PageResult{Imported: 1, Taken: 1, Pushed: 1, Conflicts: 1, Skipped: 1}) {
		t.Fatalf("page result %+v", res)
	}

	all := mustList(t, s)
	var imp Association
	for _, a := range all {
		if a.GraphID == "g-new" {
			imp = a
		}
	}
	if imp.ID == 0 {
		t.Fatalf("nothing imported: %v", names(all))
	}
	es := hsWantKinds(t, s, imp.ID, HistoryImported)
	hsWant(t, es[0], imp, HistoryImported, ImportedBy, *now,
		FieldChange{Field: "displayName", New: "Made in PowerShell"},
		FieldChange{Field: "version", New: "3"},
		FieldChange{Field: "deviceCartIds", Added: []string{"cart-9", "cart-8"}},
		FieldChange{Field: "classroomIds", Added: []string{"room-9"}})

	es = hsWantKinds(t, s, take.ID, HistoryTaken, HistoryCreated)
	hsWant(t, es[0], obGet(t, s, take.ID), HistoryTaken, IntuneActor, *now,
		FieldChange{Field: "description", Old: "d take", New: "changed in Intune"},
		FieldChange{Field: "classroomIds", Added: []string{"room-new"}})

	// Intune's version taken; the revision stays Bob's, his description still to push.
	p := obGet(t, s, push.ID)
	if p.UpdatedBy != pushEdited.UpdatedBy || p.Description != "mine" || p.Version != 9 {
		t.Fatalf("pushed association: by %+v, %q, version %d", p.UpdatedBy, p.Description, p.Version)
	}
	es = hsWantKinds(t, s, push.ID, HistoryTaken, HistoryEdited, HistoryCreated)
	hsWant(t, es[0], p, HistoryTaken, IntuneActor, *now, FieldChange{Field: "version", Old: "7", New: "9"})

	// In step, parked as a conflict, skipped: nothing changed in cartclass.
	hsWantKinds(t, s, inStep.ID, HistoryCreated)
	hsWantKinds(t, s, conflict.ID, HistoryCreated)
	hsWantKinds(t, s, skip.ID, HistoryCreated)

	// A push with nothing of Intune's to take records nothing.
	mrApply(t, s, []RemoteObject{mrRemote("g-push", pushRemote)}, s.Now().Add(time.Second), func(RemoteObject, *Local, []Local) Verdict {
		return Verdict{Kind: VerdictPush, Local: pushLocal}
	})
	hsWantKinds(t, s, push.ID, HistoryTaken, HistoryEdited, HistoryCreated)
}

// An entry is written in the transaction of its change: when it cannot be written, the
// change is not made either.
func TestHistoryIsWrittenWithTheChange(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha")
	if _, err := s.write.ExecContext(ctx, `CREATE TRIGGER history_refused BEFORE INSERT ON history
		BEGIN SELECT RAISE(ABORT, 'history refused'); END`); err != nil {
		t.Fatal(err)
	}
	f := a.Fields.Clone()
	f.Description = "changed"
	if _, err := s.UpdateAssociation(ctx, a.ID, a.Revision, f, obActor); err == nil || !strings.Contains(err.Error(), "history refused") {
		t.Fatalf("update while history refuses: %v", err)
	}
	if _, err := s.DeleteAssociation(ctx, a.ID, a.Revision, obActor); err == nil {
		t.Fatal("delete while history refuses succeeded")
	}
	if _, err := s.CreateAssociation(ctx, obFields("beta"), obActor); err == nil {
		t.Fatal("create while history refuses succeeded")
	}
	if _, err := s.ApplyRemotePage(ctx, []RemoteObject{mrRemote("g-new", obFields("gamma"))}, s.Now(),
		func(RemoteObject, *Local, []Local) Verdict { return Verdict{Kind: VerdictImport} }); err == nil {
		t.Fatal("import while history refuses succeeded")
	}
	if got := obGet(t, s, a.ID); got.Revision != a.Revision || got.Description != a.Description || !got.DeletedAt.IsZero() {
		t.Fatalf("association changed without its entry: %+v", got)
	}
	if got := names(mustList(t, s)); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("associations = %v, want only alpha", got)
	}
	hsWantKinds(t, s, a.ID, HistoryCreated)
}

func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha")
	b := obCreate(t, s, "beta")
	cur := a
	for i := range 44 {
		*now = obT0.Add(time.Duration(i+1) * time.Minute)
		cur = obUpdate(t, s, a.ID, fmt.Sprintf("edit %d", i+1))
		if i%4 == 0 {
			obUpdate(t, s, b.ID, fmt.Sprintf("other %d", i+1)) // interleaved
		}
	}
	want := hsAll(t, s, a.ID)
	if len(want) != 45 || want[0].Revision != cur.Revision || want[44].Kind != HistoryCreated {
		t.Fatalf("history of a: %d entries, first rev %d, last %s", len(want), want[0].Revision, want[44].Kind)
	}
	for i := 1; i < len(want); i++ {
		if !want[i].At.Before(want[i-1].At) {
			t.Fatalf("entries %d and %d out of order: %v, %v", i-1, i, want[i-1].At, want[i].At)
		}
	}

	var got []HistoryEntry
	before, pages := int64(0), 0
	for {
		page, more, err := s.AssociationHistory(ctx, a.ID, before, 20)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if wantLen := min(20, 45-len(got)); len(page) != wantLen {
			t.Fatalf("page %d: %d entries, want %d", pages, len(page), wantLen)
		}
		got = append(got, page...)
		if more != (len(got) < 45) {
			t.Fatalf("page %d: more = %v after %d entries", pages, more, len(got))
		}
		if !more {
			break
		}
		before = page[len(page)-1].ID
	}
	if pages != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("%d pages; paged entries differ from the whole history", pages)
	}

	// The default page size; a page size above the bound is bounded.
	if page, more, err := s.AssociationHistory(ctx, a.ID, 0, 0); err != nil || len(page) != DefaultHistoryPage || !more {
		t.Fatalf("limit 0: %d entries, more %v, %v", len(page), more, err)
	}
	// Keyed on the entry's time, not its id: an entry whose clock read earlier sorts later.
	*now = obT0.Add(-time.Hour)
	early := obUpdate(t, s, a.ID, "clock went back")
	all := hsAll(t, s, a.ID)
	if all[len(all)-1].Revision != early.Revision || all[0].Revision != cur.Revision {
		t.Fatalf("an entry at an earlier time sorts at %v", hsKinds(all))
	}
	page, more, err := s.AssociationHistory(ctx, a.ID, all[len(all)-2].ID, 20)
	if err != nil || more || len(page) != 1 || page[0].Revision != early.Revision {
		t.Fatalf("page after the second oldest: %+v, %v, %v", page, more, err)
	}

	// Another association's entry, or an unknown one, starts no page; an unknown
	// association has no history.
	bEntries := hsAll(t, s, b.ID)
	for _, before := range []int64{bEntries[0].ID, 1 << 40} {
		if page, more, err := s.AssociationHistory(ctx, a.ID, before, 20); err != nil || len(page) != 0 || more {
			t.Errorf("before %d: %d entries, more %v, %v", before, len(page), more, err)
		}
	}
	if page, more, err := s.AssociationHistory(ctx, 999, 0, 20); err != nil || len(page) != 0 || more {
		t.Errorf("history of 999: %d entries, more %v, %v", len(page), more, err)
	}
}

// Both pages of the history walk the per-association index in its order: no sort, no scan.
func TestHistoryQueriesUseTheIndex(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	for _, q := range []string{historyNewest, historyBefore} {
		rows := dump(t, s.read, "EXPLAIN QUERY PLAN "+strings.NewReplacer("?1", "1", "?2", "20", "?3", "5").Replace(q))
		var plan []string
		for _, r := range rows {
			plan = append(plan, fmt.Sprint(r[len(r)-1]))
		}
		joined := strings.Join(plan, "\n")
		if !strings.Contains(joined, "USING INDEX history_association") || strings.Contains(joined, "TEMP B-TREE") ||
			strings.Contains(joined, "SCAN history") {
			t.Errorf("plan of %s:\n%s", q, joined)
		}
	}
}

// schema5File makes a database file as migrations 0001–0005 left it: schema4File's, then
// migration 5 applied as Open applies it (its Go step, then the file), then seed.
func schema5File(t *testing.T, seed string) string {
	t.Helper()
	path := schema4File(t, schema4Seed)
	body, err := os.ReadFile(filepath.Join("migrations", "0005_mirror.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := allowChangedState(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{string(body), "PRAGMA user_version = 5", seed} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatalf("schema 5: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

// schema5Seed adds what schema 5 brought to schema4Seed's rows: an association deleted in
// cartclass (its DELETE pending), one changed on both sides, one imported from Intune, a
// DELETE sent, and the last read of Intune.
const schema5Seed = `
UPDATE associations SET deleted_at = 7000, deleted_by_sub = 'sub-a', deleted_by_name = 'Ada', revision = 4 WHERE id = 2;
INSERT INTO outbox (association_id, enqueued_at, next_attempt_at, delete_sent_at) VALUES (2, 7000, 7000, 7100);
UPDATE associations SET sync_state = 'changed', remote_fields = '{"displayName":"Edited in Intune","description":"","version":6,"deviceCartIds":["cart-e"],"classroomIds":["room-e"]}',
	conflict_fields = '["displayName"]' WHERE id = 6;
UPDATE outbox SET next_attempt_at = NULL WHERE association_id = 6;
INSERT INTO associations (id, graph_id, display_name, description, version, device_cart_ids, classroom_ids,
	graph_created_at, graph_modified_at, revision, created_at, updated_at,
	created_by_sub, created_by_name, updated_by_sub, updated_by_name, search_text,
	sync_state, synced_revision, synced_fields, linked_at, based_at) VALUES
(7, 'g-7', 'Imported cart', '', 1, '["cart-i"]', '[]', 8100, 8200, 1, 8000, 8000,
	'', 'Imported from Intune', '', 'Imported from Intune', 'imported cart'||char(10)||char(10)||'cart-i',
	'synced', 1, '{"displayName":"Imported cart","description":"","version":1,"deviceCartIds":["cart-i"],"classroomIds":[]}', 8000, 8000);
INSERT INTO graph_reads (id, started_at, finished_at, objects, complete, error) VALUES (1, 9000, 9500, 7, 1, '');
INSERT INTO user_tokens (subject, data, updated_at) VALUES ('sub-a', x'beef', 9900);
`

func TestMigrationFromSchema5KeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := schema5File(t, schema5Seed)
	tables := []string{"associations", "outbox", "sessions", "user_tokens", "graph_reads"}
	order := map[string]string{"associations": "id", "outbox": "association_id", "sessions": "id_hash",
		"user_tokens": "subject", "graph_reads": "id"}
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][][]any{}
	for _, tb := range tables {
		want[tb] = dump(t, old, "SELECT * FROM "+tb+" ORDER BY "+order[tb])
	}
	old.Close()
	if len(want["associations"]) != 7 || len(want["outbox"]) != 6 || len(want["graph_reads"]) != 1 {
		t.Fatalf("seed: %d associations, %d outbox rows, %d reads", len(want["associations"]), len(want["outbox"]), len(want["graph_reads"]))
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open over schema 5: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.Now = func() time.Time { return obT0 }
	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != latestMigration(t) || version < 6 {
		t.Fatalf("user_version = %d, %v", version, err)
	}
	var check string
	if err := s.write.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	for _, tb := range tables {
		if got := dump(t, s.write, "SELECT * FROM "+tb+" ORDER BY "+order[tb]); !reflect.DeepEqual(got, want[tb]) {
			t.Errorf("%s after migration:\n got %v\nwant %v", tb, got, want[tb])
		}
	}
	// No history is made up for what happened before it was kept.
	for id := int64(1); id <= 7; id++ {
		if es := hsAll(t, s, id); len(es) != 0 {
			t.Errorf("association %d has %d entries after the migration", id, len(es))
		}
	}

	// What the application reads, and what it writes now.
	if d := mustGet(t, s, 2); d.DeletedAt.UnixNano() != 7000 || !d.Sync.DeletePending || d.DeletedBy.Name != "Ada" {
		t.Errorf("deleted association: %+v", d)
	}
	c := mustGet(t, s, 6)
	if c.Sync.State != SyncChanged || c.Sync.RemoteFields == nil || c.Sync.RemoteFields.DisplayName != "Edited in Intune" {
		t.Fatalf("changed association: %+v", c.Sync)
	}
	k, err := s.KeepIntune(ctx, 6, c.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	es := hsWantKinds(t, s, 6, HistoryResolved)
	hsWant(t, es[0], k, HistoryResolved, mrAdmin, obT0, FieldChange{Field: "displayName", Old: "Edited cart", New: "Edited in Intune"})
	d, err := s.DeleteAssociation(ctx, 7, 1, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	es = hsWantKinds(t, s, 7, HistoryDeleted)
	hsWant(t, es[0], d, HistoryDeleted, mrAdmin, obT0)
	n := obCreate(t, s, "new")
	if n.ID != 8 {
		t.Errorf("new association's id = %d, want 8", n.ID)
	}
	hsWantKinds(t, s, n.ID, HistoryCreated)
}
