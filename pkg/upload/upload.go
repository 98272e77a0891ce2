// Package upload keeps the files callers upload (POST /api/v1/uploads) for
// tasks to consume, such as import_prices and import_holdings. The bytes go
// to result storage (the results' local directory or S3 bucket, under keys of
// their own) as they arrive, never whole in memory, with their size and
// SHA-256 computed on the way; the uploads table indexes them with their
// owner and expiry. Uploads expire like results: cleanup_old_data's results
// target removes them.
package upload

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
)

// Sentinel errors.
var (
	// ErrNotFound means no such upload, or it has expired.
	ErrNotFound = errors.New("upload not found")
	// ErrTooLarge means the file is larger than the store's MaxBytes.
	ErrTooLarge = errors.New("upload too large")
)

// Defaults of Options.
const (
	// DefaultMaxBytes is the size cap when Options.MaxBytes is zero (100 MiB,
	// as api.upload_limit's default).
	DefaultMaxBytes = 100 << 20
	// DefaultTTL is how long an upload is kept when Options.TTL is zero.
	DefaultTTL = 168 * time.Hour
	// DefaultLinkTTL is how long a download link works when Options.LinkTTL is
	// zero.
	DefaultLinkTTL = 15 * time.Minute
	// sniffLen is how many leading bytes the content type is sniffed from
	// (what http.DetectContentType considers).
	sniffLen = 512
)

// Upload is the index row of one uploaded file.
type Upload = store.Upload

// Observer is told of every stored upload, after its row is written: the
// upload triggers hook in here. It must not block for long; its failures are
// its own to log (the upload is stored whatever happens).
type Observer interface {
	Uploaded(ctx context.Context, u Upload)
}

