package auth

import (
	"context"
	"crypto/subtle"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func TestGenerateKeyShape(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		plain, prefix, hash := GenerateKey()
		require.Len(t, plain, keyLen)
		require.True(t, strings.HasPrefix(plain, prefix+"_"), plain)
		require.Len(t, prefix, len(KeyPrefix)+8)
		require.Equal(t, HashKey(plain), hash)
		require.Len(t, hash, 64)
		got, ok := KeyLookupPrefix(plain)
		require.True(t, ok, plain)
		require.Equal(t, prefix, got)
		require.False(t, seen[plain])
		seen[plain] = true
	}
}

func TestKeyLookupPrefixRejects(t *testing.T) {
	t.Parallel()
	plain, _, _ := GenerateKey()
	for _, s := range []string{
		"", "tfk_", plain[:len(plain)-1], plain + "A", "xfk_" + plain[4:],
		plain[:len(KeyPrefix)] + "ABCDEFGH" + plain[len(KeyPrefix)+8:], // upper case is not in the alphabet
		plain[:len(KeyPrefix)+8] + "-" + plain[len(KeyPrefix)+9:],
		plain[:len(plain)-2] + "!!",
	} {
		_, ok := KeyLookupPrefix(s)
		require.False(t, ok, "%q", s)
	}
}

type keyBundle struct {
	ks  *KeyStore
	pg  testenv.Postgres
	now *time.Time
	mu  *sync.Mutex
}

func setupKeys(t *testing.T) keyBundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	ks, err := NewKeyStore(pg.DB)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Microsecond)
	mu := &sync.Mutex{}
	ks.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	return keyBundle{ks: ks, pg: pg, now: &now, mu: mu}
}

func (b keyBundle) advance(d time.Duration) {
	b.mu.Lock()
	*b.now = b.now.Add(d)
	b.mu.Unlock()
}

func TestAPIKeyLifecycle(t *testing.T) {
	t.Parallel()
	b := setupKeys(t)
	ctx := context.Background()
	expires := b.ks.now().Add(time.Hour)

	created, err := b.ks.Create(ctx, NewKey{Name: " ci deploy ", Role: Operator, ExpiresAt: &expires, CreatedBy: "bootstrap-admin"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(created.Key.ID, "key_"))
	require.Equal(t, "ci deploy", created.Key.Name)
	require.Equal(t, "bootstrap-admin", created.Key.CreatedBy)
	require.NotContains(t, created.Key.Hash, created.Plaintext)

	// Only the prefix and the hash are stored.
	var stored store.APIKey
	require.NoError(t, b.pg.DB.Where("id = ?", created.Key.ID).Take(&stored).Error)
	require.Equal(t, HashKey(created.Plaintext), stored.Hash)
	require.True(t, strings.HasPrefix(created.Plaintext, stored.Prefix+"_"))
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.APIKey{}).Where("hash = ? OR prefix = ? OR name = ?",
		created.Plaintext, created.Plaintext, created.Plaintext).Count(&n).Error)
	require.Zero(t, n)

	p, err := b.ks.Authenticate(ctx, created.Plaintext)
	require.NoError(t, err)
	require.Equal(t, Principal{ID: created.Key.ID, Name: "ci deploy", Role: Operator}, p)
	require.NoError(t, b.pg.DB.Where("id = ?", created.Key.ID).Take(&stored).Error)
	require.NotNil(t, stored.LastUsedAt, "last use is recorded")

	// The right prefix with a wrong secret is refused.
	wrong := created.Plaintext[:len(created.Plaintext)-4] + "AAAA"
	if wrong == created.Plaintext {
		wrong = created.Plaintext[:len(created.Plaintext)-4] + "BBBB"
	}
	_, err = b.ks.Authenticate(ctx, wrong)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.ErrorContains(t, err, "does not match")

	other, err := b.ks.Create(ctx, NewKey{Name: "reader", Role: Viewer})
	require.NoError(t, err)
	list, err := b.ks.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, other.Key.ID, list[0].ID, "newest first")

	// Revocation takes effect on the very next request.
	revoked, err := b.ks.Revoke(ctx, created.Key.ID)
	require.NoError(t, err)
	require.NotNil(t, revoked.RevokedAt)
	_, err = b.ks.Authenticate(ctx, created.Plaintext)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.ErrorContains(t, err, "revoked")
	b.advance(time.Minute)
	again, err := b.ks.Revoke(ctx, created.Key.ID)
	require.NoError(t, err)
	require.True(t, revoked.RevokedAt.Equal(*again.RevokedAt), "revoking twice keeps the first time")
	_, err = b.ks.Authenticate(ctx, other.Plaintext)
	require.NoError(t, err, "other keys are untouched")

	_, err = b.ks.Revoke(ctx, "key_missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.ks.Get(ctx, "key_missing")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestAPIKeyExpiry(t *testing.T) {
	t.Parallel()
	b := setupKeys(t)
	ctx := context.Background()
	expires := b.ks.now().Add(time.Hour)
	created, err := b.ks.Create(ctx, NewKey{Name: "temp", Role: Admin, ExpiresAt: &expires})
	require.NoError(t, err)
	b.advance(59 * time.Minute)
	p, err := b.ks.Authenticate(ctx, created.Plaintext)
	require.NoError(t, err)
	require.Equal(t, Admin, p.Role)
	b.advance(time.Minute)
	_, err = b.ks.Authenticate(ctx, created.Plaintext)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.ErrorContains(t, err, "expired")
}

