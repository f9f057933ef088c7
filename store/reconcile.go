package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// normGraphID is a Graph id as stored: Graph's ids are GUIDs, which compare without
// regard to case, so they are kept lower-cased and a listing that spells one in capitals
// still finds its association.
func normGraphID(id string) string { return strings.ToLower(id) }

// RemoteObject is one object as a read of Intune found it.
type RemoteObject struct {
	GraphID    string
	Fields     Fields
	CreatedAt  time.Time
	ModifiedAt time.Time
}

// Local is what reconciliation knows of one association.
type Local struct {
	Association Association
	// Base is what Graph was last known to hold (nil: unknown).
	Base *Fields
	// Queued: an outbox row exists (a change to push, or parked); Leased: a worker holds
	// it right now, so this read leaves it to that worker.
	Queued, Leased bool
	// Stale: what cartclass knows of Graph for it was written after the page was fetched
	// (a push completed meanwhile): the page is older, and says nothing new.
	Stale bool
	// CreateSent is a POST whose answer was lost (pending creates only).
	CreateSent *SentCreate
}

// VerdictKind is what to do with one remote object.
type VerdictKind int

// The verdicts.
const (
	// VerdictSkip: leave everything as it is (leased, deleted in cartclass, stale, or a
	// duplicate in the listing).
	VerdictSkip VerdictKind = iota
	// VerdictImport: a new association holding Verdict.Base, synced, created by ImportedBy.
	VerdictImport
	// VerdictAdopt: link the pending create AdoptID to this object (its lost POST made it).
	VerdictAdopt
	// VerdictInStep: Graph holds what cartclass holds: synced.
	VerdictInStep
	// VerdictTake: take Intune's values (Verdict.Local, a revision by IntuneActor): synced.
	VerdictTake
	// VerdictPush: cartclass has changes Graph lacks; Verdict.Local may hold Intune's
	// changes to other fields, taken: queued (the worker PATCHes the difference).
	VerdictPush
	// VerdictConflict: the same field changed on both sides: changed in Intune, parked.
	VerdictConflict
)

// Verdict is the caller's decision for one remote object. The store applies it as given.
type Verdict struct {
	Kind      VerdictKind
	AdoptID   int64    // VerdictAdopt
	AdoptRev  int64    // VerdictAdopt: the local revision the object holds
	Local     Fields   // VerdictTake, VerdictPush: cartclass's values after
	Conflicts []string // VerdictConflict: Graph property names
}

// PageResult counts what applying one page did.
type PageResult struct {
	Imported, Adopted, Taken, Pushed, Conflicts, Skipped int
}

// Decider decides one remote object: local is the association linked to it (nil when
// none), pending the unanswered creates no object has been matched to yet. It must be
// pure: it runs inside the page's write transaction.
type Decider func(remote RemoteObject, local *Local, pending []Local) Verdict

// ApplyRemotePage applies one page of a read of Intune in one transaction: it loads the
// associations linked to the page's objects and the unanswered creates, asks decide about
// each object, and applies the verdicts. fetched is when the page was requested: an
// association whose Graph state was recorded after that is marked Stale.
func (s *Store) ApplyRemotePage(ctx context.Context, objs []RemoteObject, fetched time.Time, decide Decider) (PageResult, error) {
	objs = slices.Clone(objs)
	for i := range objs {
		objs[i].GraphID = normGraphID(objs[i].GraphID)
	}
	var res PageResult
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res = PageResult{}
		now := s.Now().UTC()
		linked, err := s.linkedLocals(ctx, tx, objs, fetched, now)
		if err != nil {
			return err
		}
		pending, err := s.pendingCreates(ctx, tx, now)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, o := range objs {
			if seen[o.GraphID] {
				res.Skipped++ // the listing named it twice
				continue
			}
			seen[o.GraphID] = true
			local := linked[o.GraphID]
			v := decide(o, local, pending)
			if err := s.applyVerdict(ctx, tx, o, local, v, now); err != nil {
				return fmt.Errorf("object %s: %w", o.GraphID, err)
			}
			switch v.Kind {
			case VerdictSkip:
				res.Skipped++
			case VerdictImport:
				res.Imported++
			case VerdictAdopt:
				res.Adopted++
				pending = slices.DeleteFunc(pending, func(l Local) bool { return l.Association.ID == v.AdoptID })
			case VerdictTake:
				res.Taken++
			case VerdictPush:
				res.Pushed++
			case VerdictConflict:
				res.Conflicts++
			}
		}
		return nil
	})
	if err != nil {
		return PageResult{}, fmt.Errorf("apply remote page: %w", err)
	}
	return res, nil
}

