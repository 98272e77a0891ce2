package notifyjob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"go.uber.org/zap"
	"gorm.io/gorm/clause"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
)

// Per-recipient delivery: every recipient a task reaches is recorded in
// notification_deliveries (task id, channel, a keyed digest of the recipient:
// addresses and phone numbers are sensitive and never stored in clear) as
// soon as it is reached, so that a retry after a partial failure sends only to the others.
// A separate table rather than the task's progress record because the
// progress is written by the worker's buffered flush, after the handler
// returns, while a recipient must count as reached the moment the provider
// accepted it; rows go with their task (ON DELETE CASCADE).

// Channels of notification_deliveries (send_alert's use its channel names).
const (
	deliveryEmail  = "email"
	deliveryDigest = "digest"
)

// delivered returns which of recipients the task has reached on channel.
func (s *Service) delivered(ctx context.Context, taskID, channel string, recipients ...[]string) (map[string]bool, error) {
	var rows []store.NotificationDelivery
	if err := s.db.WithContext(ctx).Where("task_id = ? AND channel = ?", taskID, channel).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("notifyjob: read deliveries: %w", store.Translate(err))
	}
	stored := make(map[string]bool, len(rows))
	for _, r := range rows {
		stored[r.Recipient] = true
	}
	out := map[string]bool{}
	for _, list := range recipients {
		for _, r := range list {
			if stored[s.recipientDigest(taskID, channel, r)] {
				out[r] = true
			}
		}
	}
	return out, nil
}

// recipientDigest is what notification_deliveries keeps of a recipient: the
// hex of Options.RecipientMAC (the keyring's MAC) over task id, channel and
// recipient, or of SHA-256 without one.
func (s *Service) recipientDigest(taskID, channel, recipient string) string {
	data := []byte(taskID + "\x00" + channel + "\x00" + recipient)
	if s.recipientMAC != nil {
		return hex.EncodeToString(s.recipientMAC(data))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// markDelivered records that the task reached recipients on channel. A
// failure is logged, not returned: the message is out, and failing the
// attempt would only make a retry send it again.
func (s *Service) markDelivered(ctx context.Context, r job.Reporter, channel string, recipients ...string) {
	if len(recipients) == 0 {
		return
	}
	taskID := r.TaskID()
	rows := make([]store.NotificationDelivery, len(recipients))
	for i, to := range recipients {
		rows[i] = store.NotificationDelivery{TaskID: taskID, Channel: channel, Recipient: s.recipientDigest(taskID, channel, to)}
	}
	err := s.db.WithContext(context.WithoutCancel(ctx)).Clauses(clause.OnConflict{DoNothing: true}).
		Omit("DeliveredAt").Create(&rows).Error
	if err != nil {
		s.log.Warn("delivery not recorded; a retry may send it again", job.LogFields(r,
			zap.String("channel", channel), zap.Int("recipients", len(recipients)), zap.Error(store.Translate(err)))...)
	}
}

// allDelivered reports whether every one of recipients is in done.
func allDelivered(done map[string]bool, recipients ...[]string) bool {
	for _, list := range recipients {
		for _, r := range list {
			if !done[r] {
				return false
			}
		}
	}
	return true
}
