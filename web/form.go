package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// Limits on what an association may hold.
const (
	maxDisplayName = 256
	maxDescription = 1024
	maxIDLength    = 128
	maxIDs         = 500
)

// parseForm parses r's form. A body over the limit returns *http.MaxBytesError (a 413
// page); anything unreadable returns errBadRequest (a 400 page).
func parseForm(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooBig
		}
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

// parseAssociationForm reads the association form from r (errors as parseForm).
func parseAssociationForm(r *http.Request) (views.AssociationValues, error) {
	if err := parseForm(r); err != nil {
		return views.AssociationValues{}, err
	}
	v, _ := valuesFrom(r.PostForm, "")
	return v, nil
}

// valuesFrom reads the association fields named prefix+field from form (a missing one is
// empty); complete reports whether each was sent exactly once.
func valuesFrom(form url.Values, prefix string) (v views.AssociationValues, complete bool) {
	complete = true
	for _, name := range views.FieldNames() {
		vals := form[prefix+name]
		complete = complete && len(vals) == 1
		if len(vals) > 0 {
			v.Set(name, vals[0])
		}
	}
	return v, complete
}

// validateAssociation checks the form values and turns them into fields. The map holds one
// message per bad field; when it is empty the fields are valid.
func validateAssociation(v views.AssociationValues) (store.Fields, map[string]string) {
	errs := map[string]string{}
	var f store.Fields

	f.DisplayName = strings.TrimSpace(v.DisplayName)
	switch n := utf8.RuneCountInString(f.DisplayName); {
	case !utf8.ValidString(f.DisplayName):
		errs[views.FieldDisplayName] = "The display name contains bytes that are not valid text."
	case n == 0:
		errs[views.FieldDisplayName] = "Enter a display name."
	case n > maxDisplayName:
		errs[views.FieldDisplayName] = fmt.Sprintf("Use at most %d characters (this has %d).", maxDisplayName, n)
	case strings.IndexFunc(f.DisplayName, unicode.IsControl) >= 0:
		errs[views.FieldDisplayName] = "Remove the line breaks, tabs or other control characters from the display name."
	case strings.IndexFunc(f.DisplayName, isBidiControl) >= 0:
		errs[views.FieldDisplayName] = "Remove the hidden text-direction characters from the display name: they make it read differently from what it holds."
	}

	f.Description = strings.TrimSpace(strings.ReplaceAll(v.Description, "\r\n", "\n"))
	switch n := utf8.RuneCountInString(f.Description); {
	case !utf8.ValidString(f.Description):
		errs[views.FieldDescription] = "The description contains bytes that are not valid text."
	case n > maxDescription:
		errs[views.FieldDescription] = fmt.Sprintf("Use at most %s characters (this has %s).", thousands(maxDescription), thousands(n))
	case strings.IndexFunc(f.Description, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		errs[views.FieldDescription] = "Remove the control characters from the description (line breaks and tabs are fine)."
	case strings.IndexFunc(f.Description, isBidiControl) >= 0:
		errs[views.FieldDescription] = "Remove the hidden text-direction characters from the description: they make it read differently from what it holds."
	}

	version := strings.TrimSpace(v.Version)
	if version == "" {
		errs[views.FieldVersion] = "Enter a version: a whole number such as 1."
	} else if n, err := strconv.ParseInt(version, 10, 32); err != nil || n < 0 {
		errs[views.FieldVersion] = "Enter a whole number from 0 to 2,147,483,647."
	} else {
		f.Version = int32(n)
	}

	var msg string
	if f.DeviceCartIDs, msg = parseIDs(v.DeviceCartIDs, "device cart"); msg != "" {
		errs[views.FieldDeviceCartIDs] = msg
	}
	if f.ClassroomIDs, msg = parseIDs(v.ClassroomIDs, "classroom"); msg != "" {
		errs[views.FieldClassroomIDs] = msg
	}
	return f, errs
}

// parseIDs splits a pasted list of ids on line breaks, commas and tabs (spreadsheet cells),
// trims each, drops empty ones and duplicates (keeping the first), and checks the limits.
// It returns the ids and a message for the first problem, if any.
func parseIDs(raw, what string) ([]string, string) {
	if !utf8.ValidString(raw) {
		return nil, "The list contains bytes that are not valid text."
	}
	parts := strings.FieldsFunc(raw, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == '\t' })
	ids := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, p := range parts {
		// Spreadsheets and web pages often send invisible marks along with a copied cell
		// (a byte-order mark, a zero-width space): at the ends they are dropped like spaces.
		id := strings.TrimFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) })
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	for _, id := range ids {
		if n := utf8.RuneCountInString(id); n > maxIDLength {
			return ids, fmt.Sprintf("The %s ID %s has %d characters; the limit is %d.", what, quoteShort(id), n, maxIDLength)
		}
		if strings.IndexFunc(id, unicode.IsControl) >= 0 {
			return ids, fmt.Sprintf("The %s ID %s contains a control character; remove it.", what, quoteShort(id))
		}
		if strings.IndexFunc(id, func(r rune) bool { return unicode.Is(unicode.Cf, r) }) >= 0 {
			// Two ids that look the same but are not would match nothing in Intune.
			return ids, fmt.Sprintf("The %s ID %s contains an invisible character (such as a zero-width space); retype it.", what, quoteShort(id))
		}
	}
	if len(ids) > maxIDs {
		return ids, fmt.Sprintf("Enter at most %d %s IDs (this list has %d after removing duplicates).", maxIDs, what, len(ids))
	}
	return ids, ""
}

// isBidiControl reports the explicit text-direction controls (embeddings, overrides,
// isolates) that can make text display in a different order than it is stored.
func isBidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// quoteShort quotes an id for a message, shortened so a long paste cannot flood the page.
func quoteShort(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return '�'
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > 24 {
		s = string([]rune(s)[:24]) + "…"
	}
	return "“" + s + "”"
}

// thousands formats n with comma separators: 1024 → "1,024".
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// parseRevisionForm reads the {id} path segment and the form's revision: the version the
// admin was looking at when they pressed the button.
func parseRevisionForm(r *http.Request) (id, revision int64, err error) {
	if id, err = pathID(r); err != nil {
		return 0, 0, err
	}
	if err := parseForm(r); err != nil {
		return 0, 0, err
	}
	revision, err = strconv.ParseInt(r.PostForm.Get(views.FieldRevision), 10, 64)
	if err != nil || revision < 1 {
		return 0, 0, fmt.Errorf("%w: revision %q", errBadRequest, r.PostForm.Get(views.FieldRevision))
	}
	return id, revision, nil
}
