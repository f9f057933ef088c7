package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Tests of cartclass as a mirror of Intune: delete and restore in cartclass, removal of what
// Intune deleted, the application of a read of Intune, and the choices for a conflict. They
// use the outbox tests' fixed clock (openOutboxStore) and helpers.

var mrAdmin = Actor{Subject: "sub-admin", Name: "Admin"}

// mrClaimID claims the due outbox row for owner at the store's time; it must be id's.
func mrClaimID(t *testing.T, s *Store, owner string, id int64) OutboxItem {
	t.Helper()
	it := mustClaim(t, s, owner, s.Now())
	if it.Association.ID != id {
		t.Fatalf("claimed association %d, want %d", it.Association.ID, id)
	}
	return it
}

// mrLinked creates name and completes its create as Graph object gid, so that it is synced
// and linked. No other row may be due when it is called.
func mrLinked(t *testing.T, s *Store, name, gid string) Association {
	t.Helper()
	a := obCreate(t, s, name)
	it := mrClaimID(t, s, "w-link", a.ID)
	if err := s.CompleteCreate(t.Context(), a.ID, "w-link", pushedOf(it, gid)); err != nil {
		t.Fatalf("CompleteCreate %s: %v", name, err)
	}
	return obGet(t, s, a.ID)
}

// mrLostCreate creates name and leaves it as a create whose POST may have reached Graph
// with no answer: create_sent set, released until an hour later. No other row may be due.
func mrLostCreate(t *testing.T, s *Store, name string) Association {
	t.Helper()
	a := obCreate(t, s, name)
	it := mrClaimID(t, s, "w-lost", a.ID)
	sent := SentCreate{At: s.Now(), Revision: it.Association.Revision, Fields: it.Association.Fields}
	if err := s.MarkCreateSent(t.Context(), a.ID, "w-lost", sent); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryLater(t.Context(), a.ID, "w-lost", s.Now().Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	return obGet(t, s, a.ID)
}

// markMissing is what the worker does after a complete read of Intune holding seen, when
// every absence is confirmed (each GET answers 404): MissingCandidates, then MarkGone.
func markMissing(s *Store, ctx context.Context, seen []string, started time.Time) (int64, error) {
	cands, err := s.MissingCandidates(ctx, seen, started)
	if err != nil {
		return 0, err
	}
	ids := make([]int64, 0, len(cands))
	for _, a := range cands {
		ids = append(ids, a.ID)
	}
	return s.MarkGone(ctx, ids, started)
}

// mrDelete deletes id at its current revision as mrAdmin.
func mrDelete(t *testing.T, s *Store, id int64) Association {
	t.Helper()
	cur := obGet(t, s, id)
	a, err := s.DeleteAssociation(t.Context(), id, cur.Revision, mrAdmin)
	if err != nil {
		t.Fatalf("DeleteAssociation %d: %v", id, err)
	}
	return a
}

// mrIDs lists f's associations (one page of up to 100) and returns their ids, sorted.
func mrIDs(t *testing.T, s *Store, f ListFilter) []int64 {
	t.Helper()
	f.PerPage = 100
	page, err := s.ListAssociations(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAssociations(%+v): %v", f, err)
	}
	if page.Total != len(page.Items) {
		t.Errorf("ListAssociations(%+v): Total %d for %d items", f, page.Total, len(page.Items))
	}
	return slices.Sorted(slices.Values(ids(page.Items)))
}

// mrDrain claims every due row for owner at the store's time and returns their ids, sorted.
func mrDrain(t *testing.T, s *Store, owner string) []int64 {
	t.Helper()
	var got []int64
	for {
		it, err := s.ClaimOutbox(t.Context(), owner, s.Now(), time.Minute)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it.Association.ID)
	}
	slices.Sort(got)
	return got
}

func mrRemote(gid string, f Fields) RemoteObject {
	return RemoteObject{GraphID: gid, Fields: f, CreatedAt: obT0.Add(-48 * time.Hour), ModifiedAt: obT0.Add(-time.Hour)}
}

func mrApply(t *testing.T, s *Store, objs []RemoteObject, fetched time.Time, decide Decider) PageResult {
	t.Helper()
	res, err := s.ApplyRemotePage(t.Context(), objs, fetched, decide)
	if err != nil {
		t.Fatalf("ApplyRemotePage: %v", err)
	}
	return res
}

// mrBase reads what the store holds as Graph's values for gid, as a read of Intune sees it.
func mrBase(t *testing.T, s *Store, gid string) *Fields {
	t.Helper()
	var base *Fields
	mrApply(t, s, []RemoteObject{mrRemote(gid, Fields{})}, s.Now(), func(_ RemoteObject, l *Local, _ []Local) Verdict {
		if l == nil {
			t.Fatalf("no association linked to %s", gid)
		}
		base = l.Base
		return Verdict{Kind: VerdictSkip}
	})
	return base
}

// mrChanged makes name a linked association changed on both sides: cartclass's description
// is "mine", Intune's "theirs". It returns the association and Intune's values.
func mrChanged(t *testing.T, s *Store, name, gid string) (Association, Fields) {
	t.Helper()
	a := mrLinked(t, s, name, gid)
	obUpdate(t, s, a.ID, "mine")
	remote := a.Fields
	remote.Description = "theirs"
	mrApply(t, s, []RemoteObject{mrRemote(gid, remote)}, s.Now(), func(RemoteObject, *Local, []Local) Verdict {
		return Verdict{Kind: VerdictConflict, Conflicts: []string{"description"}}
	})
	a = obGet(t, s, a.ID)
	if a.Sync.State != SyncChanged {
		t.Fatalf("setup: %s is %s, want changed", name, a.Sync.State)
	}
	return a, remote
}

func TestDeleteNeverPushedIsATombstoneWithoutRequest(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	a := obCreate(t, s, "alpha")
	b := obCreate(t, s, "bravo")
	*now = obT0.Add(time.Minute)
	del, err := s.DeleteAssociation(t.Context(), a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !del.DeletedAt.Equal(*now) || del.DeletedBy != mrAdmin || del.Revision != a.Revision+1 ||
		del.UpdatedBy != mrAdmin || !del.UpdatedAt.Equal(*now) || del.Sync.DeletePending || del.CreatedBy != obActor {
		t.Fatalf("deleted: at %v by %+v rev %d updated %v by %+v pending %v", del.DeletedAt, del.DeletedBy,
			del.Revision, del.UpdatedAt, del.UpdatedBy, del.Sync.DeletePending)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows of a never-pushed deleted association = %d, want 0", n)
	}
	if got := mrDrain(t, s, "w1"); !slices.Equal(got, []int64{b.ID}) {
		t.Fatalf("due after delete = %v, want only bravo's create %d", got, b.ID)
	}
	if got := mrIDs(t, s, ListFilter{}); !slices.Equal(got, []int64{b.ID}) {
		t.Fatalf("default list = %v, want %v", got, []int64{b.ID})
	}
	if got := mrIDs(t, s, ListFilter{Deleted: true}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("Deleted list = %v, want %v", got, []int64{a.ID})
	}
	if got := obGet(t, s, a.ID); !got.DeletedAt.Equal(*now) || got.DeletedBy != mrAdmin || got.DisplayName != "alpha" {
		t.Fatalf("tombstone read back: %+v", got)
	}
}

func TestDeleteSyncedQueuesOneDelete(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "g-a")
	*now = obT0.Add(time.Minute)
	del, err := s.DeleteAssociation(t.Context(), a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !del.Sync.DeletePending || del.Sync.State != SyncWaiting || !del.Sync.NextAttemptAt.Equal(*now) || del.GraphID != "g-a" {
		t.Fatalf("deleted synced: %+v graph %q", del.Sync, del.GraphID)
	}
	it := mrClaimID(t, s, "w1", a.ID)
	if it.Association.DeletedAt.IsZero() || it.Association.GraphID != "g-a" || !it.Association.Sync.DeletePending {
		t.Fatalf("claimed delete: deleted %v graph %q pending %v", it.Association.DeletedAt, it.Association.GraphID,
			it.Association.Sync.DeletePending)
	}
	if _, err := s.ClaimOutbox(t.Context(), "w2", *now, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second claim: %v, want ErrNotFound (one DELETE)", err)
	}
	if got := mrIDs(t, s, ListFilter{}); len(got) != 0 {
		t.Fatalf("default list = %v, want none", got)
	}
	if got := mrIDs(t, s, ListFilter{NotSynced: true}); len(got) != 0 {
		t.Fatalf("NotSynced list = %v, want none (deleted ones are left out)", got)
	}
	if got := mrIDs(t, s, ListFilter{Deleted: true}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("Deleted list = %v, want %v", got, []int64{a.ID})
	}
}

func TestDeleteRefusals(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	edited := obUpdate(t, s, a.ID, "newer")

	_, err := s.DeleteAssociation(ctx, a.ID, a.Revision, mrAdmin)
	var ce *ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) || ce.Current.Revision != edited.Revision {
		t.Fatalf("delete at a stale revision: %v, want a *ConflictError at revision %d", err, edited.Revision)
	}
	if got := obGet(t, s, a.ID); !got.DeletedAt.IsZero() {
		t.Fatal("a stale delete deleted")
	}

	del := mrDelete(t, s, a.ID)
	// A repeated click carries the revision the form had, or the one after.
	for _, rev := range []int64{edited.Revision, del.Revision} {
		if _, err := s.DeleteAssociation(ctx, a.ID, rev, mrAdmin); !errors.Is(err, ErrUnchanged) {
			t.Fatalf("repeated delete (revision %d): %v, want ErrUnchanged", rev, err)
		}
	}
	if got := obGet(t, s, a.ID); got.Revision != del.Revision || !got.DeletedAt.Equal(del.DeletedAt) {
		t.Fatalf("a repeated delete wrote: revision %d (want %d)", got.Revision, del.Revision)
	}
	if _, err := s.DeleteAssociation(ctx, 999, 1, mrAdmin); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of an unknown id: %v, want ErrNotFound", err)
	}

	f := del.Fields
	f.Description = "edit of a tombstone"
	if _, err := s.UpdateAssociation(ctx, a.ID, del.Revision, f, obActor); !errors.Is(err, ErrDeleted) {
		t.Fatalf("UpdateAssociation of a tombstone: %v, want ErrDeleted", err)
	}
	if err := s.Retry(ctx, a.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Retry of a tombstone: %v, want ErrDeleted", err)
	}
	if err := s.Recreate(ctx, a.ID, obActor); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Recreate of a tombstone: %v, want ErrDeleted", err)
	}
	if _, err := s.KeepIntune(ctx, a.ID, del.Revision, mrAdmin); !errors.Is(err, ErrDeleted) {
		t.Fatalf("KeepIntune of a tombstone: %v, want ErrDeleted", err)
	}
	if _, err := s.PushMine(ctx, a.ID, del.Revision, mrAdmin); !errors.Is(err, ErrDeleted) {
		t.Fatalf("PushMine of a tombstone: %v, want ErrDeleted", err)
	}
	got := obGet(t, s, a.ID)
	if got.Revision != del.Revision || got.Description != "newer" || got.GraphID != "g-a" || !got.Sync.DeletePending {
		t.Fatalf("refused actions changed the tombstone: rev %d desc %q graph %q pending %v",
			got.Revision, got.Description, got.GraphID, got.Sync.DeletePending)
	}
	if n := outboxRows(t, s, a.ID); n != 1 {
		t.Fatalf("outbox rows = %d, want the one DELETE", n)
	}
}