func TestAPIKeyUnknownAndMalformed(t *testing.T) {
	t.Parallel()
	b := setupKeys(t)
	plain, _, _ := GenerateKey()
	for _, s := range []string{plain, "tfk_nope", "", "Bearer " + plain} {
		_, err := b.ks.Authenticate(context.Background(), s)
		require.ErrorIs(t, err, ErrUnauthenticated, "%q", s)
	}
}

func TestAPIKeyCreateValidation(t *testing.T) {
	t.Parallel()
	b := setupKeys(t)
	past := b.ks.now().Add(-time.Second)
	cases := []struct {
		req    NewKey
		fields []string
	}{
		{NewKey{Name: "", Role: Viewer}, []string{"name"}},
		{NewKey{Name: strings.Repeat("n", 101), Role: Viewer}, []string{"name"}},
		{NewKey{Name: "a\nb", Role: Viewer}, []string{"name"}},
		{NewKey{Name: "x", Role: "root"}, []string{"role"}},
		{NewKey{Name: "x", Role: Viewer, ExpiresAt: &past}, []string{"expires_at"}},
		{NewKey{Name: " ", Role: "", ExpiresAt: &past}, []string{"name", "role", "expires_at"}},
	}
	for _, tc := range cases {
		_, err := b.ks.Create(context.Background(), tc.req)
		v, ok := tasks.AsValidation(err)
		require.True(t, ok, "%+v: %v", tc.req, err)
		var got []string
		for _, f := range v.Errors {
			got = append(got, f.Field)
		}
		require.Equal(t, tc.fields, got)
	}
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.APIKey{}).Count(&n).Error)
	require.Zero(t, n)
}

func TestAPIKeyDatabaseDown(t *testing.T) {
	t.Parallel()
	db, err := store.Open(store.Options{URL: "postgres://taskforge@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"})
	require.NoError(t, err)
	ks, err := NewKeyStore(db)
	require.NoError(t, err)
	plain, _, _ := GenerateKey()
	_, err = ks.Authenticate(context.Background(), plain)
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotErrorIs(t, err, ErrUnauthenticated)
}

// BenchmarkHashCompare prints the cost of comparing a presented key's hash
// with the stored one when they differ in the first or the last byte; with
// subtle.ConstantTimeCompare the two figures match.
func BenchmarkHashCompare(b *testing.B) {
	plain, _, stored := GenerateKey()
	first := "f" + stored[1:]
	if first == stored {
		first = "e" + stored[1:]
	}
	last := stored[:63] + "f"
	if last == stored {
		last = stored[:63] + "e"
	}
	_ = plain
	for _, bc := range []struct{ name, other string }{{"first-byte", first}, {"last-byte", last}} {
		b.Run(bc.name, func(b *testing.B) {
			x, y := []byte(stored), []byte(bc.other)
			for b.Loop() {
				subtle.ConstantTimeCompare(x, y)
			}
		})
	}
}

