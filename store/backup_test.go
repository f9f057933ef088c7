package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A backup taken during a burst of saves is one consistent moment: restored and opened,
// every association it holds has the history entry of its revision and, while waiting,
// its outbox row; integrity_check is ok; the file is the owner's alone.
func TestBackupDuringSavesRestores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, filepath.Join(dir, "live.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	by := Actor{Subject: "sub-ada", Name: "Ada"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, err := s.CreateAssociation(ctx, Fields{DisplayName: fmt.Sprintf("w%d-%d", w, i), Version: 1, DeviceCartIDs: []string{"cart-1"}}, by)
				if err != nil {
					t.Error(err)
					return
				}
				f := a.Fields
				f.Description = "edited"
				if _, err := s.UpdateAssociation(ctx, a.ID, a.Revision, f, by); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(150 * time.Millisecond) // saves under way
	backup := filepath.Join(dir, "backup.db")
	err = s.Backup(ctx, backup)
	time.Sleep(50 * time.Millisecond) // and after it
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup during saves: %v", err)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := s.Backup(ctx, backup); err == nil {
		t.Error("a backup over an existing file was allowed")
	}

	// Restore: the file, alone (no -wal), in place of a database, opened as cartclass does.
	restored := filepath.Join(t.TempDir(), "cartclass.db")
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(restored, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, restored)
	if err != nil {
		t.Fatalf("open the restored database: %v", err)
	}
	defer r.Close()
	var ok string
	if err := r.write.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check of the restore: %q, %v", ok, err)
	}
	var n, torn, unqueued int
	r.write.QueryRowContext(ctx, `SELECT count(*) FROM associations`).Scan(&n)
	r.write.QueryRowContext(ctx, `SELECT count(*) FROM associations a WHERE revision <> (SELECT max(revision) FROM history h WHERE h.association_id = a.id)`).Scan(&torn)
	r.write.QueryRowContext(ctx, `SELECT count(*) FROM associations a WHERE sync_state = 'waiting' AND NOT EXISTS (SELECT 1 FROM outbox WHERE association_id = a.id)`).Scan(&unqueued)
	if n == 0 {
		t.Fatal("the backup holds no association: it was taken before any save")
	}
	if torn != 0 || unqueued != 0 {
		t.Errorf("restored %d associations: %d without the history of their revision, %d waiting without an outbox row", n, torn, unqueued)
	}
	var live int
	s.write.QueryRowContext(ctx, `SELECT count(*) FROM associations`).Scan(&live)
	if n >= live {
		t.Errorf("the backup holds %d associations and the live database %d: it was not taken mid-burst", n, live)
	}
}

func TestBackupIntoRotates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "live.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := filepath.Join(t.TempDir(), "backups")
	at := time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC)
	var last string
	for i := range 9 {
		path, removed, err := s.BackupInto(ctx, dir, at.Add(time.Duration(i)*time.Hour), 7)
		if err != nil {
			t.Fatal(err)
		}
		if want := max(i+1-7, 0) - max(i-7, 0); removed != want {
			t.Errorf("backup %d removed %d old ones, want %d", i, removed, want)
		}
		last = path
		if i == 0 {
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600) // not a backup
		}
	}
	if filepath.Base(last) != "cartclass-20261202T000000Z.db" {
		t.Errorf("last backup named %s", filepath.Base(last))
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 8 || names[0] != "cartclass-20261201T180000Z.db" || names[7] != "notes.txt" {
		t.Errorf("backups kept: %v; want the newest 7 and notes.txt", names)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backup folder mode %v, %v", fi.Mode().Perm(), err)
	}
}
