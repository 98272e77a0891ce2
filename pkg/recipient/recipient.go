// Package recipient enforces the notification policy (notify.policy) when a
// notification task is created: who a role may mail, text, push or post to,
// how many recipients one task and one principal's hour may have, and which
// premium-rate number ranges no one may text. Every refusal is a field error
// naming the recipient (params.recipients[3]), which the API answers with 422.
package recipient

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// e164 matches an E.164 phone number (as package notify checks at send time).
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// Policy checks notification tasks against notify.policy. It is safe for
// concurrent use.
type Policy struct {
	cfg config.NotifyPolicyConfig
	db  *gorm.DB
}

// New returns a Policy. db counts a principal's recipients of the last hour;
// if nil, the hourly cap is not enforced.
func New(cfg config.NotifyPolicyConfig, db *gorm.DB) (*Policy, error) {
	if cfg.MaxRecipientsPerTask < 1 || cfg.MaxRecipientsPerHour < 1 {
		return nil, errors.New("recipient: the recipient caps must be at least 1")
	}
	return &Policy{cfg: cfg, db: db}, nil
}

// target is one list of recipients of a message and how to check each.
type target struct {
	field string
	list  []string
	check func(rules config.RecipientRules, v string) string
}

// targets returns the recipient lists of msg, or nil when msg is no
// notification.
func (p *Policy) targets(msg proto.Message) []target {
	switch m := msg.(type) {
	case *taskpb.SendEmailParams:
		return []target{{"params.to", m.GetTo(), checkEmail}, {"params.cc", m.GetCc(), checkEmail}}
	case *taskpb.GenerateDigestParams:
		return []target{{"params.recipients", m.GetRecipients(), checkEmail}}
	case *taskpb.SendAlertParams:
		switch m.GetChannel() {
		case "sms":
			return []target{{"params.recipients", m.GetRecipients(), p.checkPhone}}
		case "push":
			return []target{{"params.recipients", m.GetRecipients(), listed("push topic", func(r config.RecipientRules) []string { return r.PushTopics })}}
		case "slack":
			return []target{{"params.recipients", m.GetRecipients(), listed("Slack channel", func(r config.RecipientRules) []string { return r.SlackChannels })}}
		}
	}
	return nil
}

// Check returns the policy's objections to a task of params msg created by
// principal with role (nil when it may be created). A message that is no
// notification has none. The error is for a failed count only.
func (p *Policy) Check(ctx context.Context, role, principal string, msg proto.Message) ([]problem.FieldError, error) {
	ts := p.targets(msg)
	if len(ts) == 0 {
		return nil, nil
	}
	rules := p.cfg.Roles.For(role)
	var errs []problem.FieldError
	n := 0
	for _, t := range ts {
		n += len(t.list)
		for i, v := range t.list {
			if why := t.check(rules, v); why != "" {
				errs = append(errs, problem.FieldError{Field: fmt.Sprintf("%s[%d]", t.field, i), Message: why})
			}
		}
	}
	first := ts[0].field
	if n > p.cfg.MaxRecipientsPerTask {
		errs = append(errs, problem.FieldError{Field: first,
			Message: fmt.Sprintf("%d recipients: at most %d per task (notify.policy.max_recipients_per_task)", n, p.cfg.MaxRecipientsPerTask)})
	}
	if len(errs) > 0 || n == 0 || p.db == nil || principal == "" {
		return errs, nil
	}
	used, err := p.lastHour(ctx, principal)
	if err != nil {
		return nil, err
	}
	if used+n > p.cfg.MaxRecipientsPerHour {
		errs = append(errs, problem.FieldError{Field: first,
			Message: fmt.Sprintf("%d more recipients would pass the %d per hour of this caller (notify.policy.max_recipients_per_hour; %d in the last hour)",
				n, p.cfg.MaxRecipientsPerHour, used)})
	}
	return errs, nil
}

// lastHour counts the recipients of principal's notification tasks created
// in the last hour (send_email's to and cc, the others' recipients). Two
// creations at the same instant may both pass: the cap bounds a flood, it is
// no exact quota.
func (p *Policy) lastHour(ctx context.Context, principal string) (int, error) {
	var n int
	err := p.db.WithContext(ctx).Raw(`
SELECT COALESCE(SUM(
    CASE WHEN jsonb_typeof(params->'to') = 'array' THEN jsonb_array_length(params->'to') ELSE 0 END +
    CASE WHEN jsonb_typeof(params->'cc') = 'array' THEN jsonb_array_length(params->'cc') ELSE 0 END +
    CASE WHEN jsonb_typeof(params->'recipients') = 'array' THEN jsonb_array_length(params->'recipients') ELSE 0 END), 0)
FROM tasks
WHERE created_by = ? AND created_at > now() - interval '1 hour' AND type IN (?, ?, ?)`,
		principal, tasks.TypeSendEmail, tasks.TypeSendAlert, tasks.TypeGenerateDigest).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("recipient: count the last hour: %w", store.Translate(err))
	}
	return n, nil
}

// checkEmail allows an address whose domain is on the role's list.
func checkEmail(rules config.RecipientRules, v string) string {
	a, err := mail.ParseAddress(v)
	if err != nil {
		return "is not an email address"
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 {
		return "is not an email address"
	}
	domain := strings.ToLower(a.Address[at+1:])
	for _, d := range rules.EmailDomains {
		d = strings.ToLower(d)
		switch {
		case d == "*", d == domain:
			return ""
		case strings.HasPrefix(d, "*.") && (domain == d[2:] || strings.HasSuffix(domain, d[1:])):
			return ""
		}
	}
	return fmt.Sprintf("the domain %s is not on this role's allow-list (notify.policy.roles.*.email_domains)", domain)
}

// checkPhone refuses premium-rate numbers, then allows a number whose prefix
// is on the role's list.
func (p *Policy) checkPhone(rules config.RecipientRules, v string) string {
	if !e164.MatchString(v) {
		return "is not an E.164 phone number"
	}
	for _, pre := range p.cfg.PremiumPrefixes {
		if strings.HasPrefix(v, pre) {
			return fmt.Sprintf("is a premium-rate number (%s…, notify.policy.premium_prefixes)", pre)
		}
	}
	for _, pre := range rules.PhonePrefixes {
		if pre == "*" || strings.HasPrefix(v, pre) {
			return ""
		}
	}
	return "is not on this role's allow-list (notify.policy.roles.*.phone_prefixes)"
}

// listed allows a value that is on one of the role's lists.
func listed(what string, list func(config.RecipientRules) []string) func(config.RecipientRules, string) string {
	return func(rules config.RecipientRules, v string) string {
		for _, a := range list(rules) {
			if a == "*" || a == v {
				return ""
			}
		}
		return fmt.Sprintf("the %s is not on this role's allow-list", what)
	}
}
