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

// Slack posts alerts to a Slack incoming webhook. The webhook URL is a secret:
// it never appears in errors.
type Slack struct {
	client *http.Client
	url    *url.URL
	red    redactor
}

// NewSlack returns a Slack sender posting to webhookURL with client.
func NewSlack(client *http.Client, webhookURL string) (*Slack, error) {
	if client == nil {
		return nil, errors.New("notify: new slack: nil http client")
	}
	u, err := parseEndpoint(ChannelSlack, "webhook url", webhookURL)
	if err != nil {
		return nil, err
	}
	return &Slack{client: client, url: u, red: redactor(nil).withURL(webhookURL, u)}, nil
}

// slackPayload is the incoming-webhook body: a fallback text and one section.
type slackPayload struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type string    `json:"type"`
	Text slackText `json:"text"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackEscaper escapes the three characters Slack's mrkdwn treats as control.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Send posts the alert. Recipients are ignored.
func (s *Slack) Send(ctx context.Context, a Alert) error {
	a, err := a.validate(ChannelSlack)
	if err != nil {
		return err
	}
	section := fmt.Sprintf("*%s*\nSeverity: %s\n%s",
		slackEscaper.Replace(a.Title), slackEscaper.Replace(string(a.Severity)), slackEscaper.Replace(a.Message))
	body, err := json.Marshal(slackPayload{
		Text:   slackEscaper.Replace(a.text()),
		Blocks: []slackBlock{{Type: "section", Text: slackText{Type: "mrkdwn", Text: section}}},
	})
	if err != nil {
		return invalidf(ChannelSlack, "encode payload: %v", err)
	}
	req, err := newRequest(ctx, ChannelSlack, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// The host alone is shown: the path of a Slack webhook URL is its secret.
	_, err = do(s.client, req, ChannelSlack, s.red)
	return err
}
