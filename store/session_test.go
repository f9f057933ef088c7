package store

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

var sessT0 = time.Date(2025, 10, 1, 9, 0, 0, 0, time.UTC)

func putSession(t *testing.T, s *Store, sess Session) {
	t.Helper()
	if err := s.PutSession(t.Context(), sess); err != nil {
		t.Fatalf("PutSession %x: %v", sess.IDHash, err)
	}
}

func TestSessionRoundTripAndUpsert(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	if _, err := s.GetSession(ctx, []byte("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession of a missing id: %v, want ErrNotFound", err)
	}
	in := Session{
		IDHash: []byte{1, 2, 3}, Subject: "tid/oid-1", Name: "Åsa Admin", Role: 2, Data: []byte("sealed"),
		CreatedAt: sessT0, LastSeenAt: sessT0.Add(time.Minute), RolesCheckedAt: sessT0.Add(30 * time.Second),
	}
	putSession(t, s, in)
	got, err := s.GetSession(ctx, in.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if !sessionEqual(got, in) {
		t.Fatalf("GetSession = %+v, want %+v", got, in)
	}
	// Put again: every field is written as given, created_at included.
	again := Session{IDHash: in.IDHash, Subject: "tid/oid-1", Name: "Åsa", Role: 1, Data: []byte("resealed"),
		CreatedAt: sessT0.Add(time.Hour), LastSeenAt: sessT0.Add(2 * time.Hour)}
	putSession(t, s, again)
	got, err = s.GetSession(ctx, in.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if !sessionEqual(got, again) || !got.RolesCheckedAt.IsZero() {
		t.Fatalf("after a second PutSession: %+v, want %+v", got, again)
	}

	if err := s.TouchSession(ctx, in.IDHash, sessT0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, in.IDHash); !got.LastSeenAt.Equal(sessT0.Add(3 * time.Hour)) {
		t.Errorf("after TouchSession LastSeenAt = %v", got.LastSeenAt)
	}
	for range 2 { // deleting a missing session is not an error
		if err := s.DeleteSession(ctx, in.IDHash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetSession(ctx, in.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("after DeleteSession: %v, want ErrNotFound", err)
	}
}

func sessionEqual(a, b Session) bool {
	return bytes.Equal(a.IDHash, b.IDHash) && a.Subject == b.Subject && a.Name == b.Name && a.Role == b.Role &&
		bytes.Equal(a.Data, b.Data) && a.CreatedAt.Equal(b.CreatedAt) && a.LastSeenAt.Equal(b.LastSeenAt) &&
		a.RolesCheckedAt.Equal(b.RolesCheckedAt)
}

// sessionIDs lists the id hashes ListSessions returns, as strings, in its order.
func sessionIDs(t *testing.T, s *Store) []string {
	t.Helper()
	list, err := s.ListSessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(list))
	for i, sess := range list {
		if sess.Data != nil {
			t.Errorf("ListSessions returned Data for %s", sess.IDHash)
		}
		out[i] = string(sess.IDHash)
	}
	return out
}

func TestSessionsOfASubject(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	for i, sess := range []Session{
		{IDHash: []byte("a1"), Subject: "alice", Name: "Alice"},
		{IDHash: []byte("a2"), Subject: "alice", Name: "Alice"},
		{IDHash: []byte("b1"), Subject: "bob", Name: "Bob", Role: 1},
		{IDHash: []byte("c1"), Subject: "carol", Name: "Carol"},
	} {
		sess.Data = []byte("d")
		sess.CreatedAt = sessT0
		sess.LastSeenAt = sessT0.Add(time.Duration(i) * time.Minute)
		putSession(t, s, sess)
	}
	if got, want := sessionIDs(t, s), []string{"c1", "b1", "a2", "a1"}; !slices.Equal(got, want) {
		t.Fatalf("ListSessions = %q, want the most recently seen first %q", got, want)
	}
	list, _ := s.ListSessions(ctx)
	if list[1].Name != "Bob" || list[1].Subject != "bob" || list[1].Role != 1 || !list[1].CreatedAt.Equal(sessT0) {
		t.Errorf("ListSessions row = %+v", list[1])
	}

	checked := sessT0.Add(time.Hour)
	n, err := s.SetSubjectRole(ctx, "alice", 3, checked)
	if err != nil || n != 2 {
		t.Fatalf("SetSubjectRole(alice) = %d, %v; want 2", n, err)
	}
	for _, id := range []string{"a1", "a2"} {
		got, _ := s.GetSession(ctx, []byte(id))
		if got.Role != 3 || !got.RolesCheckedAt.Equal(checked) {
			t.Errorf("%s after SetSubjectRole: role %d checked %v", id, got.Role, got.RolesCheckedAt)
		}
	}
	if got, _ := s.GetSession(ctx, []byte("b1")); got.Role != 1 || !got.RolesCheckedAt.IsZero() {
		t.Errorf("bob's session changed by alice's role: %+v", got)
	}
	if n, err := s.SetSubjectRole(ctx, "nobody", 1, checked); err != nil || n != 0 {
		t.Errorf("SetSubjectRole(nobody) = %d, %v", n, err)
	}

	if n, err := s.DeleteSubjectSessions(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("DeleteSubjectSessions(alice) = %d, %v; want 2", n, err)
	}
	if got, want := sessionIDs(t, s), []string{"c1", "b1"}; !slices.Equal(got, want) {
		t.Fatalf("after DeleteSubjectSessions: %q, want %q", got, want)
	}
	if n, err := s.DeleteSessionsExcept(ctx, []byte("b1")); err != nil || n != 1 {
		t.Fatalf("DeleteSessionsExcept(b1) = %d, %v; want 1", n, err)
	}
	if got, want := sessionIDs(t, s), []string{"b1"}; !slices.Equal(got, want) {
		t.Fatalf("after DeleteSessionsExcept: %q, want %q", got, want)
	}
	if n, err := s.DeleteSessionsExcept(ctx, nil); err != nil || n != 1 {
		t.Fatalf("DeleteSessionsExcept(nil) = %d, %v; want 1 (all)", n, err)
	}
}

func TestDeleteExpiredSessions(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	for _, sess := range []Session{
		{IDHash: []byte("old"), CreatedAt: sessT0.Add(-9 * time.Hour), LastSeenAt: sessT0},                     // past the lifetime
		{IDHash: []byte("idle"), CreatedAt: sessT0.Add(-time.Hour), LastSeenAt: sessT0.Add(-31 * time.Minute)}, // idle too long
		{IDHash: []byte("edge"), CreatedAt: sessT0.Add(-8 * time.Hour), LastSeenAt: sessT0.Add(-30 * time.Minute)},
		{IDHash: []byte("fresh"), CreatedAt: sessT0, LastSeenAt: sessT0},
	} {
		sess.Data = []byte("d")
		putSession(t, s, sess)
	}
	n, err := s.DeleteExpired(ctx, sessT0.Add(-8*time.Hour), sessT0.Add(-30*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpired = %d, %v; want 2", n, err)
	}
	if got, want := sessionIDs(t, s), []string{"fresh", "edge"}; !slices.Equal(got, want) {
		t.Errorf("left %q, want %q (the limits themselves are not past)", got, want)
	}
	if n, err := s.DeleteExpired(ctx, time.Time{}, time.Time{}); err != nil || n != 0 {
		t.Errorf("DeleteExpired with zero limits = %d, %v; want nothing removed", n, err)
	}
}

// Sessions made before roles were stored survive the migration, to be checked at once.
func TestMigrationKeepsSessionsAndData(t *testing.T) {
	t.Parallel()
	s := openPreviousSchema(t)
	ctx := t.Context()
	sess, err := s.GetSession(ctx, []byte{1, 2})
	if err != nil {
		t.Fatalf("old session after migration: %v", err)
	}
	if sess.Subject != "sub-old" || string(sess.Data) != "\xaa" || sess.CreatedAt.UnixNano() != 100 ||
		sess.LastSeenAt.UnixNano() != 200 || sess.Role != 0 || sess.Name != "" || !sess.RolesCheckedAt.IsZero() {
		t.Errorf("old session = %+v; want its values, role 0, never checked", sess)
	}
	for _, id := range []int64{1, 2} {
		if _, err := s.GetAssociation(ctx, id); err != nil {
			t.Errorf("association %d after migration: %v", id, err)
		}
	}
	a, _ := s.GetAssociation(ctx, 1)
	if a.Sync.State != SyncWaiting || a.Sync.Attempts != 3 || a.DisplayName != "Old cart" {
		t.Errorf("association 1 with its outbox row = %+v", a)
	}
	if depth, _, err := s.QueueStats(ctx); err != nil || depth != 1 {
		t.Errorf("QueueStats = %d, %v; want the one outbox row", depth, err)
	}
	if tok, err := s.GetUserToken(ctx, "sub-old"); err != nil || string(tok) != "\xcc" {
		t.Errorf("user token = %q, %v", tok, err)
	}
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'login_requests'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("login_requests still exists (%d, %v)", n, err)
	}
	var check string
	if err := s.read.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
}
