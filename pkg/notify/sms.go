package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// DefaultSMSBaseURL is Twilio's API root.
const DefaultSMSBaseURL = "https://api.twilio.com"

// maxSMSRunes is the longest body sent; longer alerts are cut (Twilio's limit).
const maxSMSRunes = 1600

// SMSConfig configures an SMS sender on a Twilio-style API.
type SMSConfig struct {
	// BaseURL is the API root; messages are posted to
	// {BaseURL}/2010-04-01/Accounts/{AccountSID}/Messages.json.
	// If empty, DefaultSMSBaseURL is used.
	BaseURL string
	// AccountSID is the account id and the basic-auth user. Required.
	AccountSID string
	// AuthToken is the basic-auth password; it never appears in errors. Required.
	AuthToken string
	// From is the sending number in E.164 form. Required.
	From string
}

// e164 matches an E.164 phone number.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// accountSID matches an account id that is safe as a URL path segment.
var accountSID = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// SMS sends text messages through a Twilio-style HTTP API.
type SMS struct {
	client *http.Client
	cfg    SMSConfig
	url    *url.URL
	red    redactor
}

// NewSMS returns an SMS sender using client.
func NewSMS(client *http.Client, cfg SMSConfig) (*SMS, error) {
	if client == nil {
		return nil, errors.New("notify: new sms: nil http client")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultSMSBaseURL
	}
	switch {
	case !accountSID.MatchString(cfg.AccountSID):
		return nil, invalidf(ChannelSMS, "account sid is empty or not alphanumeric")
	case cfg.AuthToken == "":
		return nil, invalidf(ChannelSMS, "auth token is empty")
	case !e164.MatchString(cfg.From):
		return nil, invalidf(ChannelSMS, "from is not an E.164 phone number")
	}
	base, err := parseEndpoint(ChannelSMS, "base url", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	u := base.JoinPath("2010-04-01", "Accounts", cfg.AccountSID, "Messages.json")
	return &SMS{client: client, cfg: cfg, url: u, red: redactor(nil).with(cfg.AuthToken,
		base64.StdEncoding.EncodeToString([]byte(cfg.AccountSID+":"+cfg.AuthToken)))}, nil
}

// Send texts the alert to every recipient. It tries them all and reports the
// failures together; the error is permanent only if every failure is.
func (s *SMS) Send(ctx context.Context, a Alert) error {
	a, err := a.validate(ChannelSMS)
	if err != nil {
		return err
	}
	if len(a.Recipients) == 0 {
		return invalidf(ChannelSMS, "alert has no recipients")
	}
	var failed []recipientError
	for _, to := range a.Recipients {
		if err := s.SendSMS(ctx, to, a.text()); err != nil {
			failed = append(failed, recipientError{to: to, err: err})
		}
	}
	return joinRecipientErrors(ChannelSMS, len(a.Recipients), failed)
}

// SendSMS sends one text message; a body longer than 1600 characters is cut.
func (s *SMS) SendSMS(ctx context.Context, to, body string) error {
	if !e164.MatchString(to) {
		return invalidf(ChannelSMS, "recipient %q is not an E.164 phone number", to)
	}
	if strings.TrimSpace(body) == "" {
		return invalidf(ChannelSMS, "body is empty")
	}
	if r := []rune(body); len(r) > maxSMSRunes {
		body = string(r[:maxSMSRunes-1]) + "…"
	}
	form := url.Values{"To": {to}, "From": {s.cfg.From}, "Body": {body}}
	req, err := newRequest(ctx, ChannelSMS, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(s.cfg.AccountSID, s.cfg.AuthToken)
	_, err = do(s.client, req, ChannelSMS, s.red)
	return err
}

// String formats the configuration with the auth token masked.
func (c SMSConfig) String() string {
	return fmt.Sprintf("{BaseURL:%s AccountSID:%s AuthToken:%s From:%s}", c.BaseURL, c.AccountSID, mask(c.AuthToken), c.From)
}

// GoString masks the auth token in %#v output too.
func (c SMSConfig) GoString() string { return "notify.SMSConfig" + c.String() }
