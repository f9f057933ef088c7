// Package store keeps cartclass's data in SQLite: associations, the outbox of changes
// waiting for Microsoft Graph, the server-side sessions and the users' sealed tokens. It knows nothing of HTTP
// or Graph and never logs; callers get sentinel errors (ErrNotFound, ErrConflict,
// ErrUnchanged) or wrapped errors with context.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Sentinel errors callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("changed by someone else")
	ErrUnchanged = errors.New("nothing changed")
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite database. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// Open opens (creating if needed) the database file at path and applies pending migrations.
// Pragmas go in the DSN so that every pooled connection gets them; transactions begin
// IMMEDIATE so that concurrent writers queue on the busy timeout instead of failing with
// "database is locked" when a read lock would have to be upgraded.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty database path")
	}
	q := url.Values{}
	for _, p := range []string{
		"foreign_keys(1)",
		"busy_timeout(10000)",
		"journal_mode(WAL)",
		"synchronous(FULL)", // an answered save survives power loss, not only a crash
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	// The path goes into a file: URI; escape what SQLite would read as URI syntax so the
	// file opened is exactly the one named.
	escaped := strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F").Replace(path)
	db, err := sql.Open("sqlite", "file:"+escaped+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, Now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// migrate applies the embedded migrations newer than PRAGMA user_version, each in its own
// transaction together with the version bump.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var current int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", base)
		}
		if n <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", n))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		current = n
	}
	return nil
}

// inTx runs fn in an immediate transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