// TestAPIKeyCache: with CacheFor, an accepted key is served from memory —
// a revocation through another KeyStore (another replica) is seen only when
// the entry ends — while a revocation through this KeyStore and the key's expiry take effect
// at once, and an unknown key is never cached.
func TestAPIKeyCache(t *testing.T) {
	t.Parallel()
	b := setupKeys(t)
	ctx := context.Background()
	b.ks.CacheFor(5 * time.Second)
	expires := b.ks.now().Add(time.Hour)
	created, err := b.ks.Create(ctx, NewKey{Name: "cached", Role: Operator, ExpiresAt: &expires})
	require.NoError(t, err)
	_, err = b.ks.Authenticate(ctx, created.Plaintext)
	require.NoError(t, err)

	other, err := NewKeyStore(b.pg.DB)
	require.NoError(t, err)
	_, err = other.Revoke(ctx, created.Key.ID)
	require.NoError(t, err)
	p, err := b.ks.Authenticate(ctx, created.Plaintext)
	require.NoError(t, err, "revoked elsewhere: still cached here")
	require.Equal(t, Operator, p.Role)
	b.advance(5 * time.Second)
	_, err = b.ks.Authenticate(ctx, created.Plaintext)
	require.ErrorContains(t, err, "revoked", "the entry ended: the row is read again")

	// Revoked through this KeyStore: refused at once.
	second, err := b.ks.Create(ctx, NewKey{Name: "second", Role: Viewer, ExpiresAt: &expires})
	require.NoError(t, err)
	_, err = b.ks.Authenticate(ctx, second.Plaintext)
	require.NoError(t, err)
	_, err = b.ks.Revoke(ctx, second.Key.ID)
	require.NoError(t, err)
	_, err = b.ks.Authenticate(ctx, second.Plaintext)
	require.ErrorContains(t, err, "revoked")

	// Expiry is checked on every request, cached or not.
	third, err := b.ks.Create(ctx, NewKey{Name: "third", Role: Viewer, ExpiresAt: &expires})
	require.NoError(t, err)
	b.ks.CacheFor(2 * time.Hour)
	_, err = b.ks.Authenticate(ctx, third.Plaintext)
	require.NoError(t, err)
	b.advance(time.Hour)
	_, err = b.ks.Authenticate(ctx, third.Plaintext)
	require.ErrorContains(t, err, "expired")

	// Unknown keys are not remembered.
	plain, _, _ := GenerateKey()
	_, err = b.ks.Authenticate(ctx, plain)
	require.ErrorIs(t, err, ErrUnauthenticated)
	_, found := b.ks.cache.Load(HashKey(plain))
	require.False(t, found)
}

// TestAPIKeyCacheWatch: with Watch, a cached key changed elsewhere (here by
// SQL, as another replica or the keys command would) is forgotten as soon as
// PostgreSQL announces it, long before its entry would end; a write of
// last_used_at forgets nothing; while the listening connection is down the
// cache is dropped and serves nothing, and it serves again once Watch
// listens again.
func TestAPIKeyCacheWatch(t *testing.T) {
	t.Parallel()
	b := setupKeys(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ks.CacheFor(time.Hour) // the clock is frozen: only an announcement ends an entry
	var failures atomic.Int32
	wait := b.ks.Watch(ctx, func(error) { failures.Add(1) })
	require.Eventually(t, b.ks.listening.Load, 10*time.Second, 5*time.Millisecond)

	newKey := func(name string) CreatedKey {
		t.Helper()
		k, err := b.ks.Create(ctx, NewKey{Name: name, Role: Operator})
		require.NoError(t, err)
		_, err = b.ks.Authenticate(ctx, k.Plaintext)
		require.NoError(t, err)
		_, cached := b.ks.cache.Load(HashKey(k.Plaintext))
		require.True(t, cached, name)
		return k
	}
	sql := func(q string, args ...any) {
		t.Helper()
		require.NoError(t, b.pg.DB.Exec(q, args...).Error)
	}
	refusedSoon := func(k CreatedKey, reason string) {
		t.Helper()
		require.Eventually(t, func() bool {
			_, err := b.ks.Authenticate(ctx, k.Plaintext)
			return err != nil && strings.Contains(err.Error(), reason)
		}, 5*time.Second, 5*time.Millisecond, "%s: still served from the cache", k.Key.Name)
	}

	revoked := newKey("revoked by hand")
	sql(`UPDATE api_keys SET revoked_at = now() WHERE id = ?`, revoked.Key.ID)
	refusedSoon(revoked, "revoked")

	deleted := newKey("deleted")
	sql(`DELETE FROM api_keys WHERE id = ?`, deleted.Key.ID)
	refusedSoon(deleted, "unknown")

	used, marker := newKey("used"), newKey("marker")
	sql(`UPDATE api_keys SET last_used_at = now() - interval '1 hour' WHERE id = ?`, used.Key.ID)
	sql(`UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = ?`, marker.Key.ID)
	// The marker's announcement comes after any of the first update's.
	refusedSoon(marker, "expired")
	_, cached := b.ks.cache.Load(HashKey(used.Plaintext))
	require.True(t, cached, "a write of last_used_at forgets the key")

	// The listening connection dies: nothing is served from memory or
	// remembered until Watch listens again.
	var killed int
	require.NoError(t, b.pg.DB.Raw(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND query = 'LISTEN `+APIKeysChannel+`'`).Scan(&killed).Error)
	require.Equal(t, 1, killed)
	require.Eventually(t, func() bool { return !b.ks.listening.Load() }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, b.ks.cached.Load(), "the cache is dropped with the listener")
	if !b.ks.listening.Load() {
		_, err := b.ks.Authenticate(ctx, used.Plaintext)
		require.NoError(t, err)
		if !b.ks.listening.Load() {
			_, cached = b.ks.cache.Load(HashKey(used.Plaintext))
			require.False(t, cached, "remembered while nobody listens")
		}
	}
	require.Eventually(t, b.ks.listening.Load, 10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 1, failures.Load())
	newKey("after the listener's return")

	cancel()
	wait()
	require.False(t, b.ks.listening.Load())
}
