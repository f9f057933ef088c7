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
	"unicode/utf8"
)

// minCountCap is the smallest number of matches ListAssociations counts exactly.
const minCountCap = 1000

// fewCandidates is how many of a search's candidates are read as ids at once: a rare term
// has no more, and its page and count then come from them alone.
const fewCandidates = 200

// A listing's sort order, and how to bound a walk along it (see walkBound).
type listOrder struct {
	by   string // the ORDER BY clause
	cols string // the columns the order sorts by
	// key is the row value the order sorts by; rows up to a boundary row b, in this
	// order, are those with key <cmp> b.
	key, cmp string
}

var listOrders = map[string]listOrder{
	SortModifiedDesc: {"updated_at DESC, id DESC", "updated_at, id", "(updated_at, id)", ">="},
	SortModifiedAsc:  {"updated_at ASC, id ASC", "updated_at, id", "(updated_at, id)", "<="},
	SortNameAsc:      {"display_name COLLATE NOCASE ASC, id ASC", "display_name, id", "(display_name COLLATE NOCASE, id)", "<="},
	SortNameDesc:     {"display_name COLLATE NOCASE DESC, id DESC", "display_name, id", "(display_name COLLATE NOCASE, id)", ">="},
}

// search is a query as the full-text indexes are asked it.
type search struct {
	// candidates selects match_id: a superset of the matching rows (the index folds case
	// per SQLite's tables, a little more widely than strings.ToLower).
	candidates string
	match      string // the FTS5 query for candidates
	// literal is the lower-cased query; a row matches if its search_text contains it,
	// exactly as before the indexes existed.
	literal string
	// short marks a 1–2 character query: a match must also start a word, which only the
	// word index knows, so there is no cheap test of one row (see ListAssociations).
	short bool
}

// newSearch prepares a query for the indexes; ok is false when it can match nothing.
func newSearch(query string) (_ *search, ok bool) {
	q := strings.ToLower(strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(query)))
	if q == "" {
		return nil, true
	}
	// FTS5 reads its query as a C string, and search_text is valid UTF-8.
	if strings.ContainsRune(q, 0) || !utf8.ValidString(q) {
		return nil, false
	}
	// One FTS5 string: inside double quotes every character is literal but '"', doubled.
	phrase := `"` + strings.ReplaceAll(q, `"`, `""`) + `"`
	if utf8.RuneCountInString(q) >= 3 {
		// A trigram phrase is the substring's trigrams in a row: a substring match.
		return &search{
			candidates: "(SELECT rowid AS match_id FROM association_search WHERE association_search MATCH ?)",
			match:      phrase,
			literal:    q,
		}, true
	}
	// Trigrams cannot answer 1 or 2 characters: take words that start with the query, from
	// the word index's prefix index. A query with no letter or digit holds no word, and
	// can start none.
	if !strings.ContainsFunc(q, isWordRune) {
		return nil, false
	}
	return &search{
		candidates: "(SELECT rowid AS match_id FROM association_words WHERE association_words MATCH ?)",
		match:      phrase + "*",
		literal:    q,
		short:      true,
	}, true
}

// isWordRune is true of the ASCII letters and digits and of all non-ASCII characters: a
// superset of the word index's token characters (unicode61: letters, digits, private use).
// A query without one is not asked of the index, which would find nothing.
func isWordRune(r rune) bool {
	return r >= 0x80 || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9')
}

