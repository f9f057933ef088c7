package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A database path Open cannot use is refused with the path, the reason in plain words and
// what to check, never a bare SQLite code.

// wantOpenError opens path and checks the refusal names the path, CARTCLASS_DB and reason.
func wantOpenError(t *testing.T, path, reason string) {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err == nil {
		s.Close()
	}
	checkOpenError(t, err, path, reason)
}

func checkOpenError(t *testing.T, err error, path, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Open(%s) succeeded; want it refused: %s", path, reason)
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.Contains(msg, "database "+path+" (CARTCLASS_DB): ") {
		t.Errorf("message does not name the path and CARTCLASS_DB:\n%s", msg)
	}
	if !strings.Contains(msg, reason) {
		t.Errorf("message lacks %q:\n%s", reason, msg)
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Path != path {
		t.Errorf("error %T is no *OpenError for %s", err, path)
	}
	for _, jargon := range []string{"SQLITE_", "(5)", "(14)", "(26)", "unable to open database file"} {
		if strings.Contains(msg, jargon) {
			t.Errorf("message shows SQLite's code %q instead of plain words:\n%s", jargon, msg)
		}
	}
}

// readOnly makes path (a file or a folder) impossible for this process to write. An
// ordinary user gets chmod; root ignores modes (tests often run as root in CI), so root
// gets the immutable attribute, and the test is skipped where that is not allowed.
func readOnly(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(path, 0o700) })
		return
	}
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Skip("running as root without chattr: cannot make a path read-only for root")
	}
	if out, err := exec.Command(chattr, "+i", path).CombinedOutput(); err != nil {
		t.Skipf("running as root and chattr +i is refused here (%v: %s): cannot make a path read-only for root", err, out)
	}
	t.Cleanup(func() { exec.Command(chattr, "-i", path).Run() })
}

// closedDB makes a database at path with cartclass's schema and closes it, so that its
// -wal and -shm files are gone as after a clean shutdown.
func closedDB(t *testing.T, path string) {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesMissingFolders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "cartclass", "cartclass.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open in folders that do not exist yet: %v", err)
	}
	s.Close()
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("folder made for the database: %v, %v; want mode 0700", fi, err)
	}
}

func TestOpenInAFolderThatCannotBeMade(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("notes"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, filepath.Join(file, "cartclass", "cartclass.db"), "cannot be created: "+file+" is a file, not a folder; check CARTCLASS_DB")

	// A missing folder inside one cartclass may not write.
	locked := filepath.Join(dir, "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	readOnly(t, locked, 0o500)
	wantOpenError(t, filepath.Join(locked, "cartclass", "cartclass.db"), "cannot be created: cartclass may not create the folder "+filepath.Join(locked, "cartclass")+" (permission denied)")
}

func TestOpenOfAFolder(t *testing.T) {
	dir := t.TempDir()
	wantOpenError(t, dir, "is a folder, not a database file; set CARTCLASS_DB to a file in it, such as "+filepath.Join(dir, "cartclass.db"))
}

func TestOpenOfAFileThatIsNoDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cartclass.db")
	// A school's spreadsheet, say, where CARTCLASS_DB was meant to point elsewhere.
	body := strings.Repeat("room,cart\nS201,CART-001\n", 100)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, "is not a SQLite database")
	if b, _ := os.ReadFile(path); string(b) != body {
		t.Error("Open changed the file that is no database")
	}
}

func TestOpenInAFolderCartclassMayNotWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.db")
	closedDB(t, existing)
	readOnly(t, dir, 0o500)

	t.Run("new file", func(t *testing.T) {
		wantOpenError(t, filepath.Join(dir, "cartclass.db"), "cannot be created: cartclass may not write in the folder "+dir+" (permission denied)")
	})
	t.Run("existing file", func(t *testing.T) {
		// The file itself is writable, but SQLite must create its -wal and -shm beside it.
		wantOpenError(t, existing, "its folder "+dir+" is read-only for the user cartclass runs as, and SQLite keeps existing.db-wal and existing.db-shm beside the database")
	})
}

func TestOpenOfAReadOnlyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cartclass.db")
	closedDB(t, path)
	readOnly(t, path, 0o400)
	wantOpenError(t, path, "is read-only for the user cartclass runs as (permission denied writing it); check the file's owner and permissions")
}

// A database another program holds with an exclusive lock: Open waits the busy timeout
// for it, then says who is likely to hold it, rather than hanging or "database is locked".
func TestOpenOfALockedDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cartclass.db")
	closedDB(t, path)
	other, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	ctx := context.Background()
	// Exclusive locking mode keeps the lock after a write, even from readers.
	for _, q := range []string{"PRAGMA locking_mode=EXCLUSIVE", "PRAGMA user_version = 99"} {
		if _, err := other.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		s, err := Open(context.Background(), path)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		checkOpenError(t, err, path, "is locked by another program (is another cartclass running on it?); cartclass waited 10 seconds for it to let go")
	case <-time.After(30 * time.Second):
		t.Fatal("Open of a locked database still waiting after 30 s")
	}
	if d := time.Since(start); d < 9*time.Second {
		t.Errorf("Open gave up after %v, before the 10 s busy timeout a backup tool may need", d)
	}
}
