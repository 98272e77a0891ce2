// Package result stores the files tasks produce (reports, backups, large
// results) and hands out download links to them. Small JSON results stay in the
// tasks.result column (the worker writes them through job.Reporter.SetResult);
// files go to a Backend — a local directory or S3-compatible object storage —
// and are indexed in the results table with their size, SHA-256 and expiry.
//
// Local files are downloaded through links signed with HMAC-SHA256 (see
// Signer); S3 objects through presigned GET URLs.
package result

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
)

// Sentinel errors.
var (
	// ErrNotFound means no such result (or its file is gone).
	ErrNotFound = errors.New("result not found")
	// ErrExpired means the result's TTL has passed.
	ErrExpired = errors.New("result expired")
	// ErrLinkInvalid means a download link's signature does not match.
	ErrLinkInvalid = errors.New("download link invalid")
	// ErrLinkExpired means a download link is past its expiry.
	ErrLinkExpired = errors.New("download link expired")
)

// Result is the index row of one stored file.
type Result = store.Result

// Backend keeps the bytes of results under keys the Store generates. Keys are
// never taken from user input.
type Backend interface {
	// Name is the backend's name as recorded in results.backend ("local", "s3").
	Name() string
	// Put stores the whole of r under key. It must not keep r's content in
	// memory beyond a bounded buffer.
	Put(ctx context.Context, key, contentType string, r io.Reader) error
	// Open reads the bytes under key; a missing key gives ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Presigner is implemented by backends that can sign their own download URLs
// (S3). Other backends are reached through the API's signed download route.
type Presigner interface {
	Presign(ctx context.Context, key, filename string, ttl time.Duration) (string, error)
}

// Options configure a Store.
type Options struct {
	// TTL is how long a result is kept. If zero, 168 hours.
	TTL time.Duration
	// LinkTTL is how long a download link works. If zero, 15 minutes.
	LinkTTL time.Duration
	// Signer signs local download links. Required.
	Signer *Signer
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// Cache keeps ended tasks' result views in Redis. May be nil.
	Cache *Cache
}

// Store indexes result files in PostgreSQL and keeps their bytes in a Backend.
type Store struct {
	db      *gorm.DB
	backend Backend
	signer  *Signer
	ttl     time.Duration
	linkTTL time.Duration
	now     func() time.Time
	cache   *Cache
	// storageErrors counts failed backend operations (RegisterMetrics).
	storageErrors *prometheus.CounterVec
}

// New returns a Store writing to backend.
func New(db *gorm.DB, backend Backend, o Options) (*Store, error) {
	if db == nil || backend == nil || o.Signer == nil {
		return nil, errors.New("result: new: db, backend and signer are required")
	}
	if o.TTL <= 0 {
		o.TTL = 168 * time.Hour
	}
	if o.LinkTTL <= 0 {
		o.LinkTTL = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{db: db, backend: backend, signer: o.Signer, ttl: o.TTL, linkTTL: o.LinkTTL, now: o.Now, cache: o.Cache,
		storageErrors: newStorageErrors()}, nil
}

// Cache is the store's result cache (nil when it has none).
func (s *Store) Cache() *Cache { return s.cache }

// Forget drops the cached result views of the tasks ids: call it when their
// results change (a retry, a deletion).
func (s *Store) Forget(ctx context.Context, ids ...string) error { return s.cache.Forget(ctx, ids...) }

// Backend is the backend new results are written to.
func (s *Store) Backend() Backend { return s.backend }

// Signer is the signer of local download links.
func (s *Store) Signer() *Signer { return s.signer }

// newID returns "res_" + a lower-case ULID: time-ordered, 30 characters of
// [0-9a-z_], safe as a file name and an object key.
func newID() string {
	return "res_" + strings.ToLower(ulid.MustNew(ulid.Now(), rand.Reader).String())
}

// keyFor derives the storage key of a result: a date prefix keeps directories
// and listings small; the rest is the generated id.
func keyFor(id string, t time.Time) string {
	return t.UTC().Format("2006/01/02") + "/" + id
}

// Put streams r into storage as a result of taskID named name, computing its size
// and SHA-256 on the way, and indexes it. Nothing is buffered in memory beyond
// the backend's bounded buffers.
func (s *Store) Put(ctx context.Context, taskID, name, contentType string, r io.Reader) (Result, error) {
	if taskID == "" {
		return Result{}, errors.New("result: put: task id is required")
	}
	name = SanitizeFilename(name)
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return Result{}, fmt.Errorf("result: put: content type %q: %w", contentType, err)
	}
	now := s.now().UTC()
	res := Result{
		ID: newID(), TaskID: taskID, Name: name, ContentType: contentType,
		Backend: s.backend.Name(), CreatedAt: now, ExpiresAt: now.Add(s.ttl),
	}
	res.Key = keyFor(res.ID, now)
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	if err := s.backend.Put(ctx, res.Key, contentType, cr); err != nil {
		s.storageFailed(opPut, err)
		return Result{}, fmt.Errorf("result: put %s: %w", res.ID, err)
	}
	res.Size = cr.n
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	if err := s.db.WithContext(ctx).Create(&res).Error; err != nil {
		// The file must not outlive a failed index write.
		_ = s.backend.Delete(context.WithoutCancel(ctx), res.Key)
		return Result{}, fmt.Errorf("result: index %s: %w", res.ID, store.Translate(err))
	}
	_ = s.Forget(ctx, taskID) // a missed deletion lives at most the cache's TTL
	return res, nil
}

// SpilledName is the file name of a JSON result too large for the task row.
const SpilledName = "result.json"

// SpillJSON keeps a task's JSON result that is too large for its row as the
// result file SpilledName, and returns the URL the row's result_url shows: the
// API's GET /api/v1/tasks/{id}/result?name=result.json, which answers with a
// fresh download link for as long as the result is kept.
func (s *Store) SpillJSON(ctx context.Context, taskID string, body []byte) (string, error) {
	if _, err := s.Put(ctx, taskID, SpilledName, "application/json", bytes.NewReader(body)); err != nil {
		return "", err
	}
	return s.TaskResultURL(taskID, SpilledName), nil
}

// TaskResultURL is the API's URL of a task's result file.
func (s *Store) TaskResultURL(taskID, name string) string {
	return s.signer.baseURL + "/api/v1/tasks/" + url.PathEscape(taskID) + "/result?" + url.Values{"name": {name}}.Encode()
}

// Get returns the result with id, expired or not.
func (s *Store) Get(ctx context.Context, id string) (Result, error) {
	var res Result
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&res).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Result{}, fmt.Errorf("result: get %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Result{}, fmt.Errorf("result: get %s: %w", id, store.Translate(err))
	}
	return res, nil
}

