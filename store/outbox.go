package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// The states of SyncInfo.State.
const (
	SyncWaiting = "waiting" // queued for Graph
	SyncSynced  = "synced"  // Graph holds the latest revision
	SyncFailed  = "failed"  // Graph rejected it; parked until an edit or Retry
	SyncDeleted = "deleted" // removed in Intune (a 404, or gone from a complete listing); parked until Recreate or Remove
	// SyncChanged: the same field was changed in cartclass and in Intune to different
	// values; parked until an admin keeps Intune's version or pushes theirs.
	SyncChanged = "changed"
)

// ErrLeaseLost is returned by the worker-facing methods when the outbox row is no longer
// leased to the caller (its lease expired and another worker took it, or it is gone). The
// caller must drop the item without recording anything.
var ErrLeaseLost = errors.New("outbox lease lost")

// SyncInfo is where an association stands with Graph.
type SyncInfo struct {
	State string // one of the Sync constants
	// Error is Graph's last error for this association (nil when none). With State
	// waiting it is the reason of the last retry; with failed, why it stopped.
	Error          *SyncError
	SyncedRevision int64 // the local revision Graph is known to hold; 0 before the first push
	Attempts       int   // failed attempts since the last success or edit
	// NextAttemptAt is when the worker next tries; zero when nothing is queued or the
	// association is parked (failed, deleted, changed).
	NextAttemptAt time.Time
	// RemoteFields are Graph's values and ConflictFields the Graph property names changed
	// on both sides, while State is SyncChanged.
	RemoteFields   *Fields
	ConflictFields []string
	// DeletePending is set while an association deleted in cartclass is not yet deleted
	// in Intune.
	DeletePending bool
}

// SyncError is Graph's answer to a failed push, in the short form admins see.
type SyncError struct {
	Status    int    `json:"status,omitempty"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"` // short; the whole text goes to logs
	RequestID string `json:"request_id,omitempty"`
}

// maxSyncMessage bounds the message kept with a SyncError.
const maxSyncMessage = 300

// OutboxItem is a leased outbox row: the association's current state and what the worker
// needs to push it.
type OutboxItem struct {
	Association Association
	// SyncedFields are the fields Graph is known to hold (the base of a PATCH diff); nil
	// before the first successful create, or when Graph's state is unknown.
	SyncedFields *Fields
	Attempts     int
	EnqueuedAt   time.Time
	LeaseUntil   time.Time
	// CreateSent is set when a POST was attempted whose outcome may be unknown: before
	// posting again, list the remote objects and adopt a match.
	CreateSent *SentCreate
}

// SentCreate is a POST that may have reached Graph: when, and what it carried.
type SentCreate struct {
	At       time.Time
	Revision int64
	Fields   Fields
}

// Pushed is what Graph holds after a successful create or update.
type Pushed struct {
	GraphID         string    // required for CompleteCreate; ignored by CompleteUpdate
	GraphCreatedAt  time.Time // zero keeps the stored value
	GraphModifiedAt time.Time // zero keeps the stored value (a 204 PATCH tells nothing)
	Revision        int64     // the local revision that was pushed
	Fields          Fields    // the fields Graph now holds
}

// fieldsWire is Fields as stored in synced_fields and create_sent_fields, with Graph's
// property names and collections never null.
type fieldsWire struct {
	DisplayName   string   `json:"displayName"`
	Description   string   `json:"description"`
	Version       int32    `json:"version"`
	DeviceCartIDs []string `json:"deviceCartIds"`
	ClassroomIDs  []string `json:"classroomIds"`
}

func encodeFields(f Fields) (string, error) {
	w := fieldsWire{f.DisplayName, f.Description, f.Version, f.DeviceCartIDs, f.ClassroomIDs}
	if w.DeviceCartIDs == nil {
		w.DeviceCartIDs = []string{}
	}
	if w.ClassroomIDs == nil {
		w.ClassroomIDs = []string{}
	}
	b, err := json.Marshal(w)
	return string(b), err
}