// Options configure a Store.
type Options struct {
	// MaxBytes caps an upload's size (api.upload_limit). If zero,
	// DefaultMaxBytes.
	MaxBytes int64
	// TTL is how long an upload is kept (storage.result_ttl, as results). If
	// zero, DefaultTTL.
	TTL time.Duration
	// LinkTTL is how long a download link works (storage.link_ttl). If zero,
	// DefaultLinkTTL.
	LinkTTL time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// Store indexes uploads in PostgreSQL and keeps their bytes in the result
// store's backend.
type Store struct {
	db      *gorm.DB
	backend result.Backend
	signer  *result.Signer
	o       Options
}

// New returns a Store writing to the backend of results.
func New(db *gorm.DB, results *result.Store, o Options) (*Store, error) {
	if db == nil || results == nil {
		return nil, errors.New("upload: new: db and results are required")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.LinkTTL <= 0 {
		o.LinkTTL = DefaultLinkTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{db: db, backend: results.Backend(), signer: results.Signer(), o: o}, nil
}

// MaxBytes is the size cap of one upload.
func (s *Store) MaxBytes() int64 { return s.o.MaxBytes }

// NewID returns "upl_" + a lower-case ULID.
func NewID() string {
	return "upl_" + strings.ToLower(ulid.MustNew(ulid.Now(), rand.Reader).String())
}

// validID reports whether id has the shape of an upload id; anything else is
// unknown without a query.
func validID(id string) bool {
	if len(id) != 30 || !strings.HasPrefix(id, "upl_") {
		return false
	}
	for _, r := range id[4:] {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// keyFor is the storage key of an upload: a prefix of its own beside the
// results' date directories, then the date, then the id.
func keyFor(id string, t time.Time) string {
	return "uploads/" + t.UTC().Format("2006/01/02") + "/" + id
}

// Put streams r into storage as an upload of owner named name, declared as
// contentType (empty or application/octet-stream: not declared). The content
// type is sniffed from the first bytes and checked against the declared one
// (a *TypeError when they disagree); past MaxBytes the stream is cut and
// ErrTooLarge returned. Either way nothing is left in storage.
func (s *Store) Put(ctx context.Context, owner, name, contentType string, r io.Reader) (Upload, error) {
	if owner == "" {
		return Upload{}, errors.New("upload: put: owner is required")
	}
	br := bufio.NewReaderSize(r, 32<<10)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return Upload{}, fmt.Errorf("upload: put: read: %w", err)
	}
	if int64(len(head)) > s.o.MaxBytes {
		return Upload{}, ErrTooLarge
	}
	ct, err := Check(contentType, name, head)
	if err != nil {
		return Upload{}, err
	}
	now := s.o.Now().UTC()
	up := Upload{
		ID: NewID(), CreatedBy: owner, Name: result.SanitizeFilename(name), ContentType: ct,
		Backend: s.backend.Name(), CreatedAt: now, ExpiresAt: now.Add(s.o.TTL),
	}
	up.Key = keyFor(up.ID, now)
	h := sha256.New()
	cr := &capReader{r: io.TeeReader(br, h), max: s.o.MaxBytes}
	if err := s.backend.Put(ctx, up.Key, ct, cr); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return Upload{}, ErrTooLarge
		}
		return Upload{}, fmt.Errorf("upload: put %s: %w", up.ID, err)
	}
	up.Size = cr.n
	up.SHA256 = hex.EncodeToString(h.Sum(nil))
	if err := s.db.WithContext(ctx).Create(&up).Error; err != nil {
		// The file must not outlive a failed index write.
		_ = s.backend.Delete(context.WithoutCancel(ctx), up.Key)
		return Upload{}, fmt.Errorf("upload: index %s: %w", up.ID, store.Translate(err))
	}
	return up, nil
}

// Get returns the unexpired upload with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Upload, error) {
	if !validID(id) {
		return Upload{}, fmt.Errorf("upload: get %q: %w", id, ErrNotFound)
	}
	var up Upload
	err := s.db.WithContext(ctx).Where("id = ? AND expires_at > ?", id, s.o.Now().UTC()).Take(&up).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Upload{}, fmt.Errorf("upload: get %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Upload{}, fmt.Errorf("upload: get %s: %w", id, store.Translate(err))
	}
	return up, nil
}

// Open reads an upload's bytes; an expired upload or a missing file is
// ErrNotFound.
func (s *Store) Open(ctx context.Context, up Upload) (io.ReadCloser, error) {
	if !s.o.Now().Before(up.ExpiresAt) {
		return nil, fmt.Errorf("upload: open %s: %w", up.ID, ErrNotFound)
	}
	if up.Backend != s.backend.Name() {
		return nil, fmt.Errorf("upload: open %s: stored in backend %q, not the configured %q", up.ID, up.Backend, s.backend.Name())
	}
	rc, err := s.backend.Open(ctx, up.Key)
	if errors.Is(err, result.ErrNotFound) {
		return nil, fmt.Errorf("upload: open %s: %w", up.ID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("upload: open %s: %w", up.ID, err)
	}
	return rc, nil
}

// URL returns a download URL of up and when it stops working: a presigned URL
// when the backend signs its own (S3), else the API's signed download link
// (result.UploadDownloadPath). The link never outlives the upload.
func (s *Store) URL(ctx context.Context, up Upload) (string, time.Time, error) {
	now := s.o.Now()
	if !now.Before(up.ExpiresAt) {
		return "", time.Time{}, fmt.Errorf("upload: link %s: %w", up.ID, ErrNotFound)
	}
	ttl := min(s.o.LinkTTL, up.ExpiresAt.Sub(now))
	if p, ok := s.backend.(result.Presigner); ok && up.Backend == s.backend.Name() {
		u, err := p.Presign(ctx, up.Key, up.Name, ttl)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("upload: presign %s: %w", up.ID, err)
		}
		return u, now.Add(ttl), nil
	}
	u, exp := s.signer.UploadLinkFor(up.ID, now.Add(ttl))
	return u, exp, nil
}

// Signer is the signer of local download links.
func (s *Store) Signer() *result.Signer { return s.signer }

// capReader counts the bytes read through it and fails with ErrTooLarge once
// they pass max, so that the backend discards what it spooled.
type capReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, ErrTooLarge
	}
	return n, err
}
