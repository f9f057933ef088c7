package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/cartclass/cartclass/store"
	"github.com/cartclass/cartclass/views"
)

// These check the form rules directly; association_test.go checks that their messages
// reach the page beside the right field.

func valid() views.AssociationValues {
	return views.AssociationValues{DisplayName: "Lab", Description: "", Version: "1"}
}

func TestValidateAssociationNormalises(t *testing.T) {
	f, errs := validateAssociation(views.AssociationValues{
		DisplayName:   "  Science  iPads \u00a0 👩\u200d🔬",
		Description:   "\r\n  first\r\nsecond\twith tab  \r\n",
		Version:       " +42 ",
		DeviceCartIDs: "\ufeff B ,A\tB\r\n\r\n C \n,,\u00a0D\u00a0\u200b",
		ClassroomIDs:  "",
	})
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	want := store.Fields{
		DisplayName:   "Science  iPads \u00a0 👩\u200d🔬",
		Description:   "first\nsecond\twith tab",
		Version:       42,
		DeviceCartIDs: []string{"B", "A", "C", "D"},
	}
	if !f.Equal(want) {
		t.Errorf("fields = %#v, want %#v", f, want)
	}
	if f.ClassroomIDs == nil || len(f.ClassroomIDs) != 0 {
		t.Errorf("empty id list = %#v, want empty and non-nil", f.ClassroomIDs)
	}
}

func TestValidateAssociationMessages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*views.AssociationValues)
		field string
		msg   string
	}{
		{"empty name", func(v *views.AssociationValues) { v.DisplayName = "" }, "displayName", "Enter a display name."},
		{"name 257 runes", func(v *views.AssociationValues) { v.DisplayName = strings.Repeat("語", 257) }, "displayName", "Use at most 256 characters (this has 257)."},
		{"name with DEL", func(v *views.AssociationValues) { v.DisplayName = "a\x7fb" }, "displayName", "Remove the line breaks, tabs or other control characters from the display name."},
		{"name bad utf-8", func(v *views.AssociationValues) { v.DisplayName = "\xc3\x28" }, "displayName", "The display name contains bytes that are not valid text."},
		{"description 1025", func(v *views.AssociationValues) { v.Description = strings.Repeat("é", 1025) }, "description", "Use at most 1,024 characters (this has 1,025)."},
		{"description 12345", func(v *views.AssociationValues) { v.Description = strings.Repeat("x", 12345) }, "description", "Use at most 1,024 characters (this has 12,345)."},
		{"description lone CR", func(v *views.AssociationValues) { v.Description = "a\rb" }, "description", "Remove the control characters from the description (line breaks and tabs are fine)."},
		{"description bad utf-8", func(v *views.AssociationValues) { v.Description = "ok \xff" }, "description", "The description contains bytes that are not valid text."},
		{"version blank", func(v *views.AssociationValues) { v.Version = "  " }, "version", "Enter a version: a whole number such as 1."},
		{"version hex", func(v *views.AssociationValues) { v.Version = "0x10" }, "version", "Enter a whole number from 0 to 2,147,483,647."},
		{"version thousands", func(v *views.AssociationValues) { v.Version = "1,000" }, "version", "Enter a whole number from 0 to 2,147,483,647."},
		{"version fullwidth digit", func(v *views.AssociationValues) { v.Version = "１" }, "version", "Enter a whole number from 0 to 2,147,483,647."},
		{"cart id too long", func(v *views.AssociationValues) { v.DeviceCartIDs = strings.Repeat("é", 129) }, "deviceCartIds", "The device cart ID “" + strings.Repeat("é", 24) + "…” has 129 characters; the limit is 128."},
		{"classroom id NUL", func(v *views.AssociationValues) { v.ClassroomIDs = "A\x00B" }, "classroomIds", "The classroom ID “A�B” contains a control character; remove it."},
		{"classroom ids bad utf-8", func(v *views.AssociationValues) { v.ClassroomIDs = "A\xffB" }, "classroomIds", "The list contains bytes that are not valid text."},
		{"cart id zero-width space inside", func(v *views.AssociationValues) { v.DeviceCartIDs = "cart\u200b-1" }, "deviceCartIds", "The device cart ID “cart�-1” contains an invisible character (such as a zero-width space); retype it."},
		{"name right-to-left override", func(v *views.AssociationValues) { v.DisplayName = "Room \u202e21 moor" }, "displayName", "Remove the hidden text-direction characters from the display name: they make it read differently from what it holds."},
		{"description isolate", func(v *views.AssociationValues) { v.Description = "a\u2066b\u2069" }, "description", "Remove the hidden text-direction characters from the description: they make it read differently from what it holds."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := valid()
			tc.edit(&v)
			_, errs := validateAssociation(v)
			if errs[tc.field] != tc.msg {
				t.Errorf("%s message = %q, want %q", tc.field, errs[tc.field], tc.msg)
			}
			if len(errs) != 1 {
				t.Errorf("errors = %v, want only %s", errs, tc.field)
			}
		})
	}
}

func TestParseIDsLimits(t *testing.T) {
	ids := make([]string, 0, 520)
	for i := range 500 {
		ids = append(ids, fmt.Sprintf("ID-%04d-%s", i, strings.Repeat("x", 119))) // 128 characters
	}
	got, msg := parseIDs(strings.Join(ids, "\n"), "device cart")
	if msg != "" || len(got) != 500 {
		t.Fatalf("500 distinct ids: %d ids, message %q", len(got), msg)
	}
	// Duplicates do not count towards the limit.
	if got, msg = parseIDs(strings.Join(append(ids, ids[:20]...), ","), "device cart"); msg != "" || len(got) != 500 {
		t.Errorf("500 distinct with duplicates: %d ids, message %q", len(got), msg)
	}
	if _, msg = parseIDs(strings.Join(append(ids, "one-more"), "\t"), "device cart"); msg != "Enter at most 500 device cart IDs (this list has 501 after removing duplicates)." {
		t.Errorf("501 ids: %q", msg)
	}
	// Order is kept and case matters.
	if got, _ = parseIDs("b\nA\na\nB\nA", "x"); !slices.Equal(got, []string{"b", "A", "a", "B"}) {
		t.Errorf("order/case = %q", got)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1024: "1,024", 12345: "12,345", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseAssociationFormReadsOnlyTheBody(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/associations?displayName=from-url", strings.NewReader("version=3&displayName=from-body"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	v, err := parseAssociationForm(req)
	if err != nil {
		t.Fatal(err)
	}
	if v.DisplayName != "from-body" || v.Version != "3" {
		t.Errorf("values = %+v; the body must win and the URL must not be read", v)
	}
	req = httptest.NewRequest(http.MethodPost, "/associations?displayName=from-url", strings.NewReader("version=3"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if v, _ := parseAssociationForm(req); v.DisplayName != "" {
		t.Errorf("display name read from the URL: %q", v.DisplayName)
	}
}
