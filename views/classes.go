package views

import (
	"context"
	"slices"

	"github.com/cartclass/cartclass/store"
)

// classNamesKey carries, in a render's context, the school's classes by id for the ids
// a page shows (see WithClassNames): like the time zone, it is how the page is read, not
// what it shows, and every classroom id list on the page uses it.
type classNamesKey struct{}

// WithClassNames is ctx for rendering classroom ids with their class's name beside them
// ("room-101 · 7B Science"); names maps an id as the page shows it to its class.
func WithClassNames(ctx context.Context, names map[string]store.Class) context.Context {
	return context.WithValue(ctx, classNamesKey{}, names)
}

// classOf is the class a classroom id names, if the render knows it.
func classOf(ctx context.Context, id string) (store.Class, bool) {
	names, _ := ctx.Value(classNamesKey{}).(map[string]store.Class)
	c, ok := names[id]
	return c, ok && c.DisplayName != ""
}

// Warnings are the soft checks of a saved association: nothing is refused, but an admin
// should know.
type Warnings struct {
	// UnknownRooms are classroom ids that are not classes Microsoft Graph listed (only
	// when classes were read).
	UnknownRooms []string
	// SharedCarts are the association's carts that other associations also list.
	SharedCarts map[string][]store.AssociationRef
	// SameName are the other associations with the same display name.
	SameName []store.AssociationRef
}

// Any reports whether there is something to say.
func (w Warnings) Any() bool {
	return len(w.UnknownRooms) > 0 || len(w.SharedCarts) > 0 || len(w.SameName) > 0
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// listSep is what follows item i of n in a sentence's list: ", " between items, "." after
// the last.
func listSep(i, n int) string {
	if i < n-1 {
		return ", "
	}
	return "."
}

// isOrAre is the verb after a list of n ids.
func isOrAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// commaSep is ", " between the items of a list, nothing after the last.
func commaSep(i, n int) string {
	if i < n-1 {
		return ", "
	}
	return ""
}