// ListAssociations returns the page of associations that f selects.
//
// It never walks every row for a count (see AssociationPage.Total), and a search reads the
// full-text indexes, so its cost follows its matches:
//   - few matches (no more than the count's cap): read them all from the index, then sort;
//   - many: walk the listing's order (an index) and test each row, which soon fills the
//     page. The walk is bounded; if the matches lie beyond the bound (many, but bunched at
//     the far end of the order) the page comes from the index after all. Testing a row is
//     dearer for 1–2 characters (an index probe), so those walk only near the top;
//   - with NotSynced, when few rows are waiting: walk those rows alone.
func (s *Store) ListAssociations(ctx context.Context, f ListFilter) (AssociationPage, error) {
	if f.Page < 1 {
		f.Page = 1
	}
	if f.PerPage < 1 {
		f.PerPage = 50
	}
	order, ok := listOrders[f.Sort]
	if !ok {
		order = listOrders[SortModifiedDesc]
	}
	var page AssociationPage
	srch, ok := newSearch(f.Query)
	if !ok {
		return page, nil
	}
	// filtered: a condition beyond live-or-deleted, which may select few rows.
	conds, cargs := listScope(f, s.Now())
	filtered := f.NotSynced || f.Deleted
	offset := (f.Page - 1) * f.PerPage
	limit := max(minCountCap, f.Page*f.PerPage)

	// One read transaction: the count and the page see the same rows.
	sqlTx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return page, fmt.Errorf("list associations: %w", err)
	}
	defer sqlTx.Rollback()
	tx := readTx{s, sqlTx}

	// A search within a filter (NotSynced) walks the filter's rows when they are few: a
	// common word matches far more rows than are usually waiting for Graph.
	small := false
	if srch != nil && filtered {
		n, err := countMatches(ctx, tx, nil, conds, cargs, limit+1)
		if err != nil {
			return page, fmt.Errorf("count associations: %w", err)
		}
		small = n <= limit
	}
	// A search alone reads its candidates' ids from the index once, up to the cap. When
	// they reach it, the answer is "1,000+" and the page is found as below; otherwise those
	// few ids are all the matches there can be, and both the count and the page are read
	// from them, with no second trip through the index (that trip is most of a rare
	// term's cost).
	if srch != nil && !filtered {
		ids, err := candidateIDs(ctx, tx, srch, fewCandidates+1)
		if err != nil {
			return page, fmt.Errorf("search associations: %w", err)
		}
		if len(ids) <= fewCandidates {
			return fromIDs(ctx, tx, srch, ids, order, offset, f.PerPage)
		}
		// Many: count them in the index alone, which stops at the cap; reading a
		// thousand rows only to confirm each would cost more than the index. (Deleted
		// ones are counted too: they are few, kept 30 days.)
		var n int
		err = tx.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+srch.candidates+" LIMIT ?)", srch.match, limit+1).Scan(&n)
		if err != nil {
			return page, fmt.Errorf("count associations: %w", err)
		}
		if n > limit {
			// "1,000+" (candidates exceed matches only in rare Unicode case folding,
			// where this may be a few short of the cap).
			page.Total, page.TotalCapped = limit, true
			if err := fillPage(ctx, tx, &page, srch, conds, cargs, order, offset, f.PerPage); err != nil {
				return page, fmt.Errorf("list associations: %w", err)
			}
			return page, nil
		}
	}
	var count int
	if small {
		tests, args := rowTests(srch, conds, cargs)
		err = tx.QueryRowContext(ctx, "SELECT count(*) FROM associations"+where(tests), args...).Scan(&count)
	} else {
		count, err = countMatches(ctx, tx, srch, conds, cargs, limit+1)
	}
	if err != nil {
		return page, fmt.Errorf("count associations: %w", err)
	}
	page.Total = min(count, limit)
	page.TotalCapped = count > limit
	if offset >= count {
		return page, nil
	}
	if small {
		page.Items, err = walk(ctx, tx, srch, conds, cargs, order, 0, offset, f.PerPage)
	} else {
		err = fillPage(ctx, tx, &page, srch, conds, cargs, order, offset, f.PerPage)
	}
	if err != nil {
		return page, fmt.Errorf("list associations: %w", err)
	}
	return page, nil
}

