package notifyjob

import (
	"context"
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
}

// SendAlert is the send_alert handler: it sends the alert over its channel — a
// Slack incoming webhook, SMS through a Twilio-style API, or a push gateway. A
// channel without configuration fails permanently, naming the settings it
// needs; provider replies are classified by package notify (4xx other than 408
// and 429 permanent, the rest retryable). SMS is sent to every recipient before
// failures are reported, so a retry may text some recipients twice.
func (s *Service) SendAlert(ctx context.Context, r job.Reporter, p *taskpb.SendAlertParams) error {
	const op = "send alert"
	ch := p.GetChannel()
	keys, known := channelConfigKeys[ch]
	if !known {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w %q: must be slack, sms or push", op, ErrUnknownChannel, ch))
	}
	sender, ok := s.alerts[ch]
	if !ok {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w: %s (set %s)", op, ErrChannelNotConfigured, ch, keys))
	}
	r.Progress(0, stepSending, "Sending "+ch+" alert")
	err := sender.Send(ctx, notify.Alert{
		Title: p.GetTitle(), Message: p.GetMessage(),
		Severity: notify.Severity(p.GetSeverity()), Recipients: p.GetRecipients(),
	})
	if err != nil {
		return deliveryError(op, err)
	}
	n := len(p.GetRecipients())
	r.Log(job.Info, "alert sent", map[string]any{"channel": ch, "recipients": n})
	s.log.Debug("alert sent", zap.String("task_id", r.TaskID()), zap.String("channel", ch), zap.Int("recipients", n))
	r.Progress(1, stepDone, "Alert sent over "+ch)
	return setResult(r, op, AlertResult{Channel: ch, Recipients: n})
}
