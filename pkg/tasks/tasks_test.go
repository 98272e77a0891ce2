package tasks_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

func TestRegistryHasTheSpecificationsTypes(t *testing.T) {
	t.Parallel()
	want := map[string]struct {
		cat      tasks.Category
		timeout  time.Duration
		priority string
		perm     string
	}{
		"refresh_all_prices": {tasks.DataRefresh, 600 * time.Second, "normal", tasks.PermCreate},
		"refresh_portfolio":  {tasks.DataRefresh, 600 * time.Second, "normal", tasks.PermCreate},
		"refresh_benchmark":  {tasks.DataRefresh, 600 * time.Second, "normal", tasks.PermCreate},
		"calculate_metrics":  {tasks.DataRefresh, 600 * time.Second, "normal", tasks.PermCreate},
		"cleanup_old_data":   {tasks.Maintenance, 3600 * time.Second, "low", tasks.PermCreateAdmin},
		"optimize_database":  {tasks.Maintenance, 3600 * time.Second, "low", tasks.PermCreateAdmin},
		"backup_data":        {tasks.Maintenance, 3600 * time.Second, "low", tasks.PermCreateAdmin},
		"generate_reports":   {tasks.Maintenance, 1800 * time.Second, "low", tasks.PermCreateAdmin},
		"send_email":         {tasks.Notification, 300 * time.Second, "high", tasks.PermCreate},
		"send_alert":         {tasks.Notification, 300 * time.Second, "high", tasks.PermCreate},
		"webhook_callback":   {tasks.Notification, 300 * time.Second, "high", tasks.PermCreate},
		"generate_digest":    {tasks.Notification, 300 * time.Second, "high", tasks.PermCreate},
		"import_prices":      {tasks.Import, 1800 * time.Second, "normal", tasks.PermCreate},
		"import_holdings":    {tasks.Import, 1800 * time.Second, "normal", tasks.PermCreate},
	}
	all := tasks.All()
	require.Len(t, all, len(want))
	for _, s := range all {
		w, ok := want[s.Name]
		require.True(t, ok, s.Name)
		require.Equal(t, w.cat, s.Category, s.Name)
		require.Equal(t, w.timeout, s.Timeout, s.Name)
		require.Equal(t, w.priority, s.Priority, s.Name)
		require.Equal(t, w.perm, s.Permission, s.Name)
		require.Equal(t, tasks.DefaultRetry, s.Retry, s.Name)
		require.NotNil(t, s.ParamsSchema()["properties"], s.Name)
	}
	_, ok := tasks.Lookup(tasks.TypeScheduleFire)
	require.False(t, ok, "internal types are not user-visible")
}

func TestDecodeParams(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, typ, body string
		fields          []string
	}{
		{"ok", "refresh_portfolio", `{"portfolio_id":"pf_1"}`, nil},
		{"all", "refresh_portfolio", `{"all":true}`, nil},
		{"neither", "refresh_portfolio", `{}`, []string{"params.portfolio_id"}},
		{"null params", "refresh_portfolio", `null`, []string{"params.portfolio_id"}},
		{"unknown field", "refresh_portfolio", `{"portfolio_id":"x","nope":1}`, []string{"params.nope"}},
		{"wrong type", "refresh_all_prices", `{"lookback_days":"five"}`, []string{"params.lookback_days"}},
		{"wrong list", "refresh_all_prices", `{"symbols":"AAPL"}`, []string{"params.symbols"}},
		{"missing required", "calculate_metrics", `{"window_days":10}`, []string{"params.portfolio_id"}},
		{"required blank", "calculate_metrics", `{"portfolio_id":"  "}`, []string{"params.portfolio_id"}},
		{"not an object", "send_email", `[1]`, []string{"params"}},
		{"bad email", "send_email", `{"to":["nope"],"subject":"s"}`, []string{"params.to"}},
		{"several", "send_alert", `{"channel":"fax"}`, []string{"params.message", "params.title"}},
		{"bad channel", "send_alert", `{"channel":"fax","title":"t","message":"m"}`, []string{"params.channel"}},
		{"principals on sms", "send_alert", `{"channel":"sms","title":"t","message":"m","recipients":["+15550001111"],"principals":["key_a"]}`, []string{"params.principals"}},
		{"push principals", "send_alert", `{"channel":"push","title":"t","message":"m","principals":["key_a"]}`, nil},
		{"webhook scheme", "webhook_callback", `{"url":"ftp://x"}`, []string{"params.url"}},
		{"webhook ok", "webhook_callback", `{"url":"https://example.com/h","payload":{"a":[1,2]},"secret":"s"}`, nil},
		{"webhook secret sent back as its mask", "webhook_callback", `{"url":"https://example.com/h","secret":"***"}`, []string{"params.secret"}},
		{"camel name accepted", "calculate_metrics", `{"portfolioId":"pf"}`, nil},
		{"cleanup target", "cleanup_old_data", `{"targets":["users"]}`, []string{"params.targets"}},
		{"summary needs a portfolio", "generate_reports", `{"report":"portfolio_summary"}`, []string{"params.portfolio_id"}},
		{"import ok", "import_prices", `{"upload_id":"upl_01hz3k8c2m4n5p6q7r8s9t0v1w"}`, nil},
		{"import needs an upload", "import_prices", `{}`, []string{"params.upload_id"}},
		{"import upload id shape", "import_prices", `{"upload_id":"res_01hz3k8c2m4n5p6q7r8s9t0v1w"}`, []string{"params.upload_id"}},
		{"stooq needs a symbol", "import_prices", `{"upload_id":"upl_01hz3k8c2m4n5p6q7r8s9t0v1w","format":"stooq"}`, []string{"params.symbol"}},
		{"import format", "import_prices", `{"upload_id":"upl_01hz3k8c2m4n5p6q7r8s9t0v1w","format":"xlsx"}`, []string{"params.format"}},
		{"bad ratio", "import_prices", `{"upload_id":"upl_01hz3k8c2m4n5p6q7r8s9t0v1w","max_bad_ratio":2}`, []string{"params.max_bad_ratio"}},
		{"holdings mode", "import_holdings", `{"upload_id":"upl_01hz3k8c2m4n5p6q7r8s9t0v1w","mode":"append"}`, []string{"params.mode"}},
		{"report dates", "generate_reports", `{"report":"risk","period_start":"2024-02-01","period_end":"2024-01-01"}`, []string{"params.period_end"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec, ok := tasks.Lookup(tc.typ)
			require.True(t, ok)
			msg, err := tasks.DecodeParams(spec, json.RawMessage(tc.body), "params")
			if tc.fields == nil {
				require.NoError(t, err)
				require.NotNil(t, msg)
				return
			}
			v, ok := tasks.AsValidation(err)
			require.True(t, ok, "want a validation error, got %v", err)
			var got []string
			for _, f := range v.Errors {
				got = append(got, f.Field)
			}
			require.Equal(t, tc.fields, got)
		})
	}
}

