// Package pushsub keeps the push subscriptions of principals: browsers' Web
// Push subscriptions (endpoint and the keys p256dh and auth) and apps' FCM
// registration tokens, in push_subscriptions. The API creates, lists and
// deletes them for their owner; send_alert with channel push reads the
// subscriptions of its recipients and deletes those a push service reports
// gone (404 or 410).
package pushsub

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/oklog/ulid/v2"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Limits of a subscription's fields.
const (
	// MaxEndpointBytes caps an endpoint URL or a registration token.
	MaxEndpointBytes = 2048
	// MaxUserAgentBytes caps the user agent kept to tell subscriptions apart.
	MaxUserAgentBytes = 512
	// MaxPerPrincipal caps the subscriptions of one principal, so that no
	// caller can make an alert fan out without bound.
	MaxPerPrincipal = 50
)

// ErrNotFound is returned when a subscription does not exist or belongs to
// someone else: the two cases share one error so that it reveals nothing
// about others' subscriptions.
var ErrNotFound = errors.New("pushsub: subscription not found")

// New is a subscription to create.
type New struct {
	// Kind is notify.KindWebPush (default) or notify.KindFCM.
	Kind string
	// Endpoint is the push service URL (webpush) or the registration token (fcm).
	Endpoint string
	// P256dh and Auth are the browser's keys (webpush only).
	P256dh, Auth string
	// UserAgent describes the subscribing browser or app; optional.
	UserAgent string
}

// URLChecker vets an endpoint URL; (*egress.Guard).CheckURL of the notify
// purpose fits.
type URLChecker func(raw string) error

// Store reads and writes push_subscriptions.
type Store struct {
	db    *gorm.DB
	check URLChecker
}

// NewStore returns a Store. check vets Web Push endpoints at creation; it is
// required, so that no subscription points where the worker may not send.
func NewStore(db *gorm.DB, check URLChecker) (*Store, error) {
	if db == nil || check == nil {
		return nil, errors.New("pushsub: new store: nil database or url checker")
	}
	return &Store{db: db, check: check}, nil
}

// Validate checks a subscription to create and returns its field errors,
// named as in the API's body (endpoint, keys.p256dh, keys.auth, kind,
// user_agent). A Web Push endpoint must be an https URL that the egress
// guard's URL check lets through.
func (s *Store) Validate(n New) []tasks.FieldError {
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: field, Message: msg}) }
	if len(n.UserAgent) > MaxUserAgentBytes {
		bad("user_agent", fmt.Sprintf("must be at most %d bytes", MaxUserAgentBytes))
	}
	switch {
	case n.Endpoint == "":
		bad("endpoint", "is required")
		return errs
	case len(n.Endpoint) > MaxEndpointBytes:
		bad("endpoint", fmt.Sprintf("must be at most %d bytes", MaxEndpointBytes))
		return errs
	}
	switch n.Kind {
	case notify.KindWebPush:
		u, err := url.Parse(n.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			bad("endpoint", "must be an absolute https URL")
		} else if err := s.check(n.Endpoint); err != nil {
			bad("endpoint", "is not an allowed destination: "+err.Error())
		}
		if field, why := notify.CheckWebPushKeys(n.P256dh, n.Auth); field != "" {
			bad(field, why)
		}
	case notify.KindFCM:
		if strings.ContainsAny(n.Endpoint, " \t\r\n/?#") {
			bad("endpoint", "must be an FCM registration token")
		}
		if n.P256dh != "" || n.Auth != "" {
			bad("keys", "must be absent for kind fcm")
		}
	default:
		bad("kind", "must be webpush or fcm")
	}
	return errs
}

// Create stores n for principal, or refreshes the keys and user agent of the
// principal's subscription with the same endpoint (a browser re-subscribing
// gets its row back, not a second one). created is false in that case.
func (s *Store) Create(ctx context.Context, principal string, n New) (sub store.PushSubscription, created bool, err error) {
	if n.Kind == "" {
		n.Kind = notify.KindWebPush
	}
	if errs := s.Validate(n); len(errs) > 0 {
		return sub, false, &tasks.ValidationError{Errors: errs}
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The principal's rows are locked in one statement, so that two
		// concurrent creations cannot both pass the cap.
		var ids []string
		if err := tx.Raw(`SELECT id FROM push_subscriptions WHERE principal = ? ORDER BY id FOR UPDATE`, principal).
			Scan(&ids).Error; err != nil {
			return err
		}
		var existing []store.PushSubscription
		if err := tx.Where("principal = ? AND endpoint = ?", principal, n.Endpoint).Find(&existing).Error; err != nil {
			return err
		}
		if len(existing) == 1 {
			sub = existing[0]
			sub.Kind, sub.P256dh, sub.Auth, sub.UserAgent = n.Kind, n.P256dh, n.Auth, n.UserAgent
			return tx.Model(&store.PushSubscription{}).Where("id = ?", sub.ID).
				Updates(map[string]any{"kind": n.Kind, "p256dh": n.P256dh, "auth": n.Auth, "user_agent": n.UserAgent}).Error
		}
		if len(ids) >= MaxPerPrincipal {
			return &tasks.ValidationError{Errors: []tasks.FieldError{{Field: "endpoint",
				Message: fmt.Sprintf("a principal may hold at most %d subscriptions; delete one first", MaxPerPrincipal)}}}
		}
		sub = store.PushSubscription{
			ID: "psub_" + strings.ToLower(ulid.Make().String()), Principal: principal, Kind: n.Kind,
			Endpoint: n.Endpoint, P256dh: n.P256dh, Auth: n.Auth, UserAgent: n.UserAgent,
		}
		created = true
		return tx.Clauses(clause.Returning{Columns: []clause.Column{{Name: "created_at"}}}).Create(&sub).Error
	})
	if err != nil {
		var ve *tasks.ValidationError
		if errors.As(err, &ve) {
			return sub, false, err
		}
		return sub, false, fmt.Errorf("pushsub: create: %w", err)
	}
	return sub, created, nil
}

// List returns the subscriptions of principal, or every principal's when
// principal is empty, newest first.
func (s *Store) List(ctx context.Context, principal string) ([]store.PushSubscription, error) {
	q := s.db.WithContext(ctx).Order("created_at DESC, id DESC")
	if principal != "" {
		q = q.Where("principal = ?", principal)
	}
	var out []store.PushSubscription
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("pushsub: list: %w", err)
	}
	return out, nil
}

// Delete removes subscription id of principal; when principal is empty (an
// admin), of anyone. It returns ErrNotFound when there is no such row.
func (s *Store) Delete(ctx context.Context, principal, id string) error {
	q := s.db.WithContext(ctx).Where("id = ?", id)
	if principal != "" {
		q = q.Where("principal = ?", principal)
	}
	res := q.Delete(&store.PushSubscription{})
	if res.Error != nil {
		return fmt.Errorf("pushsub: delete %s: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// ForPrincipals returns the subscriptions of the principals, in id order.
func (s *Store) ForPrincipals(ctx context.Context, principals []string) ([]store.PushSubscription, error) {
	var out []store.PushSubscription
	if len(principals) == 0 {
		return out, nil
	}
	if err := s.db.WithContext(ctx).Where("principal IN ?", principals).Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("pushsub: read subscriptions: %w", err)
	}
	return out, nil
}

// Remove deletes the subscriptions with the ids, whoever owns them: the push
// service said they are gone.
func (s *Store) Remove(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.db.WithContext(ctx).Where("id IN ?", ids).Delete(&store.PushSubscription{}).Error; err != nil {
		return fmt.Errorf("pushsub: remove gone subscriptions: %w", err)
	}
	return nil
}
