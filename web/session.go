package web

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/sessions"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// SessionStore is what sessions need from storage.
type SessionStore interface {
	PutSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, idHash []byte) (store.Session, error)
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error
	DeleteSubjectSessions(ctx context.Context, subject string) (int64, error)
	DeleteSessionsExcept(ctx context.Context, keep []byte) (int64, error)
	SetSubjectRole(ctx context.Context, subject string, role int, checkedAt time.Time) (int64, error)
	ListSessions(ctx context.Context) ([]store.Session, error)
	DeleteExpired(ctx context.Context, createdBefore, idleBefore time.Time) (int64, error)
	CountSessions(ctx context.Context, createdAfter, seenAfter time.Time) (int, error)
}

// sealer encrypts small values with AES-256-GCM. The first key seals; every key opens, so
// keys can be rotated by putting a new one first.
type sealer struct{ aeads []cipher.AEAD }

func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{}
	for _, k := range keys {
		// Derive a fixed-size AES key so any key of 32 bytes or more works.
		sum := sha256.Sum256(append([]byte("cartclass session seal v1\x00"), k...))
		block, err := aes.NewCipher(sum[:])
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
	}
	if len(s.aeads) == 0 {
		return nil, errors.New("no session key")
	}
	return s, nil
}

// seal encrypts plain, binding it to ad (the row's id hash) so rows cannot be swapped.
func (s *sealer) seal(plain, ad []byte) []byte {
	nonce := make([]byte, s.aeads[0].NonceSize())
	rand.Read(nonce)
	return s.aeads[0].Seal(nonce, nonce, plain, ad)
}

func (s *sealer) open(sealed, ad []byte) ([]byte, error) {
	for _, a := range s.aeads {
		if len(sealed) < a.NonceSize() {
			continue
		}
		if plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad); err == nil {
			return plain, nil
		}
	}
	return nil, errors.New("sealed data does not open with any session key")
}

// Keys of the values kept in a session.
const (
	keyUser      = "user"
	keyCreatedAt = "created_at"
	// keyRolesChecked is when the user's role was last read from the identity provider.
	// It and the role are kept in plain columns of the session row (so one re-check
	// updates every session of a person); New copies them into the values.
	keyRolesChecked = "roles_checked"
)

func init() {
	gob.Register(User{})
	gob.Register(time.Time{})
}

// sessionStore is a gorilla/sessions Store backed by SQLite: the cookie carries only a
// random 256-bit id; the values live server-side, sealed, under a hash of the id. Idle and
// absolute lifetimes are enforced here, on the server, at each request from the sign-in
// time and the limits configured now: lowering a limit ends older sessions at once.
type sessionStore struct {
	db     SessionStore
	seal   *sealer
	idle   time.Duration
	max    time.Duration
	secure bool
	now    func() time.Time
	log    *slog.Logger
}

// cookieName is the session cookie's name: __Host- prefixed over https, so it can only
// have been set by this origin, on path /, with Secure.
func (st *sessionStore) cookieName() string {
	if st.secure {
		return "__Host-cartclass_session"
	}
	return "cartclass_session"
}

func (st *sessionStore) options() *sessions.Options {
	return &sessions.Options{Path: "/", HttpOnly: true, Secure: st.secure, SameSite: http.SameSiteLaxMode}
}

// Get returns the request's session, cached for the request by gorilla's registry.
func (st *sessionStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(st, name)
}

// New loads the session named by the request's cookie, or returns a new empty one when there
// is none, it is unknown, tampered with, expired or idle: a bad cookie simply means "signed
// out". Only a failure to read the database is an error (a 500, not a sign-out).
func (st *sessionStore) New(r *http.Request, name string) (*sessions.Session, error) {
	s := sessions.NewSession(st, name)
	s.Options = st.options()
	s.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return s, nil
	}
	id, ok := decodeID(c.Value)
	if !ok {
		return s, nil
	}
	h := hashID(id)
	row, err := st.db.GetSession(r.Context(), h)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return s, err
		}
		return s, nil
	}
	now := st.now()
	if st.ended(row, now) {
		if err := st.db.DeleteSession(r.Context(), h); err != nil {
			st.log.Warn("expired session not deleted", "err", err) // the clean-up will
		}
		return s, nil
	}
	plain, err := st.seal.open(row.Data, h)
	if err != nil {
		return s, nil // sealed with a retired key: signed out
	}
	if err := gob.NewDecoder(bytes.NewReader(plain)).Decode(&s.Values); err != nil {
		return s, nil
	}
	s.ID, s.IsNew = c.Value, false
	if u, ok := s.Values[keyUser].(User); ok {
		// The row's role is current: a re-check may have changed it for every session of
		// this person. A row from before re-checks existed counts as checked at sign-in.
		checked := row.RolesCheckedAt
		if checked.IsZero() {
			checked = row.CreatedAt
		} else {
			u.Role = Role(row.Role)
		}
		s.Values[keyUser] = u
		s.Values[keyRolesChecked] = checked
	}
	// Record activity at most once a minute so reads stay reads. A page refreshing itself
	// on a timer is not the admin's activity: an open sync panel must not keep a
	// session alive forever.
	if now.Sub(row.LastSeenAt) > time.Minute && !isPoll(r) {
		// Best effort: a busy database must not sign a valid session out; the next
		// request records the activity instead.
		if err := st.db.TouchSession(r.Context(), h, now); err != nil && r.Context().Err() == nil {
			st.log.Warn("session activity not recorded", "err", err)
		}
	}
	return s, nil
}

