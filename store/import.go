package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ImportFor is how long the preview of a CSV import can be applied after the upload.
const ImportFor = time.Hour

// importsKept is how many previews one admin keeps: a newer upload drops the oldest, so
// that repeated uploads cannot fill the database.
const importsKept = 5

// Errors of ApplyImport and GetImport besides ErrNotFound (which also answers another
// admin's preview: nobody learns that it exists).
var (
	ErrImportApplied = errors.New("import already applied")
	ErrImportExpired = errors.New("import preview expired")
	ErrImportInvalid = errors.New("import has rows with errors")
	ErrImportNothing = errors.New("import changes nothing")
)

// ImportKind is what a row of an uploaded file would do.
type ImportKind string

// The kinds of import rows.
const (
	ImportNew       ImportKind = "new"       // no association matches: one is created
	ImportChanged   ImportKind = "changed"   // it changes the association it matches
	ImportUnchanged ImportKind = "unchanged" // it holds what its association holds
	ImportInvalid   ImportKind = "invalid"   // it has errors: nothing can be applied
)

// ImportKey is what a row of an uploaded file is matched by: its graphId cell, else its
// display name (see MatchImport).
type ImportKey struct {
	GraphID     string
	DisplayName string
}

// ImportMatch is the association a row's key names, as it is now.
type ImportMatch struct {
	// Found: Association is the association the row matches, by its graphId or, when it
	// gives none, by being the only live association with its display name.
	Found       bool
	Association Association
	// Deleted: the graphId names an association deleted in cartclass (Association holds
	// it, Found is false). An import does not restore.
	Deleted bool
	// SameName is how many live associations have the row's display name: 1 when it
	// matched by name, 0 or more than 1 for a row without graphId that matched none.
	SameName int
}

// ImportError is one problem of a row: the column (by its header name) and what is wrong,
// in the association form's words.
type ImportError struct {
	Column  string `json:"column"`
	Message string `json:"message"`
}

// ImportRow is one data row of an uploaded file, as its preview shows it and Apply uses it.
type ImportRow struct {
	// Row is the row's number in the spreadsheet: the header is row 1.
	Row  int        `json:"row"`
	Kind ImportKind `json:"kind"` // set by SaveImport
	// Name is how the row is named on the preview: its display name after the change (or
	// the display name cell of a row with errors).
	Name string `json:"name"`
	// AssociationID and Revision are the association the row matched and its revision at
	// the preview; 0 for a new row (until it is applied: then AssociationID is the
	// association it created).
	AssociationID int64 `json:"id,omitempty"`
	Revision      int64 `json:"revision,omitempty"`
	// Fields are the association's values after the row is applied: the matched
	// association's, with the file's cells over them.
	Fields Fields `json:"fields"`
	// Base is the matched association's values at the preview (not stored: SaveImport
	// compares Fields with it).
	Base Fields `json:"-"`
	// Changes are the field changes the row makes (for a new row, its initial values);
	// set by SaveImport.
	Changes []FieldChange `json:"changes,omitempty"`
	Errors  []ImportError `json:"errors,omitempty"`
	// SameName is, for a new row, how many live associations had its display name at the
	// preview (see ImportMatch): Apply refuses when that changed.
	SameName int `json:"sameName,omitempty"`
	// ByName: the row matched its association by display name (it has no graphId); Apply
	// refuses when another live association has that name by then.
	ByName bool `json:"byName,omitempty"`
	// SyncState is the matched association's sync state when it is SyncChanged or
	// SyncDeleted: an edit of it waits for an admin's choice on its page (see enqueueEdit).
	SyncState string `json:"syncState,omitempty"`
}

// Held reports whether applying r leaves its change waiting for an admin's choice
// (changed in Intune too, or deleted there) instead of sending it.
func (r ImportRow) Held() bool { return r.SyncState == SyncChanged || r.SyncState == SyncDeleted }

// ImportPreview is what an uploaded file would do: kept for the admin who uploaded it until
// it is applied or expires.
type ImportPreview struct {
	ID        string
	Owner     Actor
	FileName  string
	CreatedAt time.Time
	ExpiresAt time.Time
	AppliedAt time.Time // zero until applied
	// Rows are every data row, in the file's order; unchanged rows hold only what Apply
	// checks (their association and its revision).
	Rows                             []ImportRow
	New, Changed, Unchanged, Invalid int
	// Ignored are the header's columns the import did not read.
	Ignored []string
}

// Changes is how many associations Apply would create or change.
func (p ImportPreview) Changes() int { return p.New + p.Changed }

