package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// This file is what the associations' ids refer to: the education classes read from Graph
// (classroomIds name them), and the carts and classrooms as the associations list them,
// for the Carts and Classrooms pages and for the form's suggestions and warnings. The ids
// come from tables that triggers keep in step with the live associations' arrays
// (migration 0008): association_carts and association_rooms (an id and an association),
// carts and rooms (each id once; a classroom id with its class).
//
// Ids are compared exactly as stored (Intune's are case-sensitive), except that a
// classroom id names a class whatever its (ASCII) case. Queries (q) match regardless of
// case: Unicode case for class names and codes (the store keeps them lower-cased), ASCII
// case for ids and association names (SQLite's LIKE: the triggers that keep the ids
// cannot lower-case beyond ASCII). Ids sort ignoring case, then exactly.

// Class is an education class as Graph reports it.
type Class struct{ ID, DisplayName, ClassCode, ExternalID string }

// AssociationRef names a live association in a listing or a warning.
type AssociationRef struct {
	ID          int64
	DisplayName string
}

// CartUse is a device cart id as suggestions show it.
type CartUse struct {
	CartID string
	// Rooms is the number of distinct classroom ids served by the associations that list
	// the cart; Associations the number of those associations.
	Rooms        int
	Associations int
}

// CartEntry is a device cart id on the Carts page: the classroom ids it serves (sorted,
// each once) and the live associations that list it (by name, then id).
type CartEntry struct {
	CartID       string
	Classrooms   []string
	Associations []AssociationRef
}

// ClassroomEntry is a classroom id on the Classrooms page: its class (nil when the id is
// not a known class), the carts serving it (sorted, each once) and the live associations
// that list it (by name, then id).
type ClassroomEntry struct {
	ClassroomID  string
	Class        *Class
	Carts        []string
	Associations []AssociationRef
}

// defaultSuggestions is how many suggestions a limit below 1 asks for.
const defaultSuggestions = 10

// defaultIDPage is how many entries ListCarts and ListClassrooms return for a perPage
// below 1.
const defaultIDPage = 50

