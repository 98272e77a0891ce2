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
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// FCM defaults.
const (
	// DefaultFCMBaseURL is the FCM HTTP v1 API.
	DefaultFCMBaseURL = "https://fcm.googleapis.com"
	// DefaultFCMTokenURL is Google's OAuth 2.0 token endpoint, used when the
	// service account names none.
	DefaultFCMTokenURL = "https://oauth2.googleapis.com/token"
	// FCMScope is the OAuth scope FCM HTTP v1 requires.
	FCMScope = "https://www.googleapis.com/auth/firebase.messaging"
)

// FCMConfig configures the FCM HTTP v1 sender.
type FCMConfig struct {
	// CredentialsJSON is a Google service account key file's JSON (type,
	// project_id, private_key_id, private_key, client_email, token_uri). Its
	// private key signs the JWT exchanged for an access token (RFC 7523); it
	// never appears in errors. Required.
	CredentialsJSON string
	// ProjectID overrides the credentials' project_id. If empty, theirs.
	ProjectID string
	// TokenURL overrides the credentials' token_uri. If both are empty,
	// DefaultFCMTokenURL.
	TokenURL string
	// BaseURL is the FCM API's base URL; messages are posted to
	// BaseURL/v1/projects/{project}/messages:send. If empty, DefaultFCMBaseURL.
	BaseURL string
}

// serviceAccount is the part of a service account key file FCM needs.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// FCM sends alerts to app registration tokens through FCM HTTP v1. Access
// tokens are obtained with the JWT bearer grant through the same client (the
// egress guard's) and reused until they expire.
type FCM struct {
	client   *http.Client
	send     *url.URL
	tokenURL *url.URL
	red      redactor

	// mu serialises token requests, so that the transport error recorded by
	// seen belongs to the exchange that failed (oauth2 flattens it into text).
	mu     sync.Mutex
	tokens oauth2.TokenSource
	seen   *recordingTransport
}

// recordingTransport keeps the last transport error of the token exchange:
// the oauth2 package formats it with %v, which loses whether the egress guard
// refused the destination.
type recordingTransport struct {
	base http.RoundTripper
	last error
}

// RoundTrip implements http.RoundTripper.
func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.last = err
	}
	return resp, err
}

// NewFCM returns an FCM sender using client, the egress guard's.
func NewFCM(client *http.Client, cfg FCMConfig) (*FCM, error) {
	if client == nil {
		return nil, errors.New("notify: new fcm: nil http client")
	}
	var sa serviceAccount
	if err := json.Unmarshal([]byte(cfg.CredentialsJSON), &sa); err != nil {
		return nil, invalidf(ChannelPush, "fcm credentials are not a service account JSON document")
	}
	if sa.Type != "" && sa.Type != "service_account" {
		return nil, invalidf(ChannelPush, "fcm credentials are of type %q, not service_account", sa.Type)
	}
	if sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, invalidf(ChannelPush, "fcm credentials need client_email and private_key")
	}
	project := cfg.ProjectID
	if project == "" {
		project = sa.ProjectID
	}
	if project == "" || strings.ContainsAny(project, "/?#") {
		return nil, invalidf(ChannelPush, "fcm project id is missing or malformed")
	}
	tokenURL := firstNonEmpty(cfg.TokenURL, sa.TokenURI, DefaultFCMTokenURL)
	tu, err := parseEndpoint(ChannelPush, "fcm token url", tokenURL)
	if err != nil {
		return nil, err
	}
	base, err := parseEndpoint(ChannelPush, "fcm base url", firstNonEmpty(cfg.BaseURL, DefaultFCMBaseURL))
	if err != nil {
		return nil, err
	}
	send := base.JoinPath("v1", "projects", project, "messages:send")
	jc := &jwt.Config{
		Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
		Scopes: []string{FCMScope}, TokenURL: tokenURL,
	}
	// The token source keeps this context for every refresh: it carries only
	// the client, so that token requests pass through the egress guard.
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	seen := &recordingTransport{base: rt}
	tokenClient := &http.Client{Transport: seen, CheckRedirect: client.CheckRedirect, Timeout: client.Timeout}
	tctx := context.WithValue(context.Background(), oauth2.HTTPClient, tokenClient)
	return &FCM{
		client: client, send: send, tokenURL: tu, seen: seen,
		tokens: oauth2.ReuseTokenSource(nil, jc.TokenSource(tctx)),
		red:    redactor(nil).with(sa.PrivateKey, cfg.CredentialsJSON),
	}, nil
}

// firstNonEmpty returns the first non-empty value.
func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// fcmRequest is the body of messages:send.
type fcmRequest struct {
	Message fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token        string            `json:"token"`
	Notification fcmNotification   `json:"notification"`
	Data         map[string]string `json:"data,omitempty"`
	Android      *fcmAndroid       `json:"android,omitempty"`
}

type fcmNotification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

type fcmAndroid struct {
	Priority string `json:"priority"`
}

// Send posts the alert to one registration token. A 404 reply (FCM's
// UNREGISTERED) or 410 is an *Error for which IsGone is true.
func (f *FCM) Send(ctx context.Context, token string, a Alert) error {
	a, err := a.validate(ChannelPush)
	if err != nil {
		return err
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return invalidf(ChannelPush, "empty fcm registration token")
	}
	msg := fcmMessage{
		Token:        token,
		Notification: fcmNotification{Title: a.Title, Body: a.Message},
		Data:         map[string]string{"severity": string(a.Severity)},
	}
	if a.Severity == SeverityCritical {
		msg.Android = &fcmAndroid{Priority: "high"}
	}
	body, err := json.Marshal(fcmRequest{Message: msg})
	if err != nil {
		return invalidf(ChannelPush, "encode message: %v", err)
	}
	red := f.red.with(token)
	tok, err := f.token(red)
	if err != nil {
		return err
	}
	req, err := newRequest(ctx, ChannelPush, http.MethodPost, f.send, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tok.SetAuthHeader(req)
	_, err = do(f.client, req, ChannelPush, red.with(tok.AccessToken))
	return err
}

// token returns a valid access token, obtaining one when the last has
// expired. A failed exchange is classified: a refused destination or a refusal
// by the token endpoint (4xx other than 408 and 429, which includes bad
// credentials) is permanent; a network error or 5xx is retryable; a key that
// cannot sign is permanent. The endpoint's reply body is never quoted.
func (f *FCM) token(red redactor) (*oauth2.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen.last = nil
	tok, err := f.tokens.Token()
	if err == nil {
		return tok, nil
	}
	target := describeURL(f.tokenURL)
	var re *oauth2.RetrieveError
	switch {
	case f.seen.last != nil:
		return nil, transportError(ChannelPush, target, f.seen.last, red)
	case errors.As(err, &re) && re.Response != nil:
		status := re.Response.StatusCode
		return nil, &Error{
			Channel: ChannelPush, StatusCode: status, Permanent: permanentStatus(status),
			msg: fmt.Sprintf("notify: %s: fcm token exchange with %s: status %d", ChannelPush, target, status),
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, transportError(ChannelPush, target, err, red)
	}
	return nil, &Error{
		Channel: ChannelPush, Permanent: true, err: ErrInvalid,
		msg: fmt.Sprintf("notify: %s: fcm token exchange with %s failed: the service account key cannot sign or the reply is not a token", ChannelPush, target),
	}
}
