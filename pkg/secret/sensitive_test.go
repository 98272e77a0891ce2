package secret

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// notificationCanaries returns one params message per notification type with
// the canary in each sensitive field, and what a field that is not sensitive
// holds.
func notificationCanaries() map[string]proto.Message {
	c := canary
	return map[string]proto.Message{
		tasks.TypeSendEmail: &taskpb.SendEmailParams{
			To: []string{c + "@to.example"}, Cc: []string{c + "@cc.example"}, Subject: "Monthly statement",
			BodyText: "Dear " + c, BodyHtml: "<p>" + c + "</p>",
		},
		tasks.TypeSendAlert: &taskpb.SendAlertParams{
			Channel: "sms", Title: "Disk full", Message: "db-1 at 95%", Recipients: []string{"+1555" + c},
		},
		tasks.TypeGenerateDigest: &taskpb.GenerateDigestParams{Period: "daily", Recipients: []string{c + "@digest.example"}},
		tasks.TypeWebhookCallback: &taskpb.WebhookCallbackParams{
			Url: "https://hooks.example/x",
			Payload: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				"email": structpb.NewStringValue(c), "amount": structpb.NewNumberValue(12.5), "ok": structpb.NewBoolValue(true),
			}}),
		},
	}
}

// TestSensitiveParams checks every notification type's registry-declared
// sensitive fields: sealed by Seal in both stored forms (binary, JSON), opened
// by Open to the original, masked by RedactJSON whether sealed or not, and
// listed by SensitiveValues; fields not declared (subject, title, channel)
// stay readable.
func TestSensitiveParams(t *testing.T) {
	t.Parallel()
	k := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	for typ, orig := range notificationCanaries() {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, strings.Join(SensitiveValues(orig), " "), canary)
			msg := proto.Clone(orig)
			keyID, err := k.Seal(msg)
			require.NoError(t, err)
			require.Equal(t, "k1", keyID, "a sensitive field makes the params sealed")
			bin, err := proto.Marshal(msg)
			require.NoError(t, err)
			require.NotContains(t, string(bin), canary)
			js, err := tasks.ParamsJSON(msg)
			require.NoError(t, err)
			require.NotContains(t, string(js), canary)
			require.Contains(t, string(js), "enc:v1:k1:")

			for _, in := range []json.RawMessage{js, mustJSON(t, orig)} {
				shown := RedactJSON(typ, in)
				require.NotContains(t, string(shown), canary)
				require.NotContains(t, string(shown), "enc:v1")
				require.Contains(t, string(shown), Redacted)
			}

			opened := proto.Clone(msg)
			require.NoError(t, k.Open(opened))
			require.True(t, proto.Equal(orig, opened), "opened: %v", opened)
		})
	}

	// What is not sensitive reads as it was.
	var alert map[string]any
	require.NoError(t, json.Unmarshal(RedactJSON(tasks.TypeSendAlert, mustJSON(t, notificationCanaries()[tasks.TypeSendAlert])), &alert))
	require.Equal(t, "Disk full", alert["title"])
	require.Equal(t, "sms", alert["channel"])
	require.Equal(t, []any{Redacted}, alert["recipients"])
	var hook map[string]any
	require.NoError(t, json.Unmarshal(RedactJSON(tasks.TypeWebhookCallback, mustJSON(t, notificationCanaries()[tasks.TypeWebhookCallback])), &hook))
	require.Equal(t, map[string]any{"email": Redacted, "amount": Redacted, "ok": Redacted}, hook["payload"],
		"every value of the payload is masked, numbers and booleans too")
}

// TestSealAll checks crypto.seal_all_params: every string of a type without
// sensitive fields is sealed (refresh_portfolio's portfolio_id), a keyring
// that does not seal all still opens it, and the API's redaction never shows
// the ciphertext.
func TestSealAll(t *testing.T) {
	t.Parallel()
	base := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	all := base.WithSealAll(true)
	require.True(t, all.SealsAll())
	require.False(t, base.SealsAll(), "WithSealAll returns a copy")

	orig := &taskpb.CalculateMetricsParams{PortfolioId: canary, Benchmark: "SPX", WindowDays: 30}
	plain := proto.Clone(orig)
	keyID, err := base.Seal(plain)
	require.NoError(t, err)
	require.Empty(t, keyID, "without seal_all nothing of calculate_metrics is sealed")
	require.Equal(t, canary, plain.(*taskpb.CalculateMetricsParams).GetPortfolioId())

	sealed := proto.Clone(orig)
	keyID, err = all.Seal(sealed)
	require.NoError(t, err)
	require.Equal(t, "k1", keyID)
	got := sealed.(*taskpb.CalculateMetricsParams)
	require.True(t, IsSealed(got.GetPortfolioId()))
	require.True(t, IsSealed(got.GetBenchmark()))
	require.Equal(t, int32(30), got.GetWindowDays(), "numbers stay as they are")

	shown := RedactJSON(tasks.TypeCalculateMetrics, mustJSON(t, sealed))
	require.NotContains(t, string(shown), "enc:v1")
	require.NotContains(t, string(shown), canary)

	opened := proto.Clone(sealed)
	require.NoError(t, base.Open(opened), "a keyring without seal_all opens what one with it sealed")
	require.True(t, proto.Equal(orig, opened))

	// A caller's own text that merely looks sealed, in a field that is not
	// sensitive, is left alone rather than failing the task.
	lookalike := &taskpb.CalculateMetricsParams{PortfolioId: "enc:v1:k1:not-really"}
	require.NoError(t, base.Open(lookalike))
	require.Equal(t, "enc:v1:k1:not-really", lookalike.GetPortfolioId())

	k, err := FromConfig(config.CryptoConfig{SealAllParams: true}, true)
	require.NoError(t, err)
	require.True(t, k.SealsAll(), "crypto.seal_all_params reaches the keyring")
}

func mustJSON(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := tasks.ParamsJSON(m)
	require.NoError(t, err)
	return b
}
