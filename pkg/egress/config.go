package egress

import "github.com/taskforge/taskforge/pkg/config"

// FromConfig builds a Guard from the egress section of the configuration: its
// allow-list, connect and total timeouts, response size cap and redirect limit.
// Zero fields take the defaults of Config; opts are passed on to New.
func FromConfig(c config.EgressConfig, opts ...Option) (*Guard, error) {
	return New(Config{
		AllowCIDRs: c.AllowCIDRs, ConnectTimeout: c.ConnectTimeout, Timeout: c.Timeout,
		MaxResponseBytes: c.MaxResponseBytes, MaxRedirects: c.MaxRedirects,
	}, opts...)
}
