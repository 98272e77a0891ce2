package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// PushConfig configures a push sender on an ntfy-style JSON gateway.
type PushConfig struct {
	// URL is the gateway endpoint the JSON message is posted to. Required.
	URL string
	// Token is sent as "Authorization: Bearer <token>"; it never appears in
	// errors. If empty, no Authorization header is sent.
	Token string
	// Topic is used when an alert names no recipients. If empty, an alert
	// without recipients is invalid.
	Topic string
}

// Push sends alerts through a push gateway, one message per topic.
type Push struct {
	client *http.Client
	cfg    PushConfig
	url    *url.URL
	red    redactor
}

// NewPush returns a push sender using client.
func NewPush(client *http.Client, cfg PushConfig) (*Push, error) {
	if client == nil {
		return nil, errors.New("notify: new push: nil http client")
	}
	u, err := parseEndpoint(ChannelPush, "gateway url", cfg.URL)
	if err != nil {
		return nil, err
	}
	return &Push{client: client, cfg: cfg, url: u, red: redactor(nil).with(cfg.Token).withURL(cfg.URL, u)}, nil
}

// pushMessage is the gateway's JSON body.
type pushMessage struct {
	Topic    string   `json:"topic"`
	Title    string   `json:"title"`
	Message  string   `json:"message"`
	Priority int      `json:"priority"`
	Tags     []string `json:"tags"`
}

// pushPriority maps a severity to ntfy's 1 (min) to 5 (max) scale.
func pushPriority(s Severity) int {
	switch s {
	case SeverityCritical:
		return 5
	case SeverityWarning:
		return 4
	default:
		return 3
	}
}

// Send pushes the alert to each recipient topic, or to the default topic.
func (p *Push) Send(ctx context.Context, a Alert) error {
	a, err := a.validate(ChannelPush)
	if err != nil {
		return err
	}
	topics := a.Recipients
	if len(topics) == 0 && p.cfg.Topic != "" {
		topics = []string{p.cfg.Topic}
	}
	if len(topics) == 0 {
		return invalidf(ChannelPush, "alert has no recipients and no default topic is set")
	}
	var failed []recipientError
	for _, topic := range topics {
		if err := p.push(ctx, topic, a); err != nil {
			failed = append(failed, recipientError{to: topic, err: err})
		}
	}
	return joinRecipientErrors(ChannelPush, len(topics), failed)
}

// push sends one message to one topic.
func (p *Push) push(ctx context.Context, topic string, a Alert) error {
	topic = strings.TrimSpace(topic)
	if topic == "" {
		return invalidf(ChannelPush, "empty topic")
	}
	body, err := json.Marshal(pushMessage{
		Topic:    topic,
		Title:    a.Title,
		Message:  a.Message,
		Priority: pushPriority(a.Severity),
		Tags:     []string{string(a.Severity)},
	})
	if err != nil {
		return invalidf(ChannelPush, "encode message: %v", err)
	}
	req, err := newRequest(ctx, ChannelPush, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	}
	_, err = do(p.client, req, ChannelPush, p.red)
	return err
}

// String formats the configuration with the token masked. The URL is shown:
// unlike a Slack webhook URL, a gateway URL is not a credential.
func (c PushConfig) String() string {
	return fmt.Sprintf("{URL:%s Token:%s Topic:%s}", c.URL, mask(c.Token), c.Topic)
}

// GoString masks the token in %#v output too.
func (c PushConfig) GoString() string { return "notify.PushConfig" + c.String() }
