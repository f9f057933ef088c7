package web

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// CSV import: an admin uploads a spreadsheet (as CSV), sees a preview of every change it
// would make, and applies it in one transaction. The file is read whole (at most
// maxImportBytes), checked for what spreadsheets get wrong (encoding, delimiter, header),
// and each row goes through the association form's rules. Nothing is saved before Apply;
// the preview is kept in the store for its uploader, never in the page.

// Limits of an upload.
const (
	// importSlots is how many uploads are read at once.
	importSlots = 2
	// importKeptFor is how long a preview is kept past its expiry, so that its page
	// still says it was applied or expired.
	importKeptFor  = 24 * time.Hour
	maxImportBytes = 5 << 20
	maxImportRows  = 5000
	// maxImportBody is the most of an upload's body limitBody lets through: the file and
	// its multipart framing, and beyond that what readUpload reads and drops so that the
	// browser, still sending a file that is too large, gets the page that says so rather
	// than a reset connection. Larger bodies get the plain 413 page.
	maxImportBody = maxImportBytes + 16<<20
)

// importPath is where the upload form posts (limitBody lets its larger body through).
const importPath = "/imports"

// colGraphID is the import's column for Graph's id; the others are the form's field names.
const colGraphID = "graphId"

// importColumns are the columns an import reads, in the order its messages list them.
// The export's syncState and lastModified are cartclass's own and are ignored.
var importColumns = []string{views.FieldDisplayName, views.FieldDescription, views.FieldVersion,
	views.FieldDeviceCartIDs, views.FieldClassroomIDs, colGraphID}

// importFile is an uploaded file read as CSV.
type importFile struct {
	columns map[string]int // import column → its cell's index in a row
	ignored []string       // header cells that name no import column
	width   int            // the header's number of cells
	rows    []importRecord // the data rows, blank ones left out
}

// importRecord is one data row: its spreadsheet row number (the header is row 1) and cells.
type importRecord struct {
	row   int
	cells []string
}

// cell is rec's cell of column name, with an export's formula guard removed; ok is false
// when the file has no such column.
func (f *importFile) cell(rec importRecord, name string) (v string, ok bool) {
	i, ok := f.columns[name]
	if !ok || i >= len(rec.cells) {
		return "", ok
	}
	return uncell(rec.cells[i]), true
}

// uncell undoes csvCell: one apostrophe before a character that makes a spreadsheet read a
// formula, or before another apostrophe, is removed; every other cell is as it is.
func uncell(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.IndexByte(formulaStarts+"'", s[1]) >= 0 {
		return s[1:]
	}
	return s
}

// uploadError is a problem with the upload as a whole: the form shows it next to the file
// field with status.
type uploadError struct {
	status int
	msg    string
}

func (e *uploadError) Error() string { return e.msg }

func badFile(msg string) *uploadError {
	return &uploadError{status: http.StatusUnprocessableEntity, msg: msg}
}

func (s *Server) handleImportForm(w http.ResponseWriter, r *http.Request) {
	s.renderImportForm(w, r, http.StatusOK, "")
}

func (s *Server) renderImportForm(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := s.page(w, r, "Import CSV", listCrumb, views.Crumb{Label: "Import CSV"})
	s.render(w, r, status, views.ImportPage(p, views.ImportForm{Error: msg, MaxRows: maxImportRows}))
}

// handleImportUpload reads an uploaded file, matches and checks every row, keeps the
// preview and shows it. A file that cannot be read as a whole is refused on the form.
func (s *Server) handleImportUpload(w http.ResponseWriter, r *http.Request) {
	// Each upload being read holds its file and rows in memory (a few times its size):
	// only importSlots are read at once, so a burst of uploads cannot grow memory far.
	select {
	case s.importSlots <- struct{}{}:
		defer func() { <-s.importSlots }()
	default:
		w.Header().Set("Retry-After", "5")
		s.renderImportForm(w, r, http.StatusServiceUnavailable, "Other CSV files are being read right now. Wait a few seconds, then upload this one again.")
		return
	}
	var (
		name string
		f    *importFile
		rows []store.ImportRow
		p    store.ImportPreview
	)
	err := func() (err error) {
		var data []byte
		if name, data, err = readUpload(r); err != nil {
			return err
		}
		if f, err = readImportCSV(data); err != nil {
			return err
		}
		if rows, err = s.planImport(r, f); err != nil {
			return err
		}
		p, err = s.store.SaveImport(r.Context(), s.actor(r), name, rows, f.ignored...)
		return err
	}()
	var bad *uploadError
	switch {
	case errors.As(err, &bad):
		s.renderImportForm(w, r, bad.status, bad.msg)
	case err != nil:
		s.fail(w, r, err)
	default:
		redirect(w, r, views.ImportURL(p.ID))
	}
}

