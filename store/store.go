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
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("changed by someone else")
	ErrUnchanged = errors.New("nothing changed")
	// ErrDeleted: the association was deleted in cartclass; only Restore applies to it.
	ErrDeleted = errors.New("association deleted")
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite database. It is safe for concurrent use.
//
// Reads go to a fixed pool of query-only connections, all opened at Open; every write goes
// through one connection, taken in arrival order (see lockWriter). SQLite allows one writer at
// a time anyway: queueing writers here, rather than on SQLite's file lock, is what keeps a
// burst of saves from failing with "database is locked".
type Store struct {
	path  string // the database file
	read  *sql.DB
	write *sql.DB
	// gate is held by whoever uses write. Blocked senders on a Go channel are woken in the
	// order they arrived; database/sql's own queue for a free connection is not FIFO.
	gate chan struct{}
	// stmts holds the read pool's prepared statements by their SQL (a fixed set of shapes:
	// queries take their values as arguments), see prepared.
	stmts     sync.Map
	preparing sync.Map // queries being prepared in the background (see readTx)
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// readCacheKiB is each read connection's page cache. SQLite's default (2 MiB) is per
// connection and grows nowhere near this; the bound is here so that memory is fixed by
// the pool size (n × 8 MiB at most) rather than by how many connections load opens.
const readCacheKiB = 8192

// busyTimeout is how long a connection waits for a lock held by another process (a backup
// tool, say). Writers of this process never meet each other's lock: they queue on gate.
// busyWait is the same in words, for the message of a database found locked.
const (
	busyTimeout = "busy_timeout(10000)"
	busyWait    = "10 seconds"
)

// Open opens (creating if needed) the database file at path and applies pending migrations.
// A new database file, its -wal and -shm are readable by the owner only; a missing parent
// directory is created 0700. Pragmas go in the DSN so that every connection gets them.
//
// A path Open cannot use (a folder, another program's file, a file or folder cartclass may
// not write, a database another program holds locked) is an *OpenError saying why in plain
// words; Open gives up on a lock after the busy timeout.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty database path")
	}
	// Lexically, as SQLite itself resolves "..": the file created here is the one it opens.
	path = filepath.Clean(path)
	if err := createFile(path); err != nil {
		return nil, openError(path, err)
	}
	write, err := sql.Open("sqlite", dsn(path, url.Values{
		"_pragma": {
			"foreign_keys(1)",
			busyTimeout,
			"journal_mode(WAL)",
			"synchronous(FULL)", // an answered save survives power loss, not only a crash
		},
		// BEGIN IMMEDIATE: a transaction that reads before it writes holds the write lock
		// from the start, so it can never fail upgrading a read lock.
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, openError(path, err)
	}
	// One connection, kept open for good: SQLite has one writer, and reopening would only
	// throw its page cache away.
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	s := &Store{path: path, write: write, gate: make(chan struct{}, 1), Now: time.Now}
	// Migrations first, on the writer: they set WAL mode (which the readers rely on and
	// cannot set, being query-only) and the schema the readers will query. Then one write
	// even when no migration is due: a file or folder cartclass may read but not write
	// would otherwise open fine and fail at the first save.
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, openError(path, err)
	}
	if err := s.checkWritable(ctx); err != nil {
		write.Close()
		return nil, openError(path, err)
	}
	n := max(4, runtime.NumCPU())
	read, err := sql.Open("sqlite", dsn(path, url.Values{
		"_pragma": {
			"query_only(1)", // a write through the read pool would bypass the gate
			"foreign_keys(1)",
			busyTimeout,
			fmt.Sprintf("cache_size(-%d)", readCacheKiB),
		},
	}))
	if err != nil {
		write.Close()
		return nil, openError(path, err)
	}
	// A fixed pool, every connection idle as long as it lives: under load nothing is
	// opened or closed, and memory stays at n page caches.
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	read.SetConnMaxLifetime(0)
	read.SetConnMaxIdleTime(0)
	s.read = read
	if err := warm(ctx, read, n); err != nil {
		s.Close()
		return nil, openError(path, err)
	}
	return s, nil
}

// checkWritable writes the schema version back as it is: the smallest write there is.
func (s *Store) checkWritable(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
		return err
	})
}

