// Package memo keeps values that are costly to compute and cheap to keep, in a
// map bounded by its number of entries: the read paths' memories (a list's
// estimated total, redacted params, rendered task items). When a Put finds
// the map full, it drops about half of the entries, arbitrary ones (Go's map
// order): no bookkeeping per Get, and what is asked for again comes back at
// the price of one computation.
package memo

import "sync"

// Map is a bounded map safe for concurrent use. The zero value is not usable:
// call New.
type Map[K comparable, V any] struct {
	max int
	mu  sync.Mutex
	m   map[K]V
}

// New returns a Map of at most size entries (at least 2).
func New[K comparable, V any](size int) *Map[K, V] {
	return &Map[K, V]{max: max(size, 2), m: make(map[K]V)}
}

// Get returns the value kept for k.
func (m *Map[K, V]) Get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[k]
	return v, ok
}

// Put keeps v for k.
func (m *Map[K, V]) Put(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[k]; !ok && len(m.m) >= m.max {
		for old := range m.m {
			if len(m.m) <= m.max/2 {
				break
			}
			delete(m.m, old)
		}
	}
	m.m[k] = v
}

// Len is the number of entries kept.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}
