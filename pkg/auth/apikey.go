package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/oklog/ulid/v2"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// API key format: KeyPrefix, an 8-character lookup part (lowercase base32), an
// underscore and 32 random bytes in unpadded base64url:
//
//	tfk_abcd2345_<43 characters>
//
// The lookup part is stored in clear (with KeyPrefix, e.g. "tfk_abcd2345") to
// find the row; the whole key only as its SHA-256. The secret part carries 256
// bits of entropy, so a fast hash is enough: there is nothing to brute-force.
const (
	KeyPrefix   = "tfk_"
	lookupLen   = 8
	secretBytes = 32
	keyLen      = len(KeyPrefix) + lookupLen + 1 + 43
)

// Limits of key metadata.
const (
	maxKeyName = 100
	// touchEvery throttles last_used_at writes per key and process.
	touchEvery = time.Minute
)

// lookupAlphabet is lowercase RFC 4648 base32, so the lookup part never holds
// the separator '_'.
const lookupAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// GenerateKey returns a new random API key, its lookup prefix ("tfk_" and 8
// characters, unique per key, shown in listings) and the hash to store.
func GenerateKey() (plaintext, prefix, hash string) {
	var lookup [5]byte
	var secret [secretBytes]byte
	_, _ = rand.Read(lookup[:]) // crypto/rand.Read never fails
	_, _ = rand.Read(secret[:])
	prefix = KeyPrefix + base32.NewEncoding(lookupAlphabet).WithPadding(base32.NoPadding).EncodeToString(lookup[:])
	plaintext = prefix + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	return plaintext, prefix, HashKey(plaintext)
}

// HashKey returns the stored form of an API key: the hex SHA-256 of all of it.
func HashKey(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(sum[:])
}