func decodeFields(s string) (Fields, error) {
	var w fieldsWire
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return Fields{}, err
	}
	return Fields{w.DisplayName, w.Description, w.Version, w.DeviceCartIDs, w.ClassroomIDs}, nil
}

// encodeSyncError renders e for the sync_error column; nil stays NULL.
func encodeSyncError(e *SyncError) (any, error) {
	if e == nil {
		return nil, nil
	}
	c := *e
	if utf8.RuneCountInString(c.Message) > maxSyncMessage {
		c.Message = string([]rune(c.Message)[:maxSyncMessage]) + "…"
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func nanosOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// enqueueEdit queues an edited association, inside the edit's transaction. A row already
// queued is left alone: the worker always pushes the latest state, so edits coalesce. A
// synced or failed association goes back to waiting, due now, with its error and attempt
// count cleared. A deleted one stays parked (the edit is kept locally) until the admin
// chooses Recreate: re-sending would only meet another 404. So does one changed in Intune
// too, until an admin keeps Intune's version or pushes theirs.
func enqueueEdit(ctx context.Context, tx txExec, cur Association, now time.Time) error {
	// Deleted in Intune, or changed there too: parked until the admin chooses.
	if cur.Sync.State == SyncDeleted || cur.Sync.State == SyncChanged {
		_, err := tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at) VALUES (?, ?)
			ON CONFLICT (association_id) DO NOTHING`, cur.ID, now.UnixNano())
		return err
	}
	if cur.Sync.State == SyncWaiting {
		_, err := tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at, next_attempt_at) VALUES (?, ?, ?)
			ON CONFLICT (association_id) DO NOTHING`, cur.ID, now.UnixNano(), now.UnixNano())
		return err
	}
	return requeue(ctx, tx, cur.ID, now)
}

// requeue makes id waiting and due now with no error and no attempts, keeping any
// create_sent_* (an earlier POST may still have to be reconciled).
func requeue(ctx context.Context, tx txExec, id int64, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE associations SET sync_state = 'waiting', sync_error = NULL WHERE id = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at, next_attempt_at) VALUES (?, ?, ?)
		ON CONFLICT (association_id) DO UPDATE SET enqueued_at = excluded.enqueued_at,
			next_attempt_at = excluded.next_attempt_at, attempts = 0, lease_owner = NULL, lease_until = NULL`,
		id, now.UnixNano(), now.UnixNano())
	return err
}

// ClaimOutbox leases to owner, until now+lease, the due outbox row with the oldest
// next_attempt_at whose lease is free or expired (an expired lease belongs to a worker that
// crashed or hung). It returns ErrNotFound when no row is due.
func (s *Store) ClaimOutbox(ctx context.Context, owner string, now time.Time, lease time.Duration) (OutboxItem, error) {
	var item OutboxItem
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var (
			id, enqueued, leaseUntil int64
			sentAt, sentRev          sql.NullInt64
			sentFields               sql.NullString
		)
		err := tx.QueryRowContext(ctx, `UPDATE outbox SET lease_owner = ?, lease_until = ?
			WHERE association_id = (
				SELECT association_id FROM outbox
				WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?
					AND (lease_until IS NULL OR lease_until <= ?)
				ORDER BY next_attempt_at, association_id LIMIT 1)
			RETURNING association_id, attempts, enqueued_at, lease_until,
				create_sent_at, create_sent_revision, create_sent_fields`,
			owner, now.Add(lease).UnixNano(), now.UnixNano(), now.UnixNano()).
			Scan(&id, &item.Attempts, &enqueued, &leaseUntil, &sentAt, &sentRev, &sentFields)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		item.EnqueuedAt = time.Unix(0, enqueued).UTC()
		item.LeaseUntil = time.Unix(0, leaseUntil).UTC()
		if sentAt.Valid {
			item.CreateSent = &SentCreate{At: time.Unix(0, sentAt.Int64).UTC(), Revision: sentRev.Int64}
			if sentFields.Valid {
				if item.CreateSent.Fields, err = decodeFields(sentFields.String); err != nil {
					return fmt.Errorf("create_sent_fields: %w", err)
				}
			}
		}
		if item.Association, err = scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id)); err != nil {
			return err
		}
		var synced sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT synced_fields FROM associations WHERE id = ?`, id).Scan(&synced); err != nil {
			return err
		}
		if synced.Valid {
			f, err := decodeFields(synced.String)
			if err != nil {
				return fmt.Errorf("synced_fields: %w", err)
			}
			item.SyncedFields = &f
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return OutboxItem{}, ErrNotFound
	}
	if err != nil {
		return OutboxItem{}, fmt.Errorf("claim outbox: %w", err)
	}
	return item, nil
}