// localColumns are what a Local needs beyond the association.
const localColumns = ", synced_fields, based_at, lease_owner, lease_until, create_sent_at, create_sent_revision, create_sent_fields"

func (s *Store) scanLocals(rows *sql.Rows, fetched, now time.Time) ([]Local, error) {
	defer rows.Close()
	var out []Local
	for rows.Next() {
		var (
			l                         Local
			sc                        assocScan
			synced, sentFields, owner sql.NullString
			basedAt, until            sql.NullInt64
			sentAt, sentRev           sql.NullInt64
		)
		// scanAssociation reads the leading columns; the rest follow.
		err := rows.Scan(append(sc.dest(), &synced, &basedAt, &owner, &until, &sentAt, &sentRev, &sentFields)...)
		if err != nil {
			return nil, err
		}
		a, err := sc.finish()
		if err != nil {
			return nil, err
		}
		l.Association = a
		if synced.Valid {
			f, err := decodeFields(synced.String)
			if err != nil {
				return nil, fmt.Errorf("association %d synced fields: %w", a.ID, err)
			}
			l.Base = &f
		}
		l.Queued = sc.queued()
		l.Leased = owner.Valid && until.Int64 > now.UnixNano()
		l.Stale = basedAt.Valid && basedAt.Int64 >= fetched.UnixNano()
		if sentAt.Valid {
			l.CreateSent = &SentCreate{At: time.Unix(0, sentAt.Int64).UTC(), Revision: sentRev.Int64}
			if sentFields.Valid {
				if l.CreateSent.Fields, err = decodeFields(sentFields.String); err != nil {
					return nil, fmt.Errorf("association %d create_sent_fields: %w", a.ID, err)
				}
			}
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// linkedLocals loads, by graph id, the associations linked to objs.
func (s *Store) linkedLocals(ctx context.Context, tx *sql.Tx, objs []RemoteObject, fetched, now time.Time) (map[string]*Local, error) {
	ids := make([]string, 0, len(objs))
	for _, o := range objs {
		ids = append(ids, o.GraphID)
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+columns+localColumns+
		" FROM associations LEFT JOIN outbox ON association_id = id WHERE graph_id IN (SELECT value FROM json_each(?))", string(list))
	if err != nil {
		return nil, err
	}
	locals, err := s.scanLocals(rows, fetched, now)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Local, len(locals))
	for i := range locals {
		out[locals[i].Association.GraphID] = &locals[i]
	}
	return out, nil
}

// pendingCreates loads the associations not linked to Graph whose POST may have reached it.
func (s *Store) pendingCreates(ctx context.Context, tx *sql.Tx, now time.Time) ([]Local, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+columns+localColumns+
		" FROM outbox JOIN associations ON association_id = id WHERE create_sent_at IS NOT NULL AND graph_id IS NULL ORDER BY id")
	if err != nil {
		return nil, err
	}
	return s.scanLocals(rows, now, now)
}

func (s *Store) applyVerdict(ctx context.Context, tx *sql.Tx, o RemoteObject, local *Local, v Verdict, now time.Time) error {
	base, err := encodeFields(o.Fields)
	if err != nil {
		return err
	}
	graphTimes := func(id int64) error {
		_, err := tx.ExecContext(ctx, `UPDATE associations SET graph_created_at = coalesce(?, graph_created_at),
			graph_modified_at = coalesce(?, graph_modified_at) WHERE id = ?`,
			nanosOrNull(o.CreatedAt), nanosOrNull(o.ModifiedAt), id)
		return err
	}
	// synced records that Graph holds what id holds now.
	synced := func(id int64) error {
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET synced_fields = ?, based_at = ?, synced_revision = revision,
				sync_state = 'synced', sync_error = NULL, remote_fields = NULL, conflict_fields = NULL WHERE id = ?`,
			base, now.UnixNano(), id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE association_id = ?`, id)
		return err
	}
	switch v.Kind {
	case VerdictSkip:
		return nil
	case VerdictImport:
		f := o.Fields
		carts, rooms, err := encodeIDs(f)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO associations
			(id, graph_id, display_name, description, version, device_cart_ids, classroom_ids, graph_created_at, graph_modified_at,
			 revision, created_at, updated_at, created_by_sub, created_by_name, updated_by_sub, updated_by_name, search_text,
			 sync_state, synced_revision, synced_fields, linked_at, based_at)
			VALUES (`+nextAssociationID+`, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, 'synced', 1, ?, ?, ?)`,
			o.GraphID, f.DisplayName, f.Description, f.Version, carts, rooms, nanosOrNull(o.CreatedAt), nanosOrNull(o.ModifiedAt),
			now.UnixNano(), now.UnixNano(), ImportedBy.Subject, ImportedBy.Name, ImportedBy.Subject, ImportedBy.Name,
			searchText(f), base, now.UnixNano(), now.UnixNano())
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		return record(ctx, tx, id, change{kind: HistoryImported, by: ImportedBy, at: now, changes: initialFields(f)})
	case VerdictAdopt:
		// As CompleteCreate would: link, record what Graph holds, and leave the row due
		// when there is more to do (a newer revision to PATCH, or a delete to send).
		var rev int64
		var deleted sql.NullInt64
		err := tx.QueryRowContext(ctx, `UPDATE associations SET graph_id = ?, linked_at = ?, synced_fields = ?, based_at = ?,
				synced_revision = ?, sync_error = NULL
			WHERE id = ? AND graph_id IS NULL RETURNING revision, deleted_at`,
			o.GraphID, now.UnixNano(), base, now.UnixNano(), v.AdoptRev, v.AdoptID).Scan(&rev, &deleted)
		if err != nil {
			return err
		}
		if err := graphTimes(v.AdoptID); err != nil {
			return err
		}
		if rev <= v.AdoptRev && !deleted.Valid {
			return synced(v.AdoptID)
		}
		_, err = tx.ExecContext(ctx, `UPDATE outbox SET create_sent_at = NULL, create_sent_revision = NULL, create_sent_fields = NULL,
			next_attempt_at = ?, attempts = 0 WHERE association_id = ?`, now.UnixNano(), v.AdoptID)
		return err
	}
	if local == nil {
		return fmt.Errorf("verdict %d without a local association", v.Kind)
	}
	id, a := local.Association.ID, local.Association
	if v.Kind == VerdictInStep && a.Sync.State == SyncSynced && !local.Queued && local.Base != nil &&
		local.Base.Equal(o.Fields) && a.GraphModifiedAt.Equal(o.ModifiedAt) && a.GraphCreatedAt.Equal(o.CreatedAt) {
		return nil // nothing new (most objects of most reads): writing them would only cost the read
	}
	if err := graphTimes(id); err != nil {
		return err
	}
	switch v.Kind {
	case VerdictInStep:
		return synced(id)
	case VerdictTake:
		if err := setFields(ctx, tx, id, v.Local, IntuneActor, now); err != nil {
			return err
		}
		if err := takenHistory(ctx, tx, id, a.Fields, v.Local, now); err != nil {
			return err
		}
		return synced(id)
	case VerdictPush:
		if !v.Local.Equal(local.Association.Fields) {
			// Intune's changes to other fields are taken; the revision stays the last
			// editor's, whose change is still to be pushed (with their sign-in).
			if err := setFields(ctx, tx, id, v.Local, local.Association.UpdatedBy, local.Association.UpdatedAt); err != nil {
				return err
			}
			if err := takenHistory(ctx, tx, id, a.Fields, v.Local, now); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET synced_fields = ?, based_at = ?,
				remote_fields = NULL, conflict_fields = NULL WHERE id = ?`, base, now.UnixNano(), id); err != nil {
			return err
		}
		if local.Association.Sync.State == SyncFailed {
			return nil // Graph refused this change: it waits for an edit or Retry still
		}
		return requeue(ctx, tx, id, now)
	case VerdictConflict:
		names, err := json.Marshal(v.Conflicts)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET remote_fields = ?, conflict_fields = ?,
				sync_state = 'changed', sync_error = NULL WHERE id = ?`, base, string(names), id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at) VALUES (?, ?)
			ON CONFLICT (association_id) DO UPDATE SET next_attempt_at = NULL, attempts = 0`, id, now.UnixNano())
		return err
	}
	return fmt.Errorf("unknown verdict %d", v.Kind)
}

