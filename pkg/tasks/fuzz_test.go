package tasks_test

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// FuzzDecodeParams feeds arbitrary JSON to every task type's params decoder.
// An error is always a ValidationError naming fields under the prefix, and
// accepted params round-trip: their stored JSON form decodes to the same
// message, so what the API stores is what a worker reads back.
func FuzzDecodeParams(f *testing.F) {
	f.Add("refresh_portfolio", []byte(`{"portfolio_id":"pf_1"}`))
	f.Fuzz(func(t *testing.T, typ string, raw []byte) {
		spec, ok := tasks.LookupAny(typ)
		if !ok {
			return
		}
		msg, err := tasks.DecodeParams(spec, json.RawMessage(raw), "params")
		if err != nil {
			v, ok := tasks.AsValidation(err)
			if !ok {
				t.Fatalf("error is not a ValidationError: %v", err)
			}
			if len(v.Errors) == 0 {
				t.Fatal("ValidationError without field errors")
			}
			for _, fe := range v.Errors {
				if fe.Field != "params" && !strings.HasPrefix(fe.Field, "params.") {
					t.Fatalf("field %q is not under the prefix", fe.Field)
				}
			}
			return
		}
		if msg == nil {
			t.Fatal("no error and no message")
		}
		stored, err := tasks.ParamsJSON(msg)
		if err != nil {
			t.Fatalf("accepted params do not render: %v", err)
		}
		again, err := tasks.DecodeParams(spec, stored, "params")
		if err != nil {
			t.Fatalf("stored form %s of accepted params is refused: %v", stored, err)
		}
		if !proto.Equal(msg, again) {
			t.Fatalf("round trip changed the params: %v != %v", msg, again)
		}
	})
}
