package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// obT0 is the outbox tests' fixed "now"; the store's clock stays there unless a test moves it.
var obT0 = time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)

// openOutboxStore opens a fresh store in a temporary file whose clock reads *now.
func openOutboxStore(t *testing.T) (*Store, *time.Time) {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	now := obT0
	var mu sync.Mutex
	s.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	return s, &now
}

func obFields(name string) Fields {
	return Fields{DisplayName: name, Description: "d " + name, Version: 7,
		DeviceCartIDs: []string{"cart-" + name}, ClassroomIDs: []string{"room-" + name}}
}

var obActor = Actor{Subject: "sub-1", Name: "Ada"}

func obCreate(t *testing.T, s *Store, name string) Association {
	t.Helper()
	a, err := s.CreateAssociation(t.Context(), obFields(name), obActor)
	if err != nil {
		t.Fatalf("CreateAssociation %s: %v", name, err)
	}
	return a
}

func obUpdate(t *testing.T, s *Store, id int64, desc string) Association {
	t.Helper()
	cur, err := s.GetAssociation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	f := cur.Fields
	f.Description = desc
	a, err := s.UpdateAssociation(t.Context(), id, cur.Revision, f, Actor{Subject: "sub-2", Name: "Bob"})
	if err != nil {
		t.Fatalf("UpdateAssociation %d: %v", id, err)
	}
	return a
}

func obGet(t *testing.T, s *Store, id int64) Association {
	t.Helper()
	a, err := s.GetAssociation(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAssociation %d: %v", id, err)
	}
	return a
}

