package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Session is a server-side session row. IDHash is a hash of the cookie's random id; Data
// is opaque (sealed by the caller).
type Session struct {
	IDHash     []byte
	Subject    string
	Data       []byte
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute end of the session
}

// PutSession inserts or replaces a session.
func (s *Store) PutSession(ctx context.Context, sess Session) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id_hash, subject, data, created_at, last_seen_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id_hash) DO UPDATE SET subject = excluded.subject, data = excluded.data,
			last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at`,
		sess.IDHash, sess.Subject, sess.Data, sess.CreatedAt.UnixNano(), sess.LastSeenAt.UnixNano(), sess.ExpiresAt.UnixNano())
	if err != nil {
		return fmt.Errorf("put session: %w", err)
	}
	return nil
}

// GetSession returns the session with the given id hash, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, idHash []byte) (Session, error) {
	sess := Session{IDHash: idHash}
	var created, seen, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT subject, data, created_at, last_seen_at, expires_at FROM sessions WHERE id_hash = ?`, idHash).
		Scan(&sess.Subject, &sess.Data, &created, &seen, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return sess, ErrNotFound
	}
	if err != nil {
		return sess, fmt.Errorf("get session: %w", err)
	}
	sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, seen).UTC(), time.Unix(0, expires).UTC()
	return sess, nil
}

// TouchSession records activity on a session (for the idle timeout).
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?`, at.UnixNano(), idHash); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession removes a session; removing a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteExpired removes sessions past their absolute end or idle since before idleBefore,
// and logins past their expiry. It returns how many sessions it removed.
func (s *Store) DeleteExpired(ctx context.Context, now, idleBefore time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?`, now.UnixNano(), idleBefore.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM login_requests WHERE expires_at <= ?`, now.UnixNano()); err != nil {
		return 0, fmt.Errorf("delete expired logins: %w", err)
	}
	return res.RowsAffected()
}

// PutLogin records a login in progress.
func (s *Store) PutLogin(ctx context.Context, stateHash, data []byte, expires time.Time) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO login_requests (state_hash, data, expires_at) VALUES (?, ?, ?)`,
		stateHash, data, expires.UnixNano()); err != nil {
		return fmt.Errorf("put login: %w", err)
	}
	return nil
}

// TakeLogin removes and returns a login in progress, so each can be completed only once.
// A missing or expired one is ErrNotFound.
func (s *Store) TakeLogin(ctx context.Context, stateHash []byte) ([]byte, error) {
	var data []byte
	var expires int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM login_requests WHERE state_hash = ? RETURNING data, expires_at`, stateHash).Scan(&data, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("take login: %w", err)
	}
	if !s.Now().Before(time.Unix(0, expires)) {
		return nil, ErrNotFound
	}
	return data, nil
}

// ActorName returns the latest display name recorded for subject on any association, or
// ErrNotFound; it lets pages name people whose sessions are gone.
func (s *Store) ActorName(ctx context.Context, subject string) (string, error) {
	var name string
	err := s.db.QueryRowContext(ctx, `SELECT name FROM (
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