// StaleImportError is returned by ApplyImport (wrapping ErrConflict) when associations
// the preview relied on have changed since it was made; nothing was saved.
type StaleImportError struct {
	Rows []StaleRow
}

// StaleRow is a row of a preview that no longer holds.
type StaleRow struct {
	Row  int
	Name string // the row's name on the preview
	// AssociationID is the association it matched (0 for a new row); Current is that
	// association now (zero when it was purged), or, for a new row, the live association
	// that now has the same display name.
	AssociationID int64
	Current       Association
	// Gone: the association was deleted (or purged) since the preview.
	Gone bool
	// SameName: the row matched its association by display name, and another live
	// association has that name now.
	SameName bool
}

func (e *StaleImportError) Error() string {
	if len(e.Rows) == 1 {
		return fmt.Sprintf("row %d of the import changed since its preview", e.Rows[0].Row)
	}
	return fmt.Sprintf("%d rows of the import changed since its preview", len(e.Rows))
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *StaleImportError) Unwrap() error { return ErrConflict }

// Queries that match import rows; see MatchImport. A name is compared exactly: the NOCASE
// comparison lets the live-name index find the candidates.
const (
	importByGraphID  = selectAssociation + " WHERE graph_id = ?"
	importNameCount  = "SELECT count(*) FROM associations WHERE display_name = ?1 COLLATE NOCASE AND display_name = ?1 AND deleted_at IS NULL"
	importByName     = selectAssociation + " WHERE display_name = ?1 COLLATE NOCASE AND display_name = ?1 AND deleted_at IS NULL LIMIT 1"
	importPreviewCol = "id, owner_sub, owner_name, file_name, created_at, expires_at, applied_at, new_rows, changed_rows, unchanged_rows, invalid_rows, ignored, rows"
)

// MatchImport finds, for each key, the association it names (see ImportMatch), all in one
// read transaction: a row with a graphId matches the association (live or deleted) with
// that id, or nothing; a row without one matches the only live association whose display
// name is exactly its own, or nothing.
func (s *Store) MatchImport(ctx context.Context, keys []ImportKey) ([]ImportMatch, error) {
	out := make([]ImportMatch, len(keys))
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("match import: %w", err)
	}
	defer tx.Rollback()
	var stmts [3]*sql.Stmt
	for i, q := range []string{importByGraphID, importNameCount, importByName} {
		if stmts[i], err = tx.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("match import: %w", err)
		}
		defer stmts[i].Close()
	}
	byGraphID, nameCount, byName := stmts[0], stmts[1], stmts[2]
	for i, k := range keys {
		m := &out[i]
		if k.GraphID != "" {
			a, err := scanAssociation(byGraphID.QueryRowContext(ctx, normGraphID(k.GraphID)))
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return nil, fmt.Errorf("match import: %w", err)
			case !a.DeletedAt.IsZero():
				m.Deleted, m.Association = true, a
			default:
				m.Found, m.Association = true, a
			}
			continue
		}
		if err := nameCount.QueryRowContext(ctx, k.DisplayName).Scan(&m.SameName); err != nil {
			return nil, fmt.Errorf("match import: %w", err)
		}
		if m.SameName == 1 {
			if m.Association, err = scanAssociation(byName.QueryRowContext(ctx, k.DisplayName)); err != nil {
				return nil, fmt.Errorf("match import: %w", err)
			}
			m.Found = true
		}
	}
	return out, nil
}

