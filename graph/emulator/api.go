package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/google/uuid"
)

// odataTypeName is the type name without the leading '#'.
const odataTypeName = "microsoft.graph.cartToClassAssociation"

// wireObject is an object as Graph serves it.
type wireObject struct {
	Context              string   `json:"@odata.context,omitempty"`
	Type                 string   `json:"@odata.type"`
	ID                   string   `json:"id"`
	CreatedDateTime      string   `json:"createdDateTime"`
	LastModifiedDateTime string   `json:"lastModifiedDateTime"`
	Version              int32    `json:"version"`
	DisplayName          string   `json:"displayName"`
	Description          string   `json:"description"`
	DeviceCartIDs        []string `json:"deviceCartIds"`
	ClassroomIDs         []string `json:"classroomIds"`
}

func toWire(a graph.Association, context string) wireObject {
	return wireObject{
		Context:              context,
		Type:                 graph.ODataType,
		ID:                   a.ID,
		CreatedDateTime:      graph.FormatDateTimeOffset(a.CreatedDateTime),
		LastModifiedDateTime: graph.FormatDateTimeOffset(a.LastModifiedDateTime),
		Version:              a.Version,
		DisplayName:          a.DisplayName,
		Description:          a.Description,
		DeviceCartIDs:        nonNil(a.DeviceCartIDs),
		ClassroomIDs:         nonNil(a.ClassroomIDs),
	}
}

// route matches /beta/deviceManagement/cartToClassAssociations[/{id}],
// case-insensitively like Graph.
func (x *exchange) route() (id string, isItem, ok bool) {
	p := strings.TrimSuffix(x.r.URL.Path, "/")
	prefix := BasePath + collectionPath
	if strings.EqualFold(p, prefix) {
		return "", false, true
	}
	if len(p) > len(prefix)+1 && strings.EqualFold(p[:len(prefix)+1], prefix+"/") {
		id = p[len(prefix)+1:]
		if !strings.Contains(id, "/") {
			return id, true, true
		}
	}
	return "", false, false
}

func lastSegment(p string) string {
	p = strings.TrimSuffix(p, "/")
	return p[strings.LastIndex(p, "/")+1:]
}