// createFile makes a missing database file 0600 (and its missing parent directories 0700)
// before SQLite opens it: SQLite would create it with the process umask, readable by all,
// and creates -wal and -shm with the main file's mode. An existing file (and its -wal and
// -shm) readable by others, as every database made before this rule is, is made 0600: it
// holds the sessions and sealed tokens.
func createFile(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return errIsDir
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// OpenError is a database path Open cannot use, with the reason in plain words and what
// to check; Err is the underlying error.
type OpenError struct {
	Path   string
	Reason string
	Err    error
}

func (e *OpenError) Error() string { return "database " + e.Path + " (CARTCLASS_DB): " + e.Reason }

func (e *OpenError) Unwrap() error { return e.Err }

// errIsDir is a database path that names a folder.
var errIsDir = errors.New("is a directory")

// openError explains err, met opening the database at path, as an *OpenError when it is a
// problem with the path or the file; anything else keeps its own words.
func openError(path string, err error) error {
	reason := openReason(path, err)
	if reason == "" {
		return fmt.Errorf("open store %s: %w", path, err)
	}
	return &OpenError{Path: path, Reason: reason, Err: err}
}

func openReason(path string, err error) string {
	dir := filepath.Dir(path)
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code; extended codes add detail in the high bits
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return "is locked by another program (is another cartclass running on it?); cartclass waited " + busyWait +
				" for it to let go. Stop the other program, or set CARTCLASS_DB to another file"
		case sqlite3.SQLITE_NOTADB:
			return "is not a SQLite database (it holds something else, or is encrypted); check that CARTCLASS_DB names cartclass's database file"
		case sqlite3.SQLITE_CORRUPT:
			return "is damaged (SQLite finds it malformed); restore the latest backup, or check that CARTCLASS_DB names cartclass's database file"
		case sqlite3.SQLITE_FULL:
			return "cannot grow: the disk holding " + dir + " is full"
		case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR:
			if why := accessReason(path); why != "" {
				return why
			}
			if se.Code()&0xff == sqlite3.SQLITE_READONLY {
				return "is read-only: cartclass can read it but not write it; check the file and its folder " + dir + " (owner, permissions, a read-only mount)"
			}
			return "cannot be opened (" + se.Error() + "); check the file and its folder " + dir + " (owner, permissions, free space)"
		}
		return ""
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, errIsDir):
		return "is a folder, not a database file; set CARTCLASS_DB to a file in it, such as " + filepath.Join(path, "cartclass.db")
	case errors.Is(err, syscall.ENOTDIR):
		if f := fileAncestor(path); f != "" {
			return "cannot be created: " + f + " is a file, not a folder; check CARTCLASS_DB"
		}
		return "cannot be created: part of the path is a file, not a folder; check CARTCLASS_DB"
	case errors.Is(err, syscall.EROFS):
		return "cannot be created or written: " + dir + " is on a read-only file system; set CARTCLASS_DB to a file on a writable disk"
	case errors.As(err, &pe) && errors.Is(err, fs.ErrPermission):
		if pe.Op == "mkdir" {
			return "cannot be created: cartclass may not create the folder " + pe.Path + " (permission denied); create it for the user cartclass runs as, or check CARTCLASS_DB"
		}
		if pe.Op == "chmod" {
			return "cannot be made private to cartclass (permission denied changing the mode of " + pe.Path + "); the file belongs to another user: check its owner, or CARTCLASS_DB"
		}
		return "cannot be created: cartclass may not write in the folder " + dir + " (permission denied); give the user cartclass runs as write access to it, or check CARTCLASS_DB"
	}
	return ""
}

// accessReason finds why SQLite could not open or write the file at path: the file
// itself, or its folder (where SQLite must create the -wal and -shm files beside it).
func accessReason(path string) string {
	dir := filepath.Dir(path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, syscall.EROFS):
		return "is on a read-only file system; set CARTCLASS_DB to a file on a writable disk"
	case errors.Is(err, fs.ErrPermission):
		if r, rerr := os.Open(path); rerr == nil {
			r.Close()
			return "is read-only for the user cartclass runs as (permission denied writing it); check the file's owner and permissions, or CARTCLASS_DB"
		}
		return "cannot be read or written by the user cartclass runs as (permission denied); check the file's owner and permissions, or CARTCLASS_DB"
	case err != nil:
		return ""
	}
	f.Close()
	probe, err := os.CreateTemp(dir, ".cartclass-write-test-*")
	if err == nil {
		probe.Close()
		os.Remove(probe.Name())
		return ""
	}
	base := filepath.Base(path)
	if errors.Is(err, syscall.EROFS) {
		return "is on a read-only file system; set CARTCLASS_DB to a file on a writable disk"
	}
	return "cannot be written: its folder " + dir + " is read-only for the user cartclass runs as, and SQLite keeps " +
		base + "-wal and " + base + "-shm beside the database; give that user write access to the folder, or check CARTCLASS_DB"
}

// fileAncestor is the nearest existing ancestor folder of path that is in fact a file.
func fileAncestor(path string) string {
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			if !fi.IsDir() {
				return d
			}
		} else if errors.Is(err, syscall.ENOTDIR) {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// dsn is the modernc DSN for the file at path with the given parameters.
func dsn(path string, q url.Values) string {
	// The path goes into a file: URI; escape what SQLite would read as URI syntax so the
	// file opened is exactly the one named.
	escaped := strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F").Replace(path)
	return "file:" + escaped + "?" + q.Encode()
}

// warm opens all n connections of the read pool now, so the first requests do not pay for
// opening them (and find any problem with the file at Open, not later).
func warm(ctx context.Context, db *sql.DB, n int) error {
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("open read connection: %w", err)
		}
		conns = append(conns, c)
		// A statement runs the DSN's pragmas and reads the schema into the connection.
		var v int
		if err := c.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v); err != nil {
			return fmt.Errorf("open read connection: %w", err)
		}
	}
	return nil
}