// KeyLookupPrefix returns the lookup prefix of s if s has the shape of an API
// key, and false otherwise.
func KeyLookupPrefix(s string) (string, bool) {
	if len(s) != keyLen || !strings.HasPrefix(s, KeyPrefix) || s[len(KeyPrefix)+lookupLen] != '_' {
		return "", false
	}
	for _, c := range s[len(KeyPrefix) : len(KeyPrefix)+lookupLen] {
		if !strings.ContainsRune(lookupAlphabet, c) {
			return "", false
		}
	}
	// Only what GenerateKey produces is a key: the decoder alone would skip
	// '\r' and '\n' and ignore non-zero trailing bits.
	secret := s[len(KeyPrefix)+lookupLen+1:]
	if strings.IndexFunc(secret, notBase64URL) >= 0 {
		return "", false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil {
		return "", false
	}
	return s[:len(KeyPrefix)+lookupLen], true
}

// notBase64URL reports whether c is outside the base64url alphabet.
func notBase64URL(c rune) bool {
	return !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_')
}

// KeyStore keeps API keys in PostgreSQL (table api_keys). Every authentication
// reads the key's row, so a revocation takes effect on the next request,
// unless CacheFor is set.
type KeyStore struct {
	db  *gorm.DB
	now func() time.Time
	// touched remembers when this process last wrote a key's last_used_at.
	touched sync.Map // key id → time.Time

	// cacheTTL, when positive, keeps accepted keys' rows in memory.
	cacheTTL time.Duration
	cache    sync.Map // HashKey(plaintext) → cachedKey
	cached   atomic.Int64

	// watched is set by Watch: the cache then serves keys only while
	// listening is, i.e. while the announcements of key changes are heard.
	watched   atomic.Bool
	listening atomic.Bool
	// mu orders remember against forget: gen counts forgets (and the
	// listener's starts and stops), so that a row read before a key's
	// change was announced is not cached after the announcement.
	mu  sync.Mutex
	gen uint64
}

// cachedKey is an accepted key's row and when it must be read again.
type cachedKey struct {
	row   store.APIKey
	until time.Time
}

// maxCachedKeys bounds the cache: past it, accepted keys are not cached.
const maxCachedKeys = 10000

// APIKeysChannel is the PostgreSQL notification channel on which every change
// of a key that matters to authentication (revocation, expiry, role, name,
// hash, deletion) is announced with the key's id, after it commits, by the
// table's trigger (migration 00020): whoever changes the row, the announcement
// follows.
const APIKeysChannel = "taskforge_api_keys"

// CacheFor keeps each accepted key's row in memory for ttl, so that a
// request costs no database round trip for its credential: the key is
// hashed and found by its hash, and its expiry is still checked on every
// request. A key revoked through this KeyStore stops at once; one revoked
// elsewhere (another replica, the api binary's keys command, SQL) stops when
// Watch hears of it, within milliseconds, and without Watch when its entry
// ends, up to ttl later. Unknown or refused keys are never cached. Zero turns
// the cache off (the default); call it before the KeyStore is used.
func (s *KeyStore) CacheFor(ttl time.Duration) { s.cacheTTL = ttl }

// Watch listens for the announcements on APIKeysChannel until ctx ends and
// forgets each announced key. From its call on, the cache serves keys only
// while the listening connection is up: when it fails, the whole cache is
// dropped and every request reads its key's row (as with no cache) until the
// listener is back, so that an announcement sent while nobody listened
// cannot leave a revoked key cached. The entries' ttl stays the bound for a
// connection that dies without telling. Watch holds one connection of the
// pool. failed, if not nil, is told each failure of the listening connection
// (Watch listens again a second later). The returned function waits until
// Watch has stopped.
func (s *KeyStore) Watch(ctx context.Context, failed func(error)) (wait func()) {
	s.watched.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := store.Listen(ctx, s.db, APIKeysChannel, func(_ context.Context, ids []string) time.Duration {
				if !s.listening.Load() {
					s.forgetAll()
					s.listening.Store(true)
				}
				for _, id := range ids {
					s.forget(id)
				}
				return time.Minute
			})
			s.listening.Store(false)
			s.forgetAll()
			if err != nil && ctx.Err() == nil && failed != nil {
				failed(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return func() { <-done }
}

// caching reports whether the cache may serve and take keys now.
func (s *KeyStore) caching() bool {
	return s.cacheTTL > 0 && (!s.watched.Load() || s.listening.Load())
}

// forget drops the cached rows of key id.
func (s *KeyStore) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.cache.Range(func(k, v any) bool {
		if v.(cachedKey).row.ID == id {
			s.cache.Delete(k)
			s.cached.Add(-1)
		}
		return true
	})
}

// forgetAll drops every cached row.
func (s *KeyStore) forgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.cache.Range(func(k, _ any) bool {
		s.cache.Delete(k)
		s.cached.Add(-1)
		return true
	})
}

// generation is the count of forgets so far: a row read after it was taken
// may be remembered only if it has not moved.
func (s *KeyStore) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// remember caches an accepted key's row, read when the generation was gen.
func (s *KeyStore) remember(hash string, row store.APIKey, now time.Time, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || !s.caching() {
		return // the key (or every key) was forgotten while its row was read
	}
	if s.cached.Load() >= maxCachedKeys {
		s.cache.Range(func(k, v any) bool {
			if !now.Before(v.(cachedKey).until) {
				s.cache.Delete(k)
				s.cached.Add(-1)
			}
			return true
		})
		if s.cached.Load() >= maxCachedKeys {
			return
		}
	}
	if _, loaded := s.cache.Swap(hash, cachedKey{row: row, until: now.Add(s.cacheTTL)}); !loaded {
		s.cached.Add(1)
	}
}

// NewKeyStore returns a KeyStore on db.
func NewKeyStore(db *gorm.DB) (*KeyStore, error) {
	if db == nil {
		return nil, errors.New("auth: nil database")
	}
	return &KeyStore{db: db, now: time.Now}, nil
}

// NewKey is what a caller asks for when creating an API key.
type NewKey struct {
	Name string
	Role Role
	// ExpiresAt, if set, must be in the future.
	ExpiresAt *time.Time
	// CreatedBy is the creating principal's id.
	CreatedBy string
}

// CreatedKey is a new key's row and its plaintext, which is never available
// again.
type CreatedKey struct {
	Key       store.APIKey
	Plaintext string
}

// Create validates req and stores a new key. Bad fields give a
// tasks.ValidationError naming the field (name, role, expires_at).
func (s *KeyStore) Create(ctx context.Context, req NewKey) (CreatedKey, error) {
	name := strings.TrimSpace(req.Name)
	var errs []tasks.FieldError
	switch {
	case name == "":
		errs = append(errs, tasks.FieldError{Field: "name", Message: "is required"})
	case len(name) > maxKeyName:
		errs = append(errs, tasks.FieldError{Field: "name", Message: fmt.Sprintf("must be at most %d characters", maxKeyName)})
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		errs = append(errs, tasks.FieldError{Field: "name", Message: "must not contain control characters"})
	}
	if !req.Role.Valid() {
		errs = append(errs, tasks.FieldError{Field: "role", Message: "must be viewer, operator or admin"})
	}
	now := s.now().UTC()
	var expires *time.Time
	if req.ExpiresAt != nil {
		if !req.ExpiresAt.After(now) {
			errs = append(errs, tasks.FieldError{Field: "expires_at", Message: "must be in the future"})
		}
		e := req.ExpiresAt.UTC()
		expires = &e
	}
	if len(errs) > 0 {
		return CreatedKey{}, &tasks.ValidationError{Errors: errs}
	}
	// A 40-bit lookup part collides rarely; the unique index catches it and a
	// fresh key is drawn.
	for try := 0; ; try++ {
		plain, prefix, hash := GenerateKey()
		row := store.APIKey{
			ID: "key_" + strings.ToLower(ulid.Make().String()), Name: name, Role: string(req.Role),
			Prefix: prefix, Hash: hash, CreatedBy: req.CreatedBy, CreatedAt: now, ExpiresAt: expires,
		}
		err := store.Translate(s.db.WithContext(ctx).Create(&row).Error)
		if errors.Is(err, store.ErrConflict) && try < 3 {
			continue
		}
		if err != nil {
			return CreatedKey{}, fmt.Errorf("auth: create api key: %w", err)
		}
		return CreatedKey{Key: row, Plaintext: plain}, nil
	}
}

// List returns every key, newest first, revoked and expired ones included.
func (s *KeyStore) List(ctx context.Context) ([]store.APIKey, error) {
	var rows []store.APIKey
	if err := s.db.WithContext(ctx).Order("created_at DESC, id DESC").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("auth: list api keys: %w", store.Translate(err))
	}
	return rows, nil
}

