package notifyjob

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/textproto"
	"net/url"

	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// idempotencyHeader carries the task id to webhook receivers.
const idempotencyHeader = "Idempotency-Key"

// WebhookResult is webhook_callback's result.
type WebhookResult struct {
	// Status is the receiver's HTTP status (2xx).
	Status int `json:"status"`
}

// WebhookCallback is the webhook_callback handler: it sends payload as JSON
// (an absent payload is sent as {}) with method (POST by default, PUT or PATCH)
// and the caller's headers to url, through the egress guard's client, which
// refuses loopback, private, link-local and metadata addresses at dial time
// unless allowed by configuration. With a secret, the body is signed with
// HMAC-SHA256 over "<unix time>.<body>" in X-Taskforge-Signature
// ("t=<unix time>,v1=<hex>", see notify.Sign and notify.Verify).
//
// Unless the caller's headers set one, an Idempotency-Key header carries the
// task id, the same on every attempt, so that a receiver can drop the duplicate
// a retry after a lost reply may deliver.
//
// A 2xx reply succeeds. Other 4xx replies than 408 and 429, a refused
// destination and invalid params fail permanently; 5xx, 408, 429, network
// errors and timeouts are retried under the task's policy. The secret, header
// values and the URL's path and query appear in no error, log line or result.
func (s *Service) WebhookCallback(ctx context.Context, r job.Reporter, p *taskpb.WebhookCallbackParams) error {
	const op = "webhook callback"
	payload := []byte("{}")
	if p.GetPayload() != nil {
		raw, err := protojson.Marshal(p.GetPayload())
		if err != nil {
			return job.Permanent(fmt.Errorf("notifyjob: %s: %w: payload: %v", op, ErrBadParams, err))
		}
		// protojson's spacing is deliberately unstable; compact it so that the
		// same payload is always the same signed body.
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return job.Permanent(fmt.Errorf("notifyjob: %s: %w: payload: %v", op, ErrBadParams, err))
		}
		payload = buf.Bytes()
	}
	host := ""
	if u, err := url.Parse(p.GetUrl()); err == nil {
		host = u.Hostname()
	}
	r.Progress(0, stepSending, "Calling "+host)
	headers := make(map[string]string, len(p.GetHeaders())+1)
	hasKey := false
	for name, value := range p.GetHeaders() {
		headers[name] = value
		hasKey = hasKey || textproto.CanonicalMIMEHeaderKey(name) == idempotencyHeader
	}
	if !hasKey {
		headers[idempotencyHeader] = r.TaskID()
	}
	status, err := notify.PostJSON(ctx, s.client, p.GetUrl(), p.GetMethod(), headers, payload, []byte(p.GetSecret()))
	if err != nil {
		return deliveryError(op, err)
	}
	s.log.Debug("webhook delivered", job.LogFields(r, zap.String("host", host), zap.Int("status", status))...)
	r.Log(job.Info, "webhook delivered", map[string]any{"host": host, "status": status, "bytes": len(payload)})
	r.Progress(1, stepDone, fmt.Sprintf("%s answered %d", host, status))
	return setResult(r, op, WebhookResult{Status: status})
}
