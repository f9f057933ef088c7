package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Backups: a consistent copy of the live database, made while the server runs. SQLite's
// VACUUM INTO reads one snapshot (a read transaction: saves go on meanwhile) and writes a
// compact, self-contained file, with no -wal to carry along. Restoring is copying that
// file into place while cartclass is stopped (see the README).

// BackupPrefix and BackupSuffix frame the names of rotating backups:
// cartclass-20261201T161500Z.db.
const (
	BackupPrefix = "cartclass-"
	BackupSuffix = ".db"
)

// Backup writes a consistent copy of the database to path, which must not exist yet; the
// file is created 0600 (it holds sessions and sealed tokens). It uses a connection of its
// own, so that neither the writer nor the read pool waits for it.
func (s *Store) Backup(ctx context.Context, path string) error { return BackupFile(ctx, s.path, path) }

// BackupFile is Backup of the database file db, without opening it as a Store: nothing
// is migrated, so a newer cartclass can back up an older one's database. db must exist.
func BackupFile(ctx context.Context, db, path string) error {
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("there is no database at %s (CARTCLASS_DB names it)", db)
	} else if err != nil {
		return fmt.Errorf("backup of %s: %w", db, err)
	}
	path = filepath.Clean(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists already: a backup never overwrites a file, choose a new name", path)
	}
	if err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	f.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(path) // never leave half a backup that looks like one
		}
	}()
	src, err := sql.Open("sqlite", dsn(db, url.Values{"_pragma": {busyTimeout}}))
	if err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	defer src.Close()
	src.SetMaxOpenConns(1)
	// VACUUM INTO wants an absent or empty file: the empty 0600 one keeps its mode.
	if _, err := src.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	var ok string
	check, err := sql.Open("sqlite", dsn(path, url.Values{"mode": {"ro"}}))
	if err != nil {
		return fmt.Errorf("backup to %s: check: %w", path, err)
	}
	defer check.Close()
	if err := check.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&ok); err != nil || ok != "ok" {
		return fmt.Errorf("backup to %s: the copy failed its check: %v %s", path, err, ok)
	}
	done = true
	return nil
}

// BackupInto writes a backup into dir named for at (UTC, to the second), then deletes
// the oldest of dir's rotating backups beyond keep. It returns the new file's path and
// how many old ones it deleted.
func (s *Store) BackupInto(ctx context.Context, dir string, at time.Time, keep int) (string, int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("backup into %s: %w", dir, err)
	}
	path := filepath.Join(dir, BackupPrefix+at.UTC().Format("20060102T150405Z")+BackupSuffix)
	if err := s.Backup(ctx, path); err != nil {
		return "", 0, err
	}
	removed, err := pruneBackups(dir, max(keep, 1))
	return path, removed, err
}

// pruneBackups deletes the oldest rotating backups in dir (by name, which is by time)
// beyond the newest keep. Other files are left alone.
func pruneBackups(dir string, keep int) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("prune backups in %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, BackupPrefix) && strings.HasSuffix(n, BackupSuffix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	removed := 0
	var errs []error
	for _, n := range names[:max(len(names)-keep, 0)] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
