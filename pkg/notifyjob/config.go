package notifyjob

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/notify"
)

// Alert channel names, as in send_alert's channel param.
const (
	ChannelSlack = notify.ChannelSlack
	ChannelSMS   = notify.ChannelSMS
	ChannelPush  = notify.ChannelPush
)

// channelConfigKeys names the configuration a channel needs, for errors.
var channelConfigKeys = map[string]string{
	ChannelSlack: "alerts.slack_webhook_url",
	ChannelSMS:   "alerts.sms_account, alerts.sms_token and alerts.sms_from",
	ChannelPush:  "alerts.push_url, push.vapid_* or push.fcm_credentials",
}

// Senders are the notify senders built from configuration.
type Senders struct {
	// Mailer is nil when smtp.host is empty.
	Mailer *notify.Mailer
	// Alerts holds a sender per configured channel.
	Alerts map[string]notify.AlertSender
}

// EmailSender returns the mailer as a notify.EmailSender, nil when there is
// none (a nil *notify.Mailer in the interface would not compare equal to nil).
func (s Senders) EmailSender() notify.EmailSender {
	if s.Mailer == nil {
		return nil
	}
	return s.Mailer
}

// SendersFromConfig builds the mailer and the alert senders a worker uses.
// client must be the egress guard's client. A channel whose settings are all
// empty is left out (send_alert then fails permanently for it); a channel that
// is configured only in part, or wrongly, is an error, so that a worker does not
// start with a broken channel. Errors never quote a credential. An empty
// smtp.tls means starttls; the caller applies the development default ("none")
// before, when it wants it.
func SendersFromConfig(smtp config.SMTPConfig, alerts config.AlertsConfig, client *http.Client) (Senders, error) {
	if client == nil {
		return Senders{}, errors.New("notifyjob: senders: nil http client")
	}
	out := Senders{Alerts: map[string]notify.AlertSender{}}
	if strings.TrimSpace(smtp.Host) != "" {
		m, err := notify.NewMailer(notify.MailConfig{
			Host: smtp.Host, Port: smtp.Port, Username: smtp.Username, Password: smtp.Password,
			From: smtp.From, TLS: smtp.TLS,
		})
		if err != nil {
			return Senders{}, fmt.Errorf("notifyjob: smtp: %w", err)
		}
		out.Mailer = m
	}
	if alerts.SlackWebhookURL != "" {
		s, err := notify.NewSlack(client, alerts.SlackWebhookURL)
		if err != nil {
			return Senders{}, fmt.Errorf("notifyjob: alerts.slack_webhook_url: %w", err)
		}
		out.Alerts[ChannelSlack] = s
	}
	if alerts.SMSAccount != "" || alerts.SMSToken != "" || alerts.SMSFrom != "" || alerts.SMSURL != "" {
		s, err := notify.NewSMS(client, notify.SMSConfig{
			BaseURL: alerts.SMSURL, AccountSID: alerts.SMSAccount, AuthToken: alerts.SMSToken, From: alerts.SMSFrom,
		})
		if err != nil {
			return Senders{}, fmt.Errorf("notifyjob: alerts.sms_*: %w", err)
		}
		out.Alerts[ChannelSMS] = s
	}
	switch {
	case alerts.PushURL != "":
		p, err := notify.NewPush(client, notify.PushConfig{URL: alerts.PushURL, Token: alerts.PushToken})
		if err != nil {
			return Senders{}, fmt.Errorf("notifyjob: alerts.push_url: %w", err)
		}
		out.Alerts[ChannelPush] = p
	case alerts.PushToken != "":
		return Senders{}, errors.New("notifyjob: alerts.push_token is set without alerts.push_url")
	}
	return out, nil
}
