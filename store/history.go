package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HistoryKind is what kind of change a history entry records.
type HistoryKind string

// The kinds of history entries.
const (
	HistoryCreated  HistoryKind = "created"  // an admin created it
	HistoryEdited   HistoryKind = "edited"   // an admin saved new values
	HistoryDeleted  HistoryKind = "deleted"  // an admin deleted it in cartclass
	HistoryRestored HistoryKind = "restored" // an admin undid the delete
	HistoryImported HistoryKind = "imported" // read from Intune, unknown to cartclass: by ImportedBy
	// HistoryTaken: changed in Intune, and the change taken by cartclass (by IntuneActor).
	HistoryTaken HistoryKind = "taken"
	// HistoryResolved: an admin settled a conflict (HistoryEntry.Choice says how).
	HistoryResolved HistoryKind = "resolved"
	// HistoryRemoved: deleted in Intune, then removed from cartclass by an admin.
	HistoryRemoved HistoryKind = "removed"
	// HistoryRecreated: deleted in Intune, then queued by an admin to be created there again.
	HistoryRecreated HistoryKind = "recreated"
)

// How a conflict was resolved (HistoryEntry.Choice of a HistoryResolved entry).
const (
	ChoiceKeepIntune = "keep-intune"
	ChoicePushMine   = "push-mine"
)

// HistoryEntry is one change to an association, as recorded when it was made.
type HistoryEntry struct {
	ID            int64
	AssociationID int64
	At            time.Time
	Kind          HistoryKind
	Choice        string // HistoryResolved: ChoiceKeepIntune or ChoicePushMine
	Actor         Actor
	Revision      int64 // the association's revision after the change
	// DisplayName is the association's name after the change: the entry outlives it.
	DisplayName string
	Changes     []FieldChange
}