// Get returns one key; an unknown id gives store.ErrNotFound.
func (s *KeyStore) Get(ctx context.Context, id string) (store.APIKey, error) {
	var row store.APIKey
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		return store.APIKey{}, fmt.Errorf("auth: get api key %s: %w", id, store.Translate(err))
	}
	return row, nil
}

// Revoke revokes a key at once: the next request with it is refused. Revoking a
// revoked key changes nothing; an unknown id gives store.ErrNotFound.
func (s *KeyStore) Revoke(ctx context.Context, id string) (store.APIKey, error) {
	now := s.now().UTC()
	err := s.db.WithContext(ctx).Model(&store.APIKey{}).
		Where("id = ? AND revoked_at IS NULL", id).Update("revoked_at", now).Error
	if err != nil {
		return store.APIKey{}, fmt.Errorf("auth: revoke api key %s: %w", id, store.Translate(err))
	}
	s.forget(id)
	return s.Get(ctx, id)
}

// Lookup finds the key plaintext belongs to and checks it: the hash compared in
// constant time, not revoked, not expired. Failures wrap ErrUnauthenticated
// with the reason; a database failure wraps ErrUnavailable.
func (s *KeyStore) Lookup(ctx context.Context, plaintext string) (store.APIKey, error) {
	prefix, ok := KeyLookupPrefix(plaintext)
	if !ok {
		return store.APIKey{}, fmt.Errorf("%w: malformed api key", ErrUnauthenticated)
	}
	hash := HashKey(plaintext)
	if s.caching() {
		if v, ok := s.cache.Load(hash); ok {
			now := s.now()
			if c := v.(cachedKey); now.Before(c.until) {
				if c.row.ExpiresAt != nil && !now.Before(*c.row.ExpiresAt) {
					return store.APIKey{}, fmt.Errorf("%w: api key expired", ErrUnauthenticated)
				}
				s.touch(ctx, c.row.ID, now)
				return c.row, nil
			}
		}
	}
	var gen uint64
	if s.cacheTTL > 0 {
		gen = s.generation()
	}
	row, err := s.byPrefix(ctx, prefix)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Compare anyway, so an unknown prefix costs what a known one does.
		subtle.ConstantTimeCompare([]byte(hash), []byte(strings.Repeat("0", sha256.Size*2)))
		return store.APIKey{}, fmt.Errorf("%w: unknown api key", ErrUnauthenticated)
	case err != nil:
		return store.APIKey{}, fmt.Errorf("%w: api key lookup: %w", ErrUnavailable, err)
	}
	if subtle.ConstantTimeCompare([]byte(hash), []byte(row.Hash)) != 1 {
		return store.APIKey{}, fmt.Errorf("%w: api key does not match", ErrUnauthenticated)
	}
	now := s.now()
	if row.RevokedAt != nil {
		return store.APIKey{}, fmt.Errorf("%w: api key revoked", ErrUnauthenticated)
	}
	if row.ExpiresAt != nil && !now.Before(*row.ExpiresAt) {
		return store.APIKey{}, fmt.Errorf("%w: api key expired", ErrUnauthenticated)
	}
	if !Role(row.Role).Valid() {
		return store.APIKey{}, fmt.Errorf("%w: api key has unknown role", ErrUnauthenticated)
	}
	s.touch(ctx, row.ID, now)
	if s.cacheTTL > 0 {
		s.remember(hash, row, now, gen)
	}
	return row, nil
}