// prepared returns the read pool's statement for query, prepared once and then on each
// connection the first time it runs there (database/sql keeps those). modernc's SQLite
// parses SQL in Go: preparing every query afresh was a sixth of a list page's cost.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.read.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// readRow runs a one-row query on the read pool through its prepared statement.
func (s *Store) readRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.prepared(ctx, query)
	if err != nil {
		// A Row that reports err on Scan: the same as QueryRowContext would give.
		return s.read.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// readTx is a read transaction whose queries use the prepared statements.
type readTx struct {
	s  *Store
	tx *sql.Tx
}

// A transaction holds a pooled connection, and preparing a statement for the pool needs a
// free one: with every connection in a transaction that would wait for ever. So inside a
// transaction a statement not prepared yet runs unprepared this once, and is prepared for
// the pool in the background, by a goroutine that holds no connection while it waits.

func (r readTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := r.s.preparedOrLater(query); st != nil {
		return r.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return r.tx.QueryContext(ctx, query, args...)
}

func (r readTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := r.s.preparedOrLater(query); st != nil {
		return r.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return r.tx.QueryRowContext(ctx, query, args...)
}

// preparedOrLater returns query's prepared statement, or nil after starting to prepare it.
func (s *Store) preparedOrLater(query string) *sql.Stmt {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if _, busy := s.preparing.LoadOrStore(query, true); !busy {
		go func() {
			defer s.preparing.Delete(query)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.prepared(ctx, query) // an error leaves it unprepared: tried again on next use
		}()
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	var rerr error
	if s.read != nil {
		s.stmts.Range(func(_, st any) bool {
			st.(*sql.Stmt).Close()
			return true
		})
		rerr = s.read.Close()
	}
	return errors.Join(rerr, s.write.Close())
}

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.readRow(ctx, "SELECT 1").Scan(&one); err != nil {
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
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
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
			if before := beforeMigration[n]; before != nil {
				if err := before(ctx, tx); err != nil {
					return err
				}
			}
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

// lockWriter takes the writer for the caller, after every writer that asked before it, or
// gives up when ctx ends first. The caller must release it.
func (s *Store) lockWriter(ctx context.Context) error {
	select {
	case s.gate <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unlockWriter hands the writer to the next writer waiting, if any.
func (s *Store) unlockWriter() { <-s.gate }

// inTx runs fn in an immediate transaction on the writer, committing when it returns nil.
// fn must only talk to SQLite: every other writer waits while it runs.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := s.lockWriter(ctx); err != nil {
		return err
	}
	defer s.unlockWriter()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	// Also when fn panics: the one writer connection must not stay inside a transaction.
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// exec runs one writing statement on the writer, in its turn like a transaction.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := s.lockWriter(ctx); err != nil {
		return nil, err
	}
	defer s.unlockWriter()
	return s.write.ExecContext(ctx, query, args...)
}

// beforeMigration holds the steps, by migration number, that SQL alone cannot take; each
// runs in its migration's transaction, before the file.
var beforeMigration = map[int]func(context.Context, *sql.Tx) error{
	5: allowChangedState,
}

// allowChangedState adds 'changed' to the values associations.sync_state may hold. SQLite
// cannot ALTER a CHECK constraint; loosening one changes nothing stored, so it may be done
// by editing the table's definition in sqlite_schema, as SQLite's ALTER TABLE page (§7)
// describes: in a transaction, with the schema version bumped so that every connection
// reads the new definition, and the result checked.
func allowChangedState(ctx context.Context, tx *sql.Tx) error {
	const (
		old = "sync_state IN ('waiting', 'synced', 'failed', 'deleted')"
		new = "sync_state IN ('waiting', 'synced', 'failed', 'deleted', 'changed')"
	)
	var version int64
	if err := tx.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&version); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA writable_schema = ON"); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE sqlite_schema SET sql = replace(sql, ?, ?)
		WHERE type = 'table' AND name = 'associations' AND instr(sql, ?) > 0`, old, new, old)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("allow changed state: the associations table's definition lacks %q", old)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA schema_version = %d", version+1)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA writable_schema = OFF"); err != nil {
		return err
	}
	var result string
	if err := tx.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&result); err != nil {
		return err
	}
	if result != "ok" {
		return fmt.Errorf("allow changed state: integrity check: %s", result)
	}
	return nil
}

// txExec is what the helpers that write part of a change need of its transaction: a
// *sql.Tx, or a stmtTx that prepares each statement once for a transaction of many rows.
type txExec interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stmtTx runs statements in tx, each prepared on first use and then reused: a transaction
// that writes thousands of rows (an import) does not parse the same SQL for each. Close
// releases the statements; the transaction is the caller's.
type stmtTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func newStmtTx(tx *sql.Tx) *stmtTx { return &stmtTx{tx: tx, stmts: map[string]*sql.Stmt{}} }

func (t *stmtTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	st, err := t.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	t.stmts[query] = st
	return st, nil
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := t.stmt(ctx, query)
	if err != nil {
		// A *sql.Row cannot be made to carry err; the unprepared query reports it again.
		return t.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (t *stmtTx) Close() {
	for _, st := range t.stmts {
		st.Close()
	}
}
