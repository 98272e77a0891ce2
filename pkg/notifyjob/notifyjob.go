// Package notifyjob holds the handlers of the four notification task types:
// send_email, send_alert, webhook_callback and generate_digest. They are plain
// job.Handler functions on a Service built with their dependencies (the
// database, the notify senders, the egress guard's HTTP client), so the worker
// registers them in one place and tests call them with a job.Recorder.
//
// Every error a handler returns is either retryable (a plain error: network
// failures, timeouts, 5xx, 408 and 429 replies, SMTP 4xx replies, a database
// hiccup) or marked job.Permanent (bad params, a refused destination, a 4xx
// reply, a channel that is not configured, an attachment the caller may not
// see). No error, log line or result holds a secret: the webhook secret, SMTP
// and provider credentials and the secret parts of provider URLs are redacted
// by package notify, and the handlers log only counts, statuses and host names.
//
// Results (tasks.result):
//
//	send_email        {"recipients": 3, "attachments": 2, "attachment_bytes": 5120}   (EmailResult)
//	send_alert        {"channel": "sms", "recipients": 2}                             (AlertResult)
//	webhook_callback  {"status": 200}                                                 (WebhookResult)
//	generate_digest   {"period": "daily", "start": "2026-11-20", "end": "2026-11-20",
//	                   "recipients": 1, "portfolios": 3, "tasks": 8, "failed": 2}     (DigestResult)
//
// SMTP does not return a message id through go-mail's client, so send_email
// reports none.
package notifyjob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Errors of the handlers. They reach the task's error wrapped in job.Permanent.
var (
	// ErrEmailNotConfigured means the worker has no mailer (smtp.host is empty).
	ErrEmailNotConfigured = errors.New("email is not configured (set smtp.host)")
	// ErrChannelNotConfigured means send_alert's channel has no configuration.
	ErrChannelNotConfigured = errors.New("alert channel is not configured")
	// ErrUnknownChannel means send_alert's channel is not slack, sms or push.
	ErrUnknownChannel = errors.New("unknown alert channel")
	// ErrAttachmentNotVisible means an attachment task does not exist or was
	// created by someone other than the email task's creator, who is no admin.
	// The two cases share one error so that it reveals nothing about others'
	// tasks.
	ErrAttachmentNotVisible = errors.New("attachment task not found or not visible to the task's creator")
	// ErrAttachmentFailed means an attachment task failed or was cancelled, so it
	// will never have a result.
	ErrAttachmentFailed = errors.New("attachment task did not complete")
	// ErrNoAttachmentResult means an attachment task completed without a result
	// file or JSON result.
	ErrNoAttachmentResult = errors.New("attachment task has no result")
	// ErrAttachmentsTooLarge means the attachments exceed the size cap.
	ErrAttachmentsTooLarge = errors.New("attachments too large")
	// ErrTaskNotFound means the running task's own row is missing.
	ErrTaskNotFound = errors.New("task row not found")
	// ErrNoRecipients means generate_digest has no recipients in its params and
	// none are configured.
	ErrNoRecipients = errors.New("no recipients: set recipients in the params")
	// ErrBadParams means a param is invalid at run time (the API checks params at
	// creation; this guards tasks created otherwise).
	ErrBadParams = errors.New("invalid params")
)

// Defaults of Options.
const (
	// DefaultMaxAttachmentBytes caps the total size of send_email's attachments.
	DefaultMaxAttachmentBytes = 20 << 20
	// maxFailuresListed is how many failed tasks a digest lists.
	maxFailuresListed = 10
	// maxPortfoliosListed is how many portfolios a digest lists.
	maxPortfoliosListed = 100
)

// Progress steps.
const (
	stepAttachments = "loading attachments"
	stepSending     = "sending"
	stepPortfolios  = "loading portfolios"
	stepActivity    = "loading task activity"
	stepDone        = "done"
)

// AdminFunc reports whether the principal with id is an admin, who may attach
// any task's result to an email and whose digests cover every caller's tasks.
type AdminFunc func(ctx context.Context, principalID string) (bool, error)

// Options are a Service's dependencies.
type Options struct {
	// DB is the database holding tasks, results and the portfolio domain.
	// Required.
	DB *gorm.DB
	// HTTPClient sends webhook callbacks. It must be the egress guard's client
	// (egress.Guard.Client) so that every callback URL is checked at dial time.
	// Required.
	HTTPClient *http.Client
	// Mailer sends send_email's and generate_digest's mail. If nil, both fail
	// permanently with ErrEmailNotConfigured.
	Mailer notify.EmailSender
	// Alerts are send_alert's senders keyed by channel ("slack", "sms",
	// "push"). A channel without a sender fails permanently with
	// ErrChannelNotConfigured.
	Alerts map[string]notify.AlertSender
	// Subscriptions delivers push alerts to principals' Web Push and FCM
	// subscriptions (SubscriptionsFromConfig). If nil, push goes to the ntfy
	// gateway only.
	Subscriptions *Subscriptions
	// Results is the result storage whose files send_email attaches. If nil,
	// only the JSON results kept in tasks.result are attached.
	Results *result.Store
	// IsAdmin decides whether a task's creator is an admin. If nil, KeyAdmins(DB)
	// is used: active admin API keys only.
	IsAdmin AdminFunc
	// DigestRecipients receive generate_digest's mail when its params name
	// none. If empty, such a digest fails permanently with ErrNoRecipients.
	DigestRecipients []string
	// MaxAttachmentBytes caps the total size of one email's attachments. If
	// zero, DefaultMaxAttachmentBytes (20 MiB) is used.
	MaxAttachmentBytes int64
	// Log receives diagnostics that belong to the worker, not to a task. If
	// nil, nothing is logged.
	Log *zap.Logger
	// Now returns the current time; generate_digest's default date is the UTC
	// day before it. If nil, time.Now is used.
	Now func() time.Time
	// RecipientMAC keys the digest of a recipient kept in
	// notification_deliveries (secret.Keyring.MAC), so that a stored digest
	// of a phone number cannot be matched against guesses without the
	// keyring. A key rotation changes it: a retry after one may reach a
	// recipient again. If nil, plain SHA-256 is used.
	RecipientMAC func(data []byte) []byte
}

