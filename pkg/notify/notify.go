// Package notify delivers Taskforge notifications: email over SMTP, Slack
// incoming webhooks, SMS through a Twilio-style HTTP API, push through an
// ntfy-style JSON gateway, and signed webhook callbacks.
//
// Every HTTP channel takes an *http.Client, which in production is the egress
// guard's client, so that no channel can reach an address the guard forbids.
// Every error is an *Error that says whether retrying can help (IsPermanent)
// and never contains a token, a password or the secret part of a URL.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/taskforge/taskforge/pkg/egress"
)

var (
	// ErrInvalid is wrapped by errors about a message or configuration that can
	// never be delivered as it is.
	ErrInvalid = errors.New("notify: invalid")

	// ErrForbiddenHeader is wrapped when a caller-supplied webhook header may
	// not be set by the caller.
	ErrForbiddenHeader = errors.New("notify: forbidden header")

	// ErrBadSignature is returned by Verify when a signature header is malformed
	// or does not match the body.
	ErrBadSignature = errors.New("notify: bad signature")

	// ErrSignatureExpired is returned by Verify when the signed timestamp is
	// outside the tolerance.
	ErrSignatureExpired = errors.New("notify: signature timestamp outside tolerance")
)

// Channel names used in errors.
const (
	ChannelEmail   = "email"
	ChannelSlack   = "slack"
	ChannelSMS     = "sms"
	ChannelPush    = "push"
	ChannelWebhook = "webhook"
)

// Error is a failed delivery. Its message is redacted: it holds no credential
// and no secret URL path or query.
type Error struct {
	// Channel is the channel that failed, such as "slack".
	Channel string
	// StatusCode is the HTTP status or SMTP reply code, or 0 if there was none.
	StatusCode int
	// Permanent is true when retrying cannot help.
	Permanent bool

	msg string
	err error
}

// Error implements error.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the cause, such as ErrInvalid, a *egress.BlockedError or
// context.DeadlineExceeded. Causes that would quote a URL (*url.Error) are
// replaced by what they wrap.
func (e *Error) Unwrap() error { return e.err }

// IsPermanent reports whether err is a delivery failure that retrying cannot
// fix: an invalid message, a refused destination, or a 4xx reply other than
// 408 and 429 (or an SMTP 5xx reply). The worker maps these to SkipRetry.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// IsRetryable reports whether err is a failure that a later attempt may not
// meet: a 5xx, 408 or 429 reply, a network error or a timeout.
func IsRetryable(err error) bool {
	return err != nil && !IsPermanent(err)
}

// invalidf returns a permanent *Error wrapping ErrInvalid.
func invalidf(channel, format string, args ...any) error {
	return &Error{
		Channel:   channel,
		Permanent: true,
		msg:       fmt.Sprintf("notify: %s: invalid: %s", channel, fmt.Sprintf(format, args...)),
		err:       ErrInvalid,
	}
}

// permanentStatus reports whether an HTTP status means retrying cannot help.
func permanentStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return false
	case status >= 500:
		return false
	default:
		// 4xx, and 1xx or 3xx that the client did not resolve.
		return true
	}
}

// redactor removes secrets from error text.
type redactor []string

// with returns r extended with the non-empty secrets.
func (r redactor) with(secrets ...string) redactor {
	out := append(redactor(nil), r...)
	for _, s := range secrets {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// withURL returns r extended with the secret parts of a URL: the whole URL, its
// path, query, fragment and userinfo. Only the scheme and host stay readable.
func (r redactor) withURL(raw string, u *url.URL) redactor {
	out := r.with(raw)
	if u == nil {
		return out
	}
	if len(u.Path) > 1 {
		out = out.with(u.Path, u.EscapedPath())
	}
	out = out.with(u.RawQuery, u.Fragment)
	if u.User != nil {
		out = out.with(u.User.String(), u.User.Username())
		if p, ok := u.User.Password(); ok {
			out = out.with(p)
		}
	}
	return out
}

// apply returns s with every secret replaced.
func (r redactor) apply(s string) string {
	// Longest first, so that a secret containing another is removed whole.
	secrets := slices.Clone(r)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// describeURL is the part of a URL that is safe to show: scheme and host.
func describeURL(u *url.URL) string {
	if u == nil || u.Host == "" {
		return "(url)"
	}
	return u.Scheme + "://" + u.Host
}

// stripURLError drops the *url.Error layer, whose message quotes the full URL.
func stripURLError(err error) error {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	return err
}

// transportError turns an error from client.Do into an *Error: a refused
// destination or too many redirects is permanent, anything else (network
// errors, timeouts, cancellation) retryable.
func transportError(channel, target string, err error, red redactor) error {
	cause := stripURLError(err)
	permanent := errors.Is(cause, egress.ErrBlocked) || errors.Is(cause, egress.ErrTooManyRedirects)
	return &Error{
		Channel:   channel,
		Permanent: permanent,
		msg:       red.apply(fmt.Sprintf("notify: %s: send to %s: %v", channel, target, cause)),
		err:       cause,
	}
}

// do sends req with client and classifies the outcome: 2xx is success, other
// statuses become an *Error that names the status code only. The receiver's
// body is never quoted: the error is stored as the task's error, and a body
// may echo back internal details or the request itself.
func do(client *http.Client, req *http.Request, channel string, red redactor) (int, error) {
	target := describeURL(req.URL)
	resp, err := client.Do(req)
	if err != nil {
		return 0, transportError(channel, target, err, red)
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, nil
	}
	msg := fmt.Sprintf("notify: %s: send to %s: status %d", channel, target, resp.StatusCode)
	return resp.StatusCode, &Error{
		Channel:    channel,
		StatusCode: resp.StatusCode,
		Permanent:  permanentStatus(resp.StatusCode),
		msg:        red.apply(msg),
	}
}

// parseEndpoint parses a configured endpoint URL without quoting it in errors.
func parseEndpoint(channel, what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalidf(channel, "%s is not an absolute http or https url", what)
	}
	return u, nil
}

// newRequest builds a request; its error never quotes the URL.
func newRequest(ctx context.Context, channel, method string, u *url.URL, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, invalidf(channel, "build request to %s", describeURL(u))
	}
	return req, nil
}

// mask hides a secret in printed configuration, showing only whether it is set.
func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}
