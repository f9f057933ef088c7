package store

import (
	"context"
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
	// HistoryCSV: an admin applied a CSV import that created (revision 1) or changed it;
	// HistoryEntry.Choice holds the file's name.
	HistoryCSV HistoryKind = "csv"
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
	Choice        string // HistoryResolved: ChoiceKeepIntune or ChoicePushMine; HistoryCSV: the file's name
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
func record(ctx context.Context, tx txExec, id int64, c change) error {
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

// HistoryFilter selects entries of the activity log: every association's history (see
// ListHistory and EachHistory). The zero filter selects every entry.
type HistoryFilter struct {
	// Person, when set, keeps the entries made by that person: whose actor subject is
	// exactly Person, or whose actor name is Person in any case (ASCII letters), so that
	// "Intune", which has no subject, can be asked for too.
	Person string
	// AssociationID, when not 0, keeps that association's entries.
	AssociationID int64
	// From and To, when not zero, keep the entries made at or after From and before To.
	From, To time.Time
	// Before is an entry id: ListHistory's page holds the entries that sort after it
	// (older ones); 0 for the newest.
	Before int64
	// Limit is ListHistory's page size: DefaultActivityPage below 1, at most 500.
	Limit int
}

// DefaultActivityPage is how many entries ListHistory returns for a limit below 1.
const DefaultActivityPage = 50

// ActivityEntry is a history entry as the activity log lists it: with the association as
// it is now.
type ActivityEntry struct {
	HistoryEntry
	// Current is the association's display name now; empty when it was purged.
	Current string
	// Purged reports that the association is no longer in cartclass (removed for good
	// after its delete): its entries remain, and DisplayName is the last name they knew.
	Purged bool
}

// ListHistory returns the entries f selects, across associations, newest first: up to
// f.Limit of them older than the entry f.Before (the newest when it is 0), and whether there
// are more after them. A Before that is no entry's id gives an empty page.
func (s *Store) ListHistory(ctx context.Context, f HistoryFilter) ([]ActivityEntry, bool, error) {
	limit := f.Limit
	if limit < 1 {
		limit = DefaultActivityPage
	}
	limit = min(limit, maxHistoryPage)
	query, args := activityQuery(f, limit+1)
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, false, fmt.Errorf("list history: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list history: %w", err)
	}
	defer rows.Close()
	var out []ActivityEntry
	for rows.Next() {
		e, err := scanActivity(rows)
		if err != nil {
			return nil, false, fmt.Errorf("list history: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("list history: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// eachHistoryBatch is how many entries EachHistory reads per query.
const eachHistoryBatch = 500

// EachHistory calls fn with every entry f selects, newest first, on all pages (f.Before and
// f.Limit are ignored): what a CSV download of the activity log holds. The entries come
// from one read transaction, so they are one consistent snapshot, read a batch at a time
// by ListHistory's indexed query: memory does not grow with the number of entries. fn's
// error stops the walk and is returned unchanged; while fn runs the transaction holds one
// of the read pool's connections, so fn should not wait long.
func (s *Store) EachHistory(ctx context.Context, f HistoryFilter, fn func(ActivityEntry) error) error {
	sqlTx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("export history: %w", err)
	}
	defer sqlTx.Rollback()
	tx := readTx{s, sqlTx}
	f.Before = 0
	for {
		query, args := activityQuery(f, eachHistoryBatch)
		n, err := eachActivityRow(ctx, tx, query, args, func(e ActivityEntry) error {
			f.Before = e.ID
			return fn(e)
		})
		if err != nil {
			return err
		}
		if n < eachHistoryBatch {
			return nil
		}
	}
}

// eachActivityRow runs one batch of EachHistory, returning how many entries it read. An
// error of fn is returned unchanged, any other wrapped.
func eachActivityRow(ctx context.Context, tx readTx, query string, args []any, fn func(ActivityEntry) error) (int, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("export history: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		// database/sql notices a cancelled context only from another goroutine, some
		// rows later: a client gone stops the walk at once.
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("export history: %w", err)
		}
		e, err := scanActivity(rows)
		if err != nil {
			return n, fmt.Errorf("export history: %w", err)
		}
		n++
		if err := fn(e); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("export history: %w", err)
	}
	return n, nil
}

// activityQuery is the query (and its arguments) for up to limit of the entries f selects,
// newest first, after f.Before. Its SQL is one of a fixed set of shapes (which filters are
// set), its values all arguments. Each shape reads an index in the page's order and stops
// after limit rows: history_at, history_association, or, for a person, the first limit rows
// of history_actor_sub and of history_actor_name, merged (a person's entries are those of
// either, and an OR of the two would have to sort them all).
func activityQuery(f HistoryFilter, limit int) (string, []any) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "?" + strconv.Itoa(len(args))
	}
	var conds []string
	if f.AssociationID != 0 {
		conds = append(conds, "association_id = "+arg(f.AssociationID))
	}
	if !f.From.IsZero() {
		conds = append(conds, "at >= "+arg(f.From.UnixNano()))
	}
	if !f.To.IsZero() {
		conds = append(conds, "at < "+arg(f.To.UnixNano()))
	}
	if f.Before != 0 {
		conds = append(conds, "(at, id) < (SELECT at, id FROM history WHERE id = "+arg(f.Before)+")")
	}
	lim := arg(limit)
	const order = " ORDER BY at DESC, id DESC LIMIT "
	page := func(extra string) string {
		return "SELECT " + historyColumns + " FROM history" + where(append([]string{extra}, conds...)) + order + lim
	}
	var entries string
	if f.Person == "" {
		entries = "SELECT " + historyColumns + " FROM history" + where(conds) + order + lim
	} else {
		p := arg(f.Person)
		entries = "SELECT * FROM (" + page("actor_sub = "+p) + ") UNION SELECT * FROM (" +
			page("actor_name = "+p+" COLLATE NOCASE") + ")" + order + lim
	}
	return `SELECT h.id, h.association_id, h.at, h.kind, h.choice, h.actor_sub, h.actor_name, h.revision,
			h.display_name, h.changes, coalesce(a.display_name, ''), a.id IS NULL
		FROM (` + entries + `) h LEFT JOIN associations a ON a.id = h.association_id
		ORDER BY h.at DESC, h.id DESC`, args
}

func scanActivity(row scanner) (ActivityEntry, error) {
	var (
		e       ActivityEntry
		at      int64
		kind    string
		changes string
	)
	if err := row.Scan(&e.ID, &e.AssociationID, &at, &kind, &e.Choice, &e.Actor.Subject, &e.Actor.Name,
		&e.Revision, &e.DisplayName, &changes, &e.Current, &e.Purged); err != nil {
		return e, err
	}
	e.At, e.Kind = time.Unix(0, at).UTC(), HistoryKind(kind)
	if err := json.Unmarshal([]byte(changes), &e.Changes); err != nil {
		return e, fmt.Errorf("entry %d changes: %w", e.ID, err)
	}
	return e, nil
}

// pruneBatch is how many entries PruneHistory deletes per statement: the writer is let go
// between them, so a first prune of years of history does not hold every save up.
const pruneBatch = 5000

// PruneHistory deletes the history entries made before before, returning how many. It is
// the only way an entry is ever deleted: the retention setting CARTCLASS_HISTORY_KEEP.
//
// One old entry may stay: the newest of the largest association id with history, when that
// association was purged. New ids go past every id with history (see nextAssociationID),
// and without it the next association would get the purged one's id again, and with it
// whatever else is still kept by that id.
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := s.exec(ctx, `DELETE FROM history WHERE id IN (
			SELECT id FROM history WHERE at < ?1 AND id IS NOT (
				SELECT id FROM history WHERE association_id = (SELECT max(association_id) FROM history)
					AND association_id > coalesce((SELECT max(id) FROM associations), 0)
				ORDER BY at DESC, id DESC LIMIT 1)
			LIMIT ?2)`, before.UnixNano(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune history: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune history: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