// readUpload reads the file part of a multipart upload: its name (as the browser gave it,
// made safe to show) and contents. A file over maxImportBytes, or no file, is an
// *uploadError; a body that is not multipart is a 400.
func readUpload(r *http.Request) (name string, data []byte, err error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	found := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", nil, tooLarge()
		}
		if err != nil {
			return "", nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		if part.FormName() != "file" || found {
			_, err = io.Copy(io.Discard, part)
		} else {
			found, name = true, uploadName(part.FileName())
			data, err = io.ReadAll(io.LimitReader(part, maxImportBytes+1))
			if err == nil && len(data) > maxImportBytes {
				// Read the rest (limitBody bounds it), so the browser can read the answer.
				io.Copy(io.Discard, r.Body)
				return "", nil, tooLarge()
			}
		}
		if errors.As(err, &tooBig) {
			return "", nil, tooLarge()
		}
		if err != nil {
			return "", nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
	}
	if !found || name == "" && len(data) == 0 {
		return "", nil, badFile("Choose the CSV file to import.")
	}
	return name, data, nil
}

func tooLarge() *uploadError {
	return &uploadError{status: http.StatusRequestEntityTooLarge,
		msg: "The file is larger than 5 MiB. Import at most " + thousands(maxImportRows) + " rows at a time: split the file into smaller ones."}
}

