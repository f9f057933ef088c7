package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Fields are the properties of an association an admin edits; they map one to one onto
// Graph's writable properties.
type Fields struct {
	DisplayName   string
	Description   string
	Version       int32
	DeviceCartIDs []string
	ClassroomIDs  []string
}

// Equal reports whether two sets of fields hold the same values.
func (f Fields) Equal(o Fields) bool {
	return f.DisplayName == o.DisplayName &&
		f.Description == o.Description &&
		f.Version == o.Version &&
		slices.Equal(f.DeviceCartIDs, o.DeviceCartIDs) &&
		slices.Equal(f.ClassroomIDs, o.ClassroomIDs)
}

// Actor is who made a change: the identity provider's subject and a display name.
type Actor struct {
	Subject string
	Name    string
}

// Association is a cart-to-class association as stored locally.
type Association struct {
	ID int64
	Fields
	// GraphID is Graph's id once the association exists there; empty before.
	GraphID         string
	GraphCreatedAt  time.Time // zero until Graph reports it
	GraphModifiedAt time.Time
	// Revision increases with every local save; forms carry it to detect concurrent edits.
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
	CreatedBy Actor
	UpdatedBy Actor
	// Sync is where the association stands with Graph.
	Sync SyncInfo
	// DeletedAt is when an admin deleted the association in cartclass (zero unless
	// deleted); DeletedBy who. A deleted association is listed only under the Deleted
	// filter, for 30 days, and can be restored.
	DeletedAt time.Time
	DeletedBy Actor
}

// ImportedBy is who created an association that was read from Intune; IntuneActor made
// the changes cartclass took from it.
var (
	ImportedBy  = Actor{Name: "Imported from Intune"}
	IntuneActor = Actor{Name: "Intune"}
)

// Sort orders for ListAssociations.
const (
	SortModifiedDesc = "-modified" // newest change first (the default)
	SortModifiedAsc  = "modified"
	SortNameAsc      = "name"
	SortNameDesc     = "-name"
)

// ValidSort reports whether s is one of the Sort constants.
func ValidSort(s string) bool {
	switch s {
	case SortModifiedDesc, SortModifiedAsc, SortNameAsc, SortNameDesc:
		return true
	}
	return false
}

// ListFilter selects a page of associations.
type ListFilter struct {
	// Query matches, case-insensitively, part of the display name, the description or any
	// device cart or classroom id. A query of 1 or 2 characters matches only the start of a
	// word (a run of letters and digits): "ca" finds "Cart-7" and "room-CA", not "Scan"; "_"
	// finds nothing, "r_" finds "R_1". A query holding a NUL or invalid UTF-8 matches
	// nothing.
	Query   string
	Sort    string // one of the Sort constants; empty means SortModifiedDesc
	Page    int    // 1-based; values below 1 mean 1
	PerPage int    // values below 1 mean 50
	// NotSynced keeps only associations whose latest state Graph does not hold yet
	// (waiting, failed, deleted or changed in Intune).
	NotSynced bool
	// Deleted lists only the associations deleted in cartclass in the last 30 days
	// (DeletedFor); without it they are left out.
	Deleted bool
}

// DeletedFor is how long a deleted association stays listed, and can be restored.
const DeletedFor = 30 * 24 * time.Hour

// AssociationPage is one page of a listing and the number of matches in all pages.
type AssociationPage struct {
	Items []Association
	// Total is the number of matches, counted exactly up to a cap: the larger of 1000 and
	// Page×PerPage. Beyond it Total is the cap and TotalCapped is set.
	Total int
	// TotalCapped means there are more than Total matches ("1,000+"), at least one page
	// beyond this one; how many more was not counted, so that no request walks every row.
	// A page past the end is never capped: its Total is exact, so the last page can be
	// found.
	TotalCapped bool
}

// columns are what scanAssociation reads; selectAssociation joins the outbox row (if any)
// for the attempt count and the next attempt time. The two tables share no column names.
const columns = `id, graph_id, display_name, description, version, device_cart_ids, classroom_ids,
	graph_created_at, graph_modified_at, revision, created_at, updated_at,
	created_by_sub, created_by_name, updated_by_sub, updated_by_name,
	sync_state, sync_error, synced_revision, attempts, next_attempt_at,
	remote_fields, conflict_fields, deleted_at, deleted_by_sub, deleted_by_name`

const selectAssociation = "SELECT " + columns + " FROM associations LEFT JOIN outbox ON association_id = id"

