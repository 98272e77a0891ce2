package secret

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// benchParams are the API bodies of the params path benchmark: one task of
// each kind a deployment runs most (notifications, a refresh with symbols,
// metrics, a webhook with a JSON payload).
func benchParams() map[string]json.RawMessage {
	symbols := make([]string, 50)
	for i := range symbols {
		symbols[i] = `"SYM` + strconv.Itoa(i) + `"`
	}
	return map[string]json.RawMessage{
		tasks.TypeSendEmail: json.RawMessage(`{"to":["a@example.com","b@example.com"],"cc":["c@example.com"],` +
			`"subject":"Monthly statement","body_text":"` + strings.Repeat("Your statement is attached. ", 20) + `"}`),
		tasks.TypeSendAlert:        json.RawMessage(`{"channel":"sms","title":"Disk full","message":"db-1 at 95%","recipients":["+15551234567","+15557654321"]}`),
		tasks.TypeGenerateDigest:   json.RawMessage(`{"period":"weekly","recipients":["team@example.com"]}`),
		tasks.TypeRefreshAllPrices: json.RawMessage(`{"symbols":[` + strings.Join(symbols, ",") + `],"lookback_days":5}`),
		tasks.TypeCalculateMetrics: json.RawMessage(`{"portfolio_id":"pf_01","window_days":252,"benchmark":"SPX"}`),
		tasks.TypeWebhookCallback: json.RawMessage(`{"url":"https://hooks.example/x","headers":{"Authorization":"Bearer t"},` +
			`"payload":{"event":"done","id":"task_01","amount":12.5,"tags":["a","b"]},"secret":"s3cret"}`),
	}
}

// BenchmarkParamsPath measures the params' part of a task's way from the
// API to its handler, per task: decode and validate the API's JSON, seal,
// render the row's JSON (tasks.params) and the Asynq envelope, then, as the
// worker does, decode the envelope, open and list the sensitive values it
// masks. Modes: plain (no keyring: the anchor), sensitive (the default:
// secret and sensitive fields sealed) and seal_all (crypto.seal_all_params).
// It reports the stored bytes (row JSON plus envelope) per task too. It leaves
// out what does not depend on the mode's CPU work: the PostgreSQL insert and
// the Redis enqueue (which carry the larger sealed bytes), the HTTP request,
// authentication and the handler; see scripts/bench/seal-all.sh.
func BenchmarkParamsPath(b *testing.B) {
	k, err := NewKeyring(map[string][]byte{"k1": make([]byte, 32)}, "k1")
	if err != nil {
		b.Fatal(err)
	}
	params := benchParams()
	types := make([]string, 0, len(params))
	for typ := range params {
		types = append(types, typ)
	}
	for _, mode := range []struct {
		name string
		keys *Keyring
	}{{"plain", nil}, {"sensitive", k}, {"seal_all", k.WithSealAll(true)}} {
		b.Run(mode.name, func(b *testing.B) {
			var stored, n int
			for b.Loop() {
				typ := types[n%len(types)]
				n++
				spec, _ := tasks.Lookup(typ)
				msg, err := tasks.DecodeParams(spec, params[typ], "params")
				if err != nil {
					b.Fatal(err)
				}
				keyID := ""
				if mode.keys != nil {
					if keyID, err = mode.keys.Seal(msg); err != nil {
						b.Fatal(err)
					}
				}
				row, err := tasks.ParamsJSON(msg)
				if err != nil {
					b.Fatal(err)
				}
				env, err := tasks.EncodeEnvelope("task_01", typ, msg, spec.Retry, 300, keyID, 0)
				if err != nil {
					b.Fatal(err)
				}
				stored += len(row) + len(env)

				decoded, err := tasks.DecodeEnvelope(env)
				if err != nil {
					b.Fatal(err)
				}
				_, opened, err := tasks.DecodeEnvelopeParams(decoded)
				if err != nil {
					b.Fatal(err)
				}
				if keyID != "" {
					if err := k.Open(opened); err != nil {
						b.Fatal(err)
					}
				}
				_ = SensitiveValues(opened)
			}
			b.ReportMetric(float64(stored)/float64(n), "stored-B/task")
		})
	}
}