// ForTask lists the unexpired results of a task, oldest first.
func (s *Store) ForTask(ctx context.Context, taskID string) ([]Result, error) {
	var out []Result
	err := s.db.WithContext(ctx).Where("task_id = ? AND expires_at > ?", taskID, s.now().UTC()).
		Order("created_at, id").Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("result: results of task %s: %w", taskID, store.Translate(err))
	}
	return out, nil
}

// Open reads a result's bytes. An expired result gives ErrExpired.
func (s *Store) Open(ctx context.Context, res Result) (io.ReadCloser, error) {
	if !s.now().Before(res.ExpiresAt) {
		return nil, fmt.Errorf("result: open %s: %w", res.ID, ErrExpired)
	}
	if res.Backend != s.backend.Name() {
		return nil, fmt.Errorf("result: open %s: stored in backend %q, not the configured %q", res.ID, res.Backend, s.backend.Name())
	}
	rc, err := s.backend.Open(ctx, res.Key)
	if err != nil {
		s.storageFailed(opOpen, err)
		return nil, fmt.Errorf("result: open %s: %w", res.ID, err)
	}
	return rc, nil
}

// Delete removes a result's file and its row.
func (s *Store) Delete(ctx context.Context, res Result) error {
	if err := s.DeleteFile(ctx, res); err != nil {
		return err
	}
	if err := s.db.WithContext(ctx).Where("id = ?", res.ID).Delete(&Result{}).Error; err != nil {
		return fmt.Errorf("result: delete %s: %w", res.ID, store.Translate(err))
	}
	return nil
}

// DeleteFile removes a result's file only; the caller deletes the row (cleanup
// deletes rows in batches in its own transactions).
func (s *Store) DeleteFile(ctx context.Context, res Result) error {
	if res.Backend != s.backend.Name() {
		return fmt.Errorf("result: delete %s: stored in backend %q, not the configured %q", res.ID, res.Backend, s.backend.Name())
	}
	if err := s.backend.Delete(ctx, res.Key); err != nil {
		s.storageFailed(opDelete, err)
		return fmt.Errorf("result: delete %s: %w", res.ID, err)
	}
	return nil
}

// URL returns a download URL of res and when it stops working: a presigned URL
// when the backend signs its own, else the API's signed download link. The link
// never outlives the result.
func (s *Store) URL(ctx context.Context, res Result) (string, time.Time, error) {
	now := s.now()
	if !now.Before(res.ExpiresAt) {
		return "", time.Time{}, fmt.Errorf("result: link %s: %w", res.ID, ErrExpired)
	}
	ttl := min(s.linkTTL, res.ExpiresAt.Sub(now))
	if p, ok := s.backend.(Presigner); ok && res.Backend == s.backend.Name() {
		u, err := p.Presign(ctx, res.Key, res.Name, ttl)
		if err != nil {
			s.storageFailed(opPresign, err)
			return "", time.Time{}, fmt.Errorf("result: presign %s: %w", res.ID, err)
		}
		return u, now.Add(ttl), nil
	}
	u, exp := s.signer.LinkFor(res.ID, now.Add(ttl))
	return u, exp, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// SanitizeFilename turns name into a safe download file name: no directory
// parts, no control or quoting characters, at most 128 bytes, never empty.
func SanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('_')
		}
	}
	out := strings.TrimLeft(b.String(), ".")
	if len(out) > 128 {
		ext := path.Ext(out)
		if len(ext) > 16 {
			ext = ""
		}
		out = out[:128-len(ext)] + ext
	}
	if out == "" {
		out = "result"
	}
	return out
}
