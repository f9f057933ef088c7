package emulator

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Persistence is write-behind: a change only bumps a counter under the main
// lock, and a background flusher writes the whole state at most every
// flushInterval. The in-memory state is the truth for requests; the file is
// a dev-mode convenience, so a crash (or a process that exits without
// Close) can lose the last ~250 ms of changes. Saving on every write used to
// be the emulator's bottleneck: the state was re-encoded and fsynced per
// request, which slowed creates from ~180/s to ~15/s as the file grew to
// 6,000 objects.

// flushInterval is how long the flusher lets changes gather before it
// writes them, and so the most a crash can lose.
const flushInterval = 250 * time.Millisecond

// maxFlushBackoff bounds the wait between retries after a failed save.
const maxFlushBackoff = 10 * time.Second

// stateFile is the on-disk form of the emulator's objects.
type stateFile struct {
	Seq     int64    `json:"seq"`
	Objects []stored `json:"objects"`
}

// startFlusher starts the background flusher; New calls it when a state
// file is set.
func (e *Emulator) startFlusher() {
	e.kick = make(chan struct{}, 1)
	e.stop = make(chan struct{})
	e.stopped = make(chan struct{})
	go e.flushLoop()
}

// changedLocked records that the state changed and wakes the flusher.
// Caller holds mu.
func (e *Emulator) changedLocked() {
	e.gen++
	e.wakeFlusher()
}

func (e *Emulator) wakeFlusher() {
	if e.kick == nil {
		return
	}
	select {
	case e.kick <- struct{}{}:
	default: // already woken: the pending write will include this change
	}
}

func (e *Emulator) flushLoop() {
	defer close(e.stopped)
	delay := flushInterval
	for {
		select {
		case <-e.stop:
			return
		case <-e.kick:
		}
		// Let a burst of changes gather, so it costs one write.
		t := time.NewTimer(delay)
		select {
		case <-e.stop:
			t.Stop()
			return // Close writes what is pending
		case <-t.C:
		}
		if err := e.Flush(); err != nil {
			e.log.Error("graph_emulator_save", "path", e.stateFile, "err", err)
			delay = min(2*delay, maxFlushBackoff)
			e.wakeFlusher() // the state is still dirty: try again later
			continue
		}
		delay = flushInterval
	}
}

// Flush writes the state file now if anything changed since the last
// write. It is safe to call at any time and concurrently with requests; it
// returns nil without a state file.
func (e *Emulator) Flush() error {
	if e.stateFile == "" {
		return nil
	}
	// One writer at a time, so an older snapshot never replaces a newer one.
	e.saveMu.Lock()
	defer e.saveMu.Unlock()

	// Snapshot under the main lock; sort, encode and write outside it, so
	// requests are not held up by the disk. The copies share the objects'
	// slices, which is safe because stored objects are replaced on change,
	// never modified in place.
	e.mu.Lock()
	if e.gen == e.savedGen {
		e.mu.Unlock()
		return nil
	}
	gen := e.gen
	st := stateFile{Seq: e.seq, Objects: make([]stored, 0, len(e.order))}
	for _, s := range e.order {
		st.Objects = append(st.Objects, *s)
	}
	e.mu.Unlock()

	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(e.stateFile, data); err != nil {
		return err
	}
	e.mu.Lock()
	e.savedGen = gen
	e.mu.Unlock()
	return nil
}

// Close stops the background flusher and writes what is pending. The
// emulator keeps serving requests after Close, but no longer saves by
// itself (call Flush). Close is idempotent and returns nil without a state
// file.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		if e.stop != nil {
			close(e.stop)
			<-e.stopped
		}
		e.closeErr = e.Flush()
	})
	return e.closeErr
}

// writeFileAtomic writes data to path atomically: a temp file (mode 0600)
// in the same directory, synced, then renamed over the old one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
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
	if err := os.Rename(tmp.Name(), path); err != nil {
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
	order := make([]*stored, 0, len(st.Objects))
	seq := st.Seq
	for i := range st.Objects {
		s := &st.Objects[i]
		key := strings.ToLower(s.Obj.ID)
		if key == "" {
			return errors.New("object without id")
		}
		if _, dup := objects[key]; dup {
			return fmt.Errorf("object %q appears twice", s.Obj.ID)
		}
		objects[key] = s
		order = append(order, s)
		seq = max(seq, s.Seq)
	}
	slices.SortStableFunc(order, func(a, b *stored) int { return cmp.Compare(a.Seq, b.Seq) })
	for i := 1; i < len(order); i++ {
		if order[i].Seq == order[i-1].Seq {
			return fmt.Errorf("objects %q and %q share seq %d", order[i-1].Obj.ID, order[i].Obj.ID, order[i].Seq)
		}
	}
	e.objects, e.order, e.seq = objects, order, seq
	return nil
}
