package web

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gorilla/sessions"

	"github.com/cartclass/cartclass/push"
	"github.com/cartclass/cartclass/store"
)

// Roles follow the identity provider: at most every CARTCLASS_ROLE_RECHECK (and whenever a
// push refreshes someone's tokens) cartclass spends the person's refresh token and reads
// their roles and groups from the new ID token. Someone removed from the admin role loses
// it here at their next request after that; someone whose refresh is refused is signed out.

// idClaims are the ID token claims cartclass reads.
type idClaims struct {
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Email             string   `json:"email"`
	Roles             []string `json:"roles"`
	Groups            []string `json:"groups"`
}

// userFromIDToken is the person a verified ID token names, with the role its claims give.
func (s *Server) userFromIDToken(idt *oidc.IDToken, raw string) (User, error) {
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		return User{}, err
	}
	return User{
		Issuer: idt.Issuer, Subject: idt.Subject, Email: c.Email,
		Name:    firstNonEmpty(c.Name, c.PreferredUsername, c.Email, idt.Subject),
		Role:    s.roleOf(idt.Subject, c.Roles, c.Groups),
		IDToken: raw,
	}, nil
}

// recheckTimeout bounds how long a request waits for the provider to re-confirm a role.
const recheckTimeout = 10 * time.Second

// recheckBackoff is how long a provider that could not be reached is left alone before the
// next re-check; meanwhile the person keeps the role last confirmed.
const recheckBackoff = time.Minute

// roleGrace is how many re-check intervals a role may stay unconfirmed (the provider
// cannot be reached) before the person is signed out.
const roleGrace = 3

// roleChecks remembers, per person, when a re-check that failed for now may be tried again.
type roleChecks struct {
	mu    sync.Mutex
	retry map[string]time.Time
}

func (c *roleChecks) due(subject string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !now.Before(c.retry[subject])
}

func (c *roleChecks) postpone(subject string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retry == nil {
		c.retry = map[string]time.Time{}
	}
	c.retry[subject] = until
}

func (c *roleChecks) done(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.retry, subject)
}

// recheckRole re-reads u's role when the session's was confirmed longer than
// CARTCLASS_ROLE_RECHECK ago. It returns the user as they now are, or ok=false when the
// person must sign in again (their sessions are then ended). A provider that cannot be
// reached leaves the role as it was, to be tried again shortly.
func (s *Server) recheckRole(r *http.Request, sess *sessions.Session, u User) (User, bool, error) {
	now := s.now()
	checked, _ := sess.Values[keyRolesChecked].(time.Time)
	if now.Sub(checked) < s.cfg.RoleRecheck || !s.roleChecks.due(u.Subject, now) {
		return u, true, nil
	}
	l := s.subjectLock(u.Subject)
	l.Lock()
	defer l.Unlock()
	if !s.roleChecks.due(u.Subject, s.now()) {
		return u, true, nil // another request failed to reach the provider meanwhile
	}
	// Another request of this person may have re-checked while this one waited.
	if id, ok := decodeID(sess.ID); ok {
		row, err := s.store.GetSession(r.Context(), hashID(id))
		if errors.Is(err, store.ErrNotFound) {
			return User{}, false, nil // ended meanwhile
		}
		if err != nil {
			return u, false, err
		}
		if now.Sub(row.RolesCheckedAt) < s.cfg.RoleRecheck {
			u.Role = Role(row.Role)
			s.remember(sess, u, row.RolesCheckedAt)
			return u, true, nil
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), recheckTimeout)
	defer cancel()
	tok, err := s.loadUserToken(ctx, u.Subject)
	var fresh *User
	if err == nil {
		_, fresh, err = s.refreshUser(ctx, u.Subject, tok)
	}
	switch {
	case errors.Is(err, push.ErrSignInNeeded), err == nil && fresh == nil:
		if err == nil {
			err = errors.New("the provider sent no ID token on refresh, so roles cannot be re-read")
		}
		s.log.Info("roles could not be re-confirmed; signed out", "sub", u.Subject, "reason", err)
		return s.signOutEverywhere(r, sess, u)
	case err != nil && now.Sub(checked) >= roleGrace*s.cfg.RoleRecheck:
		// Unconfirmed for too long (the provider down, or refusing cartclass itself): a
		// person removed from the role must not keep it for the rest of the session.
		s.log.Warn("roles unconfirmed for too long; signed out", "sub", u.Subject, "since", checked, "err", err)
		return s.signOutEverywhere(r, sess, u)
	case err != nil:
		if r.Context().Err() != nil {
			return u, false, r.Context().Err()
		}
		var setup *setupError
		if !errors.As(err, &setup) { // already logged at ERROR, at most every setupLogEvery
			s.log.Warn("role re-check failed; trying again shortly", "sub", u.Subject, "err", err)
		}
		s.roleChecks.postpone(u.Subject, now.Add(recheckBackoff))
		return u, true, nil
	}
	s.roleChecks.done(u.Subject)
	if fresh.Role != u.Role {
		s.log.Info("role changed at the identity provider", "sub", u.Subject, "from", u.Role.String(), "to", fresh.Role.String())
	}
	u.Role, u.Name, u.Email = fresh.Role, fresh.Name, fresh.Email
	s.remember(sess, u, now)
	return u, true, nil
}

// signOutEverywhere ends every session of u (their tokens serve them all) and empties the
// request's cached session, so the rest of this request sees nobody signed in.
func (s *Server) signOutEverywhere(r *http.Request, sess *sessions.Session, u User) (User, bool, error) {
	if _, err := s.store.DeleteSubjectSessions(r.Context(), u.Subject); err != nil {
		return u, false, err
	}
	clear(sess.Values)
	return User{}, false, nil
}

// remember puts a re-checked user into the request's cached session, so every later look
// at it in this request sees the new role.
func (s *Server) remember(sess *sessions.Session, u User, checked time.Time) {
	sess.Values[keyUser] = u
	sess.Values[keyRolesChecked] = checked
}