// linkedTo reports whether any association is linked to the Graph object graphID (ids
// compare without case, as the store keeps them).
func linkedTo(t *testing.T, s *Store, graphID string) bool {
	t.Helper()
	var n int
	if err := s.write.QueryRowContext(t.Context(), `SELECT count(*) FROM associations WHERE graph_id = lower(?)`, graphID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func outboxRows(t *testing.T, s *Store, id int64) int {
	t.Helper()
	var n int
	if err := s.write.QueryRowContext(t.Context(), `SELECT count(*) FROM outbox WHERE association_id = ?`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustClaim(t *testing.T, s *Store, owner string, now time.Time) OutboxItem {
	t.Helper()
	it, err := s.ClaimOutbox(t.Context(), owner, now, time.Minute)
	if err != nil {
		t.Fatalf("ClaimOutbox(%s): %v", owner, err)
	}
	return it
}

func pushedOf(it OutboxItem, graphID string) Pushed {
	return Pushed{GraphID: graphID, GraphCreatedAt: obT0.Add(-time.Hour), GraphModifiedAt: obT0.Add(-time.Hour),
		Revision: it.Association.Revision, Fields: it.Association.Fields}
}

func TestSaveQueuesOneOutboxRowAndEditsCoalesce(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	if got := outboxRows(t, s, a.ID); got != 1 {
		t.Fatalf("outbox rows after create = %d, want 1", got)
	}
	if a.Sync.State != SyncWaiting || !a.Sync.NextAttemptAt.Equal(obT0) || a.Sync.Attempts != 0 || a.Sync.Error != nil {
		t.Fatalf("create Sync = %+v, want waiting, due %v", a.Sync, obT0)
	}
	for i := range 3 {
		obUpdate(t, s, a.ID, fmt.Sprintf("edit %d", i))
	}
	if got := outboxRows(t, s, a.ID); got != 1 {
		t.Fatalf("outbox rows after 3 edits = %d, want 1", got)
	}
	it := mustClaim(t, s, "w1", obT0)
	if it.Association.ID != a.ID || it.Association.Revision != 4 || it.Association.Description != "edit 2" {
		t.Fatalf("claimed %d rev %d %q, want the latest state (rev 4, edit 2)", it.Association.ID, it.Association.Revision, it.Association.Description)
	}
	if it.Association.UpdatedBy.Subject != "sub-2" || it.Association.CreatedBy.Subject != "sub-1" {
		t.Fatalf("claimed actors %+v/%+v", it.Association.CreatedBy, it.Association.UpdatedBy)
	}
}

// A failure to queue must undo the save: the two are one transaction.
func TestSaveAndQueueAreOneTransaction(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	if _, err := s.write.Exec(`CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'no'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAssociation(t.Context(), obFields("B"), obActor); err == nil {
		t.Fatal("CreateAssociation succeeded although its outbox insert failed")
	}
	var n int
	if err := s.write.QueryRow(`SELECT count(*) FROM associations`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("associations = %d (%v), want only the first", n, err)
	}
	// Synced, then edited: the edit needs a new outbox row, and that insert fails.
	it := mustClaim(t, s, "w1", obT0)
	if err := s.CompleteCreate(t.Context(), a.ID, "w1", pushedOf(it, "g-a")); err != nil {
		t.Fatal(err)
	}
	f := a.Fields
	f.Description = "changed"
	if _, err := s.UpdateAssociation(t.Context(), a.ID, a.Revision, f, obActor); err == nil {
		t.Fatal("UpdateAssociation succeeded although its outbox insert failed")
	}
	if got := obGet(t, s, a.ID); got.Description != a.Description || got.Revision != 1 || got.Sync.State != SyncSynced {
		t.Fatalf("after failed update: %q rev %d %s, want unchanged and synced", got.Description, got.Revision, got.Sync.State)
	}
}

func TestUnchangedSaveQueuesNothing(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	it := mustClaim(t, s, "w1", obT0)
	if err := s.CompleteCreate(t.Context(), a.ID, "w1", pushedOf(it, "g-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAssociation(t.Context(), a.ID, a.Revision, a.Fields, obActor); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("UpdateAssociation same fields: %v, want ErrUnchanged", err)
	}
	if got := outboxRows(t, s, a.ID); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
	if got := obGet(t, s, a.ID); got.Sync.State != SyncSynced {
		t.Fatalf("state = %s, want synced", got.Sync.State)
	}
}

func TestClaimLeasesOneRowToOneOwner(t *testing.T) {
	s, now := openOutboxStore(t)
	a := obCreate(t, s, "A")
	*now = obT0.Add(time.Second)
	b := obCreate(t, s, "B")
	*now = obT0.Add(time.Hour)
	c := obCreate(t, s, "C") // not due yet at obT0+1s

	first, err1 := s.ClaimOutbox(t.Context(), "w1", obT0.Add(time.Second), 2*time.Hour)
	second, err2 := s.ClaimOutbox(t.Context(), "w2", obT0.Add(time.Second), 2*time.Hour)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if first.Association.ID != a.ID || second.Association.ID != b.ID {
		t.Fatalf("claimed %d then %d, want oldest first: %d then %d", first.Association.ID, second.Association.ID, a.ID, b.ID)
	}
	if _, err := s.ClaimOutbox(t.Context(), "w3", obT0.Add(time.Second), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("third claim: %v, want ErrNotFound (A, B leased; C not due)", err)
	}
	if got := mustClaim(t, s, "w3", obT0.Add(time.Hour)); got.Association.ID != c.ID {
		t.Fatalf("claim at C's due time got %d, want %d", got.Association.ID, c.ID)
	}
}

func TestConcurrentClaimsNeverShareARow(t *testing.T) {
	s, _ := openOutboxStore(t)
	const rows, owners = 30, 6
	for i := range rows {
		obCreate(t, s, fmt.Sprint(i))
	}
	var mu sync.Mutex
	claimed := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, owners)
	for o := range owners {
		owner := fmt.Sprintf("w%d", o)
		wg.Go(func() {
			for {
				it, err := s.ClaimOutbox(context.Background(), owner, obT0, time.Minute)
				if errors.Is(err, ErrNotFound) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := claimed[it.Association.ID]; dup {
					errs <- fmt.Errorf("row %d claimed by %s and %s", it.Association.ID, prev, owner)
				}
				claimed[it.Association.ID] = owner
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(claimed) != rows {
		t.Fatalf("claimed %d rows, want %d", len(claimed), rows)
	}
}

// A worker that dies holding a lease: after the lease ends another takes the row over, and
// the dead one's late answer is refused.
func TestExpiredLeaseIsReclaimed(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	it := mustClaim(t, s, "crashed", obT0)
	if !it.LeaseUntil.Equal(obT0.Add(time.Minute)) {
		t.Fatalf("LeaseUntil = %v, want %v", it.LeaseUntil, obT0.Add(time.Minute))
	}
	if _, err := s.ClaimOutbox(t.Context(), "w2", obT0.Add(59*time.Second), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim during lease: %v, want ErrNotFound", err)
	}
	next, err := s.NextDue(t.Context())
	if err != nil || !next.Equal(obT0.Add(time.Minute)) {
		t.Fatalf("NextDue = %v, %v; want the lease end %v", next, err, obT0.Add(time.Minute))
	}
	again := mustClaim(t, s, "w2", obT0.Add(time.Minute))
	if again.Association.ID != a.ID {
		t.Fatalf("reclaimed %d, want %d", again.Association.ID, a.ID)
	}
	if err := s.CompleteCreate(t.Context(), a.ID, "crashed", pushedOf(it, "g-late")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("CompleteCreate by the old owner: %v, want ErrLeaseLost", err)
	}
	if err := s.RetryLater(t.Context(), a.ID, "crashed", obT0, nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("RetryLater by the old owner: %v, want ErrLeaseLost", err)
	}
	if err := s.CompleteCreate(t.Context(), a.ID, "w2", pushedOf(again, "g-a")); err != nil {
		t.Fatal(err)
	}
	if got := obGet(t, s, a.ID); got.GraphID != "g-a" {
		t.Fatalf("GraphID = %q, want g-A", got.GraphID)
	}
}

func TestCompleteCreateSyncs(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	it := mustClaim(t, s, "w1", obT0)
	p := pushedOf(it, "g-a")
	if err := s.CompleteCreate(t.Context(), a.ID, "w1", p); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.GraphID != "g-a" || got.Sync.State != SyncSynced || got.Sync.SyncedRevision != 1 ||
		!got.GraphCreatedAt.Equal(p.GraphCreatedAt) || !got.Sync.NextAttemptAt.IsZero() {
		t.Fatalf("after CompleteCreate: %+v", got)
	}
	if n := outboxRows(t, s, a.ID); n != 0 {
		t.Fatalf("outbox rows = %d, want 0", n)
	}
	if !linkedTo(t, s, "g-a") {
		t.Fatal("g-a not linked after the create")
	}
	if linkedTo(t, s, "g-other") {
		t.Fatal("g-other linked, though nothing was created as it")
	}

	// An edit of a synced association queues it again, with the synced fields as the diff base.
	obUpdate(t, s, a.ID, "new")
	it = mustClaim(t, s, "w1", obT0)
	if it.SyncedFields == nil || !it.SyncedFields.Equal(a.Fields) || it.Association.GraphID != "g-a" {
		t.Fatalf("claimed after edit: synced %+v graph %q", it.SyncedFields, it.Association.GraphID)
	}
	modified := obT0.Add(time.Minute)
	if err := s.CompleteUpdate(t.Context(), a.ID, "w1", Pushed{GraphModifiedAt: modified, Revision: 2, Fields: it.Association.Fields}); err != nil {
		t.Fatal(err)
	}
	got = obGet(t, s, a.ID)
	if got.Sync.State != SyncSynced || got.Sync.SyncedRevision != 2 || !got.GraphModifiedAt.Equal(modified) ||
		!got.GraphCreatedAt.Equal(p.GraphCreatedAt) || got.GraphID != "g-a" {
		t.Fatalf("after CompleteUpdate: %+v", got)
	}
}

func TestCompleteWithNewerRevisionKeepsRow(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	it := mustClaim(t, s, "w1", obT0)
	// The admin edits while the POST is in flight.
	obUpdate(t, s, a.ID, "edited during push")
	if err := s.MarkCreateSent(t.Context(), a.ID, "w1", SentCreate{At: obT0, Revision: 1, Fields: it.Association.Fields}); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteCreate(t.Context(), a.ID, "w1", pushedOf(it, "g-a")); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncWaiting || got.Sync.SyncedRevision != 1 || got.GraphID != "g-a" {
		t.Fatalf("after stale complete: state %s synced rev %d graph %q", got.Sync.State, got.Sync.SyncedRevision, got.GraphID)
	}
	if n := outboxRows(t, s, a.ID); n != 1 {
		t.Fatalf("outbox rows = %d, want 1", n)
	}
	next := mustClaim(t, s, "w2", obT0)
	if next.Association.Revision != 2 || next.Association.GraphID != "g-a" || next.CreateSent != nil ||
		next.SyncedFields == nil || !next.SyncedFields.Equal(a.Fields) {
		t.Fatalf("reclaimed: rev %d graph %q createSent %v synced %+v", next.Association.Revision,
			next.Association.GraphID, next.CreateSent, next.SyncedFields)
	}
}

func TestCreateSentSurvivesRetries(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	it := mustClaim(t, s, "w1", obT0)
	if it.CreateSent != nil {
		t.Fatalf("fresh item has CreateSent %+v", it.CreateSent)
	}
	sent := SentCreate{At: obT0.Add(time.Second), Revision: 1, Fields: it.Association.Fields}
	if err := s.MarkCreateSent(t.Context(), a.ID, "w1", sent); err != nil {
		t.Fatal(err)
	}
	syncErr := &SyncError{Status: 503, Code: "ServiceUnavailable", Message: "down", RequestID: "r-1"}
	if err := s.RetryLater(t.Context(), a.ID, "w1", obT0.Add(10*time.Second), syncErr); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncWaiting || got.Sync.Attempts != 1 || !got.Sync.NextAttemptAt.Equal(obT0.Add(10*time.Second)) ||
		got.Sync.Error == nil || *got.Sync.Error != *syncErr {
		t.Fatalf("after RetryLater: %+v (error %+v)", got.Sync, got.Sync.Error)
	}
	if _, err := s.ClaimOutbox(t.Context(), "w1", obT0.Add(9*time.Second), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim before next attempt: %v, want ErrNotFound", err)
	}
	// An edit of a waiting row leaves its schedule and the unknown POST alone.
	obUpdate(t, s, a.ID, "edited")
	again := mustClaim(t, s, "w1", obT0.Add(10*time.Second))
	if again.CreateSent == nil || !again.CreateSent.At.Equal(sent.At) || again.CreateSent.Revision != 1 ||
		!again.CreateSent.Fields.Equal(sent.Fields) || again.Attempts != 1 {
		t.Fatalf("reclaimed: CreateSent %+v attempts %d", again.CreateSent, again.Attempts)
	}
	if err := s.ClearCreateSent(t.Context(), a.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Postpone(t.Context(), a.ID, "w1", obT0.Add(10*time.Second), nil); err != nil {
		t.Fatal(err)
	}
	last := mustClaim(t, s, "w1", obT0.Add(10*time.Second))
	if last.CreateSent != nil || last.Attempts != 1 {
		t.Fatalf("after ClearCreateSent and Postpone: CreateSent %+v attempts %d (Postpone must not count)", last.CreateSent, last.Attempts)
	}
}

func TestFailParksUntilEditOrRetry(t *testing.T) {
	s, now := openOutboxStore(t)
	a := obCreate(t, s, "A")
	b := obCreate(t, s, "B")
	mustClaim(t, s, "w1", obT0)
	syncErr := &SyncError{Status: 400, Code: "BadRequest", Message: "displayName is too long", RequestID: "req-9"}
	if err := s.Fail(t.Context(), a.ID, "w1", syncErr, a.Revision); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncFailed || got.Sync.Error == nil || *got.Sync.Error != *syncErr || !got.Sync.NextAttemptAt.IsZero() {
		t.Fatalf("after Fail: %+v (error %+v)", got.Sync, got.Sync.Error)
	}
	// Parked: only B is claimable, even much later.
	if it := mustClaim(t, s, "w1", obT0.Add(time.Hour)); it.Association.ID != b.ID {
		t.Fatalf("claimed %d, want %d", it.Association.ID, b.ID)
	} else if err := s.CompleteCreate(t.Context(), b.ID, "w1", pushedOf(it, "g-b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimOutbox(t.Context(), "w1", obT0.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a failed row: %v, want ErrNotFound", err)
	}

	// An edit unparks it: waiting, due now, error and attempts cleared.
	*now = obT0.Add(2 * time.Hour)
	obUpdate(t, s, a.ID, "fixed")
	got = obGet(t, s, a.ID)
	if got.Sync.State != SyncWaiting || got.Sync.Error != nil || got.Sync.Attempts != 0 || !got.Sync.NextAttemptAt.Equal(*now) {
		t.Fatalf("after edit: %+v", got.Sync)
	}
	if err := s.Retry(t.Context(), a.ID); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("Retry of a waiting association: %v, want ErrUnchanged", err)
	}

	// Fail again; the Retry button unparks it too.
	claimed := mustClaim(t, s, "w1", *now)
	if err := s.Fail(t.Context(), a.ID, "w1", syncErr, claimed.Association.Revision); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	if it := mustClaim(t, s, "w1", *now); it.Association.ID != a.ID || it.Attempts != 0 {
		t.Fatalf("after Retry claimed %d attempts %d", it.Association.ID, it.Attempts)
	}
	if err := s.Retry(t.Context(), 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Retry(999): %v", err)
	}
}

func TestMarkDeletedAndRecreate(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	it := mustClaim(t, s, "w1", obT0)
	if err := s.CompleteCreate(t.Context(), a.ID, "w1", pushedOf(it, "g-a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Recreate(t.Context(), a.ID, obActor); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("Recreate of a synced association: %v, want ErrUnchanged", err)
	}
	if err := s.Recreate(t.Context(), 999, obActor); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Recreate(999): %v, want ErrNotFound", err)
	}
	obUpdate(t, s, a.ID, "edited")
	mustClaim(t, s, "w1", obT0)
	if err := s.MarkDeleted(t.Context(), a.ID, "w1", &SyncError{Status: 404, Code: "ResourceNotFound"}); err != nil {
		t.Fatal(err)
	}
	if got := obGet(t, s, a.ID); got.Sync.State != SyncDeleted || got.GraphID != "g-a" {
		t.Fatalf("after MarkDeleted: %s %q", got.Sync.State, got.GraphID)
	}
	// An edit is kept locally but does not unpark a deleted one.
	obUpdate(t, s, a.ID, "edited again")
	if got := obGet(t, s, a.ID); got.Sync.State != SyncDeleted {
		t.Fatalf("edit of a deleted association made it %s", got.Sync.State)
	}
	if _, err := s.ClaimOutbox(t.Context(), "w1", obT0.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a deleted row: %v, want ErrNotFound", err)
	}
	if err := s.Recreate(t.Context(), a.ID, obActor); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncWaiting || got.GraphID != "" || got.Sync.SyncedRevision != 0 || !got.GraphCreatedAt.IsZero() {
		t.Fatalf("after Recreate: %+v graph %q", got.Sync, got.GraphID)
	}
	it = mustClaim(t, s, "w1", obT0)
	if it.Association.GraphID != "" || it.SyncedFields != nil || it.CreateSent != nil || it.Association.Description != "edited again" {
		t.Fatalf("claimed after Recreate: graph %q synced %+v createSent %+v desc %q",
			it.Association.GraphID, it.SyncedFields, it.CreateSent, it.Association.Description)
	}
	if linkedTo(t, s, "g-a") {
		t.Fatal("old graph id still linked after Recreate")
	}
}

func TestListNotSynced(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A")
	b := obCreate(t, s, "B")
	c := obCreate(t, s, "C")
	for range 3 {
		it := mustClaim(t, s, "w1", obT0)
		switch it.Association.ID {
		case a.ID:
			if err := s.CompleteCreate(t.Context(), a.ID, "w1", pushedOf(it, "g-a")); err != nil {
				t.Fatal(err)
			}
		case b.ID:
			if err := s.Fail(t.Context(), b.ID, "w1", &SyncError{Status: 400}, b.Revision); err != nil {
				t.Fatal(err)
			}
		default:
			if err := s.RetryLater(t.Context(), c.ID, "w1", obT0.Add(time.Minute), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	page, err := s.ListAssociations(t.Context(), ListFilter{NotSynced: true, Sort: SortNameAsc})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range page.Items {
		got = append(got, it.DisplayName+":"+it.Sync.State)
	}
	if want := []string{"B:failed", "C:waiting"}; !slices.Equal(got, want) || page.Total != 2 {
		t.Fatalf("NotSynced list = %v (total %d), want %v", got, page.Total, want)
	}
	page, err = s.ListAssociations(t.Context(), ListFilter{NotSynced: true, Query: "room-c"})
	if err != nil || page.Total != 1 || page.Items[0].ID != c.ID {
		t.Fatalf("NotSynced + query: %+v, %v", page, err)
	}
	page, err = s.ListAssociations(t.Context(), ListFilter{})
	if err != nil || page.Total != 3 {
		t.Fatalf("unfiltered total = %d, %v", page.Total, err)
	}
	for _, it := range page.Items {
		if it.ID == c.ID && (it.Sync.Attempts != 1 || !it.Sync.NextAttemptAt.Equal(obT0.Add(time.Minute))) {
			t.Fatalf("list Sync of C = %+v", it.Sync)
		}
	}
}

func TestQueueStats(t *testing.T) {
	s, now := openOutboxStore(t)
	depth, oldest, err := s.QueueStats(t.Context())
	if err != nil || depth != 0 || !oldest.IsZero() {
		t.Fatalf("empty QueueStats = %d, %v, %v", depth, oldest, err)
	}
	a := obCreate(t, s, "A")
	*now = obT0.Add(time.Minute)
	b := obCreate(t, s, "B")
	depth, oldest, err = s.QueueStats(t.Context())
	if err != nil || depth != 2 || !oldest.Equal(obT0) {
		t.Fatalf("QueueStats = %d, %v, %v; want 2, %v", depth, oldest, err, obT0)
	}
	// A failed row is parked: not counted.
	mustClaim(t, s, "w1", *now)
	if err := s.Fail(t.Context(), a.ID, "w1", nil, a.Revision); err != nil {
		t.Fatal(err)
	}
	depth, oldest, err = s.QueueStats(t.Context())
	if err != nil || depth != 1 || !oldest.Equal(obT0.Add(time.Minute)) {
		t.Fatalf("QueueStats with A failed = %d, %v, %v", depth, oldest, err)
	}
	it := mustClaim(t, s, "w1", *now)
	if err := s.CompleteCreate(t.Context(), b.ID, "w1", pushedOf(it, "g-b")); err != nil {
		t.Fatal(err)
	}
	if depth, _, err = s.QueueStats(t.Context()); err != nil || depth != 0 {
		t.Fatalf("QueueStats after recovery = %d, %v; want 0", depth, err)
	}
	if _, err := s.NextDue(t.Context()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NextDue with nothing queued: %v, want ErrNotFound", err)
	}
}

func TestExpediteSubject(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "A") // by sub-1
	b := obCreate(t, s, "B")
	obUpdate(t, s, b.ID, "by sub-2")
	for range 2 {
		it := mustClaim(t, s, "w1", obT0)
		if err := s.Postpone(t.Context(), it.Association.ID, "w1", obT0.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.ExpediteSubject(t.Context(), "sub-2", obT0)
	if err != nil || n != 1 {
		t.Fatalf("ExpediteSubject = %d, %v; want 1", n, err)
	}
	if it := mustClaim(t, s, "w1", obT0); it.Association.ID != b.ID {
		t.Fatalf("claimed %d, want %d", it.Association.ID, b.ID)
	}
	if got := obGet(t, s, a.ID); !got.Sync.NextAttemptAt.Equal(obT0.Add(time.Hour)) {
		t.Fatalf("A's next attempt moved to %v", got.Sync.NextAttemptAt)
	}
}

func TestUserTokens(t *testing.T) {
	s, _ := openOutboxStore(t)
	if _, err := s.GetUserToken(t.Context(), "sub-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetUserToken missing: %v", err)
	}
	for _, v := range []string{"sealed-1", "sealed-2"} {
		if err := s.PutUserToken(t.Context(), "sub-1", []byte(v)); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetUserToken(t.Context(), "sub-1")
		if err != nil || string(got) != v {
			t.Fatalf("GetUserToken = %q, %v; want %q", got, err, v)
		}
	}
}

// Associations saved before the outbox existed are queued by the migration.
func TestMigrationQueuesExistingAssociations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"migrations/0001_init.sql", "migrations/0002_sessions.sql"} {
		body, err := migrations.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`PRAGMA user_version = 2;
		INSERT INTO associations (display_name, version, created_at, updated_at) VALUES ('old', 7, 5, 5);
		INSERT INTO associations (graph_id, display_name, version, created_at, updated_at) VALUES ('g-old', 'linked', 7, 6, 6)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	depth, oldest, err := s.QueueStats(t.Context())
	if err != nil || depth != 2 || oldest.UnixNano() != 5 {
		t.Fatalf("QueueStats after migration = %d, %v, %v", depth, oldest, err)
	}
	it, err := s.ClaimOutbox(t.Context(), "w1", obT0, time.Minute)
	if err != nil || it.Association.DisplayName != "old" || it.Association.Sync.State != SyncWaiting || it.SyncedFields != nil {
		t.Fatalf("claim after migration: %+v, %v", it, err)
	}
}

// An edit saved while a push was in flight is queued, not parked, when Graph refuses the
// older revision: it may be the admin's fix.
func TestFailOfOlderRevisionQueuesTheEdit(t *testing.T) {
	s, _ := openOutboxStore(t)
	a := obCreate(t, s, "bad name")
	mustClaim(t, s, "w1", obT0)
	f := a.Fields
	f.DisplayName = "fixed"
	if _, err := s.UpdateAssociation(t.Context(), a.ID, a.Revision, f, Actor{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(t.Context(), a.ID, "w1", &SyncError{Status: 400, Code: "BadRequest"}, a.Revision); err != nil {
		t.Fatal(err)
	}
	got := obGet(t, s, a.ID)
	if got.Sync.State != SyncWaiting || got.Sync.Error != nil {
		t.Fatalf("after Fail of revision 1 with revision 2 saved: %+v", got.Sync)
	}
	it := mustClaim(t, s, "w2", obT0.Add(time.Hour))
	if it.Association.ID != a.ID || it.Association.DisplayName != "fixed" {
		t.Fatalf("claimed %+v, want the fixed revision", it.Association)
	}
}
