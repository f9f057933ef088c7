package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/cartclass/cartclass/store"
)

// seedVersion names the generator below; change it whenever the generated data changes so
// that cached files are rebuilt.
const seedVersion = "v2"

// Search terms the read scenarios use: commonTerm starts about 30 % of the display names,
// rareTerm is in exactly rareRows descriptions, shortTerm is what the box holds after two
// keystrokes (it also matches the descriptions mentioning scanners).
const (
	commonTerm = "science"
	rareTerm   = "zebrafinch"
	rareRows   = 5
	shortTerm  = "sc"
)

// schema creates an empty database at path with create and returns its schema version
// (PRAGMA user_version) and a short hash of its schema: the key seeded files are cached by.
func schema(ctx context.Context, path string, create func(path string) error) (version int, key string, err error) {
	if err := create(path); err != nil {
		return 0, "", fmt.Errorf("create the schema: %w", err)
	}
	db, err := openDB(path, false)
	if err != nil {
		return 0, "", err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, "", fmt.Errorf("schema version: %w", err)
	}
	var ddl string
	err = db.QueryRowContext(ctx, `SELECT group_concat(sql, ';') FROM
		(SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name)`).Scan(&ddl)
	if err != nil {
		return 0, "", fmt.Errorf("schema: %w", err)
	}
	// Seeded files are copies of this one: fold its WAL in.
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return 0, "", err
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", version, ddl))
	return version, hex.EncodeToString(sum[:6]), nil
}

// storeSchema creates the schema the way the brief's store does: store.Open applies the
// migrations of the store package this program was built with.
func storeSchema(ctx context.Context) func(path string) error {
	return func(path string) error {
		st, err := store.Open(ctx, path)
		if err != nil {
			return err
		}
		return st.Close()
	}
}