// byPrefix reads the key row with prefix: one plain query on every
// authenticated request, so without the ORM's reflection.
func (s *KeyStore) byPrefix(ctx context.Context, prefix string) (store.APIKey, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return store.APIKey{}, store.Translate(err)
	}
	var row store.APIKey
	err = sqlDB.QueryRowContext(ctx, `SELECT id, name, role, prefix, hash, created_by, created_at, expires_at, revoked_at, last_used_at
FROM api_keys WHERE prefix = $1`, prefix).Scan(&row.ID, &row.Name, &row.Role, &row.Prefix, &row.Hash, &row.CreatedBy,
		&row.CreatedAt, &row.ExpiresAt, &row.RevokedAt, &row.LastUsedAt)
	return row, store.Translate(err)
}

// Authenticate implements Authenticator for API keys. The principal's id is the
// key's id.
func (s *KeyStore) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	row, err := s.Lookup(ctx, bearer)
	if err != nil {
		return Principal{}, err
	}
	return Principal{ID: row.ID, Name: row.Name, Role: Role(row.Role)}, nil
}

// touch records that a key was used, at most once a minute per key and process.
// It is best effort: a failed write does not refuse the request.
func (s *KeyStore) touch(ctx context.Context, id string, now time.Time) {
	if last, ok := s.touched.Load(id); ok && now.Sub(last.(time.Time)) < touchEvery {
		return
	}
	s.touched.Store(id, now)
	_ = s.db.WithContext(ctx).Model(&store.APIKey{}).Where("id = ?", id).
		Update("last_used_at", now.UTC()).Error
}
