package web

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// readiness is /readyz's answer. It says what works, never how it is configured: no
// issuer, tenant, URL or secret, since anyone can ask.
type readiness struct {
	// Ready is false when cartclass cannot serve: its database does not answer, or the
	// identity provider was never discovered (nobody can sign in). Graph does not count:
	// saves are kept and sent when it answers again.
	Ready            bool       `json:"ready"`
	Database         check      `json:"database"`
	IdentityProvider check      `json:"identity_provider"`
	Graph            graphState `json:"graph"`
}

type check struct {
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// graphState is the last request cartclass made to Microsoft Graph.
type graphState struct {
	// Contacted is false until the first request; OK and the times are then empty.
	Contacted   bool       `json:"contacted"`
	OK          bool       `json:"ok"`
	LastContact *time.Time `json:"last_contact,omitempty"`
	LastStatus  int        `json:"last_status,omitempty"` // 0: no answer came back
	LastSuccess *time.Time `json:"last_success,omitempty"`
	Problem     string     `json:"problem,omitempty"`
}

// rediscoverEvery is how often /readyz may start a discovery of an identity provider that
// was down at start-up (a load balancer asking every few seconds must not hammer it).
const rediscoverEvery = 30 * time.Second

// handleReadyz answers 200 when cartclass can serve (database and identity provider),
// 503 when not, with the state of each part as JSON. It is cheap: the database is pinged;
// the provider and Graph are not called, their last outcome is reported. A provider
// not yet discovered is tried in the background, at most every rediscoverEvery.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	var out readiness
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		if r.Context().Err() != nil {
			return // the asker left: nothing to tell, nothing wrong
		}
		out.Database.Problem = "the database does not answer"
		s.log.Error("readiness: database does not answer", "err", err)
	} else {
		out.Database.OK = true
	}

	if s.oidc.discovered() {
		out.IdentityProvider.OK = true
	} else {
		out.IdentityProvider.Problem = "the identity provider's OpenID configuration could not be read yet"
		s.rediscover()
	}

	c := s.metrics.graphContact()
	if !c.At.IsZero() {
		at := c.At.UTC()
		out.Graph = graphState{Contacted: true, OK: c.OK, LastContact: &at, LastStatus: c.Status, Problem: c.Problem}
		if !c.LastOK.IsZero() {
			ok := c.LastOK.UTC()
			out.Graph.LastSuccess = &ok
		}
	}

	out.Ready = out.Database.OK && out.IdentityProvider.OK
	w.Header().Set("Content-Type", "application/json")
	if !out.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// rediscover starts a discovery of the identity provider in the background, unless one
// started within rediscoverEvery.
func (s *Server) rediscover() {
	now := time.Now().UnixNano()
	last := s.rediscovered.Load()
	if now-last < int64(rediscoverEvery) || !s.rediscovered.CompareAndSwap(last, now) {
		return
	}
	go func() {
		if _, _, err := s.oidc.ready(); err != nil {
			s.log.Warn("identity provider still not discovered", "err", err)
		}
	}()
}
