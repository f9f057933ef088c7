package store

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// Tests of the Graph request log: each request lands under the history entry it
// delivered, reads back whole, and only the newest GraphRequestsKept of an association
// are kept.

func mustRecord(t *testing.T, s *Store, r GraphRequest) {
	t.Helper()
	if err := s.RecordGraphRequest(t.Context(), r); err != nil {
		t.Fatalf("RecordGraphRequest(%+v): %v", r, err)
	}
}

func TestGraphRequestsUnderTheEntryTheyDelivered(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Room 12", Version: 1})
	other := mustCreate(t, s, Fields{DisplayName: "Room 13", Version: 1})
	sent := time.Date(2025, 3, 14, 10, 0, 0, 123456789, time.UTC)

	post := GraphRequest{AssociationID: a.ID, Revision: 1, At: sent, Method: "POST", Status: 503,
		Duration: 84*time.Millisecond + 417*time.Microsecond, RequestID: "req-post", ClientRequestID: "crid-post", Code: "ServiceUnavailable"}
	mustRecord(t, s, post)
	mustRecord(t, s, GraphRequest{AssociationID: other.ID, Revision: 1, At: sent, Method: "POST", Status: 201,
		RequestID: "req-other", ClientRequestID: "crid-other"})

	f := a.Fields
	f.Description = "Science"
	a2, err := s.UpdateAssociation(ctx, a.ID, a.Revision, f, Actor{Subject: "sub-ada", Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	get := GraphRequest{AssociationID: a.ID, Revision: a2.Revision, At: sent.Add(time.Second), Method: "GET", Status: 200,
		Duration: 12 * time.Millisecond, RequestID: "req-get", ClientRequestID: "crid-get"}
	mustRecord(t, s, get)
	// Saved again while the PATCH of revision 2 was in flight: the PATCH still belongs to
	// revision 2's entry.
	f.Description = "Science block"
	a3, err := s.UpdateAssociation(ctx, a.ID, a2.Revision, f, Actor{Subject: "sub-ada", Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	patch := GraphRequest{AssociationID: a.ID, Revision: a2.Revision, At: sent.Add(2 * time.Second), Method: "PATCH", Status: 204,
		Duration: 30 * time.Millisecond, RequestID: "req-patch", ClientRequestID: "crid-patch"}
	mustRecord(t, s, patch)
	// No revision: the newest entry. No time: the store's clock.
	lost := GraphRequest{AssociationID: a.ID, Method: "DELETE", ClientRequestID: "crid-lost"}
	mustRecord(t, s, lost)

	es := hsWantKinds(t, s, a.ID, HistoryEdited, HistoryEdited, HistoryCreated)
	if es[0].Revision != a3.Revision || es[1].Revision != a2.Revision {
		t.Fatalf("entries' revisions %d, %d; want %d, %d", es[0].Revision, es[1].Revision, a3.Revision, a2.Revision)
	}
	got, err := s.GraphRequests(ctx, a.ID, []int64{es[0].ID, es[1].ID, es[2].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("requests under %d entries, want 3: %+v", len(got), got)
	}
	// What was recorded, with the entry and id the store gave it; the DELETE's time is the
	// store clock's, read back below.
	want := func(r GraphRequest, entry HistoryEntry, rs []GraphRequest, i int) GraphRequest {
		r.HistoryID, r.ID = entry.ID, rs[i].ID
		if r.Revision == 0 {
			r.At = rs[i].At
		}
		return r
	}
	if rs := got[es[2].ID]; len(rs) != 1 || !reflect.DeepEqual(rs[0], want(post, es[2], rs, 0)) {
		t.Errorf("under the creation: %+v\nwant [%+v]", rs, post)
	}
	rs := got[es[1].ID]
	if len(rs) != 2 || !reflect.DeepEqual(rs[0], want(get, es[1], rs, 0)) || !reflect.DeepEqual(rs[1], want(patch, es[1], rs, 1)) {
		t.Errorf("under the first edit: %+v\nwant GET then PATCH", rs)
	}
	rs = got[es[0].ID]
	if len(rs) != 1 || rs[0].Method != "DELETE" || rs[0].Status != 0 || rs[0].ClientRequestID != "crid-lost" || rs[0].RequestID != "" {
		t.Fatalf("under the newest edit: %+v, want the DELETE", rs)
	}
	if at := rs[0].At; at.Before(clockStart) || at.After(clockStart.Add(time.Hour)) || at.Location() != time.UTC {
		t.Errorf("DELETE recorded without a time has %v, want the store clock's (after %v)", at, clockStart)
	}
	if !rs[0].Failed() || got[es[1].ID][1].Failed() || !got[es[2].ID][0].Failed() {
		t.Error("Failed: want true for no answer and 503, false for 204")
	}
	if got[es[1].ID][0].ID >= got[es[1].ID][1].ID {
		t.Error("an entry's requests are not in the order they were made")
	}

	// Only the entries asked for, only this association's.
	only, err := s.GraphRequests(ctx, a.ID, []int64{es[1].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(only) != 1 || len(only[es[1].ID]) != 2 {
		t.Errorf("asking for one entry: %+v", only)
	}
	oes := hsAll(t, s, other.ID)
	if cross, err := s.GraphRequests(ctx, a.ID, []int64{oes[0].ID}); err != nil || len(cross) != 0 {
		t.Errorf("association %d's requests under %d's entry: %+v, %v", a.ID, other.ID, cross, err)
	}
	if mine, err := s.GraphRequests(ctx, other.ID, []int64{oes[0].ID}); err != nil || len(mine[oes[0].ID]) != 1 ||
		mine[oes[0].ID][0].RequestID != "req-other" {
		t.Errorf("the other association's requests: %+v, %v", mine, err)
	}
	if none, err := s.GraphRequests(ctx, a.ID, nil); err != nil || len(none) != 0 {
		t.Errorf("no entries asked for: %+v, %v", none, err)
	}

	// An association without history (made before cartclass kept one) records under 0.
	mustRecord(t, s, GraphRequest{AssociationID: 9999, Revision: 4, Method: "GET", Status: 404, Code: "ResourceNotFound"})
	if orphan, err := s.GraphRequests(ctx, 9999, []int64{0}); err != nil || len(orphan[0]) != 1 || orphan[0][0].Code != "ResourceNotFound" {
		t.Errorf("request of an association without history: %+v, %v", orphan, err)
	}
}

func TestGraphRequestsKeepTheNewestPerAssociation(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Busy", Version: 1})
	b := mustCreate(t, s, Fields{DisplayName: "Quiet", Version: 1})
	const extra = 10
	if GraphRequestsKept != 50 {
		t.Fatalf("GraphRequestsKept = %d; the trigger in 0006_history.sql keeps 50", GraphRequestsKept)
	}
	for i := range 3 {
		mustRecord(t, s, GraphRequest{AssociationID: b.ID, Revision: 1, Method: "GET", Status: 200, ClientRequestID: fmt.Sprintf("b-%d", i)})
	}
	for i := range GraphRequestsKept + extra {
		mustRecord(t, s, GraphRequest{AssociationID: a.ID, Revision: 1, Method: "PATCH", Status: 204, ClientRequestID: fmt.Sprintf("a-%d", i)})
		var n int
		if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM graph_requests WHERE association_id = ?`, a.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := min(i+1, GraphRequestsKept); n != want {
			t.Fatalf("after %d requests %d are kept, want %d", i+1, n, want)
		}
	}
	crids := func(id int64) []string {
		t.Helper()
		e := hsAll(t, s, id)
		got, err := s.GraphRequests(ctx, id, []int64{e[0].ID})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range got[e[0].ID] {
			out = append(out, r.ClientRequestID)
		}
		return out
	}
	var want []string
	for i := extra; i < GraphRequestsKept+extra; i++ {
		want = append(want, fmt.Sprintf("a-%d", i))
	}
	if got := crids(a.ID); !slices.Equal(got, want) {
		t.Errorf("kept %v\nwant the newest %v", got, want)
	}
	// Another association's requests are its own to keep.
	if got := crids(b.ID); !slices.Equal(got, []string{"b-0", "b-1", "b-2"}) {
		t.Errorf("the other association kept %v", got)
	}
}

func TestGraphRequestsOutliveThePurge(t *testing.T) {
	s, clock := openTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, s, Fields{DisplayName: "Gone soon", Version: 1})
	d, err := s.DeleteAssociation(ctx, a.ID, a.Revision, Actor{Subject: "sub-ada", Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	mustRecord(t, s, GraphRequest{AssociationID: a.ID, Revision: d.Revision, Method: "DELETE", Status: 204, RequestID: "req-del"})
	clock.set(clockStart.Add(40*24*time.Hour), time.Second)
	if n, err := s.PurgeDeleted(ctx, clockStart.Add(39*24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("PurgeDeleted = %d, %v; want 1", n, err)
	}
	es := hsWantKinds(t, s, a.ID, HistoryDeleted, HistoryCreated)
	got, err := s.GraphRequests(ctx, a.ID, []int64{es[0].ID, es[1].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[es[0].ID]) != 1 || got[es[0].ID][0].RequestID != "req-del" {
		t.Errorf("after the purge: %+v, want the DELETE under the deleted entry", got)
	}
}
