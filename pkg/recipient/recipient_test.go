package recipient_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/recipient"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// policy is the defaults with operators held to example.com and UK and US
// numbers, and admins free.
func policy() config.NotifyPolicyConfig {
	p := config.NotifyDefaults().Policy
	p.Roles.Operator = config.RecipientRules{EmailDomains: []string{"example.com", "*.corp.example"},
		PhonePrefixes: []string{"+44", "+1"}, PushTopics: []string{"ops"}, SlackChannels: []string{"#ops"}}
	p.MaxRecipientsPerTask = 5
	return p
}

func TestCheck(t *testing.T) {
	t.Parallel()
	pol, err := recipient.New(policy(), nil)
	require.NoError(t, err)
	sms := func(to ...string) proto.Message {
		return &taskpb.SendAlertParams{Channel: "sms", Title: "t", Message: "m", Recipients: to}
	}
	tests := []struct {
		name  string
		role  string
		msg   proto.Message
		field string // the first error's field; "" for none
	}{
		{"allowed email", "operator", &taskpb.SendEmailParams{To: []string{"a@example.com"}, Cc: []string{"b@x.corp.example", "c@corp.example"}}, ""},
		{"domain not allowed", "operator", &taskpb.SendEmailParams{To: []string{"a@example.com", "b@evil.test"}}, "params.to[1]"},
		{"cc not allowed", "operator", &taskpb.SendEmailParams{To: []string{"a@example.com"}, Cc: []string{"x@gmail.com"}}, "params.cc[0]"},
		{"lookalike domain", "operator", &taskpb.SendEmailParams{To: []string{"a@notexample.com"}}, "params.to[0]"},
		{"admin any domain", "admin", &taskpb.SendEmailParams{To: []string{"b@evil.test"}}, ""},
		{"viewer no one", "viewer", &taskpb.SendEmailParams{To: []string{"a@example.com"}}, "params.to[0]"},
		{"digest domain", "operator", &taskpb.GenerateDigestParams{Recipients: []string{"pm@example.com", "x@elsewhere.test"}}, "params.recipients[1]"},
		{"sms allowed", "operator", sms("+447700900123", "+14155550100"), ""},
		{"sms premium UK", "operator", sms("+447700900123", "+14155550100", "+449012345678"), "params.recipients[2]"},
		{"sms premium US for admins too", "admin", sms("+19005550100"), "params.recipients[0]"},
		{"sms premium FR", "admin", sms("+33899123456"), "params.recipients[0]"},
		{"sms country not allowed", "operator", sms("+33612345678"), "params.recipients[0]"},
		{"sms not E.164", "admin", sms("0044123"), "params.recipients[0]"},
		{"too many", "admin", sms("+14155550101", "+14155550102", "+14155550103", "+14155550104", "+14155550105", "+14155550106"), "params.recipients"},
		{"push topic", "operator", &taskpb.SendAlertParams{Channel: "push", Recipients: []string{"ops", "all-users"}}, "params.recipients[1]"},
		{"slack channel", "operator", &taskpb.SendAlertParams{Channel: "slack", Recipients: []string{"#general"}}, "params.recipients[0]"},
		{"not a notification", "viewer", &taskpb.WebhookCallbackParams{Url: "https://example.com"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs, err := pol.Check(context.Background(), tt.role, "key_x", tt.msg)
			require.NoError(t, err)
			if tt.field == "" {
				require.Empty(t, errs)
				return
			}
			require.NotEmpty(t, errs)
			require.Equal(t, tt.field, errs[0].Field, "%v", errs)
		})
	}
}

// TestCheckHourlyCap counts a principal's recipients of the last hour from
// its tasks: past the cap a new task is refused, another principal is not
// affected, and tasks older than an hour do not count.
func TestCheckHourlyCap(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	p := policy()
	p.MaxRecipientsPerHour = 6
	pol, err := recipient.New(p, pg.DB)
	require.NoError(t, err)
	insert := func(id, owner, typ, params string, at time.Time) {
		require.NoError(t, pg.DB.Exec(`INSERT INTO tasks
			(id, type, status, priority, params, created_by, created_at, updated_at, max_retries, retry_policy, timeout_seconds)
			VALUES (?, ?, 'completed', 'high', ?::jsonb, ?, ?, ?, 0, '{}', 300)`, id, typ, params, owner, at, at).Error)
	}
	now := time.Now()
	insert("task_h1", "key_op", "send_email", `{"to":["a@example.com","b@example.com"],"cc":["c@example.com"]}`, now.Add(-10*time.Minute))
	insert("task_h2", "key_op", "send_alert", `{"channel":"sms","recipients":["+14155550101","+14155550102"]}`, now.Add(-20*time.Minute))
	insert("task_h3", "key_op", "send_email", `{"to":["old@example.com","old2@example.com"]}`, now.Add(-2*time.Hour))
	insert("task_h4", "key_other", "send_email", `{"to":["a@example.com","b@example.com","c@example.com"]}`, now)

	one := &taskpb.SendEmailParams{To: []string{"d@example.com"}}
	two := &taskpb.SendEmailParams{To: []string{"d@example.com", "e@example.com"}}
	errs, err := pol.Check(t.Context(), "operator", "key_op", one)
	require.NoError(t, err)
	require.Empty(t, errs, "5 of 6 in the last hour + 1 fits")
	errs, err = pol.Check(t.Context(), "operator", "key_op", two)
	require.NoError(t, err)
	require.Equal(t, []problem.FieldError{{Field: "params.to",
		Message: "2 more recipients would pass the 6 per hour of this caller (notify.policy.max_recipients_per_hour; 5 in the last hour)"}}, errs)
	errs, err = pol.Check(t.Context(), "operator", "key_other", two)
	require.NoError(t, err)
	require.Empty(t, errs, "another principal's hour is its own")
}
