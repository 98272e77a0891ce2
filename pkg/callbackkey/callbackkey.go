// Package callbackkey keeps the signing secrets of completion callbacks: one
// per principal, the owner of the tasks whose callbacks it signs, so that a
// receiver holds its owner's secret only and cannot forge callbacks to
// another owner's receiver. Secrets are stored sealed (pkg/secret, bound to
// the principal) in callback_secrets. A principal's secret is created on first
// need (its first callback) and replaced by Rotate, which returns the new one
// once; for the overlap after a rotation the previous secret still signs, next
// to the new one, so that receivers can switch without losing a callback.
package callbackkey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
)

// DefaultOverlap is how long the previous secret still signs after a rotation
// when New is given zero.
const DefaultOverlap = 24 * time.Hour

// Sealer seals and opens strings bound to a context (*secret.Keyring).
type Sealer interface {
	SealString(context, plaintext string) string
	OpenString(context, sealed string) (string, error)
}

// Store reads, creates and rotates the secrets. It is safe for concurrent use.
type Store struct {
	db      *gorm.DB
	sealer  Sealer
	overlap time.Duration
}

// New returns a Store. overlap is how long the previous secret still signs
// after a rotation: zero means DefaultOverlap, negative none.
func New(db *gorm.DB, sealer Sealer, overlap time.Duration) (*Store, error) {
	if db == nil || sealer == nil {
		return nil, errors.New("callbackkey: nil dependency")
	}
	if overlap == 0 {
		overlap = DefaultOverlap
	}
	return &Store{db: db, sealer: sealer, overlap: max(overlap, 0)}, nil
}

// Rotated is the answer of a rotation. Secret is shown this once.
type Rotated struct {
	// Secret is the new secret, "whsec_<base64>".
	Secret string `json:"secret"`
	// CreatedAt is when it was made.
	CreatedAt time.Time `json:"created_at"`
	// PreviousExpiresAt is when the previous secret stops signing, or nil when
	// there was none (or there is no overlap).
	PreviousExpiresAt *time.Time `json:"previous_expires_at"`
}

func (s *Store) context(principal string) string { return "callback_secret:" + principal }

// Rotate makes a new secret for principal and returns it. The current one, if
// any, signs beside it until the overlap has passed.
func (s *Store) Rotate(ctx context.Context, principal string) (Rotated, error) {
	if principal == "" {
		return Rotated{}, errors.New("callbackkey: rotate: empty principal")
	}
	raw := notify.NewSecret()
	sealed := s.sealer.SealString(s.context(principal), string(raw))
	var row store.CallbackSecret
	err := s.db.WithContext(ctx).Raw(`
INSERT INTO callback_secrets AS c (principal, secret, created_at) VALUES (?, ?, now())
ON CONFLICT (principal) DO UPDATE SET
    previous = c.secret, previous_until = now() + ? * interval '1 millisecond',
    secret = EXCLUDED.secret, created_at = EXCLUDED.created_at
RETURNING principal, secret, created_at, previous, previous_until`,
		principal, sealed, s.overlap.Milliseconds()).Scan(&row).Error
	if err != nil {
		return Rotated{}, fmt.Errorf("callbackkey: rotate: %w", store.Translate(err))
	}
	out := Rotated{Secret: notify.FormatSecret(raw), CreatedAt: row.CreatedAt.UTC()}
	if row.Previous != nil && s.overlap > 0 && row.PreviousUntil != nil {
		t := row.PreviousUntil.UTC()
		out.PreviousExpiresAt = &t
	}
	return out, nil
}

// Signing returns the secrets that sign principal's callbacks now: the
// current one first, then the previous one while its overlap lasts. A
// principal without a secret gets one (its owner reads it by rotating).
func (s *Store) Signing(ctx context.Context, principal string) ([][]byte, error) {
	if principal == "" {
		return nil, errors.New("callbackkey: signing: empty principal")
	}
	db := s.db.WithContext(ctx)
	sealed := s.sealer.SealString(s.context(principal), string(notify.NewSecret()))
	if err := db.Exec(`INSERT INTO callback_secrets (principal, secret) VALUES (?, ?) ON CONFLICT (principal) DO NOTHING`,
		principal, sealed).Error; err != nil {
		return nil, fmt.Errorf("callbackkey: create: %w", store.Translate(err))
	}
	var row struct {
		Secret   string
		Previous *string
		Current  bool
	}
	if err := db.Raw(`SELECT secret, previous, previous IS NOT NULL AND previous_until > now() AS current
FROM callback_secrets WHERE principal = ?`, principal).Scan(&row).Error; err != nil {
		return nil, fmt.Errorf("callbackkey: read: %w", store.Translate(err))
	}
	cur, err := s.sealer.OpenString(s.context(principal), row.Secret)
	if err != nil {
		return nil, fmt.Errorf("callbackkey: open: %w", err)
	}
	out := [][]byte{[]byte(cur)}
	if row.Current && row.Previous != nil {
		prev, err := s.sealer.OpenString(s.context(principal), *row.Previous)
		if err != nil {
			return nil, fmt.Errorf("callbackkey: open previous: %w", err)
		}
		out = append(out, []byte(prev))
	}
	return out, nil
}
