package store

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of CSV imports: matching a file's rows to associations, the preview SaveImport
// keeps, and ApplyImport, which re-checks every row and saves all of them or none. They use
// the outbox tests' fixed clock (openOutboxStore) and helpers.

var (
	imAdmin = Actor{Subject: "sub-importer", Name: "Ines Importer"}
	imOther = Actor{Subject: "sub-other", Name: "Otto Other"}
)

const imFile = "carts-autumn.csv"

// imChange is row of a file that matched a and sets the fields edit makes of a's.
func imChange(row int, a Association, edit func(*Fields)) ImportRow {
	f := a.Fields.Clone()
	edit(&f)
	return ImportRow{Row: row, AssociationID: a.ID, Revision: a.Revision, Base: a.Fields.Clone(), Fields: f}
}

// imNew is row of a file that matched nothing and creates f.
func imNew(row int, f Fields) ImportRow { return ImportRow{Row: row, Fields: f} }

func imSave(t *testing.T, s *Store, owner Actor, rows ...ImportRow) ImportPreview {
	t.Helper()
	p, err := s.SaveImport(t.Context(), owner, imFile, rows)
	if err != nil {
		t.Fatalf("SaveImport: %v", err)
	}
	return p
}

func imGet(t *testing.T, s *Store, id, ownerSub string) ImportPreview {
	t.Helper()
	p, err := s.GetImport(t.Context(), id, ownerSub)
	if err != nil {
		t.Fatalf("GetImport(%s, %s): %v", id, ownerSub, err)
	}
	return p
}

func imApply(t *testing.T, s *Store, id string, by Actor) ImportPreview {
	t.Helper()
	p, err := s.ApplyImport(t.Context(), id, by)
	if err != nil {
		t.Fatalf("ApplyImport(%s): %v", id, err)
	}
	return p
}

// imStored is rows as a stored preview holds them: without their Base.
func imStored(rows []ImportRow) []ImportRow {
	out := slices.Clone(rows)
	for i := range out {
		out[i].Base = Fields{}
	}
	return out
}

// imCounts is what a refused Apply must leave as it was.
type imCounts struct {
	associations, revisions, history, outbox, applied int64
}

