package config

import (
	"fmt"
	"strings"
	"time"
)

// NotifyConfig configures who notifications may reach (Policy) and the
// signing secrets of completion callbacks.
type NotifyConfig struct {
	// CallbackSecretOverlap is how long a principal's previous callback
	// signing secret still signs, beside the new one, after a rotation
	// (POST /api/v1/callback-secret/rotate), so that receivers can switch
	// without refusing a callback. Default 24h.
	CallbackSecretOverlap time.Duration `mapstructure:"callback_secret_overlap"`
	// Policy limits the recipients of send_email, send_alert and
	// generate_digest; it is checked when a task is created through the API
	// (a 422 names the refused recipient, e.g. params.recipients[3]).
	Policy NotifyPolicyConfig `mapstructure:"policy"`
}

// NotifyPolicyConfig is the recipient policy of notification tasks.
type NotifyPolicyConfig struct {
	// Roles holds the allow-lists of each role. Default: operator and admin
	// may reach any email domain, phone prefix, push topic and Slack channel
	// ("*"), viewers (who create no tasks) none; set each deployment's own
	// lists.
	Roles RecipientRoles `mapstructure:"roles"`
	// MaxRecipientsPerTask caps one task's recipients (send_email's to and cc
	// together; send_alert's and generate_digest's recipients). Default 50.
	MaxRecipientsPerTask int `mapstructure:"max_recipients_per_task"`
	// MaxRecipientsPerHour caps the recipients of the notification tasks one
	// principal creates in an hour (counted over its tasks of the last hour).
	// Default 500.
	MaxRecipientsPerHour int `mapstructure:"max_recipients_per_hour"`
	// PremiumPrefixes are E.164 prefixes of premium-rate and revenue-sharing
	// ranges; an SMS to them is refused whatever the allow-lists say.
	// Default DefaultPremiumPrefixes.
	PremiumPrefixes []string `mapstructure:"premium_prefixes"`
}

// RecipientRoles are the allow-lists of the three roles.
type RecipientRoles struct {
	Viewer   RecipientRules `mapstructure:"viewer"`
	Operator RecipientRules `mapstructure:"operator"`
	Admin    RecipientRules `mapstructure:"admin"`
}

// For returns role's allow-lists; an unknown role gets none.
func (r RecipientRoles) For(role string) RecipientRules {
	switch role {
	case "viewer":
		return r.Viewer
	case "operator":
		return r.Operator
	case "admin":
		return r.Admin
	}
	return RecipientRules{}
}

// RecipientRules are one role's allow-lists. "*" in a list allows anything.
type RecipientRules struct {
	// EmailDomains are the domains a role may mail; "*.example.com" also
	// allows its subdomains. Default empty: none.
	EmailDomains []string `mapstructure:"email_domains"`
	// PhonePrefixes are the E.164 prefixes a role may text, e.g. "+44" or
	// "+1415". Default empty: none.
	PhonePrefixes []string `mapstructure:"phone_prefixes"`
	// PushTopics are the push (ntfy) topics a role may notify. Default empty:
	// none.
	PushTopics []string `mapstructure:"push_topics"`
	// SlackChannels are the Slack channels a role may name as send_alert
	// recipients (the incoming webhook posts to its own channel; recipients
	// only label it). Default empty: none.
	SlackChannels []string `mapstructure:"slack_channels"`
}

// DefaultPremiumPrefixes are the premium-rate and revenue-sharing number
// ranges refused by default: North America's 900 and 976, the UK's 09, 087
// and 070 (personal numbers, a common fraud route), France's 089, Germany's
// 0900 and 0137, Spain's 803, 806, 807 and 905, Italy's 899 and 892,
// Australia's 190, the ITU's international premium-rate code +979 and the
// satellite and international networks +881 and +882.
var DefaultPremiumPrefixes = []string{
	"+1900", "+1976",
	"+449", "+4487", "+4470",
	"+3389",
	"+49900", "+49137",
	"+34803", "+34806", "+34807", "+34905",
	"+39899", "+39892",
	"+61190",
	"+979", "+881", "+882",
}

// NotifyDefaults are the notify section's defaults.
func NotifyDefaults() NotifyConfig {
	all := RecipientRules{EmailDomains: []string{"*"}, PhonePrefixes: []string{"*"}, PushTopics: []string{"*"}, SlackChannels: []string{"*"}}
	return NotifyConfig{
		CallbackSecretOverlap: 24 * time.Hour,
		Policy: NotifyPolicyConfig{
			Roles: RecipientRoles{Operator: all, Admin: all,
				Viewer: RecipientRules{EmailDomains: []string{}, PhonePrefixes: []string{}, PushTopics: []string{}, SlackChannels: []string{}}},
			MaxRecipientsPerTask: 50, MaxRecipientsPerHour: 500,
			PremiumPrefixes: append([]string(nil), DefaultPremiumPrefixes...),
		},
	}
}

// validate checks the notify section; each error names its key.
func (n NotifyConfig) validate() []error {
	var errs []error
	bad := func(key string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s = %v: %s", ErrInvalid, key, value, why))
	}
	if n.CallbackSecretOverlap < 0 {
		bad("notify.callback_secret_overlap", n.CallbackSecretOverlap, "must not be negative")
	}
	p := n.Policy
	if p.MaxRecipientsPerTask < 1 {
		bad("notify.policy.max_recipients_per_task", p.MaxRecipientsPerTask, "must be at least 1")
	}
	if p.MaxRecipientsPerHour < 1 {
		bad("notify.policy.max_recipients_per_hour", p.MaxRecipientsPerHour, "must be at least 1")
	}
	phone := func(key, v string) {
		if v == "*" {
			return
		}
		if len(v) < 2 || v[0] != '+' || strings.Trim(v[1:], "0123456789") != "" {
			bad(key, fmt.Sprintf("%q", v), `must be "+" and digits (an E.164 prefix)`)
		}
	}
	for i, v := range p.PremiumPrefixes {
		if v == "*" {
			bad(fmt.Sprintf("notify.policy.premium_prefixes[%d]", i), `"*"`, "would refuse every number")
			continue
		}
		phone(fmt.Sprintf("notify.policy.premium_prefixes[%d]", i), v)
	}
	for _, role := range []string{"viewer", "operator", "admin"} {
		r := p.Roles.For(role)
		for i, v := range r.PhonePrefixes {
			phone(fmt.Sprintf("notify.policy.roles.%s.phone_prefixes[%d]", role, i), v)
		}
		for i, v := range r.EmailDomains {
			d := strings.TrimPrefix(v, "*.")
			if v != "*" && (d == "" || strings.ContainsAny(d, "@ *")) {
				bad(fmt.Sprintf("notify.policy.roles.%s.email_domains[%d]", role, i), fmt.Sprintf("%q", v), `must be a domain, "*.domain" or "*"`)
			}
		}
	}
	return errs
}