// takenHistory records, as Intune's, the change from old to new that a read of Intune
// brought (nothing when no field differs).
func takenHistory(ctx context.Context, tx *sql.Tx, id int64, old, new Fields, now time.Time) error {
	changes := diffFields(old, new)
	if len(changes) == 0 {
		return nil
	}
	return record(ctx, tx, id, change{kind: HistoryTaken, by: IntuneActor, at: now, changes: changes})
}

// setFields writes f as id's fields, a new revision by by at t. The caller records the
// change in the history: who made it is not always who the revision is credited to.
func setFields(ctx context.Context, tx *sql.Tx, id int64, f Fields, by Actor, t time.Time) error {
	carts, rooms, err := encodeIDs(f)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE associations SET
			display_name = ?, description = ?, version = ?, device_cart_ids = ?, classroom_ids = ?, search_text = ?,
			revision = revision + 1, updated_at = ?, updated_by_sub = ?, updated_by_name = ?
		WHERE id = ?`, f.DisplayName, f.Description, f.Version, carts, rooms, searchText(f),
		t.UnixNano(), by.Subject, by.Name, id)
	return err
}

// MissingCandidates returns the associations that a complete read of Intune (begun at
// started, holding the graph ids seen) no longer holds: linked before the read began, not
// deleted in cartclass, not in flight. They are what it would mark deleted in Intune; the
// caller is to
// confirm one by one: a listing whose pages shifted while it was read (an object deleted
// meanwhile moves the rest up a page) can miss an object that is still there.
func (s *Store) MissingCandidates(ctx context.Context, seen []string, started time.Time) ([]Association, error) {
	var out []Association
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids, err := s.missing(ctx, tx, seen, nil, false, started)
		if err != nil {
			return err
		}
		for _, id := range ids {
			a, err := scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("missing candidates: %w", err)
	}
	return out, nil
}

// MarkGone parks as deleted in Intune those of ids that Graph answered 404 for and that
// still qualify as MissingCandidates did (linked before started, live, not in flight, not
// deleted already). It returns how many it marked.
func (s *Store) MarkGone(ctx context.Context, ids []int64, started time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		still, err := s.missing(ctx, tx, nil, ids, true, started)
		if err != nil {
			return err
		}
		n, err = s.markGone(ctx, tx, still, "Intune's list of associations no longer holds it, and Graph answers “not found” for it: it was deleted there.")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mark gone: %w", err)
	}
	return n, nil
}

// missing selects, in tx, the live, linked, not-leased associations not deleted in
// Intune already and linked before started: those whose graph id is not in seen, or
// (among set) those among ids.
func (s *Store) missing(ctx context.Context, tx *sql.Tx, seen []string, ids []int64, among bool, started time.Time) ([]int64, error) {
	// Never nil: "null" would make json_each yield one NULL, and NOT IN a list holding
	// NULL is never true (a listing that held nothing would mark nothing gone).
	lowered := make([]string, len(seen))
	for i, id := range seen {
		lowered[i] = normGraphID(id)
	}
	cond, arg := "graph_id NOT IN (SELECT value FROM json_each(?))", any(nil)
	if among {
		if ids == nil {
			ids = []int64{}
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return nil, err
		}
		cond, arg = "id IN (SELECT value FROM json_each(?))", string(list)
	} else {
		list, err := json.Marshal(lowered)
		if err != nil {
			return nil, err
		}
		arg = string(list)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM associations a
		WHERE graph_id IS NOT NULL AND deleted_at IS NULL AND sync_state <> 'deleted' AND linked_at < ? AND `+cond+`
			AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.association_id = a.id AND o.lease_owner IS NOT NULL AND o.lease_until > ?)
		ORDER BY id`,
		started.UnixNano(), arg, s.Now().UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// markGone parks ids as deleted in Intune with a note saying how that was found.
func (s *Store) markGone(ctx context.Context, tx *sql.Tx, ids []int64, why string) (int64, error) {
	note, err := encodeSyncError(&SyncError{Status: 404, Code: "NotInListing", Message: why})
	if err != nil {
		return 0, err
	}
	now := s.Now().UTC()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at) VALUES (?, ?)
			ON CONFLICT (association_id) DO UPDATE SET next_attempt_at = NULL`, id, now.UnixNano()); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE associations SET sync_state = 'deleted', sync_error = ?,
				remote_fields = NULL, conflict_fields = NULL WHERE id = ?`, note, id); err != nil {
			return 0, err
		}
	}
	return int64(len(ids)), nil
}
