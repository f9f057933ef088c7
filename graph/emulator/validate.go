package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/cartclass/cartclass/graph"
)

// props are the writable properties present in a request body.
type props struct {
	version                     *int32
	displayName, description    *string
	deviceCartIDs, classroomIDs *[]string
}

func (p props) apply(a graph.Association) graph.Association {
	if p.version != nil {
		a.Version = *p.version
	}
	if p.displayName != nil {
		a.DisplayName = *p.displayName
	}
	if p.description != nil {
		a.Description = *p.description
	}
	if p.deviceCartIDs != nil {
		a.DeviceCartIDs = *p.deviceCartIDs
	}
	if p.classroomIDs != nil {
		a.ClassroomIDs = *p.classroomIDs
	}
	return a
}

// parseBody validates a POST or PATCH body strictly: a JSON object of known,
// writable properties with the right types, no nulls, no duplicates, and an
// @odata.type that, when present, names this type. On failure it writes a
// Graph-shaped 400 (or 415) and returns false.
func (x *exchange) parseBody() (props, bool) {
	if ct := x.r.Header.Get("Content-Type"); len(x.body) > 0 || ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			x.fail(http.StatusUnsupportedMediaType, "UnsupportedMediaType",
				fmt.Sprintf("The content type '%s' is not supported.", ct))
			return props{}, false
		}
	}
	p, err := parseProps(x.body)
	if err != nil {
		x.fail(http.StatusBadRequest, "BadRequest", err.Error())
		return props{}, false
	}
	return p, true
}

func parseProps(body []byte) (props, error) {
	var p props
	if len(bytes.TrimSpace(body)) == 0 {
		return p, errors.New("Empty Payload. JSON content expected.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return p, errors.New("Invalid JSON. The request body must be a JSON object.")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return p, errors.New("Invalid JSON. " + err.Error())
		}
		name := t.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return p, errors.New("Invalid JSON. " + err.Error())
		}
		if seen[name] {
			return p, fmt.Errorf("Invalid JSON. More than one property with name '%s' was found.", name)
		}
		seen[name] = true
		if err := p.set(name, raw); err != nil {
			return p, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return p, errors.New("Invalid JSON. " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return p, errors.New("Invalid JSON. Unexpected content after the JSON object.")
	}
	return p, nil
}

func (p *props) set(name string, raw json.RawMessage) error {
	isNull := string(raw) == "null"
	switch name {
	case "@odata.type":
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return errors.New("Invalid JSON. The value of '@odata.type' must be a string.")
		}
		if strings.TrimPrefix(s, "#") != odataTypeName {
			return fmt.Errorf("A type named '%s' is not compatible with the expected type '%s'.", s, odataTypeName)
		}
	case "id", "createdDateTime", "lastModifiedDateTime":
		return fmt.Errorf("The property '%s' is read-only and cannot be set.", name)
	case "version":
		n, err := strconv.ParseInt(string(raw), 10, 32)
		if err != nil {
			return fmt.Errorf("Cannot convert the literal '%s' to the expected type 'Edm.Int32' for property 'version'.", truncate(string(raw)))
		}
		v := int32(n)
		p.version = &v
	case "displayName", "description":
		var s string
		if isNull || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("Cannot convert the literal '%s' to the expected type 'Edm.String' for property '%s'.", truncate(string(raw)), name)
		}
		if name == "displayName" {
			p.displayName = &s
		} else {
			p.description = &s
		}
	case "deviceCartIds", "classroomIds":
		var items []json.RawMessage
		if isNull || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			return fmt.Errorf("Cannot convert the literal '%s' to the expected type 'Collection(Edm.String)' for property '%s'.", truncate(string(raw)), name)
		}
		list := make([]string, 0, len(items))
		for _, it := range items {
			var s string
			if string(it) == "null" {
				return fmt.Errorf("A null value was found for the property named '%s', which has the expected type 'Collection(Edm.String)[Nullable=False]'.", name)
			}
			if it[0] != '"' || json.Unmarshal(it, &s) != nil {
				return fmt.Errorf("Cannot convert the literal '%s' to the expected type 'Edm.String' in property '%s'.", truncate(string(it)), name)
			}
			list = append(list, s)
		}
		if name == "deviceCartIds" {
			p.deviceCartIDs = &list
		} else {
			p.classroomIDs = &list
		}
	default:
		return fmt.Errorf("The property '%s' does not exist on type '%s'. Make sure to only use property names that are defined by the type or mark the type as open type.", name, odataTypeName)
	}
	return nil
}

func truncate(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}
