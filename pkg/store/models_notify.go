package store

import "time"

// CallbackSecret is a row of callback_secrets: a principal's signing secret of
// completion callbacks and, for a while after a rotation, the previous one.
// Secret and Previous are sealed values (pkg/secret), never plaintext.
type CallbackSecret struct {
	Principal     string `gorm:"primaryKey"`
	Secret        string
	CreatedAt     time.Time
	Previous      *string
	PreviousUntil *time.Time
}

// NotificationDelivery is a row of notification_deliveries: one recipient a
// notification task has reached on a channel.
type NotificationDelivery struct {
	TaskID      string `gorm:"primaryKey"`
	Channel     string `gorm:"primaryKey"`
	Recipient   string `gorm:"primaryKey"`
	DeliveredAt time.Time
}