// NextDue returns when the next queued row becomes claimable (its next attempt, or the end
// of its current lease if later); ErrNotFound when nothing is queued.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var next sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT min(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END)
		FROM outbox WHERE next_attempt_at IS NOT NULL`).Scan(&next)
	if err != nil {
		return time.Time{}, fmt.Errorf("next due: %w", err)
	}
	if !next.Valid {
		return time.Time{}, ErrNotFound
	}
	return time.Unix(0, next.Int64).UTC(), nil
}

// withLease runs fn in a transaction after checking that owner holds the lease on id's
// outbox row; otherwise it returns ErrLeaseLost.
func (s *Store) withLease(ctx context.Context, op string, id int64, owner string, fn func(*sql.Tx) error) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var holder sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT lease_owner FROM outbox WHERE association_id = ?`, id).Scan(&holder)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && holder.String != owner) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		return fn(tx)
	})
	if errors.Is(err, ErrLeaseLost) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("%s %d: %w", op, id, err)
	}
	return nil
}

// MarkCreateSent records, before a POST goes out, that it may reach Graph with sent's
// fields. It replaces an earlier record: the caller has just listed the remote objects and
// found no match for it.
func (s *Store) MarkCreateSent(ctx context.Context, id int64, owner string, sent SentCreate) error {
	fields, err := encodeFields(sent.Fields)
	if err != nil {
		return err
	}
	return s.withLease(ctx, "mark create sent", id, owner, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET create_sent_at = ?, create_sent_revision = ?, create_sent_fields = ?
			WHERE association_id = ?`, sent.At.UnixNano(), sent.Revision, fields, id)
		return err
	})
}

// MarkDeleteSent records, before a DELETE goes out, that it may reach Graph: a restore
// before its answer then knows a later 404 is its doing (see MarkDeleted).
func (s *Store) MarkDeleteSent(ctx context.Context, id int64, owner string, at time.Time) error {
	return s.withLease(ctx, "mark delete sent", id, owner, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET delete_sent_at = ? WHERE association_id = ?`, at.UnixNano(), id)
		return err
	})
}