// A delete while the create's POST is on the wire waits for it: the row stays with the
// worker, and once the create completes the DELETE of what it made is due.
func TestDeleteWhileCreateInFlightWaitsForTheCreate(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha")
	it := mrClaimID(t, s, "w1", a.ID)
	if err := s.MarkCreateSent(ctx, a.ID, "w1", SentCreate{At: obT0, Revision: 1, Fields: it.Association.Fields}); err != nil {
		t.Fatal(err)
	}
	del, err := s.DeleteAssociation(ctx, a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !del.Sync.DeletePending || outboxRows(t, s, a.ID) != 1 {
		t.Fatalf("delete during the create: pending %v, outbox rows %d; want the row kept", del.Sync.DeletePending, outboxRows(t, s, a.ID))
	}
	if _, err := s.ClaimOutbox(ctx, "w2", obT0, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim while w1 holds the create: %v, want ErrNotFound", err)
	}
	if err := s.CompleteCreate(ctx, a.ID, "w1", pushedOf(it, "g-a")); err != nil {
		t.Fatal(err)
	}
	next := mrClaimID(t, s, "w2", a.ID)
	if next.Association.DeletedAt.IsZero() || next.Association.GraphID != "g-a" || next.CreateSent != nil {
		t.Fatalf("after the create: deleted %v graph %q createSent %+v; want the DELETE of g-A due",
			next.Association.DeletedAt, next.Association.GraphID, next.CreateSent)
	}
}

// A delete while a worker holds a create it has not posted yet drops the row: the worker
// finds its lease lost, and posts nothing.
func TestDeleteBeforeThePostDropsTheRow(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha")
	it := mrClaimID(t, s, "w1", a.ID)
	del, err := s.DeleteAssociation(ctx, a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if del.Sync.DeletePending || outboxRows(t, s, a.ID) != 0 {
		t.Fatalf("pending %v, outbox rows %d; want the row dropped", del.Sync.DeletePending, outboxRows(t, s, a.ID))
	}
	if err := s.MarkCreateSent(ctx, a.ID, "w1", SentCreate{At: obT0, Revision: 1, Fields: it.Association.Fields}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("MarkCreateSent after the delete: %v, want ErrLeaseLost", err)
	}
	if err := s.CompleteCreate(ctx, a.ID, "w1", pushedOf(it, "g-a")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("CompleteCreate after the delete: %v, want ErrLeaseLost", err)
	}
	if got := obGet(t, s, a.ID); got.GraphID != "" {
		t.Fatalf("graph id %q linked to a deleted association", got.GraphID)
	}
}

func TestDeletedFilterKeepsThirtyDays(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	a := obCreate(t, s, "alpha")
	b := obCreate(t, s, "bravo")
	c := obCreate(t, s, "charlie")
	mrDelete(t, s, a.ID) // at obT0
	*now = obT0.Add(10 * 24 * time.Hour)
	mrDelete(t, s, b.ID)

	listed := func(f ListFilter) []int64 {
		t.Helper()
		page, err := s.ListAssociations(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != len(page.Items) {
			t.Errorf("%+v: Total %d for %d items", f, page.Total, len(page.Items))
		}
		return ids(page.Items)
	}
	*now = obT0.Add(DeletedFor - time.Nanosecond)
	if got, want := listed(ListFilter{Deleted: true}), []int64{b.ID, a.ID}; !slices.Equal(got, want) {
		t.Fatalf("Deleted list just before 30 days = %v, want %v (newest deletion first)", got, want)
	}
	if got, want := listed(ListFilter{Deleted: true, Sort: SortNameAsc}), []int64{a.ID, b.ID}; !slices.Equal(got, want) {
		t.Fatalf("Deleted list by name = %v, want %v", got, want)
	}
	*now = obT0.Add(DeletedFor + time.Nanosecond)
	if got, want := listed(ListFilter{Deleted: true}), []int64{b.ID}; !slices.Equal(got, want) {
		t.Fatalf("Deleted list past 30 days for alpha = %v, want %v", got, want)
	}

	// Searches: the Deleted filter finds only deleted matches, the default only live ones.
	*now = obT0.Add(20 * 24 * time.Hour)
	for _, tc := range []struct {
		f    ListFilter
		want []int64
	}{
		{ListFilter{Deleted: true, Query: "alpha"}, []int64{a.ID}},
		{ListFilter{Deleted: true, Query: "br"}, []int64{b.ID}},
		{ListFilter{Deleted: true, Query: "charlie"}, nil},
		{ListFilter{Query: "alpha"}, nil},
		{ListFilter{Query: "room-"}, []int64{c.ID}},
		{ListFilter{Query: "br"}, nil},
		{ListFilter{}, []int64{c.ID}},
	} {
		if got := mrIDs(t, s, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%+v = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestCompleteDeleteFinishesTheDelete(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	del := mrDelete(t, s, a.ID)
	mrClaimID(t, s, "w1", a.ID)
	if err := s.CompleteDelete(ctx, a.ID, "w2"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("CompleteDelete by another worker: %v, want ErrLeaseLost", err)
	}
	if err := s.CompleteDelete(ctx, a.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.DeletePending || !got.DeletedAt.Equal(del.DeletedAt) || got.DeletedBy != mrAdmin {
		t.Fatalf("after CompleteDelete: pending %v deleted %v by %+v", got.Sync.DeletePending, got.DeletedAt, got.DeletedBy)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows = %d, want 0", n)
	}
	if _, err := s.ClaimOutbox(ctx, "w1", obT0.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim after CompleteDelete: %v, want ErrNotFound", err)
	}
	if got := mrIDs(t, s, ListFilter{Deleted: true}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("Deleted list = %v; the tombstone stays", got)
	}
	if err := s.CompleteDelete(ctx, a.ID, "w1"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("second CompleteDelete: %v, want ErrLeaseLost", err)
	}
}

// A 404 to the DELETE (or to a PATCH of an association deleted meanwhile) is what the
// delete wanted: done, not "Deleted in Intune".
func TestMarkDeletedOfATombstoneFinishesTheDelete(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "g-a")
	mrDelete(t, s, a.ID)
	mrClaimID(t, s, "w1", a.ID)
	if err := s.MarkDeleted(t.Context(), a.ID, "w1", &SyncError{Status: 404, Code: "ResourceNotFound"}); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.DeletePending || got.DeletedAt.IsZero() || got.Sync.State == SyncDeleted {
		t.Fatalf("after MarkDeleted of a tombstone: pending %v deleted %v state %s", got.Sync.DeletePending, got.DeletedAt, got.Sync.State)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows = %d, want 0", n)
	}
	if _, err := s.RemoveLocal(t.Context(), a.ID, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("RemoveLocal of a finished tombstone: %v, want ErrUnchanged", err)
	}
}

func TestRestoreBeforeTheDeleteIsSentCancelsIt(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	del := mrDelete(t, s, a.ID)
	*now = obT0.Add(time.Minute)
	cy := Actor{Subject: "sub-3", Name: "Cy"}
	r, err := s.RestoreAssociation(ctx, a.ID, cy)
	if err != nil {
		t.Fatal(err)
	}
	if !r.DeletedAt.IsZero() || r.DeletedBy != (Actor{}) || r.GraphID != "g-a" || r.Revision != del.Revision+1 ||
		r.UpdatedBy != cy || !r.UpdatedAt.Equal(*now) || r.Sync.State != SyncWaiting || r.Sync.DeletePending ||
		!r.Fields.Equal(a.Fields) {
		t.Fatalf("restored: %+v", r)
	}
	it := mrClaimID(t, s, "w1", a.ID)
	if !it.Association.DeletedAt.IsZero() || it.Association.GraphID != "g-a" || it.SyncedFields == nil ||
		!it.SyncedFields.Equal(a.Fields) || it.CreateSent != nil {
		t.Fatalf("claimed after restore: deleted %v graph %q synced %+v; want the object kept, nothing to change",
			it.Association.DeletedAt, it.Association.GraphID, it.SyncedFields)
	}
	if got := mrIDs(t, s, ListFilter{}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("default list after restore = %v", got)
	}
	if got := mrIDs(t, s, ListFilter{Deleted: true}); len(got) != 0 {
		t.Fatalf("Deleted list after restore = %v, want none", got)
	}
	if _, err := s.RestoreAssociation(ctx, a.ID, cy); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second restore: %v, want ErrUnchanged", err)
	}
	if _, err := s.RestoreAssociation(ctx, 999, cy); !errors.Is(err, ErrNotFound) {
		t.Fatalf("restore of an unknown id: %v, want ErrNotFound", err)
	}
}

func TestRestoreAfterTheDeleteIsDoneCreatesANewObject(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	mrDelete(t, s, a.ID)
	mrClaimID(t, s, "w1", a.ID)
	if err := s.CompleteDelete(ctx, a.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	r, err := s.RestoreAssociation(ctx, a.ID, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !r.DeletedAt.IsZero() || r.GraphID != "" || r.Sync.State != SyncWaiting || r.Sync.SyncedRevision != 0 ||
		!r.GraphCreatedAt.IsZero() || r.Sync.DeletePending {
		t.Fatalf("restored after delete: %+v", r)
	}
	it := mrClaimID(t, s, "w1", a.ID)
	if it.Association.GraphID != "" || it.SyncedFields != nil || it.CreateSent != nil || !it.Association.DeletedAt.IsZero() ||
		!it.Association.Fields.Equal(a.Fields) {
		t.Fatalf("claimed after restore: graph %q synced %+v createSent %+v; want a create", it.Association.GraphID, it.SyncedFields, it.CreateSent)
	}
	if linkedTo(t, s, "g-a") {
		t.Fatal("g-a still linked: the deleted object must be forgotten")
	}
	if err := s.CompleteCreate(ctx, a.ID, "w1", pushedOf(it, "g-a2")); err != nil {
		t.Fatal(err)
	}

	// Never pushed: nothing was queued by the delete; the restore queues the create.
	b := obCreate(t, s, "bravo")
	mrDelete(t, s, b.ID)
	if _, err := s.RestoreAssociation(ctx, b.ID, mrAdmin); err != nil {
		t.Fatal(err)
	}
	if it := mrClaimID(t, s, "w1", b.ID); it.Association.GraphID != "" || it.SyncedFields != nil {
		t.Fatalf("restored never-pushed: graph %q synced %+v", it.Association.GraphID, it.SyncedFields)
	}
}

// A restore while the DELETE is on the wire: the DELETE completes, and the association is
// then created again as a new object.
func TestRestoreWhileTheDeleteIsInFlight(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	mrDelete(t, s, a.ID)
	mrClaimID(t, s, "w1", a.ID)
	r, err := s.RestoreAssociation(ctx, a.ID, mrAdmin)
	if err != nil {
		t.Fatalf("restore while the DELETE is leased: %v", err)
	}
	if !r.DeletedAt.IsZero() {
		t.Fatalf("restored: deleted at %v", r.DeletedAt)
	}
	if _, err := s.ClaimOutbox(ctx, "w2", obT0, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim while w1 holds the DELETE: %v, want ErrNotFound", err)
	}
	if err := s.CompleteDelete(ctx, a.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.GraphID != "" || got.Sync.State != SyncWaiting || !got.DeletedAt.IsZero() || got.Sync.DeletePending {
		t.Fatalf("after CompleteDelete of a restored one: graph %q %+v deleted %v", got.GraphID, got.Sync, got.DeletedAt)
	}
	it := mrClaimID(t, s, "w2", a.ID)
	if it.Association.GraphID != "" || it.SyncedFields != nil || it.CreateSent != nil || !it.Association.DeletedAt.IsZero() {
		t.Fatalf("claimed: graph %q synced %+v createSent %+v deleted %v; want a create",
			it.Association.GraphID, it.SyncedFields, it.CreateSent, it.Association.DeletedAt)
	}
}

func TestPurgeDeletedRemovesOnlyOldFinishedTombstones(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	done := mrLinked(t, s, "done", "g-done")
	mrDelete(t, s, done.ID)
	mrClaimID(t, s, "w1", done.ID)
	if err := s.CompleteDelete(ctx, done.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	pending := mrLinked(t, s, "pending", "g-pending")
	mrDelete(t, s, pending.ID) // its DELETE still due
	never := obCreate(t, s, "never pushed")
	mrDelete(t, s, never.ID)
	live := obCreate(t, s, "live")
	*now = obT0.Add(20 * 24 * time.Hour)
	recent := obCreate(t, s, "recent")
	mrDelete(t, s, recent.ID)

	n, err := s.PurgeDeleted(ctx, obT0.Add(10*24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PurgeDeleted = %d, %v; want 2 (done, never pushed)", n, err)
	}
	for _, id := range []int64{done.ID, never.ID} {
		if _, err := s.GetAssociation(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("association %d after purge: %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []int64{pending.ID, live.ID, recent.ID} {
		if _, err := s.GetAssociation(ctx, id); err != nil {
			t.Errorf("association %d after purge: %v, want kept", id, err)
		}
	}
	if got := obGet(t, s, pending.ID); !got.Sync.DeletePending {
		t.Errorf("pending delete lost its DELETE")
	}
	if n, err := s.PurgeDeleted(ctx, obT0.Add(10*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second PurgeDeleted = %d, %v; want 0", n, err)
	}
}

func TestRemoveLocalOnlyForDeletedInIntune(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	if _, err := s.RemoveLocal(ctx, a.ID, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("RemoveLocal of a synced association: %v, want ErrUnchanged", err)
	}
	if got := obGet(t, s, a.ID); !got.DeletedAt.IsZero() {
		t.Fatal("RemoveLocal deleted a synced association")
	}
	b := mrLinked(t, s, "bravo", "g-b")
	obUpdate(t, s, b.ID, "edited")
	mrClaimID(t, s, "w1", b.ID)
	if err := s.MarkDeleted(ctx, b.ID, "w1", &SyncError{Status: 404, Code: "ResourceNotFound"}); err != nil {
		t.Fatal(err)
	}
	*now = obT0.Add(time.Minute)
	r, err := s.RemoveLocal(ctx, b.ID, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !r.DeletedAt.Equal(*now) || r.DeletedBy != mrAdmin || r.Sync.DeletePending {
		t.Fatalf("removed: deleted %v by %+v pending %v", r.DeletedAt, r.DeletedBy, r.Sync.DeletePending)
	}
	if n := outboxRows(t, s, b.ID); n != 0 {
		t.Fatalf("outbox rows after RemoveLocal = %d, want 0", n)
	}
	if _, err := s.ClaimOutbox(ctx, "w1", *now, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim after RemoveLocal: %v, want ErrNotFound (no request)", err)
	}
	if got := mrIDs(t, s, ListFilter{}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("default list = %v", got)
	}
	if got := mrIDs(t, s, ListFilter{Deleted: true}); !slices.Equal(got, []int64{b.ID}) {
		t.Fatalf("Deleted list = %v", got)
	}
	if _, err := s.RemoveLocal(ctx, b.ID, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("second RemoveLocal: %v, want ErrUnchanged", err)
	}
	if _, err := s.RemoveLocal(ctx, 999, mrAdmin); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoveLocal(999): %v, want ErrNotFound", err)
	}
	c := obCreate(t, s, "charlie")
	if _, err := s.RemoveLocal(ctx, c.ID, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("RemoveLocal of a waiting association: %v, want ErrUnchanged", err)
	}
}

func TestApplyRemotePageImportsUnknownObjects(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	*now = obT0.Add(time.Minute)
	one := obFields("imported one")
	one.ClassroomIDs = []string{"room-x1"}
	two := obFields("imported two")
	objs := []RemoteObject{mrRemote("g-1", one), mrRemote("g-2", two), mrRemote("g-1", obFields("listed again"))}
	var decided []string
	res := mrApply(t, s, objs, obT0, func(r RemoteObject, l *Local, _ []Local) Verdict {
		decided = append(decided, r.GraphID)
		if l != nil {
			t.Errorf("%s: a local association %d for an unknown object", r.GraphID, l.Association.ID)
		}
		return Verdict{Kind: VerdictImport}
	})
	if res != (PageResult{Imported: 2, Skipped: 1}) {
		t.Fatalf("result = %+v, want 2 imported, the duplicate skipped", res)
	}
	if !slices.Equal(decided, []string{"g-1", "g-2"}) {
		t.Fatalf("decided %v; the duplicate must not be decided", decided)
	}
	page, err := s.ListAssociations(ctx, ListFilter{Sort: SortNameAsc})
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("list after import: %d items, %v", len(page.Items), err)
	}
	for i, o := range objs[:2] {
		a := page.Items[i]
		if a.GraphID != o.GraphID || !a.Fields.Equal(o.Fields) || a.CreatedBy.Name != "Imported from Intune" ||
			a.CreatedBy != ImportedBy || a.UpdatedBy != ImportedBy || a.Revision != 1 || a.Sync.State != SyncSynced ||
			a.Sync.SyncedRevision != 1 || !a.GraphCreatedAt.Equal(o.CreatedAt) || !a.GraphModifiedAt.Equal(o.ModifiedAt) ||
			!a.CreatedAt.Equal(*now) || !a.DeletedAt.IsZero() {
			t.Errorf("imported %s: %+v", o.GraphID, a)
		}
		if n := outboxRows(t, s, a.ID); n != 0 {
			t.Errorf("imported %s has %d outbox rows, want 0", o.GraphID, n)
		}
	}
	if depth, _, err := s.QueueStats(ctx); err != nil || depth != 0 {
		t.Fatalf("QueueStats = %d, %v; an import sends nothing", depth, err)
	}
	if got := searchNames(t, s, "room-x1"); !slices.Equal(got, []string{"imported one"}) {
		t.Fatalf("search room-x1 = %v", got)
	}
	if got := searchNames(t, s, "listed again"); len(got) != 0 {
		t.Fatalf("search for the duplicate's values = %v, want none", got)
	}

	// Read again: linked now, with Graph's values as the base.
	res = mrApply(t, s, objs[:2], s.Now(), func(r RemoteObject, l *Local, _ []Local) Verdict {
		if l == nil || l.Association.GraphID != r.GraphID || l.Base == nil || !l.Base.Equal(r.Fields) || l.Queued || l.Leased {
			t.Errorf("%s on the second read: %+v", r.GraphID, l)
		}
		return Verdict{Kind: VerdictSkip}
	})
	if res != (PageResult{Skipped: 2}) {
		t.Fatalf("second read = %+v", res)
	}
}

// A page is applied in one transaction: an error on its second object leaves nothing of the first.
func TestApplyRemotePageIsOneTransaction(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "g-a")
	objs := []RemoteObject{mrRemote("g-new", obFields("new")), mrRemote("g-a", a.Fields)}
	_, err := s.ApplyRemotePage(t.Context(), objs, obT0, func(RemoteObject, *Local, []Local) Verdict {
		return Verdict{Kind: VerdictImport} // g-A is linked already: its insert must fail
	})
	if err == nil {
		t.Fatal("importing a graph id that is linked already succeeded")
	}
	if linkedTo(t, s, "g-new") {
		t.Fatal("g-new linked after a failed page")
	}
	if got := mrIDs(t, s, ListFilter{}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("list after a failed page = %v", got)
	}
}

func TestApplyRemotePageAdoptsLostCreates(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	p1 := mrLostCreate(t, s, "p1")
	p2 := mrLostCreate(t, s, "p2")
	// p3's POST is being retried right now: leased.
	p3 := obCreate(t, s, "p3")
	it3 := mrClaimID(t, s, "w1", p3.ID)
	if err := s.MarkCreateSent(ctx, p3.ID, "w1", SentCreate{At: obT0, Revision: 1, Fields: it3.Association.Fields}); err != nil {
		t.Fatal(err)
	}
	objs := []RemoteObject{mrRemote("g-x", p1.Fields), mrRemote("g-y", p2.Fields)}
	var pendingIDs [][]int64
	res := mrApply(t, s, objs, obT0, func(r RemoteObject, l *Local, pending []Local) Verdict {
		if l != nil {
			t.Errorf("%s: local %d for an unlinked object", r.GraphID, l.Association.ID)
		}
		var got []int64
		for _, p := range pending {
			got = append(got, p.Association.ID)
			if p.Association.GraphID != "" || !p.Queued || p.CreateSent == nil || !p.CreateSent.At.Equal(obT0) ||
				p.CreateSent.Revision != 1 || !p.CreateSent.Fields.Equal(p.Association.Fields) ||
				p.Leased != (p.Association.ID == p3.ID) {
				t.Errorf("pending %d: %+v (create sent %+v)", p.Association.ID, p, p.CreateSent)
			}
		}
		pendingIDs = append(pendingIDs, got)
		for _, p := range pending {
			if !p.Leased {
				return Verdict{Kind: VerdictAdopt, AdoptID: p.Association.ID, AdoptRev: p.CreateSent.Revision}
			}
		}
		return Verdict{Kind: VerdictSkip}
	})
	if res != (PageResult{Adopted: 2}) {
		t.Fatalf("result = %+v, want 2 adopted", res)
	}
	if want := [][]int64{{p1.ID, p2.ID, p3.ID}, {p2.ID, p3.ID}}; len(pendingIDs) != 2 ||
		!slices.Equal(pendingIDs[0], want[0]) || !slices.Equal(pendingIDs[1], want[1]) {
		t.Fatalf("pending creates per object = %v, want %v", pendingIDs, want)
	}
	for i, p := range []Association{p1, p2} {
		got := obGet(t, s, p.ID)
		if got.GraphID != objs[i].GraphID || got.Sync.State != SyncSynced || got.Sync.SyncedRevision != 1 ||
			!got.GraphCreatedAt.Equal(objs[i].CreatedAt) || got.Sync.Error != nil {
			t.Errorf("adopted %s: graph %q %+v created %v", p.DisplayName, got.GraphID, got.Sync, got.GraphCreatedAt)
		}
		if n := outboxRows(t, s, p.ID); n != 0 {
			t.Errorf("adopted %s: %d outbox rows, want 0", p.DisplayName, n)
		}
	}
	if got := obGet(t, s, p3.ID); got.GraphID != "" || outboxRows(t, s, p3.ID) != 1 {
		t.Fatalf("leased p3 was touched: graph %q", got.GraphID)
	}
}

// An adopted create with more to do (an edit saved since the POST, or a delete) stays due,
// linked, so that the worker PATCHes or DELETEs the object it made.
func TestApplyRemotePageAdoptLeavesTheRowDueWhenThereIsMore(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	edited := mrLostCreate(t, s, "edited")
	sentEdited := edited.Fields
	edited = obUpdate(t, s, edited.ID, "edited after the POST")
	deleted := mrLostCreate(t, s, "deleted")
	sentDeleted := deleted.Fields
	mrDelete(t, s, deleted.ID)

	objs := []RemoteObject{mrRemote("g-e", sentEdited), mrRemote("g-d", sentDeleted)}
	res := mrApply(t, s, objs, obT0, func(r RemoteObject, _ *Local, pending []Local) Verdict {
		for _, p := range pending {
			if p.CreateSent != nil && p.CreateSent.Fields.Equal(r.Fields) {
				return Verdict{Kind: VerdictAdopt, AdoptID: p.Association.ID, AdoptRev: p.CreateSent.Revision}
			}
		}
		t.Errorf("no pending create for %s", r.GraphID)
		return Verdict{Kind: VerdictSkip}
	})
	if res != (PageResult{Adopted: 2}) {
		t.Fatalf("result = %+v", res)
	}
	if got := obGet(t, s, edited.ID); got.GraphID != "g-e" || got.Sync.State != SyncWaiting || got.Sync.SyncedRevision != 1 {
		t.Fatalf("adopted edited: graph %q %+v", got.GraphID, got.Sync)
	}
	items := map[int64]OutboxItem{}
	for {
		it, err := s.ClaimOutbox(t.Context(), "w1", obT0, time.Minute)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		items[it.Association.ID] = it
	}
	if len(items) != 2 {
		t.Fatalf("claimable after adoption: %d rows, want both", len(items))
	}
	e := items[edited.ID]
	if e.Association.GraphID != "g-e" || e.CreateSent != nil || e.SyncedFields == nil || !e.SyncedFields.Equal(sentEdited) ||
		e.Association.Revision != edited.Revision || e.Attempts != 0 {
		t.Errorf("edited item: graph %q createSent %+v synced %+v rev %d attempts %d", e.Association.GraphID, e.CreateSent,
			e.SyncedFields, e.Association.Revision, e.Attempts)
	}
	d := items[deleted.ID]
	if d.Association.GraphID != "g-d" || d.Association.DeletedAt.IsZero() || d.CreateSent != nil {
		t.Errorf("deleted item: graph %q deleted %v createSent %+v; want the DELETE of g-d", d.Association.GraphID,
			d.Association.DeletedAt, d.CreateSent)
	}
}

func TestApplyRemotePageTakesIntunesChanges(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "g-a")
	*now = obT0.Add(time.Minute)
	remote := a.Fields
	remote.Description = "changed in Intune"
	remote.ClassroomIDs = []string{"room-new"}
	o := mrRemote("g-a", remote)
	res := mrApply(t, s, []RemoteObject{o}, *now, func(r RemoteObject, l *Local, _ []Local) Verdict {
		if l == nil || l.Association.ID != a.ID || l.Base == nil || !l.Base.Equal(a.Fields) || l.Queued || l.Leased || l.Stale {
			t.Errorf("local for g-A: %+v", l)
		}
		return Verdict{Kind: VerdictTake, Local: r.Fields}
	})
	if res != (PageResult{Taken: 1}) {
		t.Fatalf("result = %+v", res)
	}
	got := obGet(t, s, a.ID)
	if !got.Fields.Equal(remote) || got.Revision != a.Revision+1 || got.UpdatedBy != IntuneActor || got.UpdatedBy.Name != "Intune" ||
		!got.UpdatedAt.Equal(*now) || got.CreatedBy != obActor || got.Sync.State != SyncSynced ||
		got.Sync.SyncedRevision != got.Revision || !got.GraphModifiedAt.Equal(o.ModifiedAt) {
		t.Fatalf("after take: %+v", got)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows after take = %d, want 0 (nothing to send)", n)
	}
	if got := searchNames(t, s, "room-new"); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("search room-new = %v", got)
	}
	if got := searchNames(t, s, "room-alpha"); len(got) != 0 {
		t.Fatalf("search of the old classroom = %v, want none", got)
	}
	if base := mrBase(t, s, "g-a"); base == nil || !base.Equal(remote) {
		t.Fatalf("base after take = %+v, want Intune's values", base)
	}
}

func TestApplyRemotePageQueuesLocalChanges(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	b := mrLinked(t, s, "bravo", "g-b")
	c := mrLinked(t, s, "charlie", "g-c")
	*now = obT0.Add(time.Minute)
	ea := obUpdate(t, s, a.ID, "mine")
	eb := obUpdate(t, s, b.ID, "mine too")
	obUpdate(t, s, c.ID, "refused")
	// Graph refuses charlie's edit: parked as failed. The others wait, released.
	for _, id := range mrDrain(t, s, "w1") {
		switch id {
		case c.ID:
			if err := s.Fail(ctx, c.ID, "w1", &SyncError{Status: 400}, obGet(t, s, c.ID).Revision); err != nil {
				t.Fatal(err)
			}
		default:
			if err := s.Postpone(ctx, id, "w1", *now, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	*now = obT0.Add(2 * time.Minute)

	remoteA := a.Fields
	remoteA.DisplayName = "renamed in Intune"
	mergedA := ea.Fields
	mergedA.DisplayName = remoteA.DisplayName
	remoteC := c.Fields
	remoteC.Version = 9
	objs := []RemoteObject{mrRemote("g-a", remoteA), mrRemote("g-b", b.Fields), mrRemote("g-c", remoteC)}
	res := mrApply(t, s, objs, *now, func(r RemoteObject, l *Local, _ []Local) Verdict {
		if l == nil || !l.Queued || l.Leased {
			t.Fatalf("local for %s: %+v", r.GraphID, l)
		}
		switch r.GraphID {
		case "g-a":
			return Verdict{Kind: VerdictPush, Local: mergedA}
		case "g-c":
			f := l.Association.Fields
			f.Version = r.Fields.Version
			return Verdict{Kind: VerdictPush, Local: f}
		}
		return Verdict{Kind: VerdictPush, Local: l.Association.Fields}
	})
	if res != (PageResult{Pushed: 3}) {
		t.Fatalf("result = %+v", res)
	}
	gotA := obGet(t, s, a.ID)
	if !gotA.Fields.Equal(mergedA) || gotA.Revision != ea.Revision+1 || gotA.UpdatedBy != ea.UpdatedBy ||
		!gotA.UpdatedAt.Equal(ea.UpdatedAt) || gotA.Sync.State != SyncWaiting {
		t.Fatalf("alpha after push with Intune's rename: %+v (edited %+v)", gotA, ea)
	}
	gotB := obGet(t, s, b.ID)
	if !gotB.Fields.Equal(eb.Fields) || gotB.Revision != eb.Revision || !gotB.UpdatedAt.Equal(eb.UpdatedAt) || gotB.Sync.State != SyncWaiting {
		t.Fatalf("bravo after push, nothing changed in Intune: %+v", gotB)
	}
	gotC := obGet(t, s, c.ID)
	if gotC.Sync.State != SyncFailed || gotC.Version != 9 {
		t.Fatalf("charlie (failed) after push: state %s version %d; want Intune's version taken, still failed", gotC.Sync.State, gotC.Version)
	}
	items := map[int64]OutboxItem{}
	for {
		it, err := s.ClaimOutbox(ctx, "w2", *now, time.Minute)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		items[it.Association.ID] = it
	}
	if len(items) != 2 {
		t.Fatalf("claimable: %d, want alpha and bravo (charlie stays parked)", len(items))
	}
	if it := items[a.ID]; it.SyncedFields == nil || !it.SyncedFields.Equal(remoteA) || !it.Association.Fields.Equal(mergedA) {
		t.Fatalf("alpha item: synced %+v fields %+v; want Intune's values as the base", it.SyncedFields, it.Association.Fields)
	}
	if it := items[b.ID]; it.SyncedFields == nil || !it.SyncedFields.Equal(b.Fields) {
		t.Fatalf("bravo item: synced %+v", it.SyncedFields)
	}
	if base := mrBase(t, s, "g-c"); base == nil || !base.Equal(remoteC) {
		t.Fatalf("charlie base = %+v, want Intune's values", base)
	}
}

func TestApplyRemotePageConflictParks(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "g-a")
	b := mrLinked(t, s, "bravo", "g-b")
	ea := obUpdate(t, s, a.ID, "mine")
	remoteA := a.Fields
	remoteA.Description = "theirs"
	remoteB := b.Fields
	remoteB.Version = 9
	res := mrApply(t, s, []RemoteObject{mrRemote("g-a", remoteA), mrRemote("g-b", remoteB)}, obT0,
		func(r RemoteObject, l *Local, _ []Local) Verdict {
			if r.GraphID == "g-a" {
				return Verdict{Kind: VerdictConflict, Conflicts: []string{"description"}}
			}
			return Verdict{Kind: VerdictConflict, Conflicts: []string{"version"}}
		})
	if res != (PageResult{Conflicts: 2}) {
		t.Fatalf("result = %+v", res)
	}
	for _, tc := range []struct {
		a         Association
		remote    Fields
		conflicts []string
	}{{ea, remoteA, []string{"description"}}, {b, remoteB, []string{"version"}}} {
		got := obGet(t, s, tc.a.ID)
		if got.Sync.State != SyncChanged || got.Sync.RemoteFields == nil || !got.Sync.RemoteFields.Equal(tc.remote) ||
			!slices.Equal(got.Sync.ConflictFields, tc.conflicts) || !got.Fields.Equal(tc.a.Fields) ||
			got.Revision != tc.a.Revision || !got.Sync.NextAttemptAt.IsZero() || got.Sync.Error != nil {
			t.Errorf("%s after conflict: %+v (remote %+v)", tc.a.DisplayName, got, got.Sync.RemoteFields)
		}
		if n := outboxRows(t, s, tc.a.ID); n != 1 {
			t.Errorf("%s: %d outbox rows, want one, parked", tc.a.DisplayName, n)
		}
	}
	if _, err := s.ClaimOutbox(t.Context(), "w1", obT0.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a conflict: %v, want ErrNotFound", err)
	}
	if got := mrIDs(t, s, ListFilter{NotSynced: true}); !slices.Equal(got, []int64{a.ID, b.ID}) {
		t.Fatalf("NotSynced list = %v, want both", got)
	}
	// An edit is kept but sends nothing until an admin chooses.
	obUpdate(t, s, a.ID, "mine again")
	if got := obGet(t, s, a.ID); got.Sync.State != SyncChanged {
		t.Fatalf("edit of a changed association made it %s", got.Sync.State)
	}
	if _, err := s.ClaimOutbox(t.Context(), "w1", obT0.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim after an edit of a conflict: %v, want ErrNotFound", err)
	}
}

func TestApplyRemotePageInStepSyncs(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "g-a")
	e := obUpdate(t, s, a.ID, "same on both sides")
	o := mrRemote("g-a", e.Fields)
	o.ModifiedAt = obT0.Add(-time.Second)
	res := mrApply(t, s, []RemoteObject{o}, obT0, func(RemoteObject, *Local, []Local) Verdict {
		return Verdict{Kind: VerdictInStep}
	})
	if res != (PageResult{}) {
		t.Fatalf("result = %+v", res)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncSynced || got.Sync.SyncedRevision != e.Revision || got.Revision != e.Revision ||
		!got.Sync.NextAttemptAt.IsZero() || !got.GraphModifiedAt.Equal(o.ModifiedAt) {
		t.Fatalf("after in step: %+v", got)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows = %d, want 0", n)
	}
	if base := mrBase(t, s, "g-a"); base == nil || !base.Equal(e.Fields) {
		t.Fatalf("base = %+v", base)
	}
}

func TestApplyRemotePageReportsLeasedAndStale(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	c := mrLinked(t, s, "charlie", "g-c") // Graph's state recorded at obT0
	a := mrLinked(t, s, "alpha", "g-a")
	fetched := obT0.Add(time.Minute)
	*now = obT0.Add(2 * time.Minute)
	b := mrLinked(t, s, "bravo", "g-b") // recorded after the page was fetched
	ea := obUpdate(t, s, a.ID, "edit")
	mrClaimID(t, s, "w1", a.ID) // leased until obT0+3m

	objs := []RemoteObject{mrRemote("g-a", a.Fields), mrRemote("g-b", b.Fields), mrRemote("g-c", c.Fields)}
	read := func(fetched time.Time) map[string]Local {
		t.Helper()
		locals := map[string]Local{}
		res := mrApply(t, s, objs, fetched, func(r RemoteObject, l *Local, _ []Local) Verdict {
			locals[r.GraphID] = *l
			return Verdict{Kind: VerdictSkip}
		})
		if res != (PageResult{Skipped: 3}) {
			t.Fatalf("result = %+v", res)
		}
		return locals
	}
	type flags struct{ queued, leased, stale bool }
	check := func(locals map[string]Local, want map[string]flags) {
		t.Helper()
		for gid, w := range want {
			l := locals[gid]
			if got := (flags{l.Queued, l.Leased, l.Stale}); got != w {
				t.Errorf("%s: queued/leased/stale = %+v, want %+v", gid, got, w)
			}
		}
	}
	check(read(fetched), map[string]flags{"g-a": {true, true, false}, "g-b": {false, false, true}, "g-c": {false, false, false}})
	if got := obGet(t, s, a.ID); got.Revision != ea.Revision || got.Sync.State != SyncWaiting {
		t.Fatalf("skip changed alpha: %+v", got)
	}
	// The lease has run out; a page fetched now is newer than everything recorded.
	*now = obT0.Add(4 * time.Minute)
	check(read(*now), map[string]flags{"g-a": {true, false, false}, "g-b": {false, false, false}, "g-c": {false, false, false}})
}

func TestKeepIntuneTakesIntunesValues(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a, remote := mrChanged(t, s, "alpha", "g-a")
	*now = obT0.Add(time.Minute)
	_, err := s.KeepIntune(ctx, a.ID, a.Revision-1, mrAdmin)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Current.Revision != a.Revision {
		t.Fatalf("KeepIntune at a stale revision: %v, want a *ConflictError", err)
	}
	k, err := s.KeepIntune(ctx, a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Fields.Equal(remote) || k.Revision != a.Revision+1 || k.UpdatedBy != mrAdmin || !k.UpdatedAt.Equal(*now) ||
		k.Sync.State != SyncSynced || k.Sync.SyncedRevision != k.Revision || k.Sync.RemoteFields != nil ||
		k.Sync.ConflictFields != nil || !k.Sync.NextAttemptAt.IsZero() {
		t.Fatalf("after KeepIntune: %+v", k)
	}
	if got := obGet(t, s, a.ID); got.Revision != k.Revision || !got.Fields.Equal(remote) || got.Sync.State != SyncSynced {
		t.Fatalf("stored after KeepIntune: %+v", got)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows = %d, want 0: Graph holds these values", n)
	}
	if got := searchNames(t, s, "theirs"); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("search theirs = %v", got)
	}
	if base := mrBase(t, s, "g-a"); base == nil || !base.Equal(remote) {
		t.Fatalf("base = %+v", base)
	}
	for _, rev := range []int64{a.Revision, k.Revision} {
		if _, err := s.KeepIntune(ctx, a.ID, rev, mrAdmin); !errors.Is(err, ErrUnchanged) {
			t.Fatalf("repeated KeepIntune (revision %d): %v, want ErrUnchanged", rev, err)
		}
	}
	if _, err := s.PushMine(ctx, a.ID, k.Revision, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("PushMine after KeepIntune: %v, want ErrUnchanged", err)
	}
	if _, err := s.KeepIntune(ctx, 999, 1, mrAdmin); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KeepIntune(999): %v, want ErrNotFound", err)
	}
}

func TestPushMineQueuesMyValues(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a, remote := mrChanged(t, s, "alpha", "g-a")
	*now = obT0.Add(time.Minute)
	_, err := s.PushMine(ctx, a.ID, a.Revision+1, mrAdmin)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Current.Revision != a.Revision {
		t.Fatalf("PushMine at a stale revision: %v, want a *ConflictError", err)
	}
	if got := obGet(t, s, a.ID); got.Sync.State != SyncChanged {
		t.Fatalf("a refused PushMine changed the state to %s", got.Sync.State)
	}
	p, err := s.PushMine(ctx, a.ID, a.Revision, mrAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Fields.Equal(a.Fields) || p.Description != "mine" || p.Revision != a.Revision || p.Sync.State != SyncWaiting ||
		p.Sync.RemoteFields != nil || p.Sync.ConflictFields != nil || !p.Sync.NextAttemptAt.Equal(*now) {
		t.Fatalf("after PushMine: %+v", p)
	}
	it := mrClaimID(t, s, "w1", a.ID)
	if it.SyncedFields == nil || !it.SyncedFields.Equal(remote) || !it.Association.Fields.Equal(a.Fields) {
		t.Fatalf("claimed: synced %+v fields %+v; want Intune's values as the base", it.SyncedFields, it.Association.Fields)
	}
	if _, err := s.PushMine(ctx, a.ID, a.Revision, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("repeated PushMine: %v, want ErrUnchanged", err)
	}
	if _, err := s.KeepIntune(ctx, a.ID, a.Revision, mrAdmin); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("KeepIntune after PushMine: %v, want ErrUnchanged", err)
	}
	if _, err := s.PushMine(ctx, 999, 1, mrAdmin); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PushMine(999): %v, want ErrNotFound", err)
	}
}

func TestMarkMissingParksOnlyWhatTheListingProvesGone(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	seen := mrLinked(t, s, "seen", "g-seen")
	gone := mrLinked(t, s, "gone", "g-gone")
	tomb := mrLinked(t, s, "tomb", "g-tomb")
	leased := mrLinked(t, s, "leased", "g-leased")
	already := mrLinked(t, s, "already", "g-already")
	edited := mrLinked(t, s, "edited", "g-edited")
	obUpdate(t, s, already.ID, "x")
	mrClaimID(t, s, "w1", already.ID)
	if err := s.MarkDeleted(ctx, already.ID, "w1", &SyncError{Status: 404}); err != nil {
		t.Fatal(err)
	}
	started := obT0.Add(time.Minute)
	*now = obT0.Add(2 * time.Minute)
	obUpdate(t, s, leased.ID, "being pushed")
	mrClaimID(t, s, "w1", leased.ID)
	// Imported by the read itself, after it started.
	mrApply(t, s, []RemoteObject{mrRemote("g-late", obFields("late"))}, *now, func(RemoteObject, *Local, []Local) Verdict {
		return Verdict{Kind: VerdictImport}
	})
	obUpdate(t, s, edited.ID, "edited locally")
	mrDelete(t, s, tomb.ID)
	never := obCreate(t, s, "never")

	n, err := markMissing(s, ctx, []string{"g-seen"}, started)
	if err != nil || n != 2 {
		t.Fatalf("MarkMissing = %d, %v; want 2 (gone, edited)", n, err)
	}
	for _, a := range []Association{gone, edited} {
		got := obGet(t, s, a.ID)
		if got.Sync.State != SyncDeleted || got.Sync.Error == nil || got.Sync.Error.Message == "" ||
			!got.Sync.NextAttemptAt.IsZero() || got.GraphID == "" {
			t.Errorf("%s after MarkMissing: %+v (error %+v)", a.DisplayName, got.Sync, got.Sync.Error)
		}
		if rows := outboxRows(t, s, a.ID); rows != 1 {
			t.Errorf("%s: %d outbox rows, want one, parked", a.DisplayName, rows)
		}
	}
	if got := obGet(t, s, edited.ID); got.Description != "edited locally" {
		t.Errorf("edited lost its local edit: %q", got.Description)
	}
	for _, tc := range []struct {
		id    int64
		state string
	}{{seen.ID, SyncSynced}, {tomb.ID, SyncWaiting}, {leased.ID, SyncWaiting}, {already.ID, SyncDeleted}, {never.ID, SyncWaiting}} {
		if got := obGet(t, s, tc.id); got.Sync.State != tc.state {
			t.Errorf("%s: state %s, want %s", got.DisplayName, got.Sync.State, tc.state)
		}
	}
	var late Association
	for _, a := range mustList(t, s) {
		if a.GraphID == "g-late" {
			late = a
		}
	}
	if late.ID == 0 || late.Sync.State != SyncSynced {
		t.Errorf("imported after the read began: %+v", late)
	}
	if got := obGet(t, s, tomb.ID); !got.Sync.DeletePending {
		t.Error("tomb's DELETE is no longer pending")
	}
	if got, want := mrDrain(t, s, "w2"), []int64{tomb.ID, never.ID}; !slices.Equal(got, want) {
		t.Fatalf("due after MarkMissing = %v, want %v (the missing ones parked, leased still leased)", got, want)
	}
	if n, err := markMissing(s, ctx, []string{"g-seen"}, started); err != nil || n != 0 {
		t.Fatalf("second MarkMissing = %d, %v; want 0", n, err)
	}
}

// A complete listing that found nothing proves every linked association gone.
func TestMarkMissingAfterAnEmptyListing(t *testing.T) {
	t.Parallel()
	for name, seen := range map[string][]string{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, now := openOutboxStore(t)
			a := mrLinked(t, s, "alpha", "g-a")
			*now = obT0.Add(time.Minute)
			n, err := markMissing(s, t.Context(), seen, *now)
			if err != nil || n != 1 {
				t.Fatalf("MarkMissing(%v) = %d, %v; want 1", seen, n, err)
			}
			if got := obGet(t, s, a.ID); got.Sync.State != SyncDeleted {
				t.Fatalf("state %s, want deleted", got.Sync.State)
			}
		})
	}
}

func mustList(t *testing.T, s *Store) []Association {
	t.Helper()
	page, err := s.ListAssociations(t.Context(), ListFilter{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	return page.Items
}

func TestTakeRemoteUnderTheLease(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	e := obUpdate(t, s, a.ID, "mine") // by Bob
	mrClaimID(t, s, "w1", a.ID)
	remote := a.Fields
	remote.DisplayName = "renamed in Intune"
	merged := e.Fields
	merged.DisplayName = remote.DisplayName
	modified := obT0.Add(30 * time.Second)
	intune := IntuneActor

	if _, err := s.TakeRemote(ctx, a.ID, "w2", e.Revision, merged, remote, modified, &intune); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("TakeRemote without the lease: %v, want ErrLeaseLost", err)
	}
	if _, err := s.TakeRemote(ctx, a.ID, "w1", e.Revision-1, merged, remote, modified, &intune); !errors.Is(err, ErrConflict) {
		t.Fatalf("TakeRemote at an old revision: %v, want ErrConflict", err)
	}
	*now = obT0.Add(30 * time.Second) // within w1's lease
	got, err := s.TakeRemote(ctx, a.ID, "w1", e.Revision, merged, remote, modified, &intune)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Fields.Equal(merged) || got.Revision != e.Revision+1 || got.UpdatedBy != IntuneActor || !got.UpdatedAt.Equal(*now) ||
		!got.GraphModifiedAt.Equal(modified) || got.Sync.State != SyncWaiting {
		t.Fatalf("after TakeRemote: %+v", got)
	}
	if stored := obGet(t, s, a.ID); stored.Revision != got.Revision || !stored.Fields.Equal(merged) {
		t.Fatalf("stored after TakeRemote: %+v", stored)
	}
	if _, err := s.ClaimOutbox(ctx, "w2", *now, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim while w1 holds it: %v, want ErrNotFound", err)
	}
	// The same values again: no new revision; a zero time keeps Graph's modified time.
	again, err := s.TakeRemote(ctx, a.ID, "w1", got.Revision, merged, remote, time.Time{}, &intune)
	if err != nil || again.Revision != got.Revision || !again.GraphModifiedAt.Equal(modified) {
		t.Fatalf("TakeRemote of unchanged values: rev %d modified %v, %v", again.Revision, again.GraphModifiedAt, err)
	}
	if err := s.Postpone(ctx, a.ID, "w1", *now, nil); err != nil {
		t.Fatal(err)
	}
	it := mrClaimID(t, s, "w2", a.ID)
	if it.SyncedFields == nil || !it.SyncedFields.Equal(remote) || !it.Association.Fields.Equal(merged) {
		t.Fatalf("reclaimed: synced %+v fields %+v; want Graph's values as the base", it.SyncedFields, it.Association.Fields)
	}

	// An admin saves while w2 holds it: the revision moved.
	saved := obUpdate(t, s, a.ID, "saved during the attempt")
	other := saved.Fields
	other.Version = 11
	if _, err := s.TakeRemote(ctx, a.ID, "w2", it.Association.Revision, other, remote, time.Time{}, &intune); !errors.Is(err, ErrConflict) {
		t.Fatalf("TakeRemote after a save: %v, want ErrConflict", err)
	}
	// No actor: the change stays the last editor's, still to be pushed with their sign-in.
	kept, err := s.TakeRemote(ctx, a.ID, "w2", saved.Revision, other, remote, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if kept.UpdatedBy != saved.UpdatedBy || kept.Revision != saved.Revision+1 || kept.Version != 11 {
		t.Fatalf("TakeRemote without an actor: by %+v rev %d version %d; want %+v, %d, 11", kept.UpdatedBy, kept.Revision,
			kept.Version, saved.UpdatedBy, saved.Revision+1)
	}
}

func TestMarkChangedParksTheItem(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	e := obUpdate(t, s, a.ID, "mine")
	mrClaimID(t, s, "w1", a.ID)
	remote := a.Fields
	remote.Description = "theirs"
	if err := s.MarkChanged(ctx, a.ID, "w2", e.Revision, remote, []string{"description"}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("MarkChanged without the lease: %v, want ErrLeaseLost", err)
	}
	if err := s.MarkChanged(ctx, a.ID, "w1", e.Revision, remote, []string{"description"}); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncChanged || got.Sync.RemoteFields == nil || !got.Sync.RemoteFields.Equal(remote) ||
		!slices.Equal(got.Sync.ConflictFields, []string{"description"}) || !got.Fields.Equal(e.Fields) ||
		got.Revision != e.Revision || !got.Sync.NextAttemptAt.IsZero() {
		t.Fatalf("after MarkChanged: %+v", got)
	}
	if n := outboxRows(t, s, a.ID); n != 1 {
		t.Fatalf("outbox rows = %d, want one, parked", n)
	}
	if _, err := s.ClaimOutbox(ctx, "w1", obT0.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a changed association: %v, want ErrNotFound", err)
	}
	if err := s.MarkChanged(ctx, a.ID, "w1", e.Revision, remote, []string{"description"}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("MarkChanged after parking: %v, want ErrLeaseLost", err)
	}
	if got := mrIDs(t, s, ListFilter{NotSynced: true}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("NotSynced list = %v", got)
	}
	// The base stays what it was: the next read compares against it again.
	if base := mrBase(t, s, "g-a"); base == nil || !base.Equal(a.Fields) {
		t.Fatalf("base after MarkChanged = %+v, want the old base", base)
	}
}

func TestSaveReadAndLastRead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "reads.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if r, ok, err := s.LastRead(ctx); err != nil || ok {
		t.Fatalf("LastRead on a fresh store = %+v, %v, %v; want false", r, ok, err)
	}
	same := func(a, b ReadInfo) bool {
		return a.StartedAt.Equal(b.StartedAt) && a.FinishedAt.Equal(b.FinishedAt) && a.Objects == b.Objects &&
			a.Complete == b.Complete && a.Error == b.Error
	}
	first := ReadInfo{StartedAt: obT0, FinishedAt: obT0.Add(3200 * time.Millisecond), Objects: 1234, Complete: true}
	if err := s.SaveRead(ctx, first); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := s.LastRead(ctx); err != nil || !ok || !same(r, first) {
		t.Fatalf("LastRead = %+v, %v, %v; want %+v", r, ok, err, first)
	}
	failed := ReadInfo{StartedAt: obT0.Add(time.Hour), FinishedAt: obT0.Add(time.Hour + time.Second), Objects: 40,
		Error: "page 3: 503 Service Unavailable"}
	if err := s.SaveRead(ctx, failed); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := s.LastRead(ctx); err != nil || !ok || !same(r, failed) {
		t.Fatalf("LastRead after a failed read = %+v, %v, %v; want %+v", r, ok, err, failed)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := s.LastRead(ctx); err != nil || !ok || !same(r, failed) {
		t.Fatalf("LastRead after reopening = %+v, %v, %v; want %+v", r, ok, err, failed)
	}
}

// The Deleted filter's cutoff moves with the clock; it must be an argument, not part of the
// SQL: the read pool keeps a prepared statement per distinct query text, for good.
func TestDeletedFilterPreparesAFixedSetOfStatements(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	a := obCreate(t, s, "alpha")
	mrDelete(t, s, a.ID)
	list := func(day int) {
		*now = obT0.Add(time.Duration(day) * 24 * time.Hour)
		for _, q := range []string{"", "alpha", "al"} {
			if got := mrIDs(t, s, ListFilter{Deleted: true, Query: q}); !slices.Equal(got, []int64{a.ID}) {
				t.Fatalf("day %d, query %q: %v", day, q, got)
			}
		}
	}
	// settled waits for the statements being prepared in the background, then counts them.
	settled := func() int {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			busy := false
			s.preparing.Range(func(_, _ any) bool { busy = true; return false })
			if !busy {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("statements still being prepared after 10 s")
			}
		}
		n := 0
		s.stmts.Range(func(_, _ any) bool { n++; return true })
		return n
	}
	list(0)
	list(1)
	before := settled()
	for day := 2; day < 12; day++ {
		list(day)
	}
	if after := settled(); after != before {
		t.Fatalf("prepared statements grew from %d to %d over 10 more days of Deleted listings", before, after)
	}
}

// Every way a search may take within the Deleted filter (a walk of the filter's rows, the
// index, a bounded walk) gives the page that sorting all matches would.
func TestDeletedFilterSearchMatchesSortingAllMatches(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	const n = 4000
	at := func(i int) int { return (i * 7919) % n } // the seeder's order of modification
	err := seedAssociations(ctx, s, n, func(i int) Fields {
		f := Fields{DisplayName: fmt.Sprintf("%c row %04d", 'A'+i%26, i), Description: "x"}
		if at(i) < 1500 {
			f.Description += " bunched"
		}
		if i%3 == 0 {
			f.Description += " spread"
		}
		return f
	})
	if err != nil {
		t.Fatal(err)
	}
	// Ids are 1..n. Three in four are deleted; of those, one in ten more than 30 days ago.
	recent, old := obT0.Add(-24*time.Hour).UnixNano(), obT0.Add(-DeletedFor-time.Hour).UnixNano()
	if _, err := s.write.ExecContext(ctx, `UPDATE associations SET deleted_at = CASE WHEN id % 10 = 3 THEN ? ELSE ? END
		WHERE id % 4 <> 0`, old, recent); err != nil {
		t.Fatal(err)
	}
	var want []int64
	for id := int64(1); id <= n; id++ {
		if id%4 != 0 && id%10 != 3 {
			want = append(want, id)
		}
	}
	var all []Association
	for p := 1; ; p++ {
		page, err := s.ListAssociations(ctx, ListFilter{Deleted: true, Page: p, PerPage: 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) == 0 {
			break
		}
		all = append(all, page.Items...)
	}
	if got := slices.Sorted(slices.Values(ids(all))); !slices.Equal(got, want) {
		t.Fatalf("Deleted listing holds %d rows, want the %d deleted in the last 30 days", len(got), len(want))
	}
	for _, f := range []ListFilter{
		{Query: "bunched"}, {Query: "bunched", Page: 3}, {Query: "bunched", Sort: SortModifiedAsc},
		{Query: "bunched", Sort: SortNameAsc, Page: 2}, {Query: "bunched", Sort: SortNameDesc, Page: 25},
		{Query: "spread"}, {Query: "spread", Page: 7, PerPage: 30}, {Query: "spread", Sort: SortNameAsc, Page: 5},
		{Query: "x"}, {Query: "x", Page: 30}, {Query: "x", Sort: SortNameDesc, Page: 2, PerPage: 100},
		{Query: "sp"}, {Query: "bu", Page: 2}, {Query: "b", Sort: SortNameAsc}, {Query: "r", Page: 9},
		{Query: "spread", NotSynced: true}, {Query: "row 01"},
	} {
		f.Deleted = true
		want := expectedPage(all, f)
		page, err := s.ListAssociations(ctx, f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if got := ids(page.Items); !slices.Equal(got, want) {
			t.Errorf("%+v: ids %v, want %v", f, got, want)
		}
	}
}

// A conflict on one field while each side also changed others: either choice settles only
// the conflicting field; Intune's other changes are taken and cartclass's are kept (and
// still to be sent), so neither button undoes anything the page did not show.
func TestConflictChoicesSettleOnlyTheConflictingFields(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{true, false} {
		s, _ := openOutboxStore(t)
		ctx := t.Context()
		a := mrLinked(t, s, "alpha", "g-a")
		mine := a.Fields.Clone()
		mine.DisplayName, mine.Description = "mine", "my description"
		e, err := s.UpdateAssociation(ctx, a.ID, a.Revision, mine, obActor)
		if err != nil {
			t.Fatal(err)
		}
		remote := a.Fields.Clone()
		remote.DisplayName, remote.ClassroomIDs = "theirs", []string{"room-intune"}
		mrClaimID(t, s, "w1", a.ID)
		if err := s.MarkChanged(ctx, a.ID, "w1", e.Revision, remote, []string{"displayName"}); err != nil {
			t.Fatal(err)
		}
		choose, name := s.PushMine, "mine"
		if keep {
			choose, name = s.KeepIntune, "theirs"
		}
		got, err := choose(ctx, a.ID, e.Revision, Actor{Subject: "sub-3", Name: "Cy"})
		if err != nil {
			t.Fatal(err)
		}
		want := Fields{DisplayName: name, Description: "my description", Version: a.Version,
			DeviceCartIDs: a.DeviceCartIDs, ClassroomIDs: []string{"room-intune"}}
		if !got.Fields.Equal(want) {
			t.Errorf("keep=%v: fields %+v; want %+v (only displayName decided by the choice)", keep, got.Fields, want)
		}
		// cartclass's own description is still to be sent, on Intune's values as the base.
		it := mrClaimID(t, s, "w2", a.ID)
		if got.Sync.State != SyncWaiting || it.SyncedFields == nil || !it.SyncedFields.Equal(remote) {
			t.Errorf("keep=%v: state %s base %+v; want waiting on Intune's values", keep, got.Sync.State, it.SyncedFields)
		}
	}
}

// A conflict found by a worker whose comparison is stale (the admin saved, or deleted,
// meanwhile) is not parked: the row is claimed afresh with the newer state.
func TestMarkChangedRefusesAStaleComparison(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "g-a")
	e := obUpdate(t, s, a.ID, "mine")
	it := mrClaimID(t, s, "w1", a.ID)
	if _, err := s.DeleteAssociation(ctx, a.ID, e.Revision, obActor); err != nil {
		t.Fatal(err)
	}
	remote := a.Fields.Clone()
	remote.Description = "theirs"
	if err := s.MarkChanged(ctx, a.ID, "w1", it.Association.Revision, remote, []string{"description"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("MarkChanged after a delete: %v, want ErrConflict", err)
	}
	if got := obGet(t, s, a.ID); got.Sync.State == SyncChanged || !got.Sync.DeletePending {
		t.Fatalf("after the refused MarkChanged: %+v; want the DELETE still pending, not parked", got.Sync)
	}
}

// The worker's two steps of MarkMissing: the candidates, then MarkGone of those a GET
// answered 404 for. MarkGone of nothing marks nothing (not "everything not listed"), and it
// re-checks each id: one restored to the listing's terms meanwhile (here: deleted in
// cartclass, or leased) is left alone.
func TestMissingCandidatesAndMarkGone(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	seen := mrLinked(t, s, "seen", "g-seen")
	gone := mrLinked(t, s, "gone", "g-gone")
	there := mrLinked(t, s, "there", "g-there")
	tomb := mrLinked(t, s, "tomb", "g-tomb")
	started := obT0.Add(time.Minute)
	*now = obT0.Add(2 * time.Minute)

	cands, err := s.MissingCandidates(ctx, []string{"G-SEEN"}, started) // any case
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, a := range cands {
		ids = append(ids, a.ID)
	}
	if !slices.Equal(ids, []int64{gone.ID, there.ID, tomb.ID}) {
		t.Fatalf("candidates %v; want gone, there, tomb", ids)
	}
	if n, err := s.MarkGone(ctx, nil, started); err != nil || n != 0 {
		t.Fatalf("MarkGone(nothing) = %d, %v; want 0", n, err)
	}
	for _, a := range []Association{seen, gone, there, tomb} {
		if got := obGet(t, s, a.ID); got.Sync.State != SyncSynced {
			t.Fatalf("%s after MarkGone(nothing): %s", a.DisplayName, got.Sync.State)
		}
	}
	mrDelete(t, s, tomb.ID)
	if n, err := s.MarkGone(ctx, []int64{gone.ID, tomb.ID}, started); err != nil || n != 1 {
		t.Fatalf("MarkGone = %d, %v; want 1 (the tombstone no longer qualifies)", n, err)
	}
	if got := obGet(t, s, gone.ID); got.Sync.State != SyncDeleted {
		t.Errorf("gone: %s", got.Sync.State)
	}
	if got := obGet(t, s, there.ID); got.Sync.State != SyncSynced {
		t.Errorf("there (its GET answered): %s", got.Sync.State)
	}
	if got := obGet(t, s, tomb.ID); got.Sync.State == SyncDeleted || !got.Sync.DeletePending {
		t.Errorf("tomb: %+v; want its DELETE still pending", got.Sync)
	}
}

// Graph ids are GUIDs: a listing that spells a known one in capitals finds its
// association (no second import, nothing marked gone).
func TestGraphIDsCompareWithoutCase(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	a := mrLinked(t, s, "alpha", "AbC-123")
	if a.GraphID != "abc-123" {
		t.Fatalf("stored graph id %q; want it lower-cased", a.GraphID)
	}
	var locals int
	res := mrApply(t, s, []RemoteObject{mrRemote("ABC-123", a.Fields)}, obT0.Add(time.Hour), func(_ RemoteObject, l *Local, _ []Local) Verdict {
		if l != nil {
			locals++
			return Verdict{Kind: VerdictInStep}
		}
		return Verdict{Kind: VerdictImport}
	})
	if locals != 1 || res.Imported != 0 {
		t.Fatalf("a known id in capitals: %d locals found, result %+v", locals, res)
	}
	if n, err := markMissing(s, ctx, []string{"ABC-123"}, obT0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("MarkMissing = %d, %v; want 0", n, err)
	}
	if !linkedTo(t, s, "ABC-123") {
		t.Fatal("ABC-123 in capitals finds no association")
	}
}

// Past the 30 days a deleted association is not listed, and a (forged or late) Restore
// does not bring it back: it is about to be purged.
func TestRestoreAfterThirtyDaysIsRefused(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	a := obCreate(t, s, "alpha")
	mrDelete(t, s, a.ID)
	*now = obT0.Add(DeletedFor + time.Hour)
	if _, err := s.RestoreAssociation(ctx, a.ID, mrAdmin); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Restore after 30 days: %v, want ErrNotFound", err)
	}
	if got := obGet(t, s, a.ID); got.DeletedAt.IsZero() {
		t.Fatal("the refused Restore restored it")
	}
}