// fillPage reads the page of a listing whose count is known (page.Total, TotalCapped).
func fillPage(ctx context.Context, tx readTx, page *AssociationPage, srch *search, conds []string, cargs []any, order listOrder, offset, perPage int) error {
	var err error
	// How far a search may walk before asking the index instead (0: no walk). Testing a
	// row costs about as much as reading one match from the index for 3+ characters, and
	// some 40 times more for 1–2 (an index probe per row), so those walk only near the top.
	bound, end := 0, offset+perPage
	switch {
	case srch == nil || !page.TotalCapped:
	case !srch.short:
		bound = max(2000, 40*end)
	case end <= 100:
		bound = 5 * end
	}
	switch {
	case srch == nil:
		page.Items, err = walk(ctx, tx, srch, conds, cargs, order, 0, offset, perPage)
	case bound == 0:
		page.Items, err = fromIndex(ctx, tx, srch, conds, cargs, order, offset, perPage)
	default:
		// More than limit matches, so the page is full: a walk that fills it within its
		// bound has found it.
		page.Items, err = walk(ctx, tx, srch, conds, cargs, order, bound, offset, perPage)
		if err == nil && len(page.Items) < perPage {
			page.Items, err = fromIndex(ctx, tx, srch, conds, cargs, order, offset, perPage)
		}
	}
	return err
}

// candidateIDs reads up to n ids of srch's candidates from its index.
func candidateIDs(ctx context.Context, tx readTx, srch *search, n int) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, "SELECT match_id FROM "+srch.candidates+" LIMIT ?", srch.match, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// fromIDs is the page of srch's matches among ids (every candidate there is, fewer than the
// cap), and their exact number. The candidates are what the index found, so the word test
// of a short query holds already: only the literal test is left.
func fromIDs(ctx context.Context, tx readTx, srch *search, ids []int64, order listOrder, offset, perPage int) (AssociationPage, error) {
	var page AssociationPage
	if len(ids) == 0 {
		return page, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return page, err
	}
	const among = " WHERE id IN (SELECT value FROM json_each(?)) AND instr(search_text, ?) > 0 AND deleted_at IS NULL"
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM associations"+among, string(list), srch.literal).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("count associations: %w", err)
	}
	if offset >= page.Total {
		return page, nil
	}
	page.Items, err = queryAssociations(ctx, tx, selectAssociation+among+" ORDER BY "+order.by+" LIMIT ? OFFSET ?",
		string(list), srch.literal, perPage, offset)
	if err != nil {
		return page, fmt.Errorf("list associations: %w", err)
	}
	return page, nil
}

// where joins conditions into a WHERE clause ("" when there are none).
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// countMatches counts the rows srch (may be nil) and conds (with cargs) select, stopping at upTo.
func countMatches(ctx context.Context, tx readTx, srch *search, conds []string, cargs []any, upTo int) (int, error) {
	var n int
	if srch == nil {
		err := tx.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM associations"+where(conds)+" LIMIT ?)",
			append(slices.Clone(cargs), upTo)...).Scan(&n)
		return n, err
	}
	// CROSS JOIN keeps the index outermost, so the count streams its candidates and stops
	// at upTo (an IN (subquery) would first collect every candidate).
	conds = append([]string{"instr(search_text, ?) > 0"}, conds...)
	err := tx.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+srch.candidates+
		" CROSS JOIN associations ON id = match_id"+where(conds)+" LIMIT ?)",
		slices.Concat([]any{srch.match, srch.literal}, cargs, []any{upTo})...).Scan(&n)
	return n, err
}

// fromIndex reads every match of srch from its index and sorts them: its cost follows the
// number of matches. The sort keeps only the row ids; the page's rows are read after.
func fromIndex(ctx context.Context, tx readTx, srch *search, conds []string, cargs []any, order listOrder, offset, limit int) ([]Association, error) {
	conds = append([]string{"instr(search_text, ?) > 0"}, conds...)
	return queryAssociations(ctx, tx, selectAssociation+" WHERE id IN (SELECT id FROM "+srch.candidates+
		" CROSS JOIN associations ON id = match_id"+where(conds)+
		" ORDER BY "+order.by+" LIMIT ? OFFSET ?) ORDER BY "+order.by,
		slices.Concat([]any{srch.match, srch.literal}, cargs, []any{limit, offset})...)
}