// Service runs the notification task types. It is safe for concurrent use.
type Service struct {
	db            *gorm.DB
	client        *http.Client
	mailer        notify.EmailSender
	alerts        map[string]notify.AlertSender
	subs          *Subscriptions
	results       *result.Store
	isAdmin       AdminFunc
	digestTo      []string
	maxAttachment int64
	log           *zap.Logger
	now           func() time.Time
	recipientMAC  func([]byte) []byte
}

// New returns a Service. It fails if DB or HTTPClient is nil or a limit is
// negative.
func New(o Options) (*Service, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("notifyjob: new service: nil database")
	case o.HTTPClient == nil:
		return nil, errors.New("notifyjob: new service: nil http client")
	case o.MaxAttachmentBytes < 0:
		return nil, errors.New("notifyjob: new service: negative attachment limit")
	case o.Subscriptions != nil && o.Subscriptions.Store == nil:
		return nil, errors.New("notifyjob: new service: push subscriptions without a store")
	}
	if o.MaxAttachmentBytes == 0 {
		o.MaxAttachmentBytes = DefaultMaxAttachmentBytes
	}
	if o.IsAdmin == nil {
		o.IsAdmin = KeyAdmins(o.DB)
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	alerts := make(map[string]notify.AlertSender, len(o.Alerts))
	for ch, s := range o.Alerts {
		if s != nil {
			alerts[ch] = s
		}
	}
	return &Service{
		db: o.DB, client: o.HTTPClient, mailer: o.Mailer, alerts: alerts, subs: o.Subscriptions, results: o.Results,
		isAdmin: o.IsAdmin, digestTo: append([]string(nil), o.DigestRecipients...),
		maxAttachment: o.MaxAttachmentBytes, log: o.Log, now: o.Now, recipientMAC: o.RecipientMAC,
	}, nil
}

// Handlers returns the four notification handlers keyed by task type name.
func (s *Service) Handlers() map[string]job.Handler {
	return map[string]job.Handler{
		tasks.TypeSendEmail:       job.Typed[*taskpb.SendEmailParams](s.SendEmail),
		tasks.TypeSendAlert:       job.Typed[*taskpb.SendAlertParams](s.SendAlert),
		tasks.TypeWebhookCallback: job.Typed[*taskpb.WebhookCallbackParams](s.WebhookCallback),
		tasks.TypeGenerateDigest:  job.Typed[*taskpb.GenerateDigestParams](s.GenerateDigest),
	}
}

// deliveryError wraps a notify error with the operation and marks it permanent
// when notify says retrying cannot help. notify's errors are already redacted.
func deliveryError(op string, err error) error {
	wrapped := fmt.Errorf("notifyjob: %s: %w", op, err)
	if notify.IsPermanent(err) {
		return job.Permanent(wrapped)
	}
	return wrapped
}

// setResult sets the task's result, wrapping a failure with the operation.
func setResult(r job.Reporter, op string, v any) error {
	if err := r.SetResult(v); err != nil {
		return fmt.Errorf("notifyjob: %s: set result: %w", op, err)
	}
	return nil
}

// KeyAdmins returns an AdminFunc that knows admins by their API keys: a
// principal is an admin if it is an unrevoked, unexpired API key with the admin
// role, or one of extra (such as the bootstrap admin's principal id). Callers
// authenticated by JWT are not recorded in the database, so they are never
// admins here.
func KeyAdmins(db *gorm.DB, extra ...string) AdminFunc {
	known := make(map[string]bool, len(extra))
	for _, id := range extra {
		if id != "" {
			known[id] = true
		}
	}
	return func(ctx context.Context, principalID string) (bool, error) {
		if principalID == "" {
			return false, nil
		}
		if known[principalID] {
			return true, nil
		}
		var n int64
		err := db.WithContext(ctx).Table("api_keys").
			Where("id = ? AND role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())", principalID).
			Count(&n).Error
		if err != nil {
			return false, fmt.Errorf("notifyjob: admin check: %w", err)
		}
		return n > 0, nil
	}
}

// taskOwner reads the created_by of task id; a missing row is permanent.
func (s *Service) taskOwner(ctx context.Context, op, id string) (string, error) {
	var owners []string
	if err := s.db.WithContext(ctx).Table("tasks").Where("id = ?", id).Pluck("created_by", &owners).Error; err != nil {
		return "", fmt.Errorf("notifyjob: %s: read task %s: %w", op, id, err)
	}
	if len(owners) == 0 {
		return "", job.Permanent(fmt.Errorf("notifyjob: %s: %w: %s", op, ErrTaskNotFound, id))
	}
	return owners[0], nil
}
