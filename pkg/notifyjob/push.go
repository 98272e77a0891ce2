package notifyjob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/pushsub"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// ErrPrincipalsNotAllowed means a push alert names principals other than its
// creator, who is no admin.
var ErrPrincipalsNotAllowed = errors.New("only an admin's alert may reach other principals' push subscriptions")

// Subscriptions delivers push alerts to principals' push subscriptions: Web
// Push to browsers and FCM to apps. A kind without its sender is skipped.
type Subscriptions struct {
	// Store reads the subscriptions and removes the gone ones. Required.
	Store *pushsub.Store
	// WebPush sends to webpush subscriptions. If nil, they are skipped.
	WebPush *notify.WebPush
	// FCM sends to fcm registration tokens. If nil, they are skipped.
	FCM *notify.FCM
}

// SubscriptionsFromConfig builds the Web Push and FCM senders from the push
// section, or returns nil when neither is configured. client must be the
// egress guard's client of the notify purpose: push services, the FCM API and
// the OAuth token endpoint are all reached through it.
func SubscriptionsFromConfig(push config.PushConfig, db *gorm.DB, client *http.Client) (*Subscriptions, error) {
	if !push.WebPushEnabled() && !push.FCMEnabled() {
		return nil, nil
	}
	if db == nil || client == nil {
		return nil, errors.New("notifyjob: push subscriptions: nil database or http client")
	}
	st, err := pushsub.NewStore(db, func(string) error { return nil })
	if err != nil {
		return nil, err
	}
	out := &Subscriptions{Store: st}
	if push.WebPushEnabled() {
		out.WebPush, err = notify.NewWebPush(client, notify.WebPushConfig{
			PublicKey: push.VAPIDPublicKey, PrivateKey: push.VAPIDPrivateKey, Subject: push.VAPIDSubject, TTL: push.TTL,
		})
		if err != nil {
			return nil, fmt.Errorf("notifyjob: push.vapid_*: %w", err)
		}
	}
	if push.FCMEnabled() {
		out.FCM, err = notify.NewFCM(client, notify.FCMConfig{
			CredentialsJSON: push.FCMCredentials, ProjectID: push.FCMProjectID,
			TokenURL: push.FCMTokenURL, BaseURL: push.FCMBaseURL,
		})
		if err != nil {
			return nil, fmt.Errorf("notifyjob: push.fcm_*: %w", err)
		}
	}
	return out, nil
}

// deliveryPushSubscription is the notification_deliveries channel of push
// subscriptions; the recipient is the subscription id.
const deliveryPushSubscription = "push_subscription"

// pushOutcome counts a delivery to subscriptions.
type pushOutcome struct {
	delivered, removed, skipped int
}

// alertPrincipals returns whose subscriptions a push alert reaches: the
// params' principals, or the task's creator. Naming anyone but the creator
// takes an admin's task.
func (s *Service) alertPrincipals(ctx context.Context, r job.Reporter, op string, p *taskpb.SendAlertParams) ([]string, error) {
	owner, err := s.taskOwner(ctx, op, r.TaskID())
	if err != nil {
		return nil, err
	}
	named := slices.Compact(slices.Sorted(slices.Values(p.GetPrincipals())))
	if len(named) == 0 {
		return []string{owner}, nil
	}
	if len(named) == 1 && named[0] == owner {
		return named, nil
	}
	admin, err := s.isAdmin(ctx, owner)
	if err != nil {
		return nil, err
	}
	if !admin {
		return nil, job.Permanent(fmt.Errorf("notifyjob: %s: %w", op, ErrPrincipalsNotAllowed))
	}
	return named, nil
}

// sendToSubscriptions sends the alert to every subscription of the
// principals that this task has not reached yet (notification_deliveries:
// each one reached is recorded at once, so a retry after a partial failure
// pushes only to the others). Subscriptions a push service reports gone (404,
// 410) are deleted and do not fail the task. The error sums up the other
// failures: it is permanent only if each of them is.
func (s *Service) sendToSubscriptions(ctx context.Context, r job.Reporter, principals []string, a notify.Alert) (pushOutcome, error) {
	taskID := r.TaskID()
	var out pushOutcome
	subs, err := s.subs.Store.ForPrincipals(ctx, principals)
	if err != nil {
		return out, err
	}
	ids := make([]string, len(subs))
	for i, sub := range subs {
		ids[i] = sub.ID
	}
	done, err := s.delivered(ctx, taskID, deliveryPushSubscription, ids)
	if err != nil {
		return out, err
	}
	var gone []string
	var failed []error
	permanent := true
	for _, sub := range subs {
		if done[sub.ID] {
			out.delivered++
			continue
		}
		var err error
		switch {
		case sub.Kind == notify.KindWebPush && s.subs.WebPush != nil:
			err = s.subs.WebPush.Send(ctx, notify.WebPushSubscription{Endpoint: sub.Endpoint, P256dh: sub.P256dh, Auth: sub.Auth}, a)
		case sub.Kind == notify.KindFCM && s.subs.FCM != nil:
			err = s.subs.FCM.Send(ctx, sub.Endpoint, a)
		default:
			out.skipped++
			continue
		}
		switch {
		case err == nil:
			out.delivered++
			s.markDelivered(ctx, r, deliveryPushSubscription, sub.ID)
		case notify.IsGone(err):
			gone = append(gone, sub.ID)
		default:
			permanent = permanent && notify.IsPermanent(err)
			failed = append(failed, fmt.Errorf("subscription %s: %w", sub.ID, err))
		}
	}
	if err := s.subs.Store.Remove(ctx, gone); err != nil {
		return out, err
	}
	out.removed = len(gone)
	if len(gone) > 0 {
		s.log.Info("gone push subscriptions removed", zap.Int("count", len(gone)))
	}
	if len(failed) == 0 {
		return out, nil
	}
	err = fmt.Errorf("%d of %d push subscriptions failed: %w", len(failed), len(subs), errors.Join(failed...))
	if permanent {
		return out, job.Permanent(err)
	}
	return out, err
}