// FieldChange is one field's change, by Graph's property name. Scalars (displayName,
// description, version) have Old and New; id lists (deviceCartIds, classroomIds) the ids
// Added and Removed, or, when only their order changed, Old and New as the lists joined
// with ", ". For a created or imported association, Old is empty and the lists' ids are
// all Added.
type FieldChange struct {
	Field   string   `json:"field"`
	Old     string   `json:"old,omitempty"`
	New     string   `json:"new,omitempty"`
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// IDList reports whether the change is to one of the id lists.
func (c FieldChange) IDList() bool { return c.Field == "deviceCartIds" || c.Field == "classroomIds" }

// nextAssociationID is the SQL for a new association's id. SQLite would give the largest
// id in use plus one, which, once the newest association was purged, is that
// association's id again: the new one would inherit its history. So ids go past every
// id with history too (both maxima are read from an index).
const nextAssociationID = `max(coalesce((SELECT max(id) FROM associations), 0),
	coalesce((SELECT max(association_id) FROM history), 0)) + 1`

// DefaultHistoryPage is how many entries AssociationHistory returns for a limit below 1.
const DefaultHistoryPage = 20

// maxHistoryPage bounds AssociationHistory's limit.
const maxHistoryPage = 500

// Keyset paging, newest first: before is an entry id, and the page holds the entries of
// the same association that sort after it. The entry's own (at, id) is the key, so the
// pages stay right when an entry's clock reading is out of order with its id.
const (
	historyColumns = `id, association_id, at, kind, choice, actor_sub, actor_name, revision, display_name, changes`
	historyNewest  = `SELECT ` + historyColumns + ` FROM history WHERE association_id = ?1
		ORDER BY at DESC, id DESC LIMIT ?2`
	historyBefore = `SELECT ` + historyColumns + ` FROM history WHERE association_id = ?1
		AND (at, id) < (SELECT at, id FROM history WHERE id = ?3 AND association_id = ?1)
		ORDER BY at DESC, id DESC LIMIT ?2`
)

// AssociationHistory returns association id's history entries, newest first: up to limit
// of them (DefaultHistoryPage below 1) older than the entry before, or the newest when
// before is 0, and whether there are more after them. An association purged from cartclass
// still has its history; an unknown id, or a before that is not one of id's entries, has
// none.
func (s *Store) AssociationHistory(ctx context.Context, id int64, before int64, limit int) ([]HistoryEntry, bool, error) {
	if limit < 1 {
		limit = DefaultHistoryPage
	}
	limit = min(limit, maxHistoryPage)
	query, args := historyNewest, []any{id, limit + 1}
	if before != 0 {
		query, args = historyBefore, append(args, before)
	}
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, false, fmt.Errorf("history of %d: %w", id, err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, false, fmt.Errorf("history of %d: %w", id, err)
	}
	defer rows.Close()
	var out []HistoryEntry
	for rows.Next() {
		e, err := scanHistory(rows)
		if err != nil {
			return nil, false, fmt.Errorf("history of %d: %w", id, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("history of %d: %w", id, err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

func scanHistory(row scanner) (HistoryEntry, error) {
	var (
		e       HistoryEntry
		at      int64
		kind    string
		changes string
	)
	if err := row.Scan(&e.ID, &e.AssociationID, &at, &kind, &e.Choice, &e.Actor.Subject, &e.Actor.Name,
		&e.Revision, &e.DisplayName, &changes); err != nil {
		return e, err
	}
	e.At, e.Kind = time.Unix(0, at).UTC(), HistoryKind(kind)
	if err := json.Unmarshal([]byte(changes), &e.Changes); err != nil {
		return e, fmt.Errorf("entry %d changes: %w", e.ID, err)
	}
	return e, nil
}

// change is one history entry to append (see record).
type change struct {
	kind    HistoryKind
	choice  string
	by      Actor
	at      time.Time
	changes []FieldChange
}

// record appends c to association id's history, in tx: the transaction of the change
// itself, after it was written, so that the entry carries the revision and name it left.
func record(ctx context.Context, tx *sql.Tx, id int64, c change) error {
	if c.changes == nil {
		c.changes = []FieldChange{}
	}
	enc, err := json.Marshal(c.changes)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO history
			(association_id, at, kind, choice, actor_sub, actor_name, revision, display_name, changes)
		SELECT id, ?, ?, ?, ?, ?, revision, display_name, ? FROM associations WHERE id = ?`,
		c.at.UnixNano(), string(c.kind), c.choice, c.by.Subject, c.by.Name, string(enc), id)
	if err != nil {
		return fmt.Errorf("record history: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("record history: association %d not found", id)
	}
	return nil
}

// diffFields lists, in Graph's order, the fields that differ between old and new.
func diffFields(old, new Fields) []FieldChange {
	var out []FieldChange
	for _, r := range FieldRules {
		if r.Equal(old, new) {
			continue
		}
		c := FieldChange{Field: r.Name}
		switch r.Name {
		case "displayName":
			c.Old, c.New = old.DisplayName, new.DisplayName
		case "description":
			c.Old, c.New = old.Description, new.Description
		case "version":
			c.Old, c.New = strconv.Itoa(int(old.Version)), strconv.Itoa(int(new.Version))
		case "deviceCartIds":
			c = idChange(r.Name, old.DeviceCartIDs, new.DeviceCartIDs)
		case "classroomIds":
			c = idChange(r.Name, old.ClassroomIDs, new.ClassroomIDs)
		}
		out = append(out, c)
	}
	return out
}

// idChange is the change from one id list to another: the ids added (in new's order) and
// removed (in old's order); when those are none (only the order, or repeats, changed), the
// lists themselves.
func idChange(field string, old, new []string) FieldChange {
	c := FieldChange{Field: field}
	for _, id := range new {
		if !slices.Contains(old, id) && !slices.Contains(c.Added, id) {
			c.Added = append(c.Added, id)
		}
	}
	for _, id := range old {
		if !slices.Contains(new, id) && !slices.Contains(c.Removed, id) {
			c.Removed = append(c.Removed, id)
		}
	}
	if c.Added == nil && c.Removed == nil {
		c.Old, c.New = strings.Join(old, ", "), strings.Join(new, ", ")
	}
	return c
}

// initialFields is what a created or imported association's entry records: its values,
// every one that is set (the version always).
func initialFields(f Fields) []FieldChange {
	out := []FieldChange{{Field: "displayName", New: f.DisplayName}}
	if f.Description != "" {
		out = append(out, FieldChange{Field: "description", New: f.Description})
	}
	out = append(out, FieldChange{Field: "version", New: strconv.Itoa(int(f.Version))})
	if len(f.DeviceCartIDs) > 0 {
		out = append(out, idChange("deviceCartIds", nil, f.DeviceCartIDs))
	}
	if len(f.ClassroomIDs) > 0 {
		out = append(out, idChange("classroomIds", nil, f.ClassroomIDs))
	}
	return out
}
