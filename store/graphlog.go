package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// GraphRequestsKept is how many of an association's Graph requests are kept: recording
// one more drops the oldest (the trigger in migrations/0006_history.sql, which must say
// the same number).
const GraphRequestsKept = 50

// GraphRequest is one request made to Microsoft Graph for an association.
type GraphRequest struct {
	ID            int64
	AssociationID int64
	// HistoryID is the association's newest history entry at or before Revision: the
	// change the request delivered. The store sets it when the request is recorded; 0 when
	// the association had no entry then.
	HistoryID int64
	// Revision is the association's revision the request was made for; 0 when recording
	// means "whatever it is now" (HistoryID is then its newest entry).
	Revision        int64
	At              time.Time // when it was sent; zero when recording means now
	Method          string
	Status          int // the HTTP status answered; 0 when no answer came back
	Duration        time.Duration
	RequestID       string // Graph's request-id; empty without an answer
	ClientRequestID string // the client-request-id sent
	Code            string // Graph's error code when it answered with an error
}

// Failed reports whether the request got no success answer.
func (r GraphRequest) Failed() bool { return r.Status < 200 || r.Status > 299 }

// RecordGraphRequest appends r (its ID and HistoryID are ignored) to the Graph requests of
// r.AssociationID, under the newest history entry at or before r.Revision, and drops the
// association's oldest beyond GraphRequestsKept.
func (s *Store) RecordGraphRequest(ctx context.Context, r GraphRequest) error {
	return s.RecordGraphRequests(ctx, []GraphRequest{r})
}

// RecordGraphRequests records rs in one transaction, one turn of the writer for them all:
// the worker batches its requests so that recording them does not double the writer's
// turns per save.
func (s *Store) RecordGraphRequests(ctx context.Context, rs []GraphRequest) error {
	if len(rs) == 0 {
		return nil
	}
	now := s.Now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			at := r.At
			if at.IsZero() {
				at = now
			}
			// The entry is looked up by revision, not taken as the newest now: an admin's
			// save while the request was in flight is not what it delivered.
			if _, err := tx.ExecContext(ctx, `INSERT INTO graph_requests
					(association_id, history_id, revision, at, method, status, duration_ns, request_id, client_request_id, code)
				VALUES (?1, coalesce((SELECT id FROM history WHERE association_id = ?1 AND (?2 = 0 OR revision <= ?2)
					ORDER BY at DESC, id DESC LIMIT 1), 0), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`,
				r.AssociationID, r.Revision, at.UnixNano(), r.Method, r.Status, r.Duration.Nanoseconds(),
				r.RequestID, r.ClientRequestID, r.Code); err != nil {
				return fmt.Errorf("association %d: %w", r.AssociationID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record graph requests: %w", err)
	}
	return nil
}

const graphRequestsOf = `SELECT id, association_id, history_id, revision, at, method, status, duration_ns,
		request_id, client_request_id, code
	FROM graph_requests WHERE association_id = ?1 AND history_id IN (SELECT value FROM json_each(?2))
	ORDER BY id`

// GraphRequests returns the kept Graph requests of association id made under the history
// entries historyIDs, by entry id, each entry's in the order they were made. Entries
// without requests are absent from the map.
func (s *Store) GraphRequests(ctx context.Context, id int64, historyIDs []int64) (map[int64][]GraphRequest, error) {
	out := map[int64][]GraphRequest{}
	if len(historyIDs) == 0 {
		return out, nil
	}
	ids, err := json.Marshal(historyIDs)
	if err != nil {
		return nil, err
	}
	st, err := s.prepared(ctx, graphRequestsOf)
	if err != nil {
		return nil, fmt.Errorf("graph requests of %d: %w", id, err)
	}
	rows, err := st.QueryContext(ctx, id, string(ids))
	if err != nil {
		return nil, fmt.Errorf("graph requests of %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r         GraphRequest
			at, nanos int64
		)
		if err := rows.Scan(&r.ID, &r.AssociationID, &r.HistoryID, &r.Revision, &at, &r.Method, &r.Status, &nanos,
			&r.RequestID, &r.ClientRequestID, &r.Code); err != nil {
			return nil, fmt.Errorf("graph requests of %d: %w", id, err)
		}
		r.At, r.Duration = time.Unix(0, at).UTC(), time.Duration(nanos)
		out[r.HistoryID] = append(out[r.HistoryID], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("graph requests of %d: %w", id, err)
	}
	return out, nil
}
