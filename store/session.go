package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Session is a server-side session row. IDHash is a hash of the cookie's random id; Data
// is opaque (sealed by the caller). A zero time is stored as 0 and read back as zero.
type Session struct {
	IDHash  []byte
	Subject string
	Name    string // the person's display name, for the admins' Sessions page
	Role    int    // the web layer's role; opaque here
	Data    []byte // sealed by the caller
	// CreatedAt is the sign-in time: lifetimes are computed from it and the limits
	// configured now, so lowering a limit ends older sessions at once.
	CreatedAt  time.Time
	LastSeenAt time.Time
	// RolesCheckedAt is when Role was last read from the identity provider; zero for
	// sessions made before roles were stored (the web layer checks those at once).
	RolesCheckedAt time.Time
}

// PutSession inserts a session or replaces every field of the one with the same IDHash.
func (s *Store) PutSession(ctx context.Context, sess Session) error {
	data := sess.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL; no data is empty data
	}
	_, err := s.exec(ctx, `INSERT INTO sessions (id_hash, subject, name, role, data, created_at, last_seen_at, roles_checked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id_hash) DO UPDATE SET subject = excluded.subject, name = excluded.name, role = excluded.role,
			data = excluded.data, created_at = excluded.created_at, last_seen_at = excluded.last_seen_at,
			roles_checked_at = excluded.roles_checked_at`,
		sess.IDHash, sess.Subject, sess.Name, sess.Role, data,
		nanosOrZero(sess.CreatedAt), nanosOrZero(sess.LastSeenAt), nanosOrZero(sess.RolesCheckedAt))
	if err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	return nil
}

// sessionColumns are what scanSession reads, Data last.
const sessionColumns = `id_hash, subject, name, role, created_at, last_seen_at, roles_checked_at`

func scanSession(row scanner, data *[]byte) (Session, error) {
	var sess Session
	var created, seen, checked int64
	dest := []any{&sess.IDHash, &sess.Subject, &sess.Name, &sess.Role, &created, &seen, &checked}
	if data != nil {
		dest = append(dest, data)
	}
	if err := row.Scan(dest...); err != nil {
		return sess, err
	}
	sess.CreatedAt, sess.LastSeenAt, sess.RolesCheckedAt = timeOrZero(created), timeOrZero(seen), timeOrZero(checked)
	return sess, nil
}

// GetSession returns the session with the given id hash, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, idHash []byte) (Session, error) {
	var data []byte
	sess, err := scanSession(s.readRow(ctx, `SELECT `+sessionColumns+`, data FROM sessions WHERE id_hash = ?`, idHash), &data)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", err)
	}
	sess.Data = data
	return sess, nil
}

// TouchSession records activity on a session (for the idle timeout).
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	if _, err := s.exec(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?`, nanosOrZero(at), idHash); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession removes a session; removing a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.exec(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteSubjectSessions removes every session of subject (signing a person out
// everywhere) and returns how many it removed.
func (s *Store) DeleteSubjectSessions(ctx context.Context, subject string) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM sessions WHERE subject = ?`, subject)
	if err != nil {
		return 0, fmt.Errorf("delete sessions of %s: %w", subject, err)
	}
	return res.RowsAffected()
}

// DeleteSessionsExcept removes every session but the one whose id hash is keep (a nil
// keep removes them all) and returns how many it removed.
func (s *Store) DeleteSessionsExcept(ctx context.Context, keep []byte) (int64, error) {
	// IS NOT, not <>: comparing with NULL would be NULL, and delete nothing.
	res, err := s.exec(ctx, `DELETE FROM sessions WHERE id_hash IS NOT ?`, keep)
	if err != nil {
		return 0, fmt.Errorf("delete other sessions: %w", err)
	}
	return res.RowsAffected()
}

// SetSubjectRole sets role, checked at checkedAt, on every session of subject, so that a
// role read for one of a person's sessions applies to all of them. It returns how many
// sessions it changed.
func (s *Store) SetSubjectRole(ctx context.Context, subject string, role int, checkedAt time.Time) (int64, error) {
	res, err := s.exec(ctx, `UPDATE sessions SET role = ?, roles_checked_at = ? WHERE subject = ?`,
		role, nanosOrZero(checkedAt), subject)
	if err != nil {
		return 0, fmt.Errorf("set role of %s: %w", subject, err)
	}
	return res.RowsAffected()
}

// ListSessions returns every session without its Data, most recently seen first.
func (s *Store) ListSessions(ctx context.Context) ([]Session, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions ORDER BY last_seen_at DESC, id_hash`)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		sess, err := scanSession(rows, nil)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// CountSessions is how many sessions are still signed in: signed in at or after
// createdAfter and seen at or after seenAfter (the two lifetimes DeleteExpired enforces).
func (s *Store) CountSessions(ctx context.Context, createdAfter, seenAfter time.Time) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE created_at >= ? AND last_seen_at >= ?`,
		nanosOrZero(createdAfter), nanosOrZero(seenAfter)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// DeleteExpired removes the sessions signed in before createdBefore (past the absolute
// lifetime) or last seen before idleBefore (idle too long), and returns how many. A zero
// time removes nothing by that rule.
func (s *Store) DeleteExpired(ctx context.Context, createdBefore, idleBefore time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM sessions WHERE created_at < ? OR last_seen_at < ?`,
		nanosOrZero(createdBefore), nanosOrZero(idleBefore))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return res.RowsAffected()
}

// nanosOrZero stores t as Unix nanoseconds, the zero time as 0 (its UnixNano overflows).
func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// timeOrZero reads what nanosOrZero stored.
func timeOrZero(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// ActorName returns the latest display name recorded for subject on any association, or
// ErrNotFound; it lets pages name people whose sessions are gone.
func (s *Store) ActorName(ctx context.Context, subject string) (string, error) {
	var name string
	err := s.read.QueryRowContext(ctx, `SELECT name FROM (
			SELECT updated_by_name AS name, updated_at AS at FROM associations WHERE updated_by_sub = ?
			UNION ALL
			SELECT created_by_name, created_at FROM associations WHERE created_by_sub = ?
		) ORDER BY at DESC LIMIT 1`, subject, subject).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("actor name: %w", err)
	}
	return name, nil
}
