package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Severity is how urgent an alert is.
type Severity string

// Known severities. Others are passed through as text with default priority.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Alert is a short notification for the send_alert task.
type Alert struct {
	// Title is required.
	Title string
	// Message is required.
	Message string
	// Severity defaults to SeverityInfo.
	Severity Severity
	// Recipients are phone numbers for SMS and topics for push; Slack ignores
	// them, as an incoming webhook is bound to one channel.
	Recipients []string
}

// AlertSender sends an alert over one channel. Slack, SMS and Push implement it.
type AlertSender interface {
	Send(ctx context.Context, a Alert) error
}

// validate checks the fields every channel needs and fills in the severity.
func (a Alert) validate(channel string) (Alert, error) {
	a.Title = strings.TrimSpace(a.Title)
	a.Message = strings.TrimSpace(a.Message)
	if a.Title == "" {
		return a, invalidf(channel, "alert title is empty")
	}
	if a.Message == "" {
		return a, invalidf(channel, "alert message is empty")
	}
	if a.Severity == "" {
		a.Severity = SeverityInfo
	}
	return a, nil
}

// text renders the alert as one plain line, for SMS and Slack's fallback text.
func (a Alert) text() string {
	return fmt.Sprintf("[%s] %s: %s", strings.ToUpper(string(a.Severity)), a.Title, a.Message)
}

// recipientError is one recipient's failure.
type recipientError struct {
	to  string
	err error
}

// joinRecipientErrors sums up per-recipient failures in one *Error. It is
// permanent only if every failure is, so that a retry is attempted whenever
// one may help.
func joinRecipientErrors(channel string, total int, failed []recipientError) error {
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return failed[0].err
	}
	e := &Error{Channel: channel, Permanent: true}
	parts := make([]string, 0, len(failed))
	causes := make([]error, 0, len(failed))
	for _, f := range failed {
		var de *Error
		if errors.As(f.err, &de) {
			e.Permanent = e.Permanent && de.Permanent
			if e.StatusCode == 0 {
				e.StatusCode = de.StatusCode
			}
		} else {
			e.Permanent = false
		}
		parts = append(parts, fmt.Sprintf("%s: %v", f.to, f.err))
		causes = append(causes, f.err)
	}
	e.msg = fmt.Sprintf("notify: %s: %d of %d recipients failed: %s", channel, len(failed), total, strings.Join(parts, "; "))
	e.err = errors.Join(causes...)
	return e
}

// The alert channels implement AlertSender.
var (
	_ AlertSender = (*Slack)(nil)
	_ AlertSender = (*SMS)(nil)
	_ AlertSender = (*Push)(nil)
)