// ClearCreateSent forgets a POST that Graph answered with a definite refusal (so it
// created nothing).
func (s *Store) ClearCreateSent(ctx context.Context, id int64, owner string) error {
	return s.withLease(ctx, "clear create sent", id, owner, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET create_sent_at = NULL, create_sent_revision = NULL, create_sent_fields = NULL
			WHERE association_id = ?`, id)
		return err
	})
}

// CompleteCreate records a successful create (or the adoption of a remote object the lost
// answer of an earlier POST had created): links id to p.GraphID and records what Graph
// holds. If the association was edited after p.Revision was read, the row stays queued
// (lease released, due now, state waiting) so the edit is pushed as a PATCH; otherwise
// the row is removed and the state becomes synced.
func (s *Store) CompleteCreate(ctx context.Context, id int64, owner string, p Pushed) error {
	if p.GraphID == "" {
		return fmt.Errorf("complete create %d: empty graph id", id)
	}
	return s.complete(ctx, "complete create", id, owner, p)
}

// CompleteUpdate records a successful PATCH (or one found unnecessary), like
// CompleteCreate but keeping the stored graph id.
func (s *Store) CompleteUpdate(ctx context.Context, id int64, owner string, p Pushed) error {
	p.GraphID = ""
	return s.complete(ctx, "complete update", id, owner, p)
}

func (s *Store) complete(ctx context.Context, op string, id int64, owner string, p Pushed) error {
	fields, err := encodeFields(p.Fields)
	if err != nil {
		return err
	}
	now := s.Now().UTC()
	return s.withLease(ctx, op, id, owner, func(tx *sql.Tx) error {
		var graphID any
		if p.GraphID != "" {
			graphID = normGraphID(p.GraphID)
		}
		var revision int64
		err := tx.QueryRowContext(ctx, `UPDATE associations SET
				linked_at = CASE WHEN ?1 IS NULL THEN linked_at ELSE ?7 END,
				graph_id = coalesce(?1, graph_id),
				graph_created_at = coalesce(?2, graph_created_at),
				graph_modified_at = coalesce(?3, graph_modified_at),
				synced_revision = ?4, synced_fields = ?5, based_at = ?7, sync_error = NULL,
				remote_fields = NULL, conflict_fields = NULL,
				sync_state = CASE WHEN revision <= ?4 THEN 'synced' ELSE 'waiting' END
			WHERE id = ?6 RETURNING revision`,
			graphID, nanosOrNull(p.GraphCreatedAt), nanosOrNull(p.GraphModifiedAt),
			p.Revision, fields, id, now.UnixNano()).Scan(&revision)
		if err != nil {
			return err
		}
		if revision <= p.Revision {
			_, err = tx.ExecContext(ctx, `DELETE FROM outbox WHERE association_id = ?`, id)
			return err
		}
		// Edited meanwhile: push the newer state next, as a PATCH now that Graph has it.
		_, err = tx.ExecContext(ctx, `UPDATE outbox SET lease_owner = NULL, lease_until = NULL, attempts = 0,
				next_attempt_at = ?, create_sent_at = NULL, create_sent_revision = NULL, create_sent_fields = NULL,
				delete_sent_at = NULL
			WHERE association_id = ?`, now.UnixNano(), id)
		return err
	})
}

// RetryLater counts a failed attempt, releases the lease and makes the row due at next.
// syncErr (may be nil) is shown with the waiting state.
func (s *Store) RetryLater(ctx context.Context, id int64, owner string, next time.Time, syncErr *SyncError) error {
	return s.release(ctx, "retry later", id, owner, next, syncErr, 1)
}

// Postpone releases the lease and makes the row due at next without counting an attempt:
// the push did not happen through no fault of the record (the whole queue is throttled or
// paused, a sign-in is needed, or the worker is stopping).
func (s *Store) Postpone(ctx context.Context, id int64, owner string, next time.Time, syncErr *SyncError) error {
	return s.release(ctx, "postpone", id, owner, next, syncErr, 0)
}

func (s *Store) release(ctx context.Context, op string, id int64, owner string, next time.Time, syncErr *SyncError, add int) error {
	enc, err := encodeSyncError(syncErr)
	if err != nil {
		return err
	}
	return s.withLease(ctx, op, id, owner, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?,
				lease_owner = NULL, lease_until = NULL WHERE association_id = ?`, add, next.UnixNano(), id); err != nil {
			return err
		}
		if syncErr != nil {
			_, err = tx.ExecContext(ctx, `UPDATE associations SET sync_error = ? WHERE id = ?`, enc, id)
		}
		return err
	})
}