// walk reads the page along the listing's order (an index), testing each row against
// srch (nil: no search) and conds. With bound > 0 it looks at no more than the first
// bound rows that conds select, and may then return a short page although more matches
// lie beyond.
func walk(ctx context.Context, tx readTx, srch *search, conds []string, cargs []any, order listOrder, bound, offset, limit int) ([]Association, error) {
	tests, args := rowTests(srch, conds, cargs)
	if bound > 0 {
		// The bound is the bound-th row's key, read from the order's index alone; the walk
		// stops there. No such row: fewer rows than the bound, nothing to cut.
		var k1, k2 any
		err := tx.QueryRowContext(ctx, "SELECT "+order.cols+" FROM associations"+where(conds)+
			" ORDER BY "+order.by+" LIMIT 1 OFFSET ?", append(slices.Clone(cargs), bound-1)...).Scan(&k1, &k2)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, err
		default:
			tests = append(tests, order.key+" "+order.cmp+" (?, ?)")
			args = append(args, k1, k2)
		}
	}
	args = append(args, limit, offset)
	if offset == 0 {
		return queryAssociations(ctx, tx, selectAssociation+where(tests)+" ORDER BY "+order.by+" LIMIT ? OFFSET ?", args...)
	}
	// The rows skipped by OFFSET are only looked at in the index (and tested); the page's
	// rows alone are read in full and joined with the outbox.
	return queryAssociations(ctx, tx, selectAssociation+" WHERE id IN (SELECT id FROM associations"+where(tests)+
		" ORDER BY "+order.by+" LIMIT ? OFFSET ?) ORDER BY "+order.by, args...)
}

// rowTests are the conditions (and their arguments) that decide, row by row, whether a row
// matches srch (may be nil) and conds (with cargs): the same rows as the index finds.
func rowTests(srch *search, conds []string, cargs []any) ([]string, []any) {
	if srch == nil {
		return conds, slices.Clone(cargs)
	}
	tests := append([]string{"instr(search_text, ?) > 0"}, conds...)
	args := append([]any{srch.literal}, cargs...)
	if srch.short {
		// Whether a word starts with the query only the word index knows: ask it of each
		// row that holds the query at all (instr first, as it is far cheaper).
		tests = append(tests, "EXISTS (SELECT 1 FROM association_words WHERE association_words MATCH ? AND rowid = id)")
		args = append(args, srch.match)
	}
	return tests, args
}

func queryAssociations(ctx context.Context, tx readTx, query string, args ...any) ([]Association, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Association
	for rows.Next() {
		a, err := scanAssociation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// listScope is the conditions (and their placeholders' values) a listing puts on the rows
// before any search: live associations, or those deleted since DeletedFor before now, and
// with NotSynced only those Graph does not hold yet. They are written as in the partial
// indexes' WHERE so that the planner can use them; values go in as arguments, since a
// value written into the SQL would make every listing a new statement to prepare and keep
// (see Store.stmts).
func listScope(f ListFilter, now time.Time) ([]string, []any) {
	conds := []string{"deleted_at IS NULL"}
	var cargs []any
	if f.Deleted {
		conds = []string{"deleted_at IS NOT NULL", "deleted_at >= ?"}
		cargs = []any{now.Add(-DeletedFor).UnixNano()}
	}
	if f.NotSynced {
		if !f.Deleted {
			// "+deleted_at" cannot pick the live-rows index: without statistics SQLite
			// would walk every live row there instead of the few in the not-synced index.
			conds[0] = "+deleted_at IS NULL"
		}
		conds = append(conds, "sync_state <> '"+SyncSynced+"'")
	}
	return conds, cargs
}