// uploadName is a file name as the browser sent it, kept to one short line of text.
func uploadName(n string) string {
	// Some browsers send the whole path ("C:\Users\…\carts.csv"): keep its last part.
	if i := strings.LastIndexAny(n, `/\`); i >= 0 {
		n = n[i+1:]
	}
	n = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, strings.ToValidUTF8(n, ""))
	if utf8.RuneCountInString(n) > 120 {
		n = string([]rune(n)[:120]) + "…"
	}
	return strings.TrimSpace(n)
}

// Messages for files that are not CSV text as an import reads it.
const (
	saveAsUTF8 = "In Excel choose File → Save As → “CSV UTF-8 (Comma delimited)”; in LibreOffice, Save As “Text CSV” with the character set “Unicode (UTF-8)”."
	csvColumns = "displayName,description,version,deviceCartIds,classroomIds,graphId"
)

// readImportCSV reads data as an import's CSV file: UTF-8 with or without a byte-order
// mark, comma- or semicolon-separated (whichever the header row uses more), a header row
// naming the columns in any order and case, at most maxImportRows data rows. A file that
// cannot be read so is an *uploadError saying why and what to do.
func readImportCSV(data []byte) (*importFile, error) {
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return nil, badFile("This is an Excel workbook (.xlsx), not a CSV file. " + saveAsUTF8)
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		return nil, badFile("The file is UTF-16 text (Excel's “Unicode Text”), not UTF-8. " + saveAsUTF8)
	case bytes.IndexByte(data, 0) >= 0:
		return nil, badFile("This is not a CSV file: it holds binary data. Upload the spreadsheet saved as CSV. " + saveAsUTF8)
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if bad := invalidUTF8At(data); bad >= 0 {
		line := bytes.Count(data[:bad], []byte("\n")) + 1
		return nil, badFile(fmt.Sprintf("The file is not UTF-8 text: line %s holds a character in another encoding (such as Windows-1252). %s", thousands(line), saveAsUTF8))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badFile("The file is empty. Choose the CSV file to import.")
	}

	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = detectComma(data)
	cr.FieldsPerRecord = -1 // a row of another width is that row's error, not the file's
	header, err := cr.Read()
	if err != nil {
		return nil, csvReadError(err)
	}
	f := &importFile{columns: map[string]int{}, width: len(header)}
	for i, h := range header {
		h = strings.TrimFunc(h, func(r rune) bool { return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) })
		name := importColumn(h)
		switch {
		case name == "":
			if h != "" {
				f.ignored = append(f.ignored, h)
			}
		case name == "syncState" || name == "lastModified":
			// The export's read-only columns: cartclass keeps them itself.
		default:
			if j, dup := f.columns[name]; dup {
				return nil, badFile(fmt.Sprintf("The header names the column %s twice (columns %s and %s). Keep one of them.", name, columnLetter(j), columnLetter(i)))
			}
			f.columns[name] = i
		}
	}
	if _, ok := f.columns[views.FieldDisplayName]; !ok {
		msg := "The file has no displayName column. Its first row must name the columns as an export does: " + csvColumns + " (only displayName is required; any order)."
		if len(header) == 1 && strings.Contains(header[0], "\t") {
			msg += " This file looks tab-separated: save it as CSV instead."
		}
		return nil, badFile(msg)
	}
	// A spreadsheet shows each line of the file as a row, empty ones too (which the CSV
	// reader skips), and a record whose cells hold line breaks as one row.
	row, end := 1+emptyLines(data), cr.InputOffset()
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvReadError(err)
		}
		row += 1 + emptyLines(data[end:])
		end = cr.InputOffset()
		if blank(rec) {
			continue
		}
		if len(f.rows) == maxImportRows {
			return nil, badFile(fmt.Sprintf("The file has more than %s rows. Import at most %s at a time: split it into smaller files.", thousands(maxImportRows), thousands(maxImportRows)))
		}
		f.rows = append(f.rows, importRecord{row: row, cells: rec})
	}
	if len(f.rows) == 0 {
		return nil, badFile("The file has a header row but no rows below it: there is nothing to import.")
	}
	return f, nil
}

// emptyLines counts the empty lines at the start of data.
func emptyLines(data []byte) int {
	n := 0
	for {
		switch {
		case bytes.HasPrefix(data, []byte("\n")):
			data = data[1:]
		case bytes.HasPrefix(data, []byte("\r\n")):
			data = data[2:]
		default:
			return n
		}
		n++
	}
}

// invalidUTF8At is the offset of data's first byte that is not UTF-8, or -1.
func invalidUTF8At(data []byte) int {
	if utf8.Valid(data) {
		return -1
	}
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// detectComma is the delimiter of a CSV file: a semicolon when its first line (the header)
// has more of them than commas (Excel writes ";" where the decimal separator is a comma),
// else a comma.
func detectComma(data []byte) rune {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if bytes.Count(line, []byte(";")) > bytes.Count(line, []byte(",")) {
		return ';'
	}
	return ','
}

// importColumn is the column a header cell names, in any case: one of importColumns,
// syncState or lastModified, or "" for any other.
func importColumn(h string) string {
	for _, name := range exportHeader {
		if strings.EqualFold(h, name) {
			return name
		}
	}
	return ""
}

// columnLetter is a spreadsheet's name of column i (from 0): A … Z, AA ….
func columnLetter(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('A'+(i-1)%26)) + s
	}
	return s
}

// blank reports a row of empty cells (spreadsheets save empty rows as ",,,,").
func blank(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// csvReadError says where and why encoding/csv could not read the file.
func csvReadError(err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return badFile("The file could not be read as CSV.")
	}
	why, line := "it could not be read as CSV", pe.Line
	switch {
	case errors.Is(pe.Err, csv.ErrBareQuote):
		why = "a quotation mark (\") is inside a cell that does not start with one. Put the whole cell in quotation marks and double the mark inside (\"\")"
	case errors.Is(pe.Err, csv.ErrQuote):
		// The reader gives up where the file ends; the cell began on the record's line.
		why, line = "a cell that starts with a quotation mark (\") does not end with one, or a quotation mark inside it is not doubled (\"\")", pe.StartLine
	}
	return badFile(fmt.Sprintf("Line %s of the file cannot be read: %s.", thousands(line), why))
}

// planImport matches every row of f with the association it names and checks it with the
// form's rules: the rows of the preview.
func (s *Server) planImport(r *http.Request, f *importFile) ([]store.ImportRow, error) {
	keys := make([]store.ImportKey, len(f.rows))
	for i, rec := range f.rows {
		gid, _ := f.cell(rec, colGraphID)
		name, _ := f.cell(rec, views.FieldDisplayName)
		keys[i] = store.ImportKey{GraphID: strings.TrimSpace(gid), DisplayName: strings.TrimSpace(name)}
	}
	matches, err := s.store.MatchImport(r.Context(), keys)
	if err != nil {
		return nil, err
	}
	rows := make([]store.ImportRow, len(f.rows))
	firstRow := map[int64]int{} // association → the row that changes it
	newGraphIDs := map[string]int{}
	newNames := map[string]int{} // a display name new in this file → the row that gives it
	for i, rec := range f.rows {
		m, key := matches[i], keys[i]
		row := store.ImportRow{Row: rec.row, Name: key.DisplayName}
		if len(rec.cells) != f.width {
			row.Errors = []store.ImportError{{Message: fmt.Sprintf(
				"This row has %d cells, but the header has %d: a cell was added or left out, or a cell holding the separator is not in quotation marks.", len(rec.cells), f.width)}}
			rows[i] = row
			continue
		}
		switch {
		case key.GraphID != "" && m.Deleted:
			row.Errors = append(row.Errors, store.ImportError{Column: colGraphID,
				Message: "This association was deleted in cartclass. Restore it first (from the Deleted filter of the list), or clear the cell to create a new one."})
		case key.GraphID != "" && !m.Found:
			row.Errors = append(row.Errors, store.ImportError{Column: colGraphID, Message: "No association in cartclass has this Graph ID. If it was made in Intune since cartclass last read it, press Refresh from Intune on the Sync page and upload again; to create a new association instead, clear the cell."})
			if prev, dup := newGraphIDs[strings.ToLower(key.GraphID)]; dup {
				row.Errors[0].Message = fmt.Sprintf("Row %d has the same Graph ID, which no association in cartclass has. Clear the cells to create new associations.", prev)
			}
			newGraphIDs[strings.ToLower(key.GraphID)] = rec.row
		case m.Found:
			if prev, dup := firstRow[m.Association.ID]; dup {
				col := colGraphID
				if key.GraphID == "" {
					col = views.FieldDisplayName
				}
				row.Errors = append(row.Errors, store.ImportError{Column: col,
					Message: fmt.Sprintf("Row %d changes this association already: a file may change each association once.", prev)})
			} else {
				firstRow[m.Association.ID] = rec.row
			}
			row.AssociationID, row.Revision, row.Base = m.Association.ID, m.Association.Revision, m.Association.Fields
			row.ByName = key.GraphID == ""
			if st := m.Association.Sync.State; st == store.SyncChanged || st == store.SyncDeleted {
				row.SyncState = st
			}
		default:
			row.SameName = m.SameName
		}
		fields, errs := importFields(f, rec, m)
		for _, col := range importColumns {
			if msg, bad := errs[col]; bad {
				row.Errors = append(row.Errors, store.ImportError{Column: col, Message: msg})
			}
		}
		row.Fields = fields
		// Two rows of one file that would leave two associations with the same new name
		// (two new rows, or a rename onto a new row's name): a new one has no graphId yet,
		// so the next import of this same file could match it by name no more, and would
		// create it again.
		if _, bad := errs[views.FieldDisplayName]; !bad && (!m.Found || fields.DisplayName != m.Association.DisplayName) {
			if prev, dup := newNames[fields.DisplayName]; dup {
				row.Errors = append(row.Errors, store.ImportError{Column: views.FieldDisplayName,
					Message: fmt.Sprintf("Row %d gives an association this display name already. Give each its own name: a later import could not tell two new associations with one name apart.", prev)})
			} else {
				newNames[fields.DisplayName] = rec.row
			}
		}
		rows[i] = row
	}
	return rows, nil
}

// importFields are the association's fields after rec: the matched association's (a new
// one's defaults: version 1, the rest empty) with rec's cells over them, checked as the form
// checks them, and the form's message per bad column. A cell that holds what the
// association holds keeps it as it is, unchecked (values read from Intune need not pass
// the form's rules to be left alone); so does an empty version cell (a new row's is 1).
func importFields(f *importFile, rec importRecord, m store.ImportMatch) (store.Fields, map[string]string) {
	base := store.Fields{Version: 1}
	if m.Found {
		base = m.Association.Fields
	}
	v := views.AssociationValues{
		DisplayName:   base.DisplayName,
		Description:   base.Description,
		Version:       strconv.FormatInt(int64(base.Version), 10),
		DeviceCartIDs: strings.Join(base.DeviceCartIDs, "\n"),
		ClassroomIDs:  strings.Join(base.ClassroomIDs, "\n"),
	}
	keep := map[string]bool{}
	for _, name := range views.FieldNames() {
		cell, ok := f.cell(rec, name)
		switch {
		case !ok:
			keep[name] = m.Found
		case m.Found && sameAsStored(name, cell, base):
			keep[name] = true
		case name == views.FieldVersion && strings.TrimSpace(cell) == "":
			keep[name] = m.Found
		default:
			v.Set(name, cell)
		}
	}
	fields, errs := validateAssociation(v)
	for name, k := range keep {
		if !k {
			continue
		}
		delete(errs, name)
		switch name {
		case views.FieldDisplayName:
			fields.DisplayName = base.DisplayName
		case views.FieldDescription:
			fields.Description = base.Description
		case views.FieldVersion:
			fields.Version = base.Version
		case views.FieldDeviceCartIDs:
			fields.DeviceCartIDs = base.DeviceCartIDs
		case views.FieldClassroomIDs:
			fields.ClassroomIDs = base.ClassroomIDs
		}
	}
	return fields, errs
}

// sameAsStored reports whether an import's cell of field name holds exactly what an export
// of base writes there (line breaks aside: CSV readers turn "\r\n" in a cell into "\n").
func sameAsStored(name, cell string, base store.Fields) bool {
	lf := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	switch name {
	case views.FieldDisplayName:
		return cell == base.DisplayName
	case views.FieldDescription:
		return lf(cell) == lf(base.Description)
	case views.FieldVersion:
		return strings.TrimSpace(cell) == strconv.FormatInt(int64(base.Version), 10)
	case views.FieldDeviceCartIDs:
		return cell == strings.Join(base.DeviceCartIDs, exportIDSeparator)
	case views.FieldClassroomIDs:
		return cell == strings.Join(base.ClassroomIDs, exportIDSeparator)
	}
	return false
}

// handleImportShow shows a preview to the admin who uploaded it (404 for anyone else),
// also once it is expired or applied.
func (s *Server) handleImportShow(w http.ResponseWriter, r *http.Request) {
	p, err := s.store.GetImport(r.Context(), r.PathValue("id"), s.actor(r).Subject)
	expired := errors.Is(err, store.ErrImportExpired)
	if errors.Is(err, store.ErrNotFound) {
		s.renderImportGone(w, r)
		return
	}
	if err != nil && !expired {
		s.fail(w, r, err)
		return
	}
	s.renderImportPreview(w, r, http.StatusOK, p, expired, nil)
}

// renderImportGone is the 404 of a preview that is not (or no longer) kept for this admin:
// it says what to do rather than "mistyped link".
func (s *Server) renderImportGone(w http.ResponseWriter, r *http.Request) {
	p := s.page(w, r, "Import preview not found", listCrumb, views.Crumb{Label: "Import CSV", URL: importPath})
	s.render(w, r, http.StatusNotFound, views.ErrorPage(p, views.ErrorInfo{Status: http.StatusNotFound, Title: "This import preview is not kept",
		Message:     "cartclass keeps a preview for the admin who uploaded it, for a day, and only their newest five. Upload the file again to see what it would change now.",
		ActionLabel: "Import CSV", ActionURL: importPath}))
}

// renderImportPreview shows preview p; expired is the store's word on it (its clock
// decides, as it does for Apply).
func (s *Server) renderImportPreview(w http.ResponseWriter, r *http.Request, status int, p store.ImportPreview, expired bool, stale []store.StaleRow) {
	title := "Import " + p.FileName
	if p.FileName == "" {
		title = "Import preview"
	}
	page := s.page(w, r, title, listCrumb, views.Crumb{Label: "Import CSV", URL: importPath}, views.Crumb{Label: title})
	q := r.URL.Query()
	var rooms []string
	for _, row := range p.Rows {
		for _, c := range row.Changes {
			if c.Field == views.FieldClassroomIDs {
				rooms = append(rooms, c.Added...)
				rooms = append(rooms, c.Removed...)
			}
		}
	}
	r = withClassNames(r, s.classNames(r, dedupe(rooms)))
	s.render(w, r, status, views.ImportPreviewPage(page, views.ImportPreview{
		Preview:     p,
		Expired:     expired,
		Stale:       stale,
		ChangesPage: pageNumber(q.Get("changes")),
		ErrorsPage:  pageNumber(q.Get("errors")),
	}))
}

// pageNumber is a 1-based page number from a query value; anything else is 1.
func pageNumber(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// handleImportApply applies a preview: all of it in one transaction, or, when anything it
// relied on changed since, nothing (the preview is shown again, naming those rows).
func (s *Server) handleImportApply(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := s.store.ApplyImport(r.Context(), id, s.actor(r))
	var stale *store.StaleImportError
	switch {
	case err == nil:
		s.kick()
		s.setFlash(w, "import-applied")
	case errors.Is(err, store.ErrImportApplied):
		s.setFlash(w, "import-already")
	case errors.Is(err, store.ErrImportExpired), errors.Is(err, store.ErrImportInvalid), errors.Is(err, store.ErrImportNothing):
		// The preview says so (only a stale or forged page offers Apply then).
	case errors.Is(err, store.ErrNotFound):
		s.renderImportGone(w, r)
		return
	case errors.As(err, &stale):
		cur, gerr := s.store.GetImport(r.Context(), id, s.actor(r).Subject)
		expired := errors.Is(gerr, store.ErrImportExpired)
		if gerr != nil && !expired {
			s.fail(w, r, gerr)
			return
		}
		s.renderImportPreview(w, r, http.StatusConflict, cur, expired, stale.Rows)
		return
	default:
		s.fail(w, r, err)
		return
	}
	redirect(w, r, views.ImportURL(id))
}