// openDB opens path with the modernc driver, read-only when ro. One connection: the
// seeder writes in one transaction and the counters read once.
func openDB(path string, ro bool) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if ro {
		q.Set("mode", "ro")
	} else {
		q.Add("_pragma", "synchronous(OFF)")
	}
	escaped := strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F").Replace(path)
	db, err := sql.Open("sqlite", "file:"+escaped+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// seeded returns the path of a database holding size associations, building it (in
// seconds) from a copy of the empty database empty, whose schema key is key, unless it is
// cached under os.TempDir().
func seeded(ctx context.Context, size int, empty, key string) (string, error) {
	dir := filepath.Join(os.TempDir(), "cartclass-loadtest")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("seed-%d-%s-%s.db", size, seedVersion, key))
	if _, err := os.Stat(path); err == nil {
		progress("using the seeded database %s", path)
		return path, nil
	}
	progress("seeding %d associations into %s", size, path)
	start := time.Now()
	// Build beside the final name and rename at the end, so an interrupted seeding is
	// never taken for a complete one.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	defer removeDB(tmp)
	if err := copyFile(empty, tmp); err != nil {
		return "", err
	}
	if err := insertAssociations(ctx, tmp, size); err != nil {
		return "", fmt.Errorf("seed %d associations: %w", size, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	progress("seeded %d associations in %.1fs", size, time.Since(start).Seconds())
	return path, nil
}

// insertAssociations adds n synced associations to the database at path, in one
// transaction and without outbox rows, so the server has nothing to push.
func insertAssociations(ctx context.Context, path string, n int) error {
	db, err := openDB(path, false)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO associations
		(graph_id, display_name, description, version, device_cart_ids, classroom_ids,
		 graph_created_at, graph_modified_at, revision, created_at, updated_at,
		 created_by_sub, created_by_name, updated_by_sub, updated_by_name, search_text,
		 sync_state, synced_revision)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 'dev-admin', 'Dev Admin', 'dev-admin', 'Dev Admin', ?, 'synced', 1)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	// The newest change is a minute ago; older ones are spread over about a year.
	newest := time.Now().Add(-time.Minute)
	step := 365 * 24 * time.Hour / time.Duration(n)
	for i := range n {
		a := generate(rng, i, n)
		updated := newest.Add(-time.Duration(n-1-i) * step)
		created := updated.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
		carts, _ := json.Marshal(a.DeviceCartIDs)
		rooms, _ := json.Marshal(a.ClassroomIDs)
		if _, err := stmt.ExecContext(ctx, uuid.NewString(), a.DisplayName, a.Description, a.Version,
			string(carts), string(rooms), created.UnixNano(), updated.UnixNano(),
			created.UnixNano(), updated.UnixNano(), searchText(a)); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Fold the WAL into the file: the cache keeps the main file only.
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

var (
	subjects = []string{"Maths", "English", "History", "Geography", "Art", "Music", "Drama", "Computing",
		"French", "Spanish", "PE", "Library", "Design", "Languages", "Humanities", "Business"}
	kinds  = []string{"iPads", "Chromebooks", "Laptops", "Surface Go", "MacBooks", "Netbooks"}
	places = []string{"Block A", "Block B, first floor", "North building", "Next to the staff room",
		"Upper corridor", "Annexe", "Main hall", "Sixth form centre"}
	uses = []string{"shared with Year 7", "for exams", "charged overnight", "returned to the office daily",
		"booked weekly", "for the sixth form", "spare devices", "for supply teachers", "with document scanners"}
)

// generate makes the i-th of n associations: "Science iPads 17" for about 30 % of them,
// a description of a few words, 1–4 cart ids and 1–6 classroom ids. rareRows of them,
// spread through the table, mention rareTerm.
func generate(rng *rand.Rand, i, n int) store.Fields {
	subject := subjects[rng.IntN(len(subjects))]
	if rng.Float64() < 0.30 {
		subject = "Science"
	}
	f := store.Fields{
		DisplayName: fmt.Sprintf("%s %s %d", subject, kinds[rng.IntN(len(kinds))], 1+rng.IntN(40)),
		Version:     int32(1 + rng.IntN(5)),
	}
	place := places[rng.IntN(len(places))]
	switch {
	case rare(i, n):
		f.Description = place + ", beside the " + rareTerm + " aviary."
	case rng.IntN(10) > 0:
		f.Description = place + ", " + uses[rng.IntN(len(uses))] + "."
	}
	f.DeviceCartIDs = ids(rng, "cart-", 1+rng.IntN(4), 1, 3000)
	f.ClassroomIDs = ids(rng, "room-", 1+rng.IntN(6), 100, 999)
	return f
}

// rare reports whether the i-th of n associations is one of the rareRows that mention
// rareTerm: the middles of rareRows equal slices of the table.
func rare(i, n int) bool {
	for k := range rareRows {
		if i == (2*k+1)*n/(2*rareRows) {
			return true
		}
	}
	return false
}

// ids returns k distinct ids prefix+number with numbers in [lo, hi].
func ids(rng *rand.Rand, prefix string, k, lo, hi int) []string {
	out := make([]string, 0, k)
	for len(out) < k {
		id := fmt.Sprintf("%s%d", prefix, lo+rng.IntN(hi-lo+1))
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// searchText is what the store keeps for the search box (store/association.go): the
// lower-cased name, description and ids, one per line.
func searchText(f store.Fields) string {
	parts := append([]string{f.DisplayName, f.Description}, f.DeviceCartIDs...)
	parts = append(parts, f.ClassroomIDs...)
	return strings.ToLower(strings.Join(parts, "\n"))
}

// dataFacts are counts read from a database: how many rows each search term matches.
type dataFacts struct {
	total, common, rare, short int
}

func readFacts(ctx context.Context, path string) (dataFacts, error) {
	db, err := openDB(path, true)
	if err != nil {
		return dataFacts{}, err
	}
	defer db.Close()
	var f dataFacts
	err = db.QueryRowContext(ctx, `SELECT count(*),
		count(*) FILTER (WHERE instr(search_text, ?) > 0),
		count(*) FILTER (WHERE instr(search_text, ?) > 0),
		count(*) FILTER (WHERE instr(search_text, ?) > 0)
		FROM associations`, commonTerm, rareTerm, shortTerm).Scan(&f.total, &f.common, &f.rare, &f.short)
	return f, err
}

// countAssociations counts the rows in the database at path, read-only: the server may be
// writing to it.
func countAssociations(ctx context.Context, path string) (int, error) {
	db, err := openDB(path, true)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, "SELECT count(*) FROM associations").Scan(&n)
	return n, err
}

// copyFile copies the database file src to dst (the seeded file carries no WAL).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	// Owner-only, as the store creates its files: the server keeps sessions in the copy.
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeDB removes a database file and its WAL and shared-memory files.
func removeDB(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			progress("remove %s: %v", p, err)
		}
	}
}