func TestDecodedParamsKeepValues(t *testing.T) {
	t.Parallel()
	spec, _ := tasks.Lookup("calculate_metrics")
	msg, err := tasks.DecodeParams(spec, json.RawMessage(`{"portfolio_id":"pf_demo_growth","window_days":60,"risk_free_rate":0.02}`), "params")
	require.NoError(t, err)
	p := msg.(*taskpb.CalculateMetricsParams)
	require.Equal(t, "pf_demo_growth", p.GetPortfolioId())
	require.EqualValues(t, 60, p.GetWindowDays())
	require.InDelta(t, 0.02, p.GetRiskFreeRate(), 1e-12)
	js, err := tasks.ParamsJSON(p)
	require.NoError(t, err)
	require.JSONEq(t, `{"portfolio_id":"pf_demo_growth","window_days":60,"risk_free_rate":0.02}`, string(js))
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	params := &taskpb.RefreshPortfolioParams{PortfolioId: "pf_1"}
	b, err := tasks.EncodeEnvelope("task_1", "refresh_portfolio", params, tasks.DefaultRetry, 600, "k1", 0)
	require.NoError(t, err)
	env, err := tasks.DecodeEnvelope(b)
	require.NoError(t, err)
	require.Equal(t, "task_1", env.GetTaskId())
	require.Equal(t, tasks.DefaultRetry, tasks.PolicyFromProto(env.GetRetryPolicy()))
	spec, msg, err := tasks.DecodeEnvelopeParams(env)
	require.NoError(t, err)
	require.Equal(t, "refresh_portfolio", spec.Name)
	require.Equal(t, "pf_1", msg.(*taskpb.RefreshPortfolioParams).GetPortfolioId())
	_, err = tasks.DecodeEnvelope([]byte("garbage"))
	require.Error(t, err)
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	p := tasks.RetryPolicy{MaxRetries: 5, RetryDelay: 60, ExponentialBackoff: true, MaxRetryDelay: 300}
	for n, want := range map[int]time.Duration{1: 60 * time.Second, 2: 120 * time.Second, 3: 240 * time.Second} {
		for i := 0; i < 50; i++ {
			d := p.Delay(n)
			require.LessOrEqual(t, d, want)
			require.GreaterOrEqual(t, d, want*9/10)
		}
	}
	require.Equal(t, 300*time.Second, p.Delay(4), "capped by max_retry_delay")
	require.Equal(t, 300*time.Second, p.Delay(1000), "no overflow")
	flat := tasks.RetryPolicy{MaxRetries: 3, RetryDelay: 7, MaxRetryDelay: 3600}
	require.Equal(t, 7*time.Second, flat.Delay(3))
	require.Empty(t, tasks.DefaultRetry.Validate("retry_policy"))
	bad := tasks.RetryPolicy{MaxRetries: -1, RetryDelay: 0, MaxRetryDelay: 10}
	require.Len(t, bad.Validate("retry_policy"), 2)
	require.Len(t, tasks.RetryPolicy{MaxRetries: 1, RetryDelay: 60, MaxRetryDelay: 10}.Validate("rp"), 1)
}