func imCount(t *testing.T, s *Store) imCounts {
	t.Helper()
	var c imCounts
	for _, q := range []struct {
		sql  string
		dest []any
	}{
		{`SELECT count(*), coalesce(sum(revision), 0) FROM associations`, []any{&c.associations, &c.revisions}},
		{`SELECT count(*) FROM history`, []any{&c.history}},
		{`SELECT count(*) FROM outbox`, []any{&c.outbox}},
		{`SELECT count(*) FROM import_previews WHERE applied_at IS NOT NULL`, []any{&c.applied}},
	} {
		if err := s.write.QueryRowContext(t.Context(), q.sql).Scan(q.dest...); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// imWantCSV checks a HistoryCSV entry: of file imFile, otherwise as hsWant.
func imWantCSV(t *testing.T, e HistoryEntry, a Association, at time.Time, changes ...FieldChange) {
	t.Helper()
	if e.Choice != imFile {
		t.Errorf("csv entry of %d: choice %q, want the file name %q", a.ID, e.Choice, imFile)
	}
	e.Choice = ""
	hsWant(t, e, a, HistoryCSV, imAdmin, at, changes...)
}

func TestMatchImportByGraphID(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	a := mrLinked(t, s, "alpha", "AbC-123")
	d := mrLinked(t, s, "gone", "g-gone")
	mrDelete(t, s, d.ID)
	d = obGet(t, s, d.ID)
	other := obCreate(t, s, "named like the row")

	got, err := s.MatchImport(t.Context(), []ImportKey{
		{GraphID: "ABC-123"},
		{GraphID: "abc-123", DisplayName: other.DisplayName}, // the id wins over the name
		{GraphID: "G-GONE"},
		{GraphID: "g-unknown"},
		{GraphID: "g-unknown", DisplayName: other.DisplayName}, // no falling back to the name
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []ImportMatch{
		{Found: true, Association: a},
		{Found: true, Association: a},
		{Deleted: true, Association: d},
		{},
		{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MatchImport:\n got %+v\nwant %+v", got, want)
	}
	if d.DeletedAt.IsZero() {
		t.Fatal("setup: gone is not deleted")
	}
}

func TestMatchImportByDisplayName(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	sci := obCreate(t, s, "Science iPads")
	obCreate(t, s, "Twin cart")
	obCreate(t, s, "Twin cart")
	old := obCreate(t, s, "Old cart")
	mrDelete(t, s, old.ID)
	live := obCreate(t, s, "Old cart")
	dead := obCreate(t, s, "Only deleted")
	mrDelete(t, s, dead.ID)
	sci = obGet(t, s, sci.ID)

	keys := []ImportKey{
		{DisplayName: "Science iPads"},
		{DisplayName: "science ipads"}, // names compare exactly
		{DisplayName: "SCIENCE IPADS"},
		{DisplayName: "Science iPads "},
		{DisplayName: "Twin cart"},
		{DisplayName: "Old cart"},     // the deleted one does not count
		{DisplayName: "Only deleted"}, // nor does a name only a deleted one has
		{DisplayName: "Nobody"},
	}
	got, err := s.MatchImport(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []ImportMatch{
		{Found: true, Association: sci, SameName: 1},
		{},
		{},
		{},
		{SameName: 2},
		{Found: true, Association: obGet(t, s, live.ID), SameName: 1},
		{},
		{},
	}
	if len(got) != len(want) {
		t.Fatalf("MatchImport gave %d matches for %d keys", len(got), len(keys))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("MatchImport(%q):\n got %+v\nwant %+v", keys[i].DisplayName, got[i], want[i])
		}
	}
	if got, err := s.MatchImport(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("MatchImport(no keys) = %v, %v", got, err)
	}
}

func TestSaveImportClassifiesRows(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	alpha := obCreate(t, s, "alpha")
	beta := obCreate(t, s, "beta")
	gamma := obCreate(t, s, "gamma")
	*now = obT0.Add(3 * time.Minute)

	invalid := imChange(5, gamma, func(f *Fields) { f.Version = 0 })
	invalid.Name = "gamma?"
	invalid.Errors = []ImportError{{Column: "version", Message: "Enter a whole number."}}
	invalid.Changes = []FieldChange{{Field: "version", Old: "7", New: "0"}} // dropped: nothing applies
	renamed := imChange(6, gamma, func(f *Fields) { f.DisplayName = "gamma 2" })
	renamed.Name = "what the caller called it"
	fresh := imNew(4, obFields("delta"))
	fresh.SameName = 2
	rows := []ImportRow{
		imChange(2, alpha, func(f *Fields) {
			f.Description = "Library only"
			f.DeviceCartIDs = []string{"cart-9"}
		}),
		imChange(3, beta, func(*Fields) {}),
		fresh,
		invalid,
		renamed,
	}
	p := imSave(t, s, imAdmin, rows...)

	if p.New != 1 || p.Changed != 2 || p.Unchanged != 1 || p.Invalid != 1 || p.Changes() != 3 {
		t.Errorf("counts new %d changed %d unchanged %d invalid %d (changes %d); want 1 2 1 1 (3)",
			p.New, p.Changed, p.Unchanged, p.Invalid, p.Changes())
	}
	// The unchanged row keeps only what Apply checks: its association and revision.
	unchanged := ImportRow{Row: 3, Kind: ImportUnchanged, Name: "beta", AssociationID: beta.ID, Revision: beta.Revision}
	want := []ImportRow{rows[0], unchanged, rows[2], rows[3], rows[4]}
	want[0].Kind, want[0].Name = ImportChanged, "alpha"
	want[0].Changes = []FieldChange{
		{Field: "description", Old: "d alpha", New: "Library only"},
		{Field: "deviceCartIds", Added: []string{"cart-9"}, Removed: []string{"cart-alpha"}},
	}
	want[2].Kind, want[2].Name, want[2].Changes = ImportNew, "delta", obInitial("delta")
	want[3].Kind, want[3].Changes = ImportInvalid, nil
	want[4].Kind, want[4].Name = ImportChanged, "gamma 2"
	want[4].Changes = []FieldChange{{Field: "displayName", Old: "gamma", New: "gamma 2"}}
	if !reflect.DeepEqual(p.Rows, want) {
		t.Fatalf("rows:\n got %+v\nwant %+v", p.Rows, want)
	}
	if p.Owner != imAdmin || p.FileName != imFile {
		t.Errorf("owner %+v, file %q", p.Owner, p.FileName)
	}
	if !p.CreatedAt.Equal(*now) || !p.ExpiresAt.Equal(now.Add(ImportFor)) || !p.AppliedAt.IsZero() {
		t.Errorf("created %v, expires %v, applied %v; want %v, %v, zero", p.CreatedAt, p.ExpiresAt, p.AppliedAt, *now, now.Add(ImportFor))
	}

	// What GetImport reads back is what SaveImport returned, but for the Base.
	got := imGet(t, s, p.ID, imAdmin.Subject)
	if !reflect.DeepEqual(got.Rows, imStored(p.Rows)) {
		t.Fatalf("stored rows:\n got %+v\nwant %+v", got.Rows, imStored(p.Rows))
	}
	got.Rows, p.Rows = nil, nil
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("GetImport:\n got %+v\nwant %+v", got, p)
	}

	// Only unchanged rows: nothing kept but what Apply would check.
	u := imSave(t, s, imAdmin, imChange(2, alpha, func(*Fields) {}), imChange(3, beta, func(*Fields) {}))
	if len(u.Rows) != 2 || u.Unchanged != 2 || u.Changes() != 0 || u.Invalid != 0 {
		t.Errorf("all unchanged: %+v", u)
	}
	if g := imGet(t, s, u.ID, imAdmin.Subject); len(g.Rows) != 2 || g.Unchanged != 2 || g.Rows[1].AssociationID != beta.ID || g.Rows[1].Changes != nil {
		t.Errorf("all unchanged, read back: %+v", g)
	}
	// An empty upload stores an empty array.
	e := imSave(t, s, imAdmin)
	var stored string
	if err := s.write.QueryRowContext(ctx, `SELECT rows FROM import_previews WHERE id = ?`, e.ID).Scan(&stored); err != nil || stored != "[]" {
		t.Errorf("stored rows of an empty preview = %q, %v; want []", stored, err)
	}

	// Ids are long random strings: a preview's URL cannot be guessed.
	seen := map[string]bool{p.ID: true, u.ID: true}
	for range 3 {
		id := imSave(t, s, imOther).ID
		if len(id) < 20 || seen[id] {
			t.Errorf("preview id %q: short or repeated (%v)", id, seen)
		}
		seen[id] = true
	}
	if len(seen) != 5 || len(p.ID) < 20 || p.ID == u.ID {
		t.Errorf("preview ids %v", seen)
	}
	// SaveImport wrote no association.
	if got := hsKinds(hsAll(t, s, alpha.ID)); !slices.Equal(got, []HistoryKind{HistoryCreated}) {
		t.Errorf("alpha's history after SaveImport: %v", got)
	}
	if a := obGet(t, s, alpha.ID); a.Revision != 1 || a.Description != "d alpha" {
		t.Errorf("alpha after SaveImport: %+v", a)
	}
}

func TestGetImportIsTheOwnersUntilItExpires(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	p := imSave(t, s, imAdmin, imNew(2, obFields("delta")))

	for _, c := range []struct{ id, sub string }{
		{p.ID, imOther.Subject},
		{p.ID, ""},
		{p.ID, strings.ToUpper(imAdmin.Subject)},
		{"no-such-preview", imAdmin.Subject},
		{strings.ToLower(p.ID), imAdmin.Subject},
		{"", imAdmin.Subject},
	} {
		if got, err := s.GetImport(ctx, c.id, c.sub); !errors.Is(err, ErrNotFound) || got.ID != "" {
			t.Errorf("GetImport(%q, %q) = %+v, %v; want nothing, ErrNotFound", c.id, c.sub, got, err)
		}
	}

	*now = p.ExpiresAt.Add(-time.Nanosecond)
	if got := imGet(t, s, p.ID, imAdmin.Subject); got.ID != p.ID || len(got.Rows) != 1 {
		t.Fatalf("just before expiry: %+v", got)
	}
	*now = p.ExpiresAt
	got, err := s.GetImport(ctx, p.ID, imAdmin.Subject)
	if !errors.Is(err, ErrImportExpired) {
		t.Fatalf("GetImport at expiry: %v, want ErrImportExpired", err)
	}
	if got.ID != p.ID || got.New != 1 || len(got.Rows) != 1 || got.Rows[0].Name != "delta" {
		t.Errorf("expired preview returned as %+v; want the preview", got)
	}
	if _, err := s.GetImport(ctx, p.ID, imOther.Subject); !errors.Is(err, ErrNotFound) {
		t.Errorf("someone else's expired preview: %v, want ErrNotFound", err)
	}
}

func TestSaveImportKeepsTheNewestFivePerOwner(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	other := imSave(t, s, imOther) // the oldest of all, someone else's
	var mine []string
	for i := range 7 {
		*now = obT0.Add(time.Duration(i+1) * time.Second)
		mine = append(mine, imSave(t, s, imAdmin, imNew(2, obFields("row"))).ID)
		// After upload i, the newest five of mine are kept and the older ones dropped.
		for j, id := range mine {
			_, err := s.GetImport(ctx, id, imAdmin.Subject)
			if kept := j > i-5; kept && err != nil {
				t.Errorf("after upload %d, upload %d: %v, want it kept", i+1, j+1, err)
			} else if !kept && !errors.Is(err, ErrNotFound) {
				t.Errorf("after upload %d, upload %d: %v, want ErrNotFound", i+1, j+1, err)
			}
		}
		imGet(t, s, other.ID, imOther.Subject)
	}
	var n int
	if err := s.write.QueryRowContext(ctx, `SELECT count(*) FROM import_previews WHERE owner_sub = ?`, imAdmin.Subject).Scan(&n); err != nil || n != 5 {
		t.Errorf("previews kept for the admin = %d, %v; want 5", n, err)
	}
	// A dropped preview cannot be applied either.
	if _, err := s.ApplyImport(ctx, mine[0], imAdmin); !errors.Is(err, ErrNotFound) {
		t.Errorf("ApplyImport of a dropped preview: %v, want ErrNotFound", err)
	}
}

// The preview just saved is the owner's newest whatever the clock says: after the clock
// is set back (NTP, a VM resumed), or when uploads share a clock reading, it must not be
// the one dropped.
func TestSaveImportKeepsTheOneJustSaved(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	for i := range 5 {
		*now = obT0.Add(time.Duration(i) * time.Minute)
		imSave(t, s, imAdmin)
	}
	*now = obT0.Add(-time.Hour)
	p := imSave(t, s, imAdmin)
	if _, err := s.GetImport(t.Context(), p.ID, imAdmin.Subject); err != nil {
		t.Fatalf("the upload just saved, after the clock went back: %v", err)
	}
	*now = obT0.Add(time.Hour) // frozen: every upload from here on has the same time
	for i := range 15 {
		p := imSave(t, s, imAdmin)
		if _, err := s.GetImport(t.Context(), p.ID, imAdmin.Subject); err != nil {
			t.Fatalf("upload %d at the same clock reading: %v", i, err)
		}
	}
}

func TestApplyImportCreatesAndChanges(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	alpha := mrLinked(t, s, "alpha", "g-alpha") // synced: the import queues it again
	beta := obCreate(t, s, "beta")              // pushed between the preview and the Apply
	gamma := obCreate(t, s, "gamma")            // waiting throughout: the edit joins its row
	delta := obCreate(t, s, "delta")            // the file holds what it holds
	obCreate(t, s, "twin")
	obCreate(t, s, "twin")

	twin := imNew(7, Fields{DisplayName: "twin", Version: 1})
	twin.SameName = 2 // two had the name at the preview, and still have
	*now = obT0.Add(time.Minute)
	p := imSave(t, s, imAdmin,
		imChange(2, alpha, func(f *Fields) {
			f.Description = "Library only"
			f.DeviceCartIDs = []string{"cart-alpha", "cart-9"}
		}),
		imChange(3, beta, func(f *Fields) { f.DisplayName, f.Version = "beta renamed", 8 }),
		imChange(4, gamma, func(f *Fields) { f.ClassroomIDs = nil }),
		imChange(5, delta, func(*Fields) {}),
		imNew(6, obFields("epsilon")),
		twin,
	)
	if p.New != 2 || p.Changed != 3 || p.Unchanged != 1 || p.Invalid != 0 {
		t.Fatalf("preview counts: %+v", p)
	}
	// Graph's answer to beta's create moves no revision: beta is not stale.
	it := mrClaimID(t, s, "w-beta", beta.ID)
	if err := s.CompleteCreate(ctx, beta.ID, "w-beta", pushedOf(it, "g-beta")); err != nil {
		t.Fatal(err)
	}
	if b := obGet(t, s, beta.ID); b.Sync.State != SyncSynced || outboxRows(t, s, beta.ID) != 0 {
		t.Fatalf("setup: beta %s with %d outbox rows", b.Sync.State, outboxRows(t, s, beta.ID))
	}
	before := imCount(t, s)

	*now = obT0.Add(2 * time.Minute)
	applied := imApply(t, s, p.ID, imAdmin)
	at := *now
	if applied.ID != p.ID || !applied.AppliedAt.Equal(at) || applied.New != 2 || applied.Changed != 3 {
		t.Fatalf("applied preview: %+v", applied)
	}
	if len(applied.Rows) != 6 {
		t.Fatalf("applied preview has %d rows, want 6", len(applied.Rows))
	}
	newIDs := []int64{applied.Rows[4].AssociationID, applied.Rows[5].AssociationID}
	for i, r := range applied.Rows {
		if i < 4 && r.AssociationID != p.Rows[i].AssociationID {
			t.Errorf("changed row %d now links %d, want %d", r.Row, r.AssociationID, p.Rows[i].AssociationID)
		}
	}
	if newIDs[0] == 0 || newIDs[1] == 0 || newIDs[0] == newIDs[1] || newIDs[0] <= delta.ID || newIDs[1] <= delta.ID {
		t.Fatalf("new rows link associations %v", newIDs)
	}
	after := imCount(t, s)
	want := before
	want.associations += 2
	want.revisions += 3 + 2 // three changed, two new ones at revision 1
	want.history += 5
	want.outbox += 4 // alpha and beta queued again, two new ones; gamma's row carries its edit
	want.applied++
	if after != want {
		t.Errorf("counts after Apply %+v, want %+v", after, want)
	}

	// Changed: a new revision by the importer, queued for Graph, recorded as imported.
	for _, c := range []struct {
		before  Association
		row     ImportRow
		changes []FieldChange
	}{
		{alpha, applied.Rows[0], []FieldChange{
			{Field: "description", Old: "d alpha", New: "Library only"},
			{Field: "deviceCartIds", Added: []string{"cart-9"}},
		}},
		{beta, applied.Rows[1], []FieldChange{
			{Field: "displayName", Old: "beta", New: "beta renamed"},
			{Field: "version", Old: "7", New: "8"},
		}},
		{gamma, applied.Rows[2], []FieldChange{{Field: "classroomIds", Removed: []string{"room-gamma"}}}},
	} {
		a := obGet(t, s, c.before.ID)
		if !a.Fields.Equal(c.row.Fields) || a.Revision != c.before.Revision+1 || a.UpdatedBy != imAdmin ||
			!a.UpdatedAt.Equal(at) || a.CreatedBy != obActor || !a.CreatedAt.Equal(c.before.CreatedAt) {
			t.Errorf("%s after Apply: %+v", c.before.DisplayName, a)
		}
		if a.Sync.State != SyncWaiting || outboxRows(t, s, a.ID) != 1 {
			t.Errorf("%s after Apply: %s with %d outbox rows; want waiting, queued", c.before.DisplayName, a.Sync.State, outboxRows(t, s, a.ID))
		}
		es := hsWantKinds(t, s, a.ID, HistoryCSV, HistoryCreated)
		imWantCSV(t, es[0], a, at, c.changes...)
	}
	if a := obGet(t, s, alpha.ID); !a.Sync.NextAttemptAt.Equal(at) || a.GraphID != "g-alpha" {
		t.Errorf("alpha: next attempt %v (want %v), graph id %q", a.Sync.NextAttemptAt, at, a.GraphID)
	}

	// Unchanged: not touched.
	if d := obGet(t, s, delta.ID); d.Revision != 1 || !d.UpdatedAt.Equal(obT0) || !d.Fields.Equal(delta.Fields) {
		t.Errorf("delta after Apply: %+v", d)
	}
	hsWantKinds(t, s, delta.ID, HistoryCreated)

	// New: created by the importer at revision 1, queued, recorded as imported.
	for i, initial := range [][]FieldChange{obInitial("epsilon"), {{Field: "displayName", New: "twin"}, {Field: "version", New: "1"}}} {
		row := applied.Rows[4+i]
		a := obGet(t, s, newIDs[i])
		if !a.Fields.Equal(row.Fields) || a.Revision != 1 || a.CreatedBy != imAdmin || a.UpdatedBy != imAdmin ||
			!a.CreatedAt.Equal(at) || !a.UpdatedAt.Equal(at) || a.GraphID != "" {
			t.Errorf("row %d's new association: %+v", row.Row, a)
		}
		if a.Sync.State != SyncWaiting || outboxRows(t, s, a.ID) != 1 || !a.Sync.NextAttemptAt.Equal(at) {
			t.Errorf("row %d's new association: %s, next %v, %d outbox rows; want waiting, due now, queued",
				row.Row, a.Sync.State, a.Sync.NextAttemptAt, outboxRows(t, s, a.ID))
		}
		es := hsWantKinds(t, s, a.ID, HistoryCSV)
		imWantCSV(t, es[0], a, at, initial...)
	}

	// The preview shows what was done, and stays readable past its expiry.
	got := imGet(t, s, p.ID, imAdmin.Subject)
	if !got.AppliedAt.Equal(at) || !reflect.DeepEqual(got.Rows, imStored(applied.Rows)) {
		t.Errorf("GetImport after Apply: applied %v, rows %+v; want %v, %+v", got.AppliedAt, got.Rows, at, imStored(applied.Rows))
	}
	*now = p.ExpiresAt.Add(time.Hour)
	if got, err := s.GetImport(ctx, p.ID, imAdmin.Subject); err != nil || got.AppliedAt.IsZero() {
		t.Errorf("GetImport of an applied preview past its expiry: %+v, %v", got, err)
	}
	if _, err := s.ApplyImport(ctx, p.ID, imAdmin); !errors.Is(err, ErrImportApplied) {
		t.Errorf("ApplyImport again past the expiry: %v, want ErrImportApplied", err)
	}
}

func TestApplyImportIsOneTransaction(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	alpha := obCreate(t, s, "alpha")
	p := imSave(t, s, imAdmin,
		imChange(2, alpha, func(f *Fields) { f.Description = "imported" }),
		imNew(3, obFields("fine")),
		imNew(4, obFields("boom")))
	if _, err := s.write.ExecContext(ctx, `CREATE TRIGGER boom_refused BEFORE INSERT ON associations
		WHEN NEW.display_name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}
	before := imCount(t, s)
	got, err := s.ApplyImport(ctx, p.ID, imAdmin)
	if err == nil || !strings.Contains(err.Error(), "row 4") || !strings.Contains(err.Error(), "boom refused") {
		t.Fatalf("ApplyImport with row 4 refused: %v", err)
	}
	if got.ID != "" {
		t.Errorf("a failed Apply returned %+v", got)
	}
	if after := imCount(t, s); after != before {
		t.Fatalf("a failed Apply saved part of the import: %+v, was %+v", after, before)
	}
	if a := obGet(t, s, alpha.ID); a.Revision != 1 || a.Description != "d alpha" {
		t.Errorf("alpha after a failed Apply: %+v", a)
	}
	if g := imGet(t, s, p.ID, imAdmin.Subject); !g.AppliedAt.IsZero() || g.Rows[1].AssociationID != 0 {
		t.Errorf("preview after a failed Apply: %+v", g)
	}
	// Once the refusal is gone the same preview applies.
	if _, err := s.write.ExecContext(ctx, `DROP TRIGGER boom_refused`); err != nil {
		t.Fatal(err)
	}
	imApply(t, s, p.ID, imAdmin)
	if a := obGet(t, s, alpha.ID); a.Revision != 2 || a.Description != "imported" {
		t.Errorf("alpha after Apply: %+v", a)
	}
}

// Every refusal of ApplyImport saves nothing.
func TestApplyImportRefusals(t *testing.T) {
	t.Parallel()
	// setup makes a store with alpha and a preview that changes alpha and creates delta.
	setup := func(t *testing.T) (*Store, *time.Time, Association, ImportPreview) {
		s, now := openOutboxStore(t)
		alpha := obCreate(t, s, "alpha")
		p := imSave(t, s, imAdmin,
			imChange(2, alpha, func(f *Fields) { f.Description = "imported" }),
			imNew(3, obFields("delta")))
		return s, now, alpha, p
	}
	// refused runs ApplyImport, which must fail with want and leave the counts as they were.
	refused := func(t *testing.T, s *Store, id string, by Actor, want error) ImportPreview {
		t.Helper()
		before := imCount(t, s)
		got, err := s.ApplyImport(t.Context(), id, by)
		if !errors.Is(err, want) {
			t.Fatalf("ApplyImport: %v, want %v", err, want)
		}
		if after := imCount(t, s); after != before {
			t.Fatalf("the refused Apply saved something: %+v, was %+v", after, before)
		}
		return got
	}

	t.Run("applied twice", func(t *testing.T) {
		t.Parallel()
		s, _, alpha, p := setup(t)
		first := imApply(t, s, p.ID, imAdmin)
		got := refused(t, s, p.ID, imAdmin, ErrImportApplied)
		if got.ID != p.ID || !got.AppliedAt.Equal(first.AppliedAt) || got.Rows[1].AssociationID != first.Rows[1].AssociationID {
			t.Errorf("second Apply returned %+v; want the applied preview", got)
		}
		hsWantKinds(t, s, alpha.ID, HistoryCSV, HistoryCreated)
	})

	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		s, now, alpha, p := setup(t)
		*now = p.ExpiresAt
		if got := refused(t, s, p.ID, imAdmin, ErrImportExpired); got.ID != p.ID || !got.AppliedAt.IsZero() {
			t.Errorf("expired Apply returned %+v; want the preview", got)
		}
		*now = p.ExpiresAt.Add(time.Hour)
		refused(t, s, p.ID, imAdmin, ErrImportExpired)
		// A nanosecond before its end it still applies.
		*now = p.ExpiresAt.Add(-time.Nanosecond)
		imApply(t, s, p.ID, imAdmin)
		hsWantKinds(t, s, alpha.ID, HistoryCSV, HistoryCreated)
	})

	t.Run("invalid rows", func(t *testing.T) {
		t.Parallel()
		s, _, alpha, _ := setup(t)
		bad := imNew(4, Fields{})
		bad.Name = "no name"
		bad.Errors = []ImportError{{Column: "displayName", Message: "Enter a display name."}}
		p := imSave(t, s, imAdmin, imChange(2, alpha, func(f *Fields) { f.Version = 9 }), imNew(3, obFields("epsilon")), bad)
		if got := refused(t, s, p.ID, imAdmin, ErrImportInvalid); got.ID != p.ID || got.Invalid != 1 {
			t.Errorf("invalid Apply returned %+v; want the preview", got)
		}
		if a := obGet(t, s, alpha.ID); a.Version != 7 || a.Revision != 1 {
			t.Errorf("alpha after the refusal: %+v", a)
		}
		if g := imGet(t, s, p.ID, imAdmin.Subject); !g.AppliedAt.IsZero() {
			t.Errorf("refused preview marked applied: %+v", g)
		}
	})

	t.Run("not the owner", func(t *testing.T) {
		t.Parallel()
		s, _, alpha, p := setup(t)
		for _, by := range []Actor{imOther, {Subject: imOther.Subject, Name: imAdmin.Name}, {Name: imAdmin.Name}} {
			if got := refused(t, s, p.ID, by, ErrNotFound); got.ID != "" || len(got.Rows) != 0 {
				t.Errorf("Apply by %+v returned %+v; want nothing", by, got)
			}
		}
		if got := refused(t, s, "no-such-preview", imAdmin, ErrNotFound); got.ID != "" {
			t.Errorf("Apply of an unknown id returned %+v", got)
		}
		// Still the owner's to apply.
		imApply(t, s, p.ID, imAdmin)
		hsWantKinds(t, s, alpha.ID, HistoryCSV, HistoryCreated)
	})
}

func TestApplyImportRefusesStaleRows(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	alpha := obCreate(t, s, "alpha") // edited after the preview
	beta := obCreate(t, s, "beta")   // deleted after it
	gamma := obCreate(t, s, "gamma") // deleted and purged after it
	delta := obCreate(t, s, "delta") // as it was: its row alone would apply
	edit := func(f *Fields) { f.Description = "from the file" }
	p := imSave(t, s, imAdmin,
		imChange(2, alpha, edit),
		imChange(3, beta, edit),
		imChange(4, gamma, edit),
		imChange(5, delta, edit),
		imNew(6, obFields("epsilon")), // its name is taken after the preview
		imNew(7, obFields("zeta")),    // still free
	)

	*now = obT0.Add(time.Minute)
	obUpdate(t, s, alpha.ID, "edited meanwhile")
	mrDelete(t, s, gamma.ID)
	*now = obT0.Add(2 * time.Minute)
	mrDelete(t, s, beta.ID)
	if n, err := s.PurgeDeleted(ctx, obT0.Add(90*time.Second)); err != nil || n != 1 {
		t.Fatalf("PurgeDeleted = %d, %v; want gamma purged", n, err)
	}
	taken := obCreate(t, s, "epsilon")
	*now = obT0.Add(3 * time.Minute)

	want := []StaleRow{
		{Row: 2, Name: "alpha", AssociationID: alpha.ID, Current: obGet(t, s, alpha.ID)},
		{Row: 3, Name: "beta", AssociationID: beta.ID, Current: obGet(t, s, beta.ID), Gone: true},
		{Row: 4, Name: "gamma", AssociationID: gamma.ID, Gone: true},
		{Row: 6, Name: "epsilon", Current: obGet(t, s, taken.ID)},
	}
	if c := want[0].Current; c.UpdatedBy.Name != "Bob" || c.Revision != 2 || c.Description != "edited meanwhile" {
		t.Fatalf("setup: alpha %+v", c)
	}
	before := imCount(t, s)
	got, err := s.ApplyImport(ctx, p.ID, imAdmin)
	var stale *StaleImportError
	if !errors.As(err, &stale) || !errors.Is(err, ErrConflict) {
		t.Fatalf("ApplyImport of a stale preview: %v, want a *StaleImportError", err)
	}
	if !reflect.DeepEqual(stale.Rows, want) {
		t.Errorf("stale rows:\n got %+v\nwant %+v", stale.Rows, want)
	}
	if !strings.Contains(err.Error(), "4 rows") {
		t.Errorf("error %q does not count the stale rows", err)
	}
	if got.ID != "" {
		t.Errorf("a stale Apply returned %+v", got)
	}
	// Nothing saved: not even the rows that still hold.
	if after := imCount(t, s); after != before {
		t.Fatalf("the stale Apply saved something: %+v, was %+v", after, before)
	}
	if d := obGet(t, s, delta.ID); d.Revision != 1 || d.Description != "d delta" {
		t.Errorf("delta after the stale Apply: %+v", d)
	}
	hsWantKinds(t, s, delta.ID, HistoryCreated)
	if m, err := s.MatchImport(ctx, []ImportKey{{DisplayName: "zeta"}, {DisplayName: "epsilon"}}); err != nil ||
		m[0].SameName != 0 || m[1].SameName != 1 || m[1].Association.ID != taken.ID {
		t.Errorf("after the stale Apply, zeta and epsilon match %+v, %v", m, err)
	}
	if g := imGet(t, s, p.ID, imAdmin.Subject); !g.AppliedAt.IsZero() {
		t.Errorf("stale preview marked applied: %+v", g)
	}
}

// One stale row, a matched association edited since, is enough to refuse the import.
func TestApplyImportRefusesAnEditSinceThePreview(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	alpha := obCreate(t, s, "alpha")
	p := imSave(t, s, imAdmin, imChange(2, alpha, func(f *Fields) { f.Version = 9 }), imNew(3, obFields("delta")))
	*now = obT0.Add(time.Minute)
	edited := obUpdate(t, s, alpha.ID, "edited meanwhile")
	before := imCount(t, s)
	_, err := s.ApplyImport(t.Context(), p.ID, imAdmin)
	var stale *StaleImportError
	if !errors.As(err, &stale) || !errors.Is(err, ErrConflict) {
		t.Fatalf("ApplyImport after an edit: %v, want a *StaleImportError", err)
	}
	if len(stale.Rows) != 1 || stale.Rows[0].Row != 2 || stale.Rows[0].AssociationID != alpha.ID ||
		stale.Rows[0].Gone || stale.Rows[0].Current.UpdatedBy != edited.UpdatedBy || stale.Rows[0].Current.Revision != 2 {
		t.Fatalf("stale rows %+v; want row 2, alpha as Bob left it", stale.Rows)
	}
	if after := imCount(t, s); after != before {
		t.Fatalf("the stale Apply saved something: %+v, was %+v", after, before)
	}
	if a := obGet(t, s, alpha.ID); a.Version != 7 || a.Description != "edited meanwhile" {
		t.Errorf("alpha after the stale Apply: %+v", a)
	}
}

// A new row relies on how many live associations had its name at the preview: fewer since
// is stale too (the row was made knowing of both twins).
func TestApplyImportRefusesANewRowWhoseNameCountChanged(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	twin1 := obCreate(t, s, "twin")
	twin2 := obCreate(t, s, "twin")
	row := imNew(2, Fields{DisplayName: "twin", Version: 1})
	row.SameName = 2
	p := imSave(t, s, imAdmin, row)
	*now = obT0.Add(time.Minute)
	mrDelete(t, s, twin1.ID)
	before := imCount(t, s)
	_, err := s.ApplyImport(t.Context(), p.ID, imAdmin)
	var stale *StaleImportError
	if !errors.As(err, &stale) {
		t.Fatalf("ApplyImport after a twin was deleted: %v, want a *StaleImportError", err)
	}
	want := []StaleRow{{Row: 2, Name: "twin", Current: obGet(t, s, twin2.ID)}}
	if !reflect.DeepEqual(stale.Rows, want) {
		t.Errorf("stale rows:\n got %+v\nwant %+v", stale.Rows, want)
	}
	if after := imCount(t, s); after != before {
		t.Fatalf("the stale Apply saved something: %+v, was %+v", after, before)
	}
}

func TestPurgeImportsDeletesOnlyExpired(t *testing.T) {
	t.Parallel()
	s, now := openOutboxStore(t)
	ctx := t.Context()
	p1 := imSave(t, s, imAdmin)
	*now = obT0.Add(30 * time.Minute)
	p2 := imSave(t, s, imOther, ImportRow{Row: 2, Fields: Fields{DisplayName: "purge-new", Version: 1}})
	imApply(t, s, p2.ID, imOther) // applied: kept to its expiry, then purged like any
	*now = obT0.Add(2 * time.Hour)
	p3 := imSave(t, s, imAdmin)
	*now = obT0.Add(24 * time.Hour) // PurgeImports goes by its argument, not the store's clock

	if n, err := s.PurgeImports(ctx, p1.ExpiresAt.Add(-time.Nanosecond)); err != nil || n != 0 {
		t.Fatalf("PurgeImports before any expiry = %d, %v; want 0", n, err)
	}
	if n, err := s.PurgeImports(ctx, p1.ExpiresAt); err != nil || n != 1 {
		t.Fatalf("PurgeImports at p1's expiry = %d, %v; want 1", n, err)
	}
	if _, err := s.GetImport(ctx, p1.ID, imAdmin.Subject); !errors.Is(err, ErrNotFound) {
		t.Errorf("p1 after the purge: %v, want ErrNotFound", err)
	}
	imGet(t, s, p2.ID, imOther.Subject)
	*now = obT0.Add(2 * time.Hour)
	imGet(t, s, p3.ID, imAdmin.Subject)
	if n, err := s.PurgeImports(ctx, p1.ExpiresAt); err != nil || n != 0 {
		t.Fatalf("PurgeImports again = %d, %v; want 0", n, err)
	}
	if n, err := s.PurgeImports(ctx, p3.ExpiresAt); err != nil || n != 2 {
		t.Fatalf("PurgeImports at p3's expiry = %d, %v; want 2", n, err)
	}
	var left int
	if err := s.write.QueryRowContext(ctx, `SELECT count(*) FROM import_previews`).Scan(&left); err != nil || left != 0 {
		t.Errorf("previews left = %d, %v", left, err)
	}
}

// 0007 on a fresh store: the table with its CHECK and indexes, and an intact file. (The
// migrations from schema 4 and 5 check integrity after upgrading; this is the fresh path.)
func TestMigration7ImportPreviews(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	ctx := t.Context()
	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version < 7 {
		t.Fatalf("user_version = %d, %v; want at least 7", version, err)
	}
	var indexes []string
	rows, err := s.write.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'import_previews'
		AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if want := []string{"import_previews_expires", "import_previews_owner"}; !slices.Equal(indexes, want) {
		t.Errorf("indexes of import_previews = %v, want %v", indexes, want)
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO import_previews (id, owner_sub, created_at, expires_at, rows)
		VALUES ('x', 'sub', 1, 2, 'not json')`); err == nil || !strings.Contains(err.Error(), "CHECK") {
		t.Errorf("rows that are not JSON: %v, want a CHECK failure", err)
	}
	imSave(t, s, imAdmin, imNew(2, obFields("delta")))
	var check string
	if err := s.write.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
}

// Matching by name reads the live-name index; the cleanup reads the expiry index.
func TestImportQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	s, _ := openTestStore(t)
	for _, c := range []struct {
		query string
		args  []any
		index string
	}{
		{importNameCount, []any{"Science iPads"}, "associations_live_name"},
		{importByName, []any{"Science iPads"}, "associations_live_name"},
		{`DELETE FROM import_previews WHERE expires_at <= ?`, []any{int64(1)}, "import_previews_expires"}, // PurgeImports
	} {
		if plan := queryPlan(t, s, c.query, c.args); !strings.Contains(plan, c.index) || strings.Contains(plan, "SCAN associations") {
			t.Errorf("plan of %s:\n%s\nwant it to use %s", c.query, plan, c.index)
		}
	}
}

func TestApplyImportOfNothingIsRefused(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	p := imSave(t, s, imAdmin)
	before := imCount(t, s)
	if _, err := s.ApplyImport(t.Context(), p.ID, imAdmin); !errors.Is(err, ErrImportNothing) {
		t.Fatalf("ApplyImport of a preview without changes: %v, want ErrImportNothing", err)
	}
	if got := imGet(t, s, p.ID, imAdmin.Subject); !got.AppliedAt.IsZero() {
		t.Error("a preview that changes nothing was marked applied")
	}
	if after := imCount(t, s); after != before {
		t.Errorf("Apply of nothing saved something: %+v, was %+v", after, before)
	}
}

// Apply checks every association the preview matched, also those it leaves as they are,
// and that a row matched by display name still matches that association alone.
func TestApplyImportRefusesWhenAnyMatchedAssociationChanged(t *testing.T) {
	t.Parallel()
	s, _ := openOutboxStore(t)
	ctx := t.Context()
	kept := obCreate(t, s, "kept")
	named := obCreate(t, s, "named")
	edited := obCreate(t, s, "edited")
	byName := imChange(3, named, func(f *Fields) { f.Description = "from the file" })
	byName.ByName = true
	p := imSave(t, s, imAdmin,
		imChange(2, kept, func(*Fields) {}),
		byName,
		imChange(4, edited, func(f *Fields) { f.Version = 9 }),
	)
	if p.Unchanged != 1 || p.Changed != 2 {
		t.Fatalf("preview counts: %+v", p)
	}
	// Someone edits the association the file left unchanged, and another association
	// takes the name row 3 matched by.
	f := kept.Fields
	f.Description = "meanwhile"
	if _, err := s.UpdateAssociation(ctx, kept.ID, kept.Revision, f, Actor{Subject: "sub-bo", Name: "Bo"}); err != nil {
		t.Fatal(err)
	}
	obCreate(t, s, "named")
	before := imCount(t, s)
	_, err := s.ApplyImport(ctx, p.ID, imAdmin)
	var stale *StaleImportError
	if !errors.As(err, &stale) {
		t.Fatalf("ApplyImport: %v, want a *StaleImportError", err)
	}
	if len(stale.Rows) != 2 || stale.Rows[0].Row != 2 || stale.Rows[0].Current.UpdatedBy.Name != "Bo" ||
		stale.Rows[1].Row != 3 || !stale.Rows[1].SameName || stale.Rows[1].Current.ID != named.ID {
		t.Errorf("stale rows %+v; want row 2 (edited by Bo) and row 3 (its name now shared)", stale.Rows)
	}
	if after := imCount(t, s); after != before {
		t.Errorf("the refused Apply saved something: %+v, was %+v", after, before)
	}
	if e := obGet(t, s, edited.ID); e.Version == 9 {
		t.Error("row 4 was applied although the import was refused")
	}
}
