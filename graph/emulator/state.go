package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// stateFile is the on-disk form of the emulator's objects.
type stateFile struct {
	Seq     int64    `json:"seq"`
	Objects []stored `json:"objects"`
}

// saveLocked writes the state atomically: a temp file in the same
// directory, synced, then renamed over the old one. Caller holds mu.
func (e *Emulator) saveLocked() error {
	if e.stateFile == "" {
		return nil
	}
	st := stateFile{Seq: e.seq, Objects: []stored{}}
	for _, s := range e.sortedLocked() {
		st.Objects = append(st.Objects, *s)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(e.stateFile)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(e.stateFile)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), e.stateFile); err != nil {
		return err
	}
	// Make the rename itself durable; not every platform allows this.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// load reads the state file if it exists. An unreadable file is moved
// aside, so the next save does not destroy it.
func (e *Emulator) load() {
	data, err := os.ReadFile(e.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = e.decodeState(data)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", e.stateFile, time.Now().Unix())
		e.log.Error("graph_emulator_load", "path", e.stateFile, "err", err, "moved_to", aside)
		_ = os.Rename(e.stateFile, aside)
	}
}

func (e *Emulator) decodeState(data []byte) error {
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	objects := make(map[string]*stored, len(st.Objects))
	seq := st.Seq
	for i := range st.Objects {
		s := st.Objects[i]
		if s.Obj.ID == "" {
			return errors.New("object without id")
		}
		objects[strings.ToLower(s.Obj.ID)] = &s
		seq = max(seq, s.Seq)
	}
	e.objects, e.seq = objects, seq
	return nil
}