// SaveImport keeps the preview of an upload of fileName by owner (ignored: the header's
// columns it did not read): every row is classified (ImportInvalid when it has errors,
// else ImportNew without an AssociationID, else ImportChanged or ImportUnchanged as its
// Fields differ from its Base) and given its Changes. Only the owner's newest few previews
// are kept. The returned preview has its ID, times, counts and rows.
func (s *Store) SaveImport(ctx context.Context, owner Actor, fileName string, rows []ImportRow, ignored ...string) (ImportPreview, error) {
	now := s.Now().UTC()
	p := ImportPreview{ID: rand.Text(), Owner: owner, FileName: fileName, CreatedAt: now, ExpiresAt: now.Add(ImportFor), Ignored: ignored}
	if p.Ignored == nil {
		p.Ignored = []string{}
	}
	for _, r := range rows {
		switch {
		case len(r.Errors) > 0:
			r.Kind, r.Changes = ImportInvalid, nil
			p.Invalid++
		case r.AssociationID == 0:
			r.Kind, r.Changes, r.Name = ImportNew, initialFields(r.Fields), r.Fields.DisplayName
			p.New++
		default:
			r.Changes, r.Name = diffFields(r.Base, r.Fields), r.Fields.DisplayName
			if len(r.Changes) == 0 {
				// Kept only for Apply's check that its association is still as it was.
				r = ImportRow{Row: r.Row, Kind: ImportUnchanged, Name: r.Name, AssociationID: r.AssociationID,
					Revision: r.Revision, ByName: r.ByName}
				p.Unchanged++
				p.Rows = append(p.Rows, r)
				continue
			}
			r.Kind = ImportChanged
			p.Changed++
		}
		p.Rows = append(p.Rows, r)
	}
	enc, err := json.Marshal(p.Rows)
	if err != nil {
		return ImportPreview{}, fmt.Errorf("save import: %w", err)
	}
	if p.Rows == nil {
		enc = []byte("[]")
	}
	ign, err := json.Marshal(p.Ignored)
	if err != nil {
		return ImportPreview{}, fmt.Errorf("save import: %w", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO import_previews (`+importPreviewCol+`)
			VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)`,
			p.ID, owner.Subject, owner.Name, fileName, now.UnixNano(), p.ExpiresAt.UnixNano(),
			p.New, p.Changed, p.Unchanged, p.Invalid, string(ign), string(enc)); err != nil {
			return err
		}
		// The newest by insertion (rowid), not by clock reading: a clock set back, or two
		// uploads in one tick, must never drop the preview just saved.
		_, err := tx.ExecContext(ctx, `DELETE FROM import_previews WHERE owner_sub = ?1 AND rowid NOT IN (
			SELECT rowid FROM import_previews WHERE owner_sub = ?1 ORDER BY rowid DESC LIMIT ?2)`,
			owner.Subject, importsKept)
		return err
	})
	if err != nil {
		return ImportPreview{}, fmt.Errorf("save import: %w", err)
	}
	return p, nil
}

// GetImport returns the preview id of the admin ownerSub: ErrNotFound when there is none
// (or it is someone else's, or it was dropped for newer ones), and the preview with
// ErrImportExpired when it is past its time.
func (s *Store) GetImport(ctx context.Context, id, ownerSub string) (ImportPreview, error) {
	p, err := scanImport(s.readRow(ctx, `SELECT `+importPreviewCol+` FROM import_previews WHERE id = ? AND owner_sub = ?`, id, ownerSub))
	if errors.Is(err, sql.ErrNoRows) {
		return ImportPreview{}, ErrNotFound
	}
	if err != nil {
		return ImportPreview{}, fmt.Errorf("get import: %w", err)
	}
	if p.AppliedAt.IsZero() && !s.Now().Before(p.ExpiresAt) {
		return p, ErrImportExpired
	}
	return p, nil
}

// ApplyImport applies preview id of by (its owner) in one transaction: every new row
// creates an association and every changed row changes its association, each queued for
// Graph and recorded in its history as imported from CSV. It saves nothing and returns:
// ErrNotFound (no such preview of by's), ErrImportApplied (applied before; the preview is
// returned), ErrImportExpired, ErrImportInvalid (it has rows with errors),
// ErrImportNothing (it has no new or changed rows: it is not marked applied), or a
// *StaleImportError naming every row whose association changed since the preview, and
// every new row whose display name is now held by more or fewer live associations than at
// the preview (its match would differ). A changed row may rename its association to a
// name another has, as the form may.
func (s *Store) ApplyImport(ctx context.Context, id string, by Actor) (ImportPreview, error) {
	// The rows are read and decoded before the writer is taken (a large preview is
	// megabytes of JSON); inside, the preview's state is read again, so a second Apply
	// waiting behind the first sees it applied.
	p, err := scanImport(s.readRow(ctx, `SELECT `+importPreviewCol+` FROM import_previews WHERE id = ? AND owner_sub = ?`, id, by.Subject))
	if errors.Is(err, sql.ErrNoRows) {
		return ImportPreview{}, ErrNotFound
	}
	if err != nil {
		return ImportPreview{}, fmt.Errorf("apply import: %w", err)
	}
	err = s.inTx(ctx, func(sqlTx *sql.Tx) error {
		// Thousands of rows run the same few statements: each is prepared once.
		tx := newStmtTx(sqlTx)
		defer tx.Close()
		var applied sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT applied_at FROM import_previews WHERE id = ? AND owner_sub = ?`, id, by.Subject).Scan(&applied)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound // dropped for newer ones meanwhile
		case err != nil:
			return err
		case applied.Valid:
			p.AppliedAt = fromNanos(applied)
			return ErrImportApplied
		case !s.Now().Before(p.ExpiresAt):
			return ErrImportExpired
		case p.Invalid > 0:
			return ErrImportInvalid
		case p.Changes() == 0:
			return ErrImportNothing
		}
		// Check every row before writing any, so that the refusal names them all.
		current := make([]Association, len(p.Rows))
		var stale []StaleRow
		nameCount := func(name string) (int, error) {
			var n int
			err := tx.QueryRowContext(ctx, importNameCount, name).Scan(&n)
			return n, err
		}
		for i, r := range p.Rows {
			if r.Kind == ImportNew {
				// It must still match nothing: as many live associations have its name.
				n, err := nameCount(r.Name)
				if err != nil {
					return err
				}
				if n != r.SameName {
					sr := StaleRow{Row: r.Row, Name: r.Name}
					sr.Current, err = scanAssociation(tx.QueryRowContext(ctx, importByName, r.Name))
					if err != nil && !errors.Is(err, sql.ErrNoRows) {
						return err
					}
					stale = append(stale, sr)
				}
				continue
			}
			if r.ByName {
				// It must still match its association alone.
				n, err := nameCount(r.Name)
				if err != nil {
					return err
				}
				if n != 1 {
					sr := StaleRow{Row: r.Row, Name: r.Name, AssociationID: r.AssociationID, SameName: true}
					sr.Current, err = scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", r.AssociationID))
					if err != nil && !errors.Is(err, sql.ErrNoRows) {
						return err
					}
					sr.Gone = err != nil || !sr.Current.DeletedAt.IsZero()
					stale = append(stale, sr)
					continue
				}
			}
			cur, err := scanAssociation(tx.QueryRowContext(ctx, selectAssociation+" WHERE id = ?", r.AssociationID))
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			current[i] = cur
			if gone := err != nil || !cur.DeletedAt.IsZero(); gone || cur.Revision != r.Revision {
				stale = append(stale, StaleRow{Row: r.Row, Name: r.Name, AssociationID: r.AssociationID, Current: cur, Gone: gone})
			}
		}
		if len(stale) > 0 {
			return &StaleImportError{Rows: stale}
		}
		now := s.Now().UTC()
		for i, r := range p.Rows {
			if r.Kind != ImportNew && r.Kind != ImportChanged {
				continue
			}
			carts, rooms, err := encodeIDs(r.Fields)
			if err != nil {
				return err
			}
			c := change{kind: HistoryCSV, choice: p.FileName, by: by, at: now}
			if r.Kind == ImportNew {
				// The applied preview links each row to its association.
				if p.Rows[i].AssociationID, err = insertAssociation(ctx, tx, r.Fields, carts, rooms, now, c); err != nil {
					return fmt.Errorf("row %d: %w", r.Row, err)
				}
				continue
			}
			if err := editAssociation(ctx, tx, current[i], r.Fields, carts, rooms, c); err != nil {
				return fmt.Errorf("row %d: %w", r.Row, err)
			}
		}
		p.AppliedAt = now
		enc, err := json.Marshal(p.Rows)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE import_previews SET applied_at = ?, rows = ? WHERE id = ?`, now.UnixNano(), string(enc), p.ID)
		return err
	})
	var staleErr *StaleImportError
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, ErrImportApplied), errors.Is(err, ErrImportExpired), errors.Is(err, ErrImportInvalid), errors.Is(err, ErrImportNothing):
		return p, err
	case errors.Is(err, ErrNotFound), errors.As(err, &staleErr):
		return ImportPreview{}, err
	}
	return ImportPreview{}, fmt.Errorf("apply import: %w", err)
}

// PurgeImports deletes the previews that expired before before. (Callers keep them a
// while past expiry, so that an expired or applied preview's page still says so.)
func (s *Store) PurgeImports(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM import_previews WHERE expires_at <= ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("purge imports: %w", err)
	}
	return res.RowsAffected()
}

func scanImport(row scanner) (ImportPreview, error) {
	var (
		p                ImportPreview
		created, expires int64
		applied          sql.NullInt64
		ignored, rows    string
	)
	if err := row.Scan(&p.ID, &p.Owner.Subject, &p.Owner.Name, &p.FileName, &created, &expires, &applied,
		&p.New, &p.Changed, &p.Unchanged, &p.Invalid, &ignored, &rows); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(ignored), &p.Ignored); err != nil {
		return p, fmt.Errorf("import %s ignored: %w", p.ID, err)
	}
	p.CreatedAt, p.ExpiresAt, p.AppliedAt = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC(), fromNanos(applied)
	if err := json.Unmarshal([]byte(rows), &p.Rows); err != nil {
		return p, fmt.Errorf("import %s rows: %w", p.ID, err)
	}
	return p, nil
}
