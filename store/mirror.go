package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// This file is cartclass as a mirror of Intune: an admin's delete and restore, the two
// choices for an association changed on both sides, and the application of what a read of
// Intune found (imports, changes taken, conflicts, objects gone).

// queueRow is what the admin actions need to know of an association's outbox row.
type queueRow struct {
	exists     bool
	leased     bool // a worker holds it now (its lease has not run out)
	createSent bool // a POST may have reached Graph
}

// loadForAction reads id and its outbox row in tx; ErrNotFound when there is no such row.
func (s *Store) loadForAction(ctx context.Context, tx *sql.Tx, id int64) (Association, queueRow, error) {
	a, err := scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, queueRow{}, ErrNotFound
	}
	if err != nil {
		return a, queueRow{}, err
	}
	var q queueRow
	var leaseOwner sql.NullString
	var leaseUntil, sentAt sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT lease_owner, lease_until, create_sent_at FROM outbox WHERE association_id = ?`, id).
		Scan(&leaseOwner, &leaseUntil, &sentAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return a, q, err
	default:
		q.exists = true
		q.leased = leaseOwner.Valid && leaseUntil.Int64 > s.Now().UnixNano()
		q.createSent = sentAt.Valid
	}
	return a, q, nil
}

// action runs an admin's action on id in one write transaction and returns the
// association as it is afterwards. fn returns ErrUnchanged (nothing to do), ErrDeleted,
// ErrConflict or a *ConflictError to refuse.
func (s *Store) action(ctx context.Context, op string, id int64, fn func(tx *sql.Tx, a Association, q queueRow, now time.Time) error) (Association, error) {
	var out Association
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		a, q, err := s.loadForAction(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := fn(tx, a, q, s.Now().UTC()); err != nil {
			out = a
			return err
		}
		out, err = scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
		return err
	})
	switch {
	case errors.Is(err, ErrUnchanged):
		return out, ErrUnchanged
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrDeleted):
		return Association{}, err
	case err != nil:
		return Association{}, fmt.Errorf("%s %d: %w", op, id, err)
	}
	return out, nil
}

// tombstone marks id deleted in cartclass by by, as a new revision.
func tombstone(ctx context.Context, tx *sql.Tx, id int64, by Actor, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE associations SET deleted_at = ?1, deleted_by_sub = ?2, deleted_by_name = ?3,
			revision = revision + 1, updated_at = ?1, updated_by_sub = ?2, updated_by_name = ?3,
			remote_fields = NULL, conflict_fields = NULL
		WHERE id = ?4`, now.UnixNano(), by.Subject, by.Name, id)
	return err
}

// finishDelete records that Intune holds nothing for the deleted association id: its
// outbox row goes; the tombstone stays for the Deleted filter.
func finishDelete(ctx context.Context, tx *sql.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE association_id = ?`, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE associations SET sync_state = 'synced', sync_error = NULL WHERE id = ?`, id)
	return err
}

// DeleteAssociation deletes id in cartclass (revision must be current) and, in the same
// transaction, queues its removal from Intune:
//   - never sent to Graph (no graph id, no POST that may have reached it): nothing is
//     queued, no request is made;
//   - deleted in Intune already: likewise;
//   - a create in flight or unanswered: the row stays; the worker settles the create
//     first (links or finds no object), then deletes what it created;
//   - otherwise the row is queued, due now: the worker sends DELETE.
//
// ErrUnchanged: already deleted (a repeated click).
func (s *Store) DeleteAssociation(ctx context.Context, id, revision int64, by Actor) (Association, error) {
	return s.action(ctx, "delete association", id, func(tx *sql.Tx, a Association, q queueRow, now time.Time) error {
		if !a.DeletedAt.IsZero() {
			return ErrUnchanged
		}
		if a.Revision != revision {
			return &ConflictError{Current: a}
		}
		if err := tombstone(ctx, tx, id, by, now); err != nil {
			return err
		}
		if err := record(ctx, tx, id, change{kind: HistoryDeleted, by: by, at: now}); err != nil {
			return err
		}
		switch {
		case a.GraphID == "" && !q.createSent, a.GraphID != "" && a.Sync.State == SyncDeleted:
			// A lease held without a POST sent is dropped with the row: the worker's
			// MarkCreateSent then finds the lease lost, and posts nothing.
			return finishDelete(ctx, tx, id)
		case q.leased:
			// The attempt in flight finds a newer revision when it completes and leaves
			// the row due; the worker's next claim sees the tombstone.
			return nil
		}
		return requeue(ctx, tx, id, now)
	})
}

