package store

import "time"

// PushSubscription is a row of push_subscriptions: a principal's Web Push
// subscription (Kind "webpush": Endpoint, P256dh and Auth) or FCM
// registration token (Kind "fcm": Endpoint holds the token).
type PushSubscription struct {
	ID        string `gorm:"primaryKey"`
	Principal string
	Kind      string
	Endpoint  string
	P256dh    string `gorm:"column:p256dh"`
	Auth      string
	UserAgent string
	CreatedAt time.Time
}
