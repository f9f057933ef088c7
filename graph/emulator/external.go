package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cartclass/cartclass/graph"
	"github.com/google/uuid"
)

// ErrNotFound is returned by ChangeObject and RemoveObject for an id the
// emulator does not hold.
var ErrNotFound = errors.New("emulator: no such object")

// The methods in this file change the emulator's objects "as someone else
// in Intune" (an admin in PowerShell or Graph Explorer), so dev mode and
// tests can show drift. They are not API requests: they are not recorded in
// Requests, do not count against the write limit and ignore injected faults
// and latency. Each is logged at Info as "graph_emulator_external_change"
// and saved like an API write.

// PutObject stores a as if it had been created elsewhere in Intune and
// returns what the emulator holds. The emulator sets the id (a new GUID)
// and both timestamps (now) unless a carries them. Given an id the emulator
// already holds, PutObject replaces that object in place (same list
// position): with an old LastModifiedDateTime this builds a change that
// Intune did not timestamp, which a reconciliation must still notice.
// Timestamps are kept at Graph's 100 ns precision.
func (e *Emulator) PutObject(a graph.Association) graph.Association {
	a = cloneAssoc(a)
	now := e.stamp()
	if a.ID == "" {
		a.ID = uuid.NewString()
	}
	a.CreatedDateTime = cmpOrTime(a.CreatedDateTime, now).Truncate(100 * time.Nanosecond)
	a.LastModifiedDateTime = cmpOrTime(a.LastModifiedDateTime, now).Truncate(100 * time.Nanosecond)
	op := "create"
	key := strings.ToLower(a.ID)
	e.mu.Lock()
	if s, ok := e.objects[key]; ok {
		op = "replace"
		s.Obj = a
	} else {
		e.addLocked(a)
	}
	e.changedLocked()
	e.mu.Unlock()
	e.logExternal(op, a.ID, a)
	return cloneAssoc(a)
}

// ChangeObject applies p to the object id as if it had been changed
// elsewhere in Intune, moves its lastModifiedDateTime to now, and returns
// the object as changed. An unknown id gives ErrNotFound.
func (e *Emulator) ChangeObject(id string, p graph.Patch) (graph.Association, error) {
	e.mu.Lock()
	s, ok := e.objects[strings.ToLower(id)]
	if !ok {
		e.mu.Unlock()
		return graph.Association{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	a := p.Apply(cloneAssoc(s.Obj)) // Apply copies p's collections
	a.LastModifiedDateTime = e.stamp()
	s.Obj = a
	e.changedLocked()
	e.mu.Unlock()
	e.logExternal("update", a.ID, p)
	return cloneAssoc(a), nil
}

// RemoveObject deletes the object id as if it had been deleted elsewhere in
// Intune. An unknown id gives ErrNotFound.
func (e *Emulator) RemoveObject(id string) error {
	key := strings.ToLower(id)
	e.mu.Lock()
	s, ok := e.removeLocked(key)
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	e.changedLocked()
	e.mu.Unlock()
	e.logExternal("delete", s.Obj.ID, nil)
	return nil
}

// SetPageSize sets how many objects a list page holds from now on, like
// WithPageSize. n below 1 is ignored. A listing already under way goes on
// from where its skiptoken points, with pages of the new size.
func (e *Emulator) SetPageSize(n int) {
	if n < 1 {
		return
	}
	e.mu.Lock()
	e.pageSize = n
	e.mu.Unlock()
}

// SetWriteLimit sets the write limit from now on, like WithWriteLimit: more
// than n writes within window get 429. n or window of 0 (or less) turns the
// limit off. Either way the writes counted so far are forgotten.
func (e *Emulator) SetWriteLimit(n int, window time.Duration) {
	e.mu.Lock()
	e.writeLimit, e.writeWindow = n, window
	e.writes = nil
	e.mu.Unlock()
}

func (e *Emulator) logExternal(op, id string, v any) {
	var body string
	if v != nil {
		b, _ := json.Marshal(v)
		body = string(b)
	}
	e.log.Info("graph_emulator_external_change", "op", op, "id", id, "body", body)
}

func cmpOrTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

// patchOf turns validated request properties into a graph.Patch.
func patchOf(p props) graph.Patch {
	out := graph.Patch{Version: p.version, DisplayName: p.displayName, Description: p.description}
	if p.deviceCartIDs != nil {
		out.DeviceCartIDs = *p.deviceCartIDs
	}
	if p.classroomIDs != nil {
		out.ClassroomIDs = *p.classroomIDs
	}
	return out
}