// ended reports whether row is past its absolute lifetime or idle for too long at now,
// with the limits configured now.
func (st *sessionStore) ended(row store.Session, now time.Time) bool {
	return !now.Before(row.CreatedAt.Add(st.max)) || now.Sub(row.LastSeenAt) >= st.idle
}

// Save writes the session and its cookie. MaxAge < 0 deletes both. An empty ID (a new
// session, or one whose ID was cleared to rotate it) gets a fresh random ID.
func (st *sessionStore) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	if s.Options.MaxAge < 0 {
		if id, ok := decodeID(s.ID); ok {
			if err := st.db.DeleteSession(r.Context(), hashID(id)); err != nil {
				return err
			}
		}
		gone := *st.options()
		gone.MaxAge = -1
		http.SetCookie(w, sessions.NewCookie(s.Name(), "", &gone))
		return nil
	}
	now := st.now()
	if s.ID == "" {
		id := make([]byte, 32)
		rand.Read(id)
		s.ID = base64.RawURLEncoding.EncodeToString(id)
		s.Values[keyCreatedAt] = now
	}
	created, _ := s.Values[keyCreatedAt].(time.Time)
	if created.IsZero() {
		created = now
		s.Values[keyCreatedAt] = now
	}
	id, _ := decodeID(s.ID)
	h := hashID(id)
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(s.Values); err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	row := store.Session{IDHash: h, Data: st.seal.seal(buf.Bytes(), h), CreatedAt: created, LastSeenAt: now}
	if u, ok := s.Values[keyUser].(User); ok {
		row.Subject, row.Name, row.Role = u.Subject, u.Name, int(u.Role)
		row.RolesCheckedAt, _ = s.Values[keyRolesChecked].(time.Time)
	}
	err := st.db.PutSession(r.Context(), row)
	if err != nil {
		return err
	}
	// No Max-Age: the cookie ends with the browser; the server enforces the lifetimes.
	http.SetCookie(w, sessions.NewCookie(s.Name(), s.ID, st.options()))
	return nil
}

func decodeID(v string) ([]byte, bool) {
	id, err := base64.RawURLEncoding.DecodeString(v)
	return id, err == nil && len(id) == 32
}

func hashID(id []byte) []byte {
	sum := sha256.Sum256(id)
	return sum[:]
}

// pollers are the ids of the elements that refresh themselves on a timer.
var pollers = map[string]bool{views.SyncStatusID: true, views.SyncStatsID: true, views.EmptyStateID: true}

// isPoll reports whether r is a timed refresh rather than something the admin did.
func isPoll(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("HX-Request") == "true" && pollers[r.Header.Get("HX-Trigger")]
}

// RunSessionCleanup deletes expired sessions and abandoned sign-ins at once and then every
// interval until ctx is done, so neither table grows without bound (an expired session is
// refused on use anyway; this removes the ones never used again). It also purges the
// associations deleted more than store.DeletedFor ago whose removal from Intune is done:
// past then they are no longer listed nor restorable. With CARTCLASS_HISTORY_KEEP set, it
// prunes the history entries older than that too (the only way an entry is deleted).
func (s *Server) RunSessionCleanup(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := s.now()
		n, err := s.store.DeleteExpired(ctx, now.Add(-s.cfg.SessionMax), now.Add(-s.cfg.SessionIdle))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("session cleanup failed", "err", err)
		case n > 0:
			s.log.Debug("expired sessions deleted", "count", n)
		}
		n, err = s.store.PurgeDeleted(ctx, now.Add(-store.DeletedFor))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("purge of deleted associations failed", "err", err)
		case n > 0:
			s.log.Info("deleted associations purged", "count", n, "deleted_before", now.Add(-store.DeletedFor))
		}
		n, err = s.store.PurgeImports(ctx, now.Add(-importKeptFor))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("purge of expired import previews failed", "err", err)
		case n > 0:
			s.log.Debug("expired import previews purged", "count", n)
		}
		if keep := s.cfg.HistoryKeep; keep > 0 {
			n, err = s.store.PruneHistory(ctx, now.Add(-keep))
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("history prune failed", "err", err)
			case n > 0:
				s.log.Info("old history entries pruned", "count", n, "made_before", now.Add(-keep))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