// Fail parks the row with state failed and Graph's error, until the admin edits the
// association or presses Retry. pushed is the revision Graph refused: if the admin saved a
// newer one meanwhile (an edit while the push was in flight), that edit is queued instead,
// since it may be the fix.
func (s *Store) Fail(ctx context.Context, id int64, owner string, syncErr *SyncError, pushed int64) error {
	enc, err := encodeSyncError(syncErr)
	if err != nil {
		return err
	}
	// One transaction: a save between the check and the park would otherwise be parked
	// with the older revision's error.
	return s.withLease(ctx, "fail", id, owner, func(tx *sql.Tx) error {
		var rev int64
		if err := tx.QueryRowContext(ctx, `SELECT revision FROM associations WHERE id = ?`, id).Scan(&rev); err != nil {
			return err
		}
		if rev > pushed {
			return requeue(ctx, tx, id, s.Now().UTC())
		}
		return park(ctx, tx, id, SyncFailed, enc)
	})
}

// MarkDeleted parks the row with state deleted: Graph answered 404 to a PATCH, so the object
// was removed in Intune. Recreate (or Retry) puts it back in the queue.
func (s *Store) MarkDeleted(ctx context.Context, id int64, owner string, syncErr *SyncError) error {
	enc, err := encodeSyncError(syncErr)
	if err != nil {
		return err
	}
	return s.withLease(ctx, "mark deleted", id, owner, func(tx *sql.Tx) error {
		var deleted sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT deleted_at FROM associations WHERE id = ?`, id).Scan(&deleted); err != nil {
			return err
		}
		if deleted.Valid {
			// Deleted in cartclass meanwhile: Intune no longer holding it is the goal.
			return finishDelete(ctx, tx, id)
		}
		var deleteSent sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT delete_sent_at FROM outbox WHERE association_id = ?`, id).Scan(&deleteSent); err != nil {
			return err
		}
		if deleteSent.Valid {
			// Restored while its DELETE was unanswered: that DELETE removed it. Restore
			// means create it again, as a new object.
			if err := unlink(ctx, tx, id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET delete_sent_at = NULL WHERE association_id = ?`, id); err != nil {
				return err
			}
			return requeue(ctx, tx, id, s.Now().UTC())
		}
		return park(ctx, tx, id, SyncDeleted, enc)
	})
}

// park counts the attempt, releases the lease and leaves the row with no next attempt, in
// state (failed or deleted) with the encoded error, until the admin acts.
func park(ctx context.Context, tx *sql.Tx, id int64, state string, enc any) error {
	if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = NULL,
			lease_owner = NULL, lease_until = NULL WHERE association_id = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE associations SET sync_state = ?, sync_error = ? WHERE id = ?`, state, enc, id)
	return err
}

// Retry puts a failed or deleted association back in the queue, due now (the admin's Retry
// button). It returns ErrNotFound when there is no such association and ErrUnchanged when
// it is neither failed nor deleted (a second click, or another admin was quicker).
func (s *Store) Retry(ctx context.Context, id int64) error {
	// A deleted association's refused DELETE may be retried too (nothing else may be).
	return s.requeueParked(ctx, "retry", id, true, func(state string) bool { return state == SyncFailed || state == SyncDeleted }, nil)
}

func (s *Store) Recreate(ctx context.Context, id int64, by Actor) error {
	return s.requeueParked(ctx, "recreate", id, false, func(state string) bool { return state == SyncDeleted }, func(tx *sql.Tx, now time.Time) error {
		if err := unlink(ctx, tx, id); err != nil {
			return err
		}
		return record(ctx, tx, id, change{kind: HistoryRecreated, by: by, at: now})
	})
}

// unlink forgets id's Graph object (its id, times and what it held) and any POST that may
// have created one, so that the association is next created as a new object.
func unlink(ctx context.Context, tx *sql.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE associations SET graph_id = NULL, graph_created_at = NULL,
			graph_modified_at = NULL, synced_revision = 0, synced_fields = NULL, linked_at = NULL, based_at = NULL,
			remote_fields = NULL, conflict_fields = NULL WHERE id = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE outbox SET create_sent_at = NULL, create_sent_revision = NULL,
			create_sent_fields = NULL WHERE association_id = ?`, id)
	return err
}

// requeueParked is an admin's Retry or Re-create: if id's state passes ok, prepare (may be
// nil) runs, given the time of the action, and the row is queued, due now. ErrNotFound: no
// such association; ErrUnchanged: not in a state to act on (a second click, or another
// admin was quicker).
func (s *Store) requeueParked(ctx context.Context, op string, id int64, evenDeleted bool, ok func(state string) bool, prepare func(*sql.Tx, time.Time) error) error {
	now := s.Now().UTC()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var state string
		var deleted sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT sync_state, deleted_at FROM associations WHERE id = ?`, id).Scan(&state, &deleted)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		case deleted.Valid && !(evenDeleted && state == SyncFailed):
			return ErrDeleted
		case !ok(state):
			return ErrUnchanged
		}
		if prepare != nil {
			if err := prepare(tx, now); err != nil {
				return err
			}
		}
		return requeue(ctx, tx, id, now)
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnchanged) && !errors.Is(err, ErrDeleted) {
		return fmt.Errorf("%s %d: %w", op, id, err)
	}
	return err
}

