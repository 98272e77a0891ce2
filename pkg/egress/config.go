package egress

import (
	"fmt"

	"github.com/taskforge/taskforge/pkg/config"
)

// Purpose names a kind of outbound call; each has its own allow-list in the
// egress section of the configuration.
type Purpose string

// The purposes of outbound calls.
const (
	// PurposePrice is the price provider.
	PurposePrice Purpose = "price"
	// PurposeNotify is Slack, SMS, push and ntfy.
	PurposeNotify Purpose = "notify"
	// PurposeCallbacks is task completion callbacks (callback_url).
	PurposeCallbacks Purpose = "callbacks"
	// PurposeWebhooks is webhook_callback tasks.
	PurposeWebhooks Purpose = "webhooks"
	// PurposeJWKS is the identity provider's key set (auth.jwks_url), fetched
	// by the API and the monitor to verify RS256 and ES256 tokens.
	PurposeJWKS Purpose = "jwks"
)

// AllowCIDRs returns the allow-list of purpose p in c: egress.<p>.allow_cidrs,
// or egress.allow_cidrs when that is empty.
func AllowCIDRs(c config.EgressConfig, p Purpose) ([]string, error) {
	section, ok := c.Purposes()[string(p)]
	if !ok {
		return nil, fmt.Errorf("egress: unknown purpose %q", p)
	}
	if len(section.AllowCIDRs) > 0 {
		return section.AllowCIDRs, nil
	}
	return c.AllowCIDRs, nil
}

// FromConfig builds the Guard of purpose p from the egress section of the
// configuration: the purpose's allow-list (see AllowCIDRs), connect and total
// timeouts, response size cap and redirect limit. Zero fields take the
// defaults of Config; opts are passed on to New.
func FromConfig(c config.EgressConfig, p Purpose, opts ...Option) (*Guard, error) {
	allow, err := AllowCIDRs(c, p)
	if err != nil {
		return nil, err
	}
	return New(Config{
		AllowCIDRs: allow, ConnectTimeout: c.ConnectTimeout, Timeout: c.Timeout,
		MaxResponseBytes: c.MaxResponseBytes, MaxRedirects: c.MaxRedirects,
	}, opts...)
}
