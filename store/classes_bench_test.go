package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The classes benchmarks' dataset: classBenchN classes and as many associations, each
// association with 2–3 of classBenchCarts carts and 1–3 classrooms (mostly class ids, some
// in another case, some typed as room names).
const (
	classBenchN     = 10_000
	classBenchCarts = 4_000
)

var classSubjects = []string{"Science", "Mathematics", "English", "History", "Geography", "Art", "Music",
	"Physics", "Chemistry", "Biology", "French", "Spanish", "German", "Computing", "Drama",
	"Physical Education", "Religious Studies", "Design Technology", "Latin", "Économie"}

var classTeachers = []string{"Okafor", "Nguyen", "Schmidt", "García", "O'Brien", "Kowalski", "Haddad",
	"Tanaka", "Müller", "Smith", "Rossi", "Dubois", "Andersson", "Novak", "Silva", "Chen"}

// benchClass is class i of the dataset: "Science 7B Okafor", code "SCI-7B-0042", a GUID.
func benchClass(r *rand.Rand, i int) Class {
	subj := classSubjects[r.IntN(len(classSubjects))]
	grade, section := 5+r.IntN(8), 'A'+rune(r.IntN(6))
	code := strings.ToUpper(strings.ReplaceAll(subj, " ", ""))[:3]
	return Class{
		ID: fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff,
			0x8000|r.Uint32()&0x3fff, r.Uint64()&0xffffffffffff),
		DisplayName: fmt.Sprintf("%s %d%c %s", subj, grade, section, classTeachers[r.IntN(len(classTeachers))]),
		ClassCode:   fmt.Sprintf("%s-%d%c-%04d", code, grade, section, i),
		ExternalID:  fmt.Sprintf("SIS-%06d", i),
	}
}

// classBenchPath is the dataset's file, built once per test binary (in benchDBs.dir).
var classBenchPath string

// openClassBenchStore opens the classes benchmarks' dataset, building it on first use.
func openClassBenchStore(b *testing.B) (*Store, []Class) {
	b.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(11, 8))
	classes := make([]Class, classBenchN)
	for i := range classes {
		classes[i] = benchClass(r, i)
	}
	benchDBs.mu.Lock()
	defer benchDBs.mu.Unlock()
	if classBenchPath == "" {
		if benchDBs.dir == "" {
			dir, err := os.MkdirTemp("", "cartclass-bench-")
			if err != nil {
				b.Fatal(err)
			}
			benchDBs.dir, benchDBs.db = dir, map[int]string{}
		}
		path := filepath.Join(benchDBs.dir, "bench-classes.db")
		s, err := Open(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		err = seedAssociations(ctx, s, classBenchN, func(i int) Fields {
			f := Fields{DisplayName: fmt.Sprintf("%s iPads %05d", classSubjects[i%len(classSubjects)], i), Version: 1}
			for range 2 + r.IntN(2) {
				f.DeviceCartIDs = append(f.DeviceCartIDs, fmt.Sprintf("CART-%04d", r.IntN(classBenchCarts)))
			}
			for range 1 + r.IntN(3) {
				switch k := r.IntN(20); {
				case k == 0:
					f.ClassroomIDs = append(f.ClassroomIDs, fmt.Sprintf("Room %d", r.IntN(500)))
				case k == 1:
					f.ClassroomIDs = append(f.ClassroomIDs, strings.ToUpper(classes[r.IntN(classBenchN)].ID))
				default:
					f.ClassroomIDs = append(f.ClassroomIDs, classes[r.IntN(classBenchN)].ID)
				}
			}
			return f
		})
		seeded := time.Since(start)
		start = time.Now()
		if err == nil {
			err = s.ReplaceClasses(ctx, classes)
		}
		replaced := time.Since(start)
		start = time.Now()
		if err == nil {
			err = s.ReplaceClasses(ctx, classes) // unchanged: nothing written
		}
		again := time.Since(start)
		s.Close()
		if err != nil {
			b.Fatalf("building the classes benchmark database: %v", err)
		}
		fmt.Fprintf(os.Stderr, "store bench: seeded %d associations in %v; ReplaceClasses of %d: %v new, %v unchanged\n",
			classBenchN, seeded.Round(time.Millisecond), classBenchN, replaced.Round(time.Millisecond), again.Round(time.Millisecond))
		classBenchPath = path
	}
	s, err := Open(ctx, classBenchPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, classes
}

// BenchmarkSuggestClasses: what an admin types into the classroom field, from a prefix
// that fills the page ("science") to fragments that are nobody's prefix ("ien", "7", a
// GUID's). The target is under 5 ms a suggestion.
func BenchmarkSuggestClasses(b *testing.B) {
	s, classes := openClassBenchStore(b)
	guid := classes[1234].ID[9:13] // a GUID fragment: 4 hex digits
	for _, q := range []string{"7b", "science", "sci-7", "SCIENCE 7B", guid, classes[77].ID[:8], "o'b", "zzz", "e", "7", "ien", "-4a"} {
		b.Run(q, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			var n int
			for b.Loop() {
				got, err := s.SuggestClasses(ctx, q, 10)
				if err != nil {
					b.Fatal(err)
				}
				n = len(got)
			}
			if q != "zzz" && n == 0 {
				b.Fatalf("no suggestions for %q", q)
			}
		})
	}
}

// BenchmarkSuggestCarts: what an admin types into the cart field (4,000 carts, each listed
// by about 6 associations); the same target.
func BenchmarkSuggestCarts(b *testing.B) {
	s, _ := openClassBenchStore(b)
	for _, q := range []string{"c", "cart-1", "cart-12", "rt-3999", "0", "zzz"} {
		b.Run(q, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			var n int
			for b.Loop() {
				got, err := s.SuggestCarts(ctx, q, 10)
				if err != nil {
					b.Fatal(err)
				}
				n = len(got)
			}
			if q != "zzz" && n == 0 {
				b.Fatalf("no suggestions for %q", q)
			}
		})
	}
}

// BenchmarkListClassrooms: the Classrooms page's first page, all and filtered.
func BenchmarkListClassrooms(b *testing.B) {
	s, _ := openClassBenchStore(b)
	for _, q := range []string{"", "science", "cart-12"} {
		b.Run("first-page/"+q, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				entries, total, err := s.ListClassrooms(ctx, q, 1, 50)
				if err != nil {
					b.Fatal(err)
				}
				if len(entries) != 50 || total < 50 {
					b.Fatalf("%d entries of %d", len(entries), total)
				}
			}
		})
	}
}

// BenchmarkListCarts: the Carts page's first page, all and filtered.
func BenchmarkListCarts(b *testing.B) {
	s, _ := openClassBenchStore(b)
	for _, q := range []string{"", "science", "cart-12"} {
		b.Run("first-page/"+q, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				entries, total, err := s.ListCarts(ctx, q, 1, 50)
				if err != nil {
					b.Fatal(err)
				}
				if len(entries) != 50 || total < 50 {
					b.Fatalf("%d entries of %d", len(entries), total)
				}
			}
		})
	}
}