// authenticate checks the bearer token and the authorizer; on refusal it
// writes the error and returns false.
func (x *exchange) authenticate() bool {
	scheme, tok, _ := strings.Cut(x.r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		x.w.header.Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`)
		x.fail(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return false
	}
	if x.e.authorizer == nil {
		return true
	}
	switch st := x.e.authorizer(tok, x.r); st {
	case 0:
		return true
	case http.StatusUnauthorized:
		x.w.header.Set("WWW-Authenticate", `Bearer realm="", error="invalid_token"`)
		x.fail(st, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
	case http.StatusForbidden:
		if x.isClasses() {
			x.classesDenied()
			return false
		}
		scopes := "DeviceManagementConfiguration.Read.All, DeviceManagementConfiguration.ReadWrite.All"
		switch x.r.Method {
		case http.MethodPost:
			scopes = "DeviceManagementConfiguration.ReadWrite.All, DeviceManagementServiceConfig.ReadWrite.All"
		case http.MethodPatch, http.MethodDelete:
			scopes = "DeviceManagementConfiguration.ReadWrite.All"
		}
		x.fail(st, "Forbidden", intuneText(
			"Application is not authorized to perform this operation. Application must have one of the following scopes: "+scopes,
			x.reqID, x.r.URL.Path))
	default:
		x.fail(st, codeFor(st), http.StatusText(st)+".")
	}
	return false
}

// list serves one page in creation order. Like Intune it ignores $filter,
// $top and other query options except $skiptoken. The skiptoken is "s<seq>" (objects created after
// seq) or, with WithEmptyPages, "e<seq>" (an empty page, then s<seq>).
func (x *exchange) list() {
	var after int64
	emptyNext := false
	if tok := x.r.URL.Query().Get("$skiptoken"); tok != "" {
		n, err := strconv.ParseInt(tok[1:], 10, 64)
		if err != nil || (tok[0] != 's' && tok[0] != 'e') || n < 0 {
			x.fail(http.StatusBadRequest, "BadRequest", "The $skiptoken is invalid.")
			return
		}
		after, emptyNext = n, tok[0] == 'e'
	}
	page := struct {
		Context  string       `json:"@odata.context"`
		NextLink string       `json:"@odata.nextLink,omitempty"`
		Value    []wireObject `json:"value"`
	}{Context: x.origin() + BasePath + "/$metadata#deviceManagement/cartToClassAssociations", Value: []wireObject{}}

	if emptyNext {
		page.NextLink = x.nextLink("s" + strconv.FormatInt(after, 10))
		x.writeJSON(http.StatusOK, page)
		return
	}
	e := x.e
	e.mu.Lock()
	first := e.firstAfterLocked(after)
	end := min(first+e.pageSize, len(e.order))
	rest := make([]graph.Association, 0, end-first)
	var lastSeq int64
	for _, s := range e.order[first:end] {
		rest = append(rest, cloneAssoc(s.Obj))
		lastSeq = s.Seq
	}
	more := end < len(e.order)
	e.mu.Unlock()
	for _, a := range rest {
		page.Value = append(page.Value, toWire(a, ""))
	}
	if more {
		kind := "s"
		if x.e.emptyPages {
			kind = "e"
		}
		page.NextLink = x.nextLink(kind + strconv.FormatInt(lastSeq, 10))
	}
	x.writeJSON(http.StatusOK, page)
}

// origin is scheme://host as the client reached us.
func (x *exchange) origin() string {
	scheme := "http"
	if x.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + x.r.Host
}

func (x *exchange) nextLink(token string) string {
	return x.origin() + x.r.URL.EscapedPath() + "?$skiptoken=" + url.QueryEscape(token)
}

func (x *exchange) entityContext() string {
	return x.origin() + BasePath + "/$metadata#deviceManagement/cartToClassAssociations/$entity"
}

func (x *exchange) get(id string) {
	x.e.mu.Lock()
	s, ok := x.e.objects[strings.ToLower(id)]
	var a graph.Association
	if ok {
		a = cloneAssoc(s.Obj)
	}
	x.e.mu.Unlock()
	if !ok {
		x.notFound(id)
		return
	}
	x.writeJSON(http.StatusOK, toWire(a, x.entityContext()))
}

func (x *exchange) create() {
	p, ok := x.parseBody()
	if !ok {
		return
	}
	now := x.e.stamp()
	a := p.apply(graph.Association{ID: uuid.NewString(), CreatedDateTime: now, LastModifiedDateTime: now})
	e := x.e
	e.mu.Lock()
	e.addLocked(a)
	e.changedLocked()
	e.mu.Unlock()
	x.applied = true
	x.w.header.Set("Location", x.origin()+BasePath+collectionPath+"/"+a.ID)
	x.writeJSON(http.StatusCreated, toWire(a, x.entityContext()))
}

func (x *exchange) update(id string) {
	p, ok := x.parseBody()
	if !ok {
		return
	}
	e := x.e
	e.mu.Lock()
	s, ok := e.objects[strings.ToLower(id)]
	if !ok {
		e.mu.Unlock()
		x.notFound(id)
		return
	}
	a := p.apply(cloneAssoc(s.Obj))
	a.LastModifiedDateTime = e.stamp()
	s.Obj = a
	e.changedLocked()
	e.mu.Unlock()
	x.applied = true
	if e.patchStatus == http.StatusOK {
		x.writeJSON(http.StatusOK, toWire(a, x.entityContext()))
		return
	}
	x.w.WriteHeader(http.StatusNoContent)
}

func (x *exchange) delete(id string) {
	e := x.e
	key := strings.ToLower(id)
	e.mu.Lock()
	if _, ok := e.removeLocked(key); !ok {
		e.mu.Unlock()
		x.notFound(id)
		return
	}
	e.changedLocked()
	e.mu.Unlock()
	x.applied = true
	x.w.WriteHeader(http.StatusNoContent)
}

// stamp is the server time for timestamps, at Graph's 100 ns precision.
func (e *Emulator) stamp() time.Time {
	return e.now().Truncate(100 * time.Nanosecond)
}

func (x *exchange) notFound(id string) {
	x.fail(http.StatusNotFound, "ResourceNotFound",
		intuneMessage(fmt.Sprintf("No cartToClassAssociation with id '%s' was found.", id), x.reqID, x.r.URL.Path))
}

// fail writes a Graph-shaped error.
func (x *exchange) fail(status int, code, message string) {
	type inner struct {
		Date            string `json:"date"`
		RequestID       string `json:"request-id"`
		ClientRequestID string `json:"client-request-id"`
	}
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError inner  `json:"innerError"`
		} `json:"error"`
	}
	body.Error.Code = code
	body.Error.Message = message
	body.Error.InnerError = inner{
		Date:            x.e.now().UTC().Format("2006-01-02T15:04:05"),
		RequestID:       x.reqID,
		ClientRequestID: x.crid,
	}
	x.writeJSON(status, body)
}

func (x *exchange) writeJSON(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"InternalServerError","message":"encode"}}`)
	}
	x.w.header.Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	x.w.WriteHeader(status)
	_, _ = x.w.Write(b)
}

// intuneMessage is the JSON-in-a-string diagnostic Intune puts in error
// messages, so clients must cope with long, noisy messages.
func intuneMessage(text, reqID, path string) string {
	b, _ := json.MarshalIndent(map[string]any{
		"_version":             3,
		"Message":              intuneText(text, reqID, path),
		"CustomApiErrorPhrase": "",
		"RetryAfter":           nil,
		"ErrorSourceService":   "",
		"HttpHeaders":          "{}",
	}, "", "  ")
	return strings.ReplaceAll(string(b), "\n", "\r\n")
}

func intuneText(text, reqID, path string) string {
	return text + " - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000 - Activity ID: " +
		reqID + " - Url: https://fef.msua06.manage.microsoft.com/DeviceConfigurationFE/StatelessDeviceConfigurationFEService" +
		path + "?api-version=5023-05-04"
}

// codeFor is the Graph error code usually paired with a status.
func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "InvalidAuthenticationToken"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "ResourceNotFound"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusPreconditionFailed:
		return "PreconditionFailed"
	case http.StatusRequestEntityTooLarge:
		return "RequestEntityTooLarge"
	case http.StatusUnprocessableEntity:
		return "UnprocessableEntity"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusInternalServerError:
		return "InternalServerError"
	case http.StatusNotImplemented:
		return "NotImplemented"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	}
	return "UnknownError"
}

func cloneAssoc(a graph.Association) graph.Association {
	a.DeviceCartIDs = append([]string(nil), a.DeviceCartIDs...)
	a.ClassroomIDs = append([]string(nil), a.ClassroomIDs...)
	return a
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