// ExpediteSubject makes due at now every queued (not parked) row whose latest change was
// made by subject, e.g. after that admin signed in again. It returns how many rows moved.
func (s *Store) ExpediteSubject(ctx context.Context, subject string, now time.Time) (int64, error) {
	res, err := s.exec(ctx, `UPDATE outbox SET next_attempt_at = ?
		WHERE next_attempt_at > ? AND association_id IN (SELECT id FROM associations WHERE updated_by_sub = ?)`,
		now.UnixNano(), now.UnixNano(), subject)
	if err != nil {
		return 0, fmt.Errorf("expedite %s: %w", subject, err)
	}
	return res.RowsAffected()
}

// QueueStats returns how many associations wait to be pushed (parked ones, failed or
// deleted, are not counted) and since when the oldest has waited (zero when none).
func (s *Store) QueueStats(ctx context.Context) (depth int, oldestWaiting time.Time, err error) {
	var oldest sql.NullInt64
	err = s.read.QueryRowContext(ctx, `SELECT count(*), min(enqueued_at) FROM outbox WHERE next_attempt_at IS NOT NULL`).
		Scan(&depth, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue stats: %w", err)
	}
	return depth, fromNanos(oldest), nil
}

// PostponedAuthors returns, sorted, the authors of the queued changes whose last error
// has code: a worker starting after a restart must not forget whose sign-in its changes
// await. What the code means is the caller's business.
func (s *Store) PostponedAuthors(ctx context.Context, code string) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT DISTINCT a.updated_by_sub FROM outbox o JOIN associations a ON a.id = o.association_id
		WHERE o.next_attempt_at IS NOT NULL AND json_extract(a.sync_error, '$.code') = ? ORDER BY 1`, code)
	if err != nil {
		return nil, fmt.Errorf("postponed authors: %w", err)
	}
	defer rows.Close()
	var subs []string
	for rows.Next() {
		var sub string
		if err := rows.Scan(&sub); err != nil {
			return nil, fmt.Errorf("postponed authors: %w", err)
		}
		subs = append(subs, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postponed authors: %w", err)
	}
	return subs, nil
}

// LatestPostponement returns the latest next attempt after now of the queued changes whose
// last error had HTTP status (zero when none): a pause such as a Retry-After that must
// outlive a restart.
func (s *Store) LatestPostponement(ctx context.Context, status int, now time.Time) (time.Time, error) {
	var until sql.NullInt64
	if err := s.read.QueryRowContext(ctx, `SELECT max(o.next_attempt_at) FROM outbox o JOIN associations a ON a.id = o.association_id
		WHERE o.next_attempt_at > ? AND json_extract(a.sync_error, '$.status') = ?`, now.UnixNano(), status).Scan(&until); err != nil {
		return time.Time{}, fmt.Errorf("latest postponement: %w", err)
	}
	if !until.Valid {
		return time.Time{}, nil
	}
	return time.Unix(0, until.Int64), nil
}
