package web

import (
	"encoding/csv"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cartclass/cartclass/store"
)

// exportHeader is the CSV export's header row; CSV import reads the same names.
var exportHeader = []string{"displayName", "description", "version", "deviceCartIds", "classroomIds", "graphId", "syncState", "lastModified"}

// exportIDSeparator joins the ids of one list inside their cell.
const exportIDSeparator = ", "

const (
	// exportFlushRows is how many rows go out between flushes: the client sees the file
	// grow, and a client that stops reading holds the walk (and its read connection) up at
	// the next flush instead of letting it run on into buffers.
	exportFlushRows = 256
	// exportStall is how long a client may take no data before the export is cut off: a
	// stalled download must not keep one of the read pool's connections for ever. Each
	// flush moves the deadline on, so a large export on a slow but moving link completes
	// (the server's WriteTimeout would cut it off after a minute).
	exportStall = time.Minute
)

// handleAssociationExport sends the associations the list shows for the same q, state and
// sort (every page) as a CSV file, streamed row by row (see sendCSV).
func (s *Server) handleAssociationExport(w http.ResponseWriter, r *http.Request) {
	f := listFilter(r.URL.Query())
	s.sendCSV(w, r, "cartclass-associations", exportHeader, func(row func([]string) error) error {
		return s.store.EachAssociation(r.Context(), f, func(a store.Association) error { return row(exportRecord(a)) })
	})
}

// sendCSV streams a CSV download named name-YYYY-MM-DD.csv (UTC): header, then each row
// that walk hands to row, flushed every exportFlushRows. A failure before anything was
// sent is the usual error page; after that the connection is cut, so that a broken
// download never looks like a complete file.
func (s *Server) sendCSV(w http.ResponseWriter, r *http.Request, name string, header []string, walk func(row func([]string) error) error) {
	out := &exportStream{w: w, rc: http.NewResponseController(w),
		filename: name + "-" + s.now().UTC().Format(time.DateOnly) + ".csv"}
	cw := csv.NewWriter(out)
	rows := 0
	err := cw.Write(header)
	if err == nil {
		err = walk(func(rec []string) error {
			if err := cw.Write(rec); err != nil {
				return err
			}
			rows++
			if rows%exportFlushRows == 0 {
				return out.flush(cw)
			}
			return nil
		})
	}
	if err == nil {
		err = out.flush(cw)
	}
	switch {
	case err == nil:
		return
	case !out.started:
		// Nothing has reached the client (rows sit in the CSV writer's buffer until it
		// fills): the error page can still be sent instead.
		s.fail(w, r, err)
		return
	case out.writeErr != nil || r.Context().Err() != nil:
		// The client went away or stopped reading: not cartclass's failure.
		s.log.Debug("export abandoned by the client", "path", r.URL.Path, "rows", rows, "err", err)
	default:
		s.log.Error("export failed", "path", r.URL.Path, "rows", rows, "err", err)
	}
	// Headers and part of the file are out: cut the connection (no final chunk), so the
	// browser reports a failed download rather than keeping a file that ends early.
	panic(http.ErrAbortHandler)
}

// exportRecord is a's row of the export, in exportHeader's order, every cell through
// csvCell.
func exportRecord(a store.Association) []string {
	rec := []string{
		a.DisplayName,
		a.Description,
		strconv.FormatInt(int64(a.Version), 10),
		strings.Join(a.DeviceCartIDs, exportIDSeparator),
		strings.Join(a.ClassroomIDs, exportIDSeparator),
		a.GraphID,
		a.Sync.State,
		a.UpdatedAt.UTC().Format(time.RFC3339),
	}
	for i, c := range rec {
		rec[i] = csvCell(c)
	}
	return rec
}

// formulaStarts are the first characters that make a spreadsheet read a cell as a formula
// (OWASP, "CSV Injection").
const formulaStarts = "=+-@\t\r"

// csvCell neutralises spreadsheet formula injection in one exported cell: a cell that
// starts with '=', '+', '-', '@', a tab or a carriage return is written with a leading
// apostrophe, which spreadsheets read as "this is text". CSV import removes exactly that
// prefix again: one apostrophe at the start of a cell whose next character is one of
// those, or another apostrophe. So that this removal gives back every value unchanged, a
// cell that already starts with such an apostrophe (a name like "'=x", or two
// apostrophes) gets one more; any other apostrophe ("'s-Hertogenbosch") is left alone.
func csvCell(s string) string {
	if s == "" {
		return s
	}
	if strings.IndexByte(formulaStarts, s[0]) >= 0 ||
		len(s) > 1 && s[0] == '\'' && strings.IndexByte(formulaStarts+"'", s[1]) >= 0 {
		return "'" + s
	}
	return s
}

// exportStream is the response body of an export. The headers, status and byte-order
// mark go out with its first write, so that until then a failure can still become the
// error page.
type exportStream struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	filename string
	started  bool
	writeErr error // the first failed write to the client
}

func (e *exportStream) Write(p []byte) (int, error) {
	if !e.started {
		e.started = true
		h := e.w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": e.filename}))
		e.extendDeadline()
		e.w.WriteHeader(http.StatusOK)
		// UTF-8's byte-order mark: without it Excel reads the file in the locale's code page.
		if _, err := e.w.Write([]byte("\uFEFF")); err != nil {
			e.writeErr = err
			return 0, err
		}
	}
	n, err := e.w.Write(p)
	if err != nil && e.writeErr == nil {
		e.writeErr = err
	}
	return n, err
}

// flush sends what the CSV writer holds on to the client.
func (e *exportStream) flush(cw *csv.Writer) error {
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	if !e.started {
		return nil
	}
	e.extendDeadline()
	if err := e.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		if e.writeErr == nil {
			e.writeErr = err
		}
		return err
	}
	return nil
}

// extendDeadline gives the client exportStall more to take the next part. (Wall-clock
// time: the connection's deadline is.) A writer that cannot have one is left as it is.
func (e *exportStream) extendDeadline() {
	e.rc.SetWriteDeadline(time.Now().Add(exportStall))
}
