package memo

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMapBounded(t *testing.T) {
	t.Parallel()
	m := New[int, string](10)
	_, ok := m.Get(1)
	require.False(t, ok)
	for i := range 10 {
		m.Put(i, "v")
	}
	require.Equal(t, 10, m.Len())
	m.Put(3, "again") // an existing key never evicts
	require.Equal(t, 10, m.Len())
	v, ok := m.Get(3)
	require.True(t, ok)
	require.Equal(t, "again", v)

	m.Put(100, "new")
	require.Equal(t, 6, m.Len(), "half dropped, then the new entry")
	v, ok = m.Get(100)
	require.True(t, ok, "the new entry is kept")
	require.Equal(t, "new", v)
}

func TestMapConcurrent(t *testing.T) {
	t.Parallel()
	m := New[int, int](64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				m.Put(g*1000+i, i)
				if v, ok := m.Get(g*1000 + i); ok {
					require.Equal(t, i, v)
				}
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, m.Len(), 64)
}