// ReplaceClasses stores classes as a complete read of Graph found them (all others
// removed), in one transaction; ReadClassesAt reports when. A class is matched to the one
// stored by its id regardless of case, and takes the id's case as given; of two with the
// same id the later wins. A class without an id is left out. Unchanged classes are not
// written again.
func (s *Store) ReplaceClasses(ctx context.Context, classes []Class) error {
	now := s.Now().UTC()
	type row struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Code    string `json:"code"`
		Ext     string `json:"ext"`
		NameKey string `json:"nameKey"`
		CodeKey string `json:"codeKey"`
	}
	rows := make([]row, 0, len(classes))
	for _, c := range classes {
		if c.ID != "" {
			rows = append(rows, row{c.ID, c.DisplayName, c.ClassCode, c.ExternalID,
				strings.ToLower(c.DisplayName), strings.ToLower(c.ClassCode)})
		}
	}
	enc, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("replace classes: %w", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		// The ones gone first (id NOCASE: one back in another case stays, and is updated).
		if _, err := tx.ExecContext(ctx, `DELETE FROM classes
			WHERE id NOT IN (SELECT value ->> 'id' FROM json_each(?))`, string(enc)); err != nil {
			return err
		}
		// One statement for all: the full-text indexes flush once, not once a class. The
		// WHERE of the update leaves an unchanged class alone (no write, no index update).
		if _, err := tx.ExecContext(ctx, `INSERT INTO classes (id, display_name, class_code, external_id, name_key, code_key)
			SELECT value ->> 'id', value ->> 'name', value ->> 'code', value ->> 'ext', value ->> 'nameKey', value ->> 'codeKey'
			FROM json_each(?) WHERE true
			ON CONFLICT (id) DO UPDATE SET id = excluded.id, display_name = excluded.display_name,
				class_code = excluded.class_code, external_id = excluded.external_id,
				name_key = excluded.name_key, code_key = excluded.code_key
			WHERE id <> excluded.id COLLATE BINARY OR display_name <> excluded.display_name
				OR class_code <> excluded.class_code OR external_id <> excluded.external_id`, string(enc)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO class_reads (id, read_at) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET read_at = excluded.read_at`, now.UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("replace classes: %w", err)
	}
	return nil
}

// ReadClassesAt is when ReplaceClasses last stored a read of Graph's classes; zero if
// never.
func (s *Store) ReadClassesAt(ctx context.Context) (time.Time, error) {
	var at int64
	err := s.readRow(ctx, `SELECT read_at FROM class_reads WHERE id = 1`).Scan(&at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("read classes at: %w", err)
	}
	return time.Unix(0, at).UTC(), nil
}

// ClassCount is the number of classes stored.
func (s *Store) ClassCount(ctx context.Context) (int, error) {
	var n int
	if err := s.readRow(ctx, `SELECT count(*) FROM classes`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count classes: %w", err)
	}
	return n, nil
}

// idQuery is q as the queries here take it: trimmed, line breaks as spaces, lower-cased;
// ok is false when it can match nothing (empty, a NUL, invalid UTF-8).
func idQuery(q string) (string, bool) {
	q = strings.ToLower(strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(q)))
	if q == "" || strings.ContainsRune(q, 0) || !utf8.ValidString(q) {
		return "", false
	}
	return q, true
}

// likeEscape escapes q for a LIKE pattern with ESCAPE '\'. LIKE folds ASCII case only
// (q is lower-cased already).
func likeEscape(q string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q)
}

// ftsPhrase is q as one FTS5 string: inside double quotes every character is literal but
// '"', doubled.
func ftsPhrase(q string) string { return `"` + strings.ReplaceAll(q, `"`, `""`) + `"` }

// prefixEnd is the least string greater than every string that starts with q (q not
// empty): q with its last byte one higher. Valid UTF-8 never ends in 0xff, and a range
// compares bytes, so the result need not be valid UTF-8.
func prefixEnd(q string) string {
	b := []byte(q)
	b[len(b)-1]++
	return string(b)
}

// Suggestions of classes come in two steps: the classes whose name or code starts with
// the query (a range of classes_name or classes_code, from the indexes alone), and, when
// those are fewer than asked for, the other matches from a full-text index. ?1 and ?2 are
// the prefix range (the lower-cased query and prefixEnd), ?3 the limit, ?4 the FTS5 query.
const (
	classColumns  = "c.id, c.display_name, c.class_code, c.external_id"
	suggestPrefix = `SELECT ` + classColumns + ` FROM (
			SELECT n, name_key, id FROM classes WHERE name_key >= ?1 AND name_key < ?2
			UNION SELECT n, name_key, id FROM classes WHERE code_key >= ?1 AND code_key < ?2
			ORDER BY name_key, id LIMIT ?3) AS p
		CROSS JOIN classes AS c ON c.n = p.n ORDER BY p.name_key, p.id`
	notPrefix      = ` AND NOT (c.name_key >= ?1 AND c.name_key < ?2 OR c.code_key >= ?1 AND c.code_key < ?2)`
	suggestOrder   = ` ORDER BY c.name_key, c.id LIMIT ?3`
	suggestTrigram = `SELECT ` + classColumns + ` FROM classes AS c
		WHERE c.n IN (SELECT rowid FROM class_search WHERE class_search MATCH ?4)` + notPrefix + suggestOrder
	suggestWords = `SELECT ` + classColumns + ` FROM classes AS c
		WHERE c.n IN (SELECT rowid FROM class_words WHERE class_words MATCH ?4)` + notPrefix + suggestOrder
)

// SuggestClasses returns the classes whose name, code or id contains q (case-insensitive;
// q trimmed; an empty q matches none), best first: those whose name or code starts with q
// before other matches, then by name; at most limit (below 1: 10). A q of 1 or 2
// characters matches, besides those prefixes, only the start of a word of the name or
// code ("7b" finds "Science 7B" and "SCI-7B-2", not "Y17B" or a GUID holding "7b"), as
// the association list's search does.
func (s *Store) SuggestClasses(ctx context.Context, q string, limit int) ([]Class, error) {
	q, ok := idQuery(q)
	if !ok {
		return nil, nil
	}
	if limit < 1 {
		limit = defaultSuggestions
	}
	end := prefixEnd(q)
	out, err := s.queryClasses(ctx, suggestPrefix, q, end, limit)
	if err != nil {
		return nil, fmt.Errorf("suggest classes: %w", err)
	}
	if len(out) == limit {
		return out, nil
	}
	phrase, query := ftsPhrase(q), suggestTrigram
	if utf8.RuneCountInString(q) < 3 {
		// A query with no letter or digit holds no word, and can start none.
		if !strings.ContainsFunc(q, isWordRune) {
			return out, nil
		}
		query, phrase = suggestWords, phrase+"*"
	}
	more, err := s.queryClasses(ctx, query, q, end, limit-len(out), phrase)
	if err != nil {
		return nil, fmt.Errorf("suggest classes: %w", err)
	}
	return append(out, more...), nil
}

func (s *Store) queryClasses(ctx context.Context, query string, args ...any) ([]Class, error) {
	rows, err := s.readRows(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Class
	for rows.Next() {
		var c Class
		if err := rows.Scan(&c.ID, &c.DisplayName, &c.ClassCode, &c.ExternalID); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// readRows runs a query on the read pool through its prepared statement.
func (s *Store) readRows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// classNamesOf reads the classes of a JSON array of ids (c.id is NOCASE).
const classNamesOf = `SELECT j.value, ` + classColumns + ` FROM json_each(?) AS j CROSS JOIN classes AS c ON c.id = j.value`

// ClassNames returns, for each of ids that is a known class's id (regardless of case),
// that class, keyed by the id as given. Ids that are no class are absent.
func (s *Store) ClassNames(ctx context.Context, ids []string) (map[string]Class, error) {
	out := map[string]Class{}
	if len(ids) == 0 {
		return out, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("class names: %w", err)
	}
	rows, err := s.readRows(ctx, classNamesOf, string(list))
	if err != nil {
		return nil, fmt.Errorf("class names: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var given string
		var c Class
		if err := rows.Scan(&given, &c.ID, &c.DisplayName, &c.ClassCode, &c.ExternalID); err != nil {
			return nil, fmt.Errorf("class names: %w", err)
		}
		out[given] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("class names: %w", err)
	}
	return out, nil
}

// idOrder sorts ids ignoring case, then exactly: the order of the _nocase indexes.
const idOrder = " COLLATE NOCASE, "

// Suggestions of carts, like those of classes, come in two steps: the carts that start
// with the query (a range of carts_nocase, ?1 and ?2 as for classes, tested with LIKE ?4
// too, as the range may hold a few others), then the others that contain it (LIKE ?5),
// walking the same index in its order, which stops at the limit (?3). Cart ids are few
// beside associations' rows: the walk reads each id once, not once per association.
const (
	cartsPrefix = `SELECT cart_id FROM carts WHERE cart_id >= ?1 COLLATE NOCASE AND cart_id < ?2 COLLATE NOCASE
		AND cart_id LIKE ?4 ESCAPE '\' ORDER BY cart_id` + idOrder + `cart_id LIMIT ?3`
	cartsContaining = `SELECT cart_id FROM carts WHERE cart_id LIKE ?5 ESCAPE '\' AND cart_id NOT LIKE ?4 ESCAPE '\'
		ORDER BY cart_id` + idOrder + `cart_id LIMIT ?3`
	// ?1: the cart ids, a JSON array.
	cartUses = `SELECT j.value,
			(SELECT count(DISTINCT r.classroom_id) FROM association_carts AS c
				CROSS JOIN association_rooms AS r ON r.association_id = c.association_id WHERE c.cart_id = j.value),
			(SELECT count(*) FROM association_carts AS c WHERE c.cart_id = j.value)
		FROM json_each(?1) AS j ORDER BY j.key`
)

// SuggestCarts returns the cart ids listed by live associations that contain q
// (case-insensitive; q trimmed; an empty q matches none), those that start with q first,
// then by id (ignoring case, then exactly); at most limit (below 1: 10). Ids that differ
// only in case are two carts.
func (s *Store) SuggestCarts(ctx context.Context, q string, limit int) ([]CartUse, error) {
	q, ok := idQuery(q)
	if !ok {
		return nil, nil
	}
	if limit < 1 {
		limit = defaultSuggestions
	}
	end := prefixEnd(q)
	starts, contains := likeEscape(q)+"%", "%"+likeEscape(q)+"%"
	ids, err := s.readIDs(ctx, cartsPrefix, q, end, limit, starts)
	if err != nil {
		return nil, fmt.Errorf("suggest carts: %w", err)
	}
	if len(ids) < limit {
		more, err := s.readIDs(ctx, cartsContaining, q, end, limit-len(ids), starts, contains)
		if err != nil {
			return nil, fmt.Errorf("suggest carts: %w", err)
		}
		ids = append(ids, more...)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("suggest carts: %w", err)
	}
	rows, err := s.readRows(ctx, cartUses, string(list))
	if err != nil {
		return nil, fmt.Errorf("suggest carts: %w", err)
	}
	defer rows.Close()
	out := make([]CartUse, 0, len(ids))
	for rows.Next() {
		var u CartUse
		if err := rows.Scan(&u.CartID, &u.Rooms, &u.Associations); err != nil {
			return nil, fmt.Errorf("suggest carts: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("suggest carts: %w", err)
	}
	return out, nil
}

// readIDs runs a one-column query on the read pool.
func (s *Store) readIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.readRows(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

func scanIDs(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// idPage applies the defaults of a page request (page 1-based; perPage below 1:
// defaultIDPage) and returns its limit and offset.
func idPage(page, perPage int) (limit, offset int) {
	if perPage < 1 {
		perPage = defaultIDPage
	}
	return perPage, (max(page, 1) - 1) * perPage
}

// The Carts page. Without a query it walks carts_nocase. With one it reads every matching
// id (a cart whose id holds the query, that serves a classroom whose id holds it, or that
// an association whose name holds it lists; ?1 the query as a LIKE pattern) and pages them
// in Go: there are no more of them than carts. Ids are matched by a scan of each distinct
// id once (carts, rooms); names, for a query of 3+ characters, among the candidates of
// association_search (?2), since a scan of associations reads whole rows.
const (
	allCarts      = `SELECT cart_id FROM carts ORDER BY cart_id` + idOrder + `cart_id LIMIT ? OFFSET ?`
	cartsMatching = `SELECT cart_id FROM carts WHERE cart_id LIKE ?1 ESCAPE '\'
		UNION SELECT c.cart_id FROM rooms AS r
			CROSS JOIN association_rooms AS ar ON ar.classroom_id = r.classroom_id
			CROSS JOIN association_carts AS c ON c.association_id = ar.association_id
			WHERE r.classroom_id LIKE ?1 ESCAPE '\'
		UNION SELECT c.cart_id FROM associations AS a
			CROSS JOIN association_carts AS c ON c.association_id = a.id
			WHERE a.deleted_at IS NULL AND a.display_name LIKE ?1 ESCAPE '\'`
	cartsOrder    = ` ORDER BY 1` + idOrder + `1`
	matchingCarts = cartsMatching + cartsOrder
	// The names' arm is the last: this adds to its WHERE.
	matchingCartsIndex = cartsMatching + ` AND a.id IN (SELECT rowid FROM association_search WHERE association_search MATCH ?2)` + cartsOrder
	// For a page's ids (?1, a JSON array).
	cartsRooms = `SELECT DISTINCT c.cart_id, r.classroom_id FROM json_each(?1) AS j
		CROSS JOIN association_carts AS c ON c.cart_id = j.value
		CROSS JOIN association_rooms AS r ON r.association_id = c.association_id
		ORDER BY c.cart_id, r.classroom_id` + idOrder + `r.classroom_id`
	cartsAssociations = `SELECT c.cart_id, a.id, a.display_name FROM json_each(?1) AS j
		CROSS JOIN association_carts AS c ON c.cart_id = j.value
		CROSS JOIN associations AS a ON a.id = c.association_id
		WHERE a.deleted_at IS NULL ORDER BY c.cart_id, a.display_name COLLATE NOCASE, a.id`
)

// ListCarts returns one page of the cart ids of live associations, sorted by id (ignoring
// case, then exactly), and how many there are in all pages. A q (trimmed,
// case-insensitive) keeps the carts whose id contains it, that serve a classroom whose id
// contains it, or that are listed by an association whose name contains it. page is
// 1-based; perPage below 1 means 50.
func (s *Store) ListCarts(ctx context.Context, q string, page, perPage int) (entries []CartEntry, total int, err error) {
	limit, offset := idPage(page, perPage)
	err = s.readSnapshot(ctx, func(tx readTx) error {
		var ids []string
		var err error
		if strings.TrimSpace(q) == "" {
			ids, total, err = pageCarts(ctx, tx, limit, offset)
		} else {
			ids, total, err = pageMatches(ctx, tx, q, limit, offset, matchingCarts, matchingCartsIndex)
		}
		if err != nil || len(ids) == 0 {
			return err
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		rooms, err := queryIDPairs(ctx, tx, cartsRooms, string(list))
		if err != nil {
			return err
		}
		refs, err := queryRefs(ctx, tx, cartsAssociations, string(list))
		if err != nil {
			return err
		}
		entries = make([]CartEntry, len(ids))
		for i, id := range ids {
			entries[i] = CartEntry{CartID: id, Classrooms: rooms[id], Associations: refs[id]}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list carts: %w", err)
	}
	return entries, total, nil
}

// pageCarts reads one page of all cart ids, and their number.
func pageCarts(ctx context.Context, tx readTx, limit, offset int) ([]string, int, error) {
	var total int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM carts`).Scan(&total); err != nil || offset >= total {
		return nil, total, err
	}
	rows, err := tx.QueryContext(ctx, allCarts, limit, offset)
	if err != nil {
		return nil, 0, err
	}
	ids, err := scanIDs(rows)
	return ids, total, err
}

// pageMatches reads every id that a listing's query selects for q, in its order, and
// returns one page of them and their number. The query is scan, or for a q of 3+
// characters indexed (the same with a full-text index's candidates, ?2 its FTS5 query).
func pageMatches(ctx context.Context, tx readTx, q string, limit, offset int, scan, indexed string) ([]string, int, error) {
	lq, ok := idQuery(q)
	if !ok {
		return nil, 0, nil
	}
	query, args := scan, []any{"%" + likeEscape(lq) + "%"}
	if utf8.RuneCountInString(lq) >= 3 {
		query, args = indexed, append(args, ftsPhrase(lq))
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, 0, err
	}
	ids, err := scanIDs(rows)
	if err != nil || offset >= len(ids) {
		return nil, len(ids), err
	}
	return ids[offset:min(offset+limit, len(ids))], len(ids), nil
}

// The Classrooms page: the ids of known classes by class name (walking classes_name and,
// for each class, its ids in rooms_class), then the others by id. Without a query the
// walk stops at the page. With one, every match (an id that holds the query, of a class
// whose name or code holds it, or served by a cart whose id holds it; ?1 the query as a
// LIKE pattern) is read and sorted, and paged in Go; classes, for a query of 3+
// characters, among the candidates of class_search (?2).
const (
	roomsOrder = ` ORDER BY k.n IS NULL, k.name_key, k.id, r.classroom_id` + idOrder + `r.classroom_id`
	knownRooms = `SELECT r.classroom_id FROM classes AS k CROSS JOIN rooms AS r ON r.class_n = k.n
		ORDER BY k.name_key, k.id, r.classroom_id` + idOrder + `r.classroom_id LIMIT ? OFFSET ?`
	otherRooms = `SELECT classroom_id FROM rooms WHERE class_n IS NULL
		ORDER BY classroom_id` + idOrder + `classroom_id LIMIT ? OFFSET ?`
	roomsMatching = `WITH m (classroom_id) AS (
			SELECT classroom_id FROM rooms WHERE classroom_id LIKE ?1 ESCAPE '\'
			UNION SELECT ar.classroom_id FROM carts AS c
				CROSS JOIN association_carts AS ac ON ac.cart_id = c.cart_id
				CROSS JOIN association_rooms AS ar ON ar.association_id = ac.association_id
				WHERE c.cart_id LIKE ?1 ESCAPE '\'
			UNION SELECT r.classroom_id FROM classes AS k CROSS JOIN rooms AS r ON r.class_n = k.n
				WHERE (k.name_key LIKE ?1 ESCAPE '\' OR k.code_key LIKE ?1 ESCAPE '\')`
	roomsSorted = `)
		SELECT r.classroom_id FROM m CROSS JOIN rooms AS r ON r.classroom_id = m.classroom_id
			LEFT JOIN classes AS k ON k.n = r.class_n` + roomsOrder
	matchingRooms = roomsMatching + roomsSorted
	// The classes' arm is the last: this adds to its WHERE.
	matchingRoomsIndex = roomsMatching + ` AND k.n IN (SELECT rowid FROM class_search WHERE class_search MATCH ?2)` + roomsSorted
	// For a page's ids (?1, a JSON array).
	roomsClasses = `SELECT j.value, ` + classColumns + ` FROM json_each(?1) AS j
		CROSS JOIN rooms AS r ON r.classroom_id = j.value CROSS JOIN classes AS c ON c.n = r.class_n`
	roomsCarts = `SELECT DISTINCT r.classroom_id, c.cart_id FROM json_each(?1) AS j
		CROSS JOIN association_rooms AS r ON r.classroom_id = j.value
		CROSS JOIN association_carts AS c ON c.association_id = r.association_id
		ORDER BY r.classroom_id, c.cart_id` + idOrder + `c.cart_id`
	roomsAssociations = `SELECT r.classroom_id, a.id, a.display_name FROM json_each(?1) AS j
		CROSS JOIN association_rooms AS r ON r.classroom_id = j.value
		CROSS JOIN associations AS a ON a.id = r.association_id
		WHERE a.deleted_at IS NULL ORDER BY r.classroom_id, a.display_name COLLATE NOCASE, a.id`
)

// ListClassrooms returns one page of the classroom ids of live associations, each with
// its class (if it is a known class's id, regardless of case) and the carts serving it,
// and how many there are in all pages. The ids of known classes come first, by class
// name (then class id), then the others; ids of one class, and the others, by id
// (ignoring case, then exactly). A q (trimmed, case-insensitive) keeps the classrooms
// whose id, class name or class code contains it, or that a cart whose id contains it
// serves. page is 1-based; perPage below 1 means 50.
func (s *Store) ListClassrooms(ctx context.Context, q string, page, perPage int) (entries []ClassroomEntry, total int, err error) {
	limit, offset := idPage(page, perPage)
	err = s.readSnapshot(ctx, func(tx readTx) error {
		var ids []string
		var err error
		if strings.TrimSpace(q) == "" {
			ids, total, err = pageRooms(ctx, tx, limit, offset)
		} else {
			ids, total, err = pageMatches(ctx, tx, q, limit, offset, matchingRooms, matchingRoomsIndex)
		}
		if err != nil || len(ids) == 0 {
			return err
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		classes := map[string]*Class{}
		rows, err := tx.QueryContext(ctx, roomsClasses, string(list))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			c := new(Class)
			if err := rows.Scan(&id, &c.ID, &c.DisplayName, &c.ClassCode, &c.ExternalID); err != nil {
				return err
			}
			classes[id] = c
		}
		if err := rows.Err(); err != nil {
			return err
		}
		carts, err := queryIDPairs(ctx, tx, roomsCarts, string(list))
		if err != nil {
			return err
		}
		refs, err := queryRefs(ctx, tx, roomsAssociations, string(list))
		if err != nil {
			return err
		}
		entries = make([]ClassroomEntry, len(ids))
		for i, id := range ids {
			entries[i] = ClassroomEntry{ClassroomID: id, Class: classes[id], Carts: carts[id], Associations: refs[id]}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list classrooms: %w", err)
	}
	return entries, total, nil
}

// pageRooms reads one page of all classroom ids: from the known classes' ids, then, once
// the page reaches past them, from the others.
func pageRooms(ctx context.Context, tx readTx, limit, offset int) ([]string, int, error) {
	var total, known int
	if err := tx.QueryRowContext(ctx, `SELECT count(*), count(class_n) FROM rooms`).Scan(&total, &known); err != nil {
		return nil, 0, err
	}
	var ids []string
	if offset < known {
		rows, err := tx.QueryContext(ctx, knownRooms, limit, offset)
		if err != nil {
			return nil, 0, err
		}
		if ids, err = scanIDs(rows); err != nil {
			return nil, 0, err
		}
	}
	if len(ids) < limit && offset+len(ids) < total {
		rows, err := tx.QueryContext(ctx, otherRooms, limit-len(ids), max(0, offset-known))
		if err != nil {
			return nil, 0, err
		}
		more, err := scanIDs(rows)
		if err != nil {
			return nil, 0, err
		}
		ids = append(ids, more...)
	}
	return ids, total, nil
}

// otherCartUses: the live associations but ?2 that list the carts of ?1 (a JSON array).
const otherCartUses = `SELECT c.cart_id, a.id, a.display_name FROM json_each(?1) AS j
	CROSS JOIN association_carts AS c ON c.cart_id = j.value
	CROSS JOIN associations AS a ON a.id = c.association_id
	WHERE c.association_id <> ?2 AND a.deleted_at IS NULL
	ORDER BY c.cart_id, a.display_name COLLATE NOCASE, a.id`

// OtherCartUses returns, for each of carts that a live association other than except
// lists, those associations (by name, then id), keyed by the cart id: the form's warning
// that a cart also serves another association. Cart ids match exactly; carts no other
// association lists are absent.
func (s *Store) OtherCartUses(ctx context.Context, carts []string, except int64) (map[string][]AssociationRef, error) {
	if len(carts) == 0 {
		return map[string][]AssociationRef{}, nil
	}
	list, err := json.Marshal(carts)
	if err != nil {
		return nil, fmt.Errorf("other cart uses: %w", err)
	}
	rows, err := s.readRows(ctx, otherCartUses, string(list), except)
	if err != nil {
		return nil, fmt.Errorf("other cart uses: %w", err)
	}
	out, err := scanRefs(rows)
	if err != nil {
		return nil, fmt.Errorf("other cart uses: %w", err)
	}
	return out, nil
}

// sameName: the live associations but ?2 named exactly ?1. The NOCASE comparison lets the
// live-name index find the candidates.
const sameName = `SELECT id, display_name FROM associations
	WHERE display_name = ?1 COLLATE NOCASE AND display_name = ?1 AND deleted_at IS NULL AND id <> ?2 ORDER BY id`

// SameNameAssociations returns the live associations other than except whose display
// name is exactly name, by id.
func (s *Store) SameNameAssociations(ctx context.Context, name string, except int64) ([]AssociationRef, error) {
	rows, err := s.readRows(ctx, sameName, name, except)
	if err != nil {
		return nil, fmt.Errorf("same name associations: %w", err)
	}
	defer rows.Close()
	var out []AssociationRef
	for rows.Next() {
		var r AssociationRef
		if err := rows.Scan(&r.ID, &r.DisplayName); err != nil {
			return nil, fmt.Errorf("same name associations: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("same name associations: %w", err)
	}
	return out, nil
}

// readSnapshot runs fn in a read transaction: its queries see one snapshot.
func (s *Store) readSnapshot(ctx context.Context, fn func(readTx) error) error {
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(readTx{s, tx})
}

// queryIDPairs reads (key, value) rows, in order, into each key's list of values.
func queryIDPairs(ctx context.Context, tx readTx, query string, args ...any) (map[string][]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = append(out[k], v)
	}
	return out, rows.Err()
}

// queryRefs reads (key, association id, name) rows, in order, into each key's list of
// associations.
func queryRefs(ctx context.Context, tx readTx, query string, args ...any) (map[string][]AssociationRef, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanRefs(rows)
}

func scanRefs(rows *sql.Rows) (map[string][]AssociationRef, error) {
	defer rows.Close()
	out := map[string][]AssociationRef{}
	for rows.Next() {
		var k string
		var r AssociationRef
		if err := rows.Scan(&k, &r.ID, &r.DisplayName); err != nil {
			return nil, err
		}
		out[k] = append(out[k], r)
	}
	return out, rows.Err()
}
