package notifyjob

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// AlertResult is send_alert's result.
type AlertResult struct {
	// Channel is slack, sms or push.
	Channel string `json:"channel"`
	// Recipients counts the params' recipients: phone numbers for sms, topics
	// for push (0 means the gateway's default topic); Slack ignores them.
	Recipients int `json:"recipients"`
	// Subscriptions counts the push subscriptions (Web Push and FCM) the
	// alert reached; Removed those deleted because their push service said
	// they are gone (404 or 410). Push only.
	Subscriptions int `json:"subscriptions,omitempty"`
	Removed       int `json:"removed,omitempty"`
}

// SendAlert is the send_alert handler: it sends the alert over its channel — a
// Slack incoming webhook, SMS through a Twilio-style API, or a push gateway. A
// channel without configuration fails permanently, naming the settings it
// needs; provider replies are classified by package notify (4xx other than 408
// and 429 permanent, the rest retryable). SMS and push go to one recipient at a
// time; each one reached is recorded (notification_deliveries) at once, and a
// retry after a partial failure sends only to those not reached yet.
func (s *Service) SendAlert(ctx context.Context, r job.Reporter, p *taskpb.SendAlertParams) error {
	const op = "send alert"
	ch := p.GetChannel()
	keys, known := channelConfigKeys[ch]
	if !known {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w %q: must be slack, sms or push", op, ErrUnknownChannel, ch))
	}
	sender, ok := s.alerts[ch]
	// Push reaches ntfy topics through the gateway and principals' push
	// subscriptions through Web Push and FCM. With subscriptions configured,
	// the gateway is used only for the topics an alert names.
	toSubs := ch == ChannelPush && s.subs != nil
	if ok && toSubs && len(p.GetRecipients()) == 0 {
		ok = false
	}
	if !ok && !toSubs {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w: %s (set %s)", op, ErrChannelNotConfigured, ch, keys))
	}
	if !toSubs && len(p.GetPrincipals()) > 0 {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w: principals need web push or fcm (set push.vapid_* or push.fcm_credentials)",
			op, ErrChannelNotConfigured))
	}
	alert := notify.Alert{
		Title: p.GetTitle(), Message: p.GetMessage(),
		Severity: notify.Severity(p.GetSeverity()), Recipients: p.GetRecipients(),
	}
	var principals []string
	if toSubs {
		var err error
		if principals, err = s.alertPrincipals(ctx, r, op, p); err != nil {
			return err
		}
	}
	r.Progress(0, stepSending, "Sending "+ch+" alert")
	if ok && (ch == ChannelSMS || ch == ChannelPush) && len(p.GetRecipients()) > 0 {
		if err := s.sendEach(ctx, r, ch, sender, alert); err != nil {
			return deliveryError(op, err)
		}
	} else if ok {
		if err := sender.Send(ctx, alert); err != nil {
			return deliveryError(op, err)
		}
	}
	res := AlertResult{Channel: ch, Recipients: len(p.GetRecipients())}
	if toSubs {
		out, err := s.sendToSubscriptions(ctx, r, principals, alert)
		res.Subscriptions, res.Removed = out.delivered, out.removed
		if err != nil {
			return fmt.Errorf("notifyjob: %s: %w", op, err)
		}
		r.Log(job.Info, "push subscriptions reached", map[string]any{
			"principals": len(principals), "subscriptions": out.delivered, "removed": out.removed, "skipped": out.skipped})
	}
	n := res.Recipients
	r.Log(job.Info, "alert sent", map[string]any{"channel": ch, "recipients": n})
	s.log.Debug("alert sent", job.LogFields(r, zap.String("channel", ch), zap.Int("recipients", n))...)
	r.Progress(1, stepDone, "Alert sent over "+ch)
	return setResult(r, op, res)
}

// sendEach sends alert to each of its recipients (phone numbers, gateway
// topics) not reached yet, recording each one reached at once. It tries them
// all; the error joins the failures and is permanent only if every failure is.
func (s *Service) sendEach(ctx context.Context, r job.Reporter, ch string, sender notify.AlertSender, alert notify.Alert) error {
	done, err := s.delivered(ctx, r.TaskID(), ch, alert.Recipients)
	if err != nil {
		return err
	}
	var failed []error
	permanent, skipped := true, 0
	for _, to := range alert.Recipients {
		if done[to] {
			skipped++
			continue
		}
		one := alert
		one.Recipients = []string{to}
		if err := sender.Send(ctx, one); err != nil {
			failed = append(failed, err)
			permanent = permanent && notify.IsPermanent(err)
			continue
		}
		done[to] = true
		s.markDelivered(ctx, r, ch, to)
	}
	if skipped > 0 {
		r.Log(job.Info, "recipients reached by an earlier attempt skipped", map[string]any{"channel": ch, "skipped": skipped})
	}
	if len(failed) == 0 {
		return nil
	}
	err = fmt.Errorf("%d of %d recipients failed: %w", len(failed), len(alert.Recipients), errors.Join(failed...))
	if permanent {
		return job.Permanent(err)
	}
	return err
}
