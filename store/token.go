package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The users' sealed OAuth tokens (delegated pushes, role re-checks): opaque bytes here,
// sealed and opened by the web layer.

// PutUserToken stores (or replaces) the sealed token data of subject.
func (s *Store) PutUserToken(ctx context.Context, subject string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	_, err := s.exec(ctx, `INSERT INTO user_tokens (subject, data, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (subject) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
		subject, data, s.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("put user token: %w", err)
	}
	return nil
}

// GetUserToken returns the sealed token data of subject, or ErrNotFound.
func (s *Store) GetUserToken(ctx context.Context, subject string) ([]byte, error) {
	var data []byte
	err := s.readRow(ctx, `SELECT data FROM user_tokens WHERE subject = ?`, subject).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get user token: %w", err)
	}
	return data, nil
}
