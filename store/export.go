package store

import (
	"context"
	"fmt"
	"time"
)

// EachAssociation calls fn with every association that ListAssociations selects for f, on
// all its pages (f.Page and f.PerPage are ignored), in the listing's order: what a CSV
// export of the list holds.
//
// The rows come from one read transaction, so they are one consistent snapshot, and are
// read one at a time as fn takes them: memory does not grow with the number of rows. The
// walk follows the order's index, testing each row, so no row is sorted or collected
// first (only a search's candidate ids, see exportQuery, and the Deleted filter's few
// rows, which are sorted). fn's error stops the walk and is returned unchanged; while fn
// runs the transaction holds one of the read pool's connections, so fn should not wait
// long.
func (s *Store) EachAssociation(ctx context.Context, f ListFilter, fn func(Association) error) error {
	query, args, ok := exportQuery(f, s.Now())
	if !ok {
		return nil
	}
	sqlTx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("export associations: %w", err)
	}
	defer sqlTx.Rollback()
	rows, err := readTx{s, sqlTx}.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("export associations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		// database/sql notices a cancelled context only from another goroutine, some
		// rows later: a client gone stops the walk at once.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("export associations: %w", err)
		}
		a, err := scanAssociation(rows)
		if err != nil {
			return fmt.Errorf("export associations: %w", err)
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export associations: %w", err)
	}
	return nil
}

// exportQuery is the query (and its arguments) that reads every row f's listing holds, in
// its order, at now; ok is false when the search can match nothing. Its SQL is one of a
// fixed set of shapes (order × scope × kind of search), its values all arguments. A
// search's candidates are read from its index once, into a set of their ids in SQLite's
// temporary storage (a few bytes a match); the rows themselves stream.
func exportQuery(f ListFilter, now time.Time) (query string, args []any, ok bool) {
	order, ok := listOrders[f.Sort]
	if !ok {
		order = listOrders[SortModifiedDesc]
	}
	srch, ok := newSearch(f.Query)
	if !ok {
		return "", nil, false
	}
	tests, args := listScope(f, now)
	if srch != nil {
		// The rows rowTests accepts: those among the search's candidates whose text holds
		// the query. The candidates are read from the index once, into a set each row is
		// looked up in ("+id": a test of each row in the walk, not a way to find rows,
		// which would need a sort after). rowTests' own test of a 1–2 character query asks
		// the word index about each row in turn: 12 s for "r" over 100,000 rows.
		tests = append(tests, "+id IN (SELECT match_id FROM "+srch.candidates+")", "instr(search_text, ?) > 0")
		args = append(args, srch.match, srch.literal)
	}
	return selectAssociation + where(tests) + " ORDER BY " + order.by, args, true
}