// RestoreAssociation undoes a delete in cartclass. While the DELETE has not been sent the
// association simply stays (its row is pushed like any: usually nothing to send). Once
// Intune holds nothing for it, it is queued to be created again as a new object.
// ErrUnchanged: not deleted; ErrNotFound: deleted more than DeletedFor ago.
func (s *Store) RestoreAssociation(ctx context.Context, id int64, by Actor) (Association, error) {
	return s.action(ctx, "restore association", id, func(tx *sql.Tx, a Association, q queueRow, now time.Time) error {
		if a.DeletedAt.IsZero() {
			return ErrUnchanged
		}
		if a.DeletedAt.Before(now.Add(-DeletedFor)) {
			return ErrNotFound // past the 30 days: no longer listed, and about to be purged
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET deleted_at = NULL, deleted_by_sub = '', deleted_by_name = '',
				revision = revision + 1, updated_at = ?, updated_by_sub = ?, updated_by_name = ? WHERE id = ?`,
			now.UnixNano(), by.Subject, by.Name, id); err != nil {
			return err
		}
		if err := record(ctx, tx, id, change{kind: HistoryRestored, by: by, at: now}); err != nil {
			return err
		}
		switch {
		case q.leased:
			// A DELETE (or create) in flight: CompleteDelete sees the restore and queues
			// the create; CompleteCreate sees the newer revision and leaves the row due.
			return nil
		case !q.exists:
			if err := unlink(ctx, tx, id); err != nil {
				return err
			}
		}
		return requeue(ctx, tx, id, now)
	})
}

// RemoveLocal is "Remove from cartclass" for an association deleted in Intune: it becomes
// deleted in cartclass too, with no request to Graph. ErrUnchanged: not deleted in Intune
// (re-created meanwhile, or removed already).
func (s *Store) RemoveLocal(ctx context.Context, id int64, by Actor) (Association, error) {
	return s.action(ctx, "remove association", id, func(tx *sql.Tx, a Association, q queueRow, now time.Time) error {
		if a.Sync.State != SyncDeleted || !a.DeletedAt.IsZero() || q.leased {
			return ErrUnchanged
		}
		if err := tombstone(ctx, tx, id, by, now); err != nil {
			return err
		}
		if err := record(ctx, tx, id, change{kind: HistoryRemoved, by: by, at: now}); err != nil {
			return err
		}
		return finishDelete(ctx, tx, id)
	})
}

// changedAction checks what both choices for a SyncChanged association require.
func changedAction(a Association, revision int64) error {
	switch {
	case !a.DeletedAt.IsZero():
		return ErrDeleted
	case a.Sync.State != SyncChanged || a.Sync.RemoteFields == nil:
		return ErrUnchanged
	case a.Revision != revision:
		return &ConflictError{Current: a}
	}
	return nil
}

// syncedFields reads what Graph was last known to hold for id (nil: unknown).
func syncedFields(ctx context.Context, tx *sql.Tx, id int64) (*Fields, error) {
	var enc sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT synced_fields FROM associations WHERE id = ?`, id).Scan(&enc); err != nil {
		return nil, err
	}
	if !enc.Valid {
		return nil, nil
	}
	f, err := decodeFields(enc.String)
	return &f, err
}

// KeepIntune resolves a conflict with Intune's values for the fields changed on both
// sides. Every other field follows the usual rule: what only Intune changed is taken, what
// only cartclass changed is kept, and then still sent (a PATCH of just those fields); when
// nothing of cartclass's is left, no request is made.
func (s *Store) KeepIntune(ctx context.Context, id, revision int64, by Actor) (Association, error) {
	return s.resolveConflict(ctx, "keep intune", id, revision, by, true)
}

// PushMine resolves a conflict with cartclass's values for the fields changed on both
// sides; what only Intune changed in other fields is taken, so that the PATCH sends only
// cartclass's changes (after the worker reads the object once more).
func (s *Store) PushMine(ctx context.Context, id, revision int64, by Actor) (Association, error) {
	return s.resolveConflict(ctx, "push mine", id, revision, by, false)
}

func (s *Store) resolveConflict(ctx context.Context, op string, id, revision int64, by Actor, takeIntune bool) (Association, error) {
	return s.action(ctx, op, id, func(tx *sql.Tx, a Association, q queueRow, now time.Time) error {
		if err := changedAction(a, revision); err != nil {
			return err
		}
		base, err := syncedFields(ctx, tx, id)
		if err != nil {
			return err
		}
		remote := *a.Sync.RemoteFields
		out := resolve(base, a.Fields, remote, a.Sync.ConflictFields, takeIntune)
		if !out.Equal(a.Fields) {
			if err := setFields(ctx, tx, id, out, by, now); err != nil {
				return err
			}
		}
		// Recorded whether or not a field changed: the choice itself is a change of state.
		choice := ChoicePushMine
		if takeIntune {
			choice = ChoiceKeepIntune
		}
		if err := record(ctx, tx, id, change{kind: HistoryResolved, choice: choice, by: by, at: now,
			changes: diffFields(a.Fields, out)}); err != nil {
			return err
		}
		// Intune's values are the base now: the next comparison, and the PATCH, start there.
		enc, err := encodeFields(remote)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET synced_fields = ?, based_at = ?,
				remote_fields = NULL, conflict_fields = NULL WHERE id = ?`, enc, now.UnixNano(), id); err != nil {
			return err
		}
		if out.Equal(remote) {
			if _, err := tx.ExecContext(ctx, `UPDATE associations SET synced_revision = revision, sync_state = 'synced',
					sync_error = NULL WHERE id = ?`, id); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `DELETE FROM outbox WHERE association_id = ?`, id)
			return err
		}
		return requeue(ctx, tx, id, now)
	})
}

// PurgeDeleted removes the associations deleted in cartclass before before whose removal
// from Intune is done (or was never needed). It returns how many went.
func (s *Store) PurgeDeleted(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM associations WHERE deleted_at IS NOT NULL AND deleted_at < ?
		AND NOT EXISTS (SELECT 1 FROM outbox WHERE association_id = id)`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("purge deleted: %w", err)
	}
	return res.RowsAffected()
}

// CompleteDelete records that Intune holds nothing for a deleted association: the DELETE
// answered 204 or 404, or nothing had ever been created. If the admin restored it while the
// DELETE was in flight, it is queued to be created again as a new object.
func (s *Store) CompleteDelete(ctx context.Context, id int64, owner string) error {
	now := s.Now().UTC()
	return s.withLease(ctx, "complete delete", id, owner, func(tx *sql.Tx) error {
		var deleted sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT deleted_at FROM associations WHERE id = ?`, id).Scan(&deleted); err != nil {
			return err
		}
		if deleted.Valid {
			return finishDelete(ctx, tx, id)
		}
		if err := unlink(ctx, tx, id); err != nil {
			return err
		}
		return requeue(ctx, tx, id, now)
	})
}

// TakeRemote records, under the lease, what the worker read from Graph just before a
// PATCH: the association's fields become local (a new revision when they change, by by,
// or keeping the last editor when by is nil: their change is still to be pushed) and
// Graph's values base. It returns the association as it now is, or ErrConflict when the
// association was saved again since revision (the item should be claimed afresh).
func (s *Store) TakeRemote(ctx context.Context, id int64, owner string, revision int64, local, base Fields, modified time.Time, by *Actor) (Association, error) {
	enc, err := encodeFields(base)
	if err != nil {
		return Association{}, err
	}
	now := s.Now().UTC()
	var out Association
	err = s.withLease(ctx, "take remote", id, owner, func(tx *sql.Tx) error {
		cur, err := scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
		if err != nil {
			return err
		}
		if cur.Revision != revision {
			return ErrConflict
		}
		if !cur.Fields.Equal(local) {
			who := cur.UpdatedBy
			if by != nil {
				who = *by
			}
			if err := setFields(ctx, tx, id, local, who, now); err != nil {
				return err
			}
			// Whoever the revision is credited to, the values came from Intune.
			if err := record(ctx, tx, id, change{kind: HistoryTaken, by: IntuneActor, at: now,
				changes: diffFields(cur.Fields, local)}); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET synced_fields = ?, based_at = ?,
				graph_modified_at = coalesce(?, graph_modified_at) WHERE id = ?`,
			enc, now.UnixNano(), nanosOrNull(modified), id); err != nil {
			return err
		}
		out, err = scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
		return err
	})
	if errors.Is(err, ErrConflict) {
		return Association{}, ErrConflict
	}
	return out, err
}

// MarkChanged parks a leased item as changed in Intune: remote is what Graph holds,
// conflicts the Graph property names changed on both sides. Nothing is sent for it until
// an admin chooses. The base stays what it was: the next read compares against it again.
// ErrConflict: the association was saved (or deleted) again since revision was read, so
// the comparison is stale; the row is left due, to be claimed afresh.
func (s *Store) MarkChanged(ctx context.Context, id int64, owner string, revision int64, remote Fields, conflicts []string) error {
	rem, err := encodeFields(remote)
	if err != nil {
		return err
	}
	names, err := json.Marshal(conflicts)
	if err != nil {
		return err
	}
	err = s.withLease(ctx, "mark changed", id, owner, func(tx *sql.Tx) error {
		var rev int64
		var deleted sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT revision, deleted_at FROM associations WHERE id = ?`, id).Scan(&rev, &deleted); err != nil {
			return err
		}
		if rev != revision || deleted.Valid {
			return ErrConflict
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET remote_fields = ?, conflict_fields = ? WHERE id = ?`,
			rem, string(names), id); err != nil {
			return err
		}
		return park(ctx, tx, id, SyncChanged, nil)
	})
	if errors.Is(err, ErrConflict) {
		return ErrConflict
	}
	return err
}

// ExpediteUnanswered makes due now every queued create whose earlier POST may have
// reached Graph (its answer was lost), e.g. after a read of Intune that could adopt them.
func (s *Store) ExpediteUnanswered(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.exec(ctx, `UPDATE outbox SET next_attempt_at = ?
		WHERE create_sent_at IS NOT NULL AND next_attempt_at > ? AND lease_owner IS NULL`, now.UnixNano(), now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("expedite unanswered creates: %w", err)
	}
	return res.RowsAffected()
}

// ReadInfo is one read of Intune: when, how many objects it found, and whether it reached
// the last page (Error says why not).
type ReadInfo struct {
	StartedAt  time.Time
	FinishedAt time.Time
	Objects    int
	Complete   bool
	Error      string
}

// SaveRead records a finished read of Intune, replacing the one before.
func (s *Store) SaveRead(ctx context.Context, r ReadInfo) error {
	_, err := s.exec(ctx, `INSERT INTO graph_reads (id, started_at, finished_at, objects, complete, error)
		VALUES (1, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, finished_at = excluded.finished_at,
			objects = excluded.objects, complete = excluded.complete, error = excluded.error`,
		r.StartedAt.UnixNano(), r.FinishedAt.UnixNano(), r.Objects, r.Complete, r.Error)
	if err != nil {
		return fmt.Errorf("save read: %w", err)
	}
	return nil
}

// LastRead returns the last recorded read of Intune; false when Intune was never read.
func (s *Store) LastRead(ctx context.Context) (ReadInfo, bool, error) {
	var r ReadInfo
	var started, finished int64
	err := s.read.QueryRowContext(ctx, `SELECT started_at, finished_at, objects, complete, error FROM graph_reads WHERE id = 1`).
		Scan(&started, &finished, &r.Objects, &r.Complete, &r.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("last read: %w", err)
	}
	r.StartedAt, r.FinishedAt = time.Unix(0, started).UTC(), time.Unix(0, finished).UTC()
	return r, true, nil
}
