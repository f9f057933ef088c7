package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// 200 writers at once, on a real file: every save succeeds (no "database is locked") and
// every answered save is there afterwards.
func TestTwoHundredConcurrentWritersAllSucceed(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	const n = 200
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		done = map[int64]string{} // id → the name its update answered with
	)
	for i := range n {
		wg.Go(func() {
			a, err := s.CreateAssociation(ctx, Fields{DisplayName: fmt.Sprintf("writer %03d", i)}, Actor{Subject: "w"})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("create %d: %w", i, err))
				mu.Unlock()
				return
			}
			name := fmt.Sprintf("writer %03d, edited", i)
			_, err = s.UpdateAssociation(ctx, a.ID, a.Revision, Fields{DisplayName: name}, Actor{Subject: "w"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("update %d: %w", i, err))
				return
			}
			done[a.ID] = name
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(done) != n {
		t.Fatalf("%d of %d writers answered", len(done), n)
	}
	for id, name := range done {
		a := mustGet(t, s, id)
		if a.DisplayName != name || a.Revision != 2 {
			t.Errorf("association %d = %q rev %d, want %q rev 2", id, a.DisplayName, a.Revision, name)
		}
	}
	if depth, _, err := s.QueueStats(ctx); err != nil || depth != n {
		t.Errorf("QueueStats = %d, %v; want an outbox row for each of the %d", depth, err, n)
	}
}

// Writers are served in the order they asked. synctest.Wait returns once every other
// goroutine is blocked, so each writer is known to be queued before the next one starts:
// the order of arrival is fixed, and the ids the creates get show the order of service.
func TestWritersAreServedInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := openTestStore(t)
		ctx := t.Context()
		if err := s.lockWriter(ctx); err != nil {
			t.Fatal(err)
		}
		const n = 30
		got := make([]int64, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				a, err := s.CreateAssociation(ctx, Fields{DisplayName: fmt.Sprint(i)}, Actor{})
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				got[i] = a.ID
			})
			synctest.Wait() // writer i now waits behind writers 0…i-1
		}
		s.unlockWriter()
		wg.Wait()
		for i := 1; i < n; i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("served out of order: writer %d got id %d, writer %d got %d (all: %v)", i-1, got[i-1], i, got[i], got)
			}
		}
	})
}

// A writer whose context ends while it waits for its turn gives up with the context's
// error and writes nothing.
func TestWriterWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	if err := s.lockWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := s.CreateAssociation(ctx, Fields{DisplayName: "late"}, Actor{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CreateAssociation while the writer is held: %v, want context.DeadlineExceeded", err)
	}
	if err := s.PutSession(ctx, Session{IDHash: []byte("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PutSession while the writer is held: %v, want context.DeadlineExceeded", err)
	}
	s.unlockWriter()
	page, err := s.ListAssociations(t.Context(), ListFilter{})
	if err != nil || page.Total != 0 {
		t.Errorf("after the timed-out writes: Total %d, %v; want nothing written", page.Total, err)
	}
}

func TestNewDatabaseFilesAreOwnerOnly(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "state", "db")
	path := filepath.Join(dir, "cartclass.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCreate(t, s, Fields{DisplayName: "written"}) // the WAL and its index exist once written
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(p), m)
		}
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o700 {
			t.Errorf("created directory %s has mode %o, want 700", d, m)
		}
	}

	// A database made before files were owner-only (0644, or 0640 here) is made 0600.
	existing := filepath.Join(base, "existing.db")
	if err := os.WriteFile(existing, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), existing)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if fi, err := os.Stat(existing); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("existing database: %v, %v; want it made 600", fi.Mode(), err)
	}
}

// With every read connection inside a transaction, a query nobody has prepared yet still
// runs: preparing it for the pool would need a free connection (the load test's searches
// hung for 30 s on exactly that).
func TestNewQueryWithEveryReadConnectionInATransaction(t *testing.T) {
	s, _ := openTestStore(t)
	n := s.read.Stats().MaxOpenConnections
	var txs []readTx
	for range n {
		tx, err := s.read.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		txs = append(txs, readTx{s, tx})
	}
	done := make(chan error, n)
	for i, tx := range txs {
		go func() {
			var v int
			done <- tx.QueryRowContext(t.Context(), fmt.Sprintf("SELECT %d + count(*) FROM associations", i)).Scan(&v)
		}()
	}
	for range n {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a query in a transaction waited for a free connection to be prepared")
		}
	}
}