func TestStateMachine(t *testing.T) {
	t.Parallel()
	require.True(t, tasks.CanTransition("pending", "running"))
	require.True(t, tasks.CanTransition("running", "completed"))
	require.True(t, tasks.CanTransition("retrying", "running"))
	require.True(t, tasks.CanTransition("failed", "pending"))
	require.False(t, tasks.CanTransition("completed", "running"), "a late message never moves a completed task")
	require.False(t, tasks.CanTransition("completed", "cancelled"))
	require.False(t, tasks.CanTransition("cancelled", "running"))
	require.False(t, tasks.CanTransition("failed", "running"))
	require.ElementsMatch(t, []string{"pending", "running", "retrying"}, tasks.From("cancelled"))
	require.ElementsMatch(t, []string{"running"}, tasks.From("completed"))
}

func TestOverlayRetryPolicy(t *testing.T) {
	t.Parallel()
	base := tasks.RetryPolicy{MaxRetries: 3, RetryDelay: 60, MaxRetryDelay: 3600}
	tests := []struct {
		name     string
		raw      string
		want     tasks.RetryPolicy
		wantErrs []tasks.FieldError
	}{
		{name: "empty object", raw: `{}`, want: base},
		{name: "some fields", raw: `{"max_retries":5,"exponential_backoff":true}`,
			want: tasks.RetryPolicy{MaxRetries: 5, RetryDelay: 60, MaxRetryDelay: 3600, ExponentialBackoff: true}},
		{name: "every field", raw: `{"max_retries":0,"retry_delay":2,"max_retry_delay":9,"exponential_backoff":false}`,
			want: tasks.RetryPolicy{MaxRetries: 0, RetryDelay: 2, MaxRetryDelay: 9}},
		{name: "not an object", raw: `[1]`, want: base,
			wantErrs: []tasks.FieldError{{Field: "retry_policy", Message: "must be an object"}}},
		{name: "null", raw: `null`, want: base,
			wantErrs: []tasks.FieldError{{Field: "retry_policy", Message: "must be an object"}}},
		{name: "unknown field", raw: `{"max_tries":1}`, want: base,
			wantErrs: []tasks.FieldError{{Field: "retry_policy.max_tries", Message: "unknown field"}}},
		{name: "wrong integer", raw: `{"retry_delay":"soon"}`, want: base,
			wantErrs: []tasks.FieldError{{Field: "retry_policy.retry_delay", Message: "must be an integer"}}},
		{name: "wrong boolean", raw: `{"exponential_backoff":1}`, want: base,
			wantErrs: []tasks.FieldError{{Field: "retry_policy.exponential_backoff", Message: "must be a boolean"}}},
		{name: "out of range is left to Validate", raw: `{"max_retries":99}`,
			want: tasks.RetryPolicy{MaxRetries: 99, RetryDelay: 60, MaxRetryDelay: 3600}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, errs := tasks.OverlayRetryPolicy(json.RawMessage(tc.raw), base)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantErrs, errs)
		})
	}
}

// TestSensitiveFields checks the registry's sensitive params: every
// notification type's recipients (and send_email's bodies, webhook_callback's
// payload) are sensitive, the fields that tell tasks apart are not, and the
// params schema marks them.
func TestSensitiveFields(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ sensitive, plain []string }{
		tasks.TypeSendEmail:       {[]string{"to", "cc", "body_text", "body_html"}, []string{"subject", "attachments"}},
		tasks.TypeSendAlert:       {[]string{"recipients"}, []string{"channel", "title", "message", "severity"}},
		tasks.TypeGenerateDigest:  {[]string{"recipients"}, []string{"period", "date"}},
		tasks.TypeWebhookCallback: {[]string{"payload", "headers", "secret"}, []string{"url", "method"}},
	}
	for typ, c := range cases {
		spec, ok := tasks.Lookup(typ)
		require.True(t, ok, typ)
		fields := spec.NewParams().ProtoReflect().Descriptor().Fields()
		props := spec.ParamsSchema()["properties"].(map[string]any)
		for _, name := range c.sensitive {
			require.True(t, tasks.IsSensitive(fields.ByName(protoreflect.Name(name))), "%s.%s", typ, name)
			require.Equal(t, true, props[name].(map[string]any)["writeOnly"], "%s.%s", typ, name)
		}
		for _, name := range c.plain {
			require.False(t, tasks.IsSensitive(fields.ByName(protoreflect.Name(name))), "%s.%s", typ, name)
		}
	}
	spec, _ := tasks.Lookup(tasks.TypeCalculateMetrics)
	require.False(t, tasks.IsSensitive(spec.NewParams().ProtoReflect().Descriptor().Fields().ByName("portfolio_id")))
}