// GetAssociation returns the association with the given local id, or ErrNotFound.
func (s *Store) GetAssociation(ctx context.Context, id int64) (Association, error) {
	a, err := scanAssociation(s.readRow(ctx, selectAssociation+" WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Association{}, ErrNotFound
	}
	if err != nil {
		return Association{}, fmt.Errorf("get association %d: %w", id, err)
	}
	return a, nil
}

// CreateAssociation stores a new association made by by and returns it. Its history
// starts with an entry of its values.
func (s *Store) CreateAssociation(ctx context.Context, f Fields, by Actor) (Association, error) {
	now := s.Now().UTC()
	carts, rooms, err := encodeIDs(f)
	if err != nil {
		return Association{}, fmt.Errorf("create association: %w", err)
	}
	var a Association
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		id, err := insertAssociation(ctx, tx, f, carts, rooms, now, change{kind: HistoryCreated, by: by, at: now})
		if err != nil {
			return err
		}
		a, err = scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
		return err
	})
	if err != nil {
		return Association{}, fmt.Errorf("create association: %w", err)
	}
	return a, nil
}

// insertAssociation adds an association with f's values (carts and rooms encoded) made at
// now by c.by, queues it for Graph, and records c with its initial values, in tx. It
// returns the new id.
func insertAssociation(ctx context.Context, tx txExec, f Fields, carts, rooms string, now time.Time, c change) (int64, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO associations
		(id, display_name, description, version, device_cart_ids, classroom_ids, revision,
		 created_at, updated_at, created_by_sub, created_by_name, updated_by_sub, updated_by_name, search_text)
		VALUES (`+nextAssociationID+`, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)`,
		f.DisplayName, f.Description, f.Version, carts, rooms,
		now.UnixNano(), now.UnixNano(), c.by.Subject, c.by.Name, c.by.Subject, c.by.Name, searchText(f))
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	// The outbox row commits with the save: an answered save is always delivered.
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (association_id, enqueued_at, next_attempt_at)
		VALUES (?, ?, ?)`, id, now.UnixNano(), now.UnixNano()); err != nil {
		return 0, err
	}
	c.changes = initialFields(f)
	return id, record(ctx, tx, id, c)
}

// ConflictError is returned (wrapping ErrConflict) when an update was based on a revision
// that is no longer current. Current is the association as it is now stored.
type ConflictError struct {
	Current Association
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("association %d was changed by someone else (now revision %d)", e.Current.ID, e.Current.Revision)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// UpdateAssociation replaces the editable fields of association id, provided it is still at
// revision, and queues the new state for Graph and records the change in its history, in
// the same transaction (see enqueueEdit).
// It returns ErrNotFound, ErrUnchanged when f equals what is stored (nothing is
// written), or a *ConflictError when someone else saved in between.
func (s *Store) UpdateAssociation(ctx context.Context, id, revision int64, f Fields, by Actor) (Association, error) {
	carts, rooms, err := encodeIDs(f)
	if err != nil {
		return Association{}, fmt.Errorf("update association %d: %w", id, err)
	}
	var a Association
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !cur.DeletedAt.IsZero() {
			return ErrDeleted
		}
		// Equal content first: a save that would write what is already there is not a
		// conflict, whoever saved it.
		if cur.Fields.Equal(f) {
			a = cur
			return ErrUnchanged
		}
		if cur.Revision != revision {
			return &ConflictError{Current: cur}
		}
		now := s.Now().UTC()
		if err := editAssociation(ctx, tx, cur, f, carts, rooms, change{kind: HistoryEdited, by: by, at: now}); err != nil {
			return err
		}
		a, err = scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", id))
		return err
	})
	switch {
	case errors.Is(err, ErrUnchanged):
		return a, ErrUnchanged
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrDeleted):
		return Association{}, err
	case err != nil:
		return Association{}, fmt.Errorf("update association %d: %w", id, err)
	}
	return a, nil
}

// editAssociation writes f (carts and rooms encoded) over cur, as a new revision saved at
// c.at by c.by, queues it for Graph (see enqueueEdit) and records c with the fields that
// changed, in tx.
func editAssociation(ctx context.Context, tx txExec, cur Association, f Fields, carts, rooms string, c change) error {
	_, err := tx.ExecContext(ctx, `UPDATE associations SET
		display_name = ?, description = ?, version = ?, device_cart_ids = ?, classroom_ids = ?,
		revision = revision + 1, updated_at = ?, updated_by_sub = ?, updated_by_name = ?, search_text = ?
		WHERE id = ?`,
		f.DisplayName, f.Description, f.Version, carts, rooms,
		c.at.UnixNano(), c.by.Subject, c.by.Name, searchText(f), cur.ID)
	if err != nil {
		return err
	}
	if err := enqueueEdit(ctx, tx, cur, c.at); err != nil {
		return err
	}
	c.changes = diffFields(cur.Fields, f)
	return record(ctx, tx, cur.ID, c)
}

type scanner interface{ Scan(dest ...any) error }

func scanAssociation(row scanner) (Association, error) {
	var sc assocScan
	if err := row.Scan(sc.dest()...); err != nil {
		return Association{}, err
	}
	return sc.finish()
}

// assocScan is one row of columns being scanned: dest gives Scan its destinations, finish
// decodes them. (Split so that a query may select more columns after these.)
type assocScan struct {
	a                          Association
	graphID                    sql.NullString
	carts, rooms               string
	graphCreated, graphChanged sql.NullInt64
	created, updated           int64
	syncErr                    sql.NullString
	attempts, nextAttempt      sql.NullInt64
	remote, conflicts          sql.NullString
	deleted                    sql.NullInt64
}

func (sc *assocScan) dest() []any {
	a := &sc.a
	return []any{&a.ID, &sc.graphID, &a.DisplayName, &a.Description, &a.Version, &sc.carts, &sc.rooms,
		&sc.graphCreated, &sc.graphChanged, &a.Revision, &sc.created, &sc.updated,
		&a.CreatedBy.Subject, &a.CreatedBy.Name, &a.UpdatedBy.Subject, &a.UpdatedBy.Name,
		&a.Sync.State, &sc.syncErr, &a.Sync.SyncedRevision, &sc.attempts, &sc.nextAttempt,
		&sc.remote, &sc.conflicts, &sc.deleted, &a.DeletedBy.Subject, &a.DeletedBy.Name}
}

// queued reports whether the row has an outbox row (attempts is NOT NULL there).
func (sc *assocScan) queued() bool { return sc.attempts.Valid }

func (sc *assocScan) finish() (Association, error) {
	a := sc.a
	if sc.syncErr.Valid {
		a.Sync.Error = new(SyncError)
		if err := json.Unmarshal([]byte(sc.syncErr.String), a.Sync.Error); err != nil {
			return a, fmt.Errorf("association %d sync error: %w", a.ID, err)
		}
	}
	a.Sync.Attempts = int(sc.attempts.Int64)
	a.Sync.NextAttemptAt = fromNanos(sc.nextAttempt)
	a.DeletedAt = fromNanos(sc.deleted)
	// The outbox row of a deleted association is its DELETE (or the create before it).
	a.Sync.DeletePending = sc.deleted.Valid && sc.attempts.Valid
	if sc.remote.Valid {
		f, err := decodeFields(sc.remote.String)
		if err != nil {
			return a, fmt.Errorf("association %d remote fields: %w", a.ID, err)
		}
		a.Sync.RemoteFields = &f
	}
	if sc.conflicts.Valid {
		if err := json.Unmarshal([]byte(sc.conflicts.String), &a.Sync.ConflictFields); err != nil {
			return a, fmt.Errorf("association %d conflict fields: %w", a.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(sc.carts), &a.DeviceCartIDs); err != nil {
		return a, fmt.Errorf("association %d device cart ids: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(sc.rooms), &a.ClassroomIDs); err != nil {
		return a, fmt.Errorf("association %d classroom ids: %w", a.ID, err)
	}
	a.GraphID = sc.graphID.String
	a.GraphCreatedAt = fromNanos(sc.graphCreated)
	a.GraphModifiedAt = fromNanos(sc.graphChanged)
	a.CreatedAt = time.Unix(0, sc.created).UTC()
	a.UpdatedAt = time.Unix(0, sc.updated).UTC()
	return a, nil
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// encodeIDs renders the id lists as JSON arrays, never null.
func encodeIDs(f Fields) (carts, rooms string, err error) {
	enc := func(ids []string) (string, error) {
		if ids == nil {
			ids = []string{}
		}
		b, err := json.Marshal(ids)
		return string(b), err
	}
	if carts, err = enc(f.DeviceCartIDs); err != nil {
		return "", "", err
	}
	rooms, err = enc(f.ClassroomIDs)
	return carts, rooms, err
}

// searchText is what ListFilter.Query matches: every searchable value on its own line, so a
// match never spans two values.
func searchText(f Fields) string {
	parts := append([]string{f.DisplayName, f.Description}, f.DeviceCartIDs...)
	parts = append(parts, f.ClassroomIDs...)
	return strings.ToLower(strings.Join(parts, "\n"))
}
