package taskservice

import (
	"context"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// fuzzService is a Service that can only prepare rows: its estimates are
// cached for every type, so prepare needs no database.
func fuzzService() *Service {
	est := newEstimator(nil, 50, 1000*time.Hour)
	for _, spec := range tasks.All() {
		est.cache[spec.Name] = estimate{seconds: spec.EstimatedDuration, at: time.Now()}
	}
	return &Service{log: zap.NewNop(), opts: Options{CheckURL: egress.CheckURL}, estimates: est}
}

// FuzzPrepare feeds arbitrary create requests to the validation that runs
// before a row is written. A refusal is always a ValidationError (the API's
// 422); an accepted request yields a row whose type, priority, timeout and
// idempotency key are within their rules, whose stored params decode back to
// the validated message, whose callback passes the egress check, and whose
// request hash is the same for the same request.
func FuzzPrepare(f *testing.F) {
	f.Add("refresh_portfolio", []byte(`{"portfolio_id":"pf_1"}`), "high", 0, "", "")
	s := fuzzService()
	f.Fuzz(func(t *testing.T, typ string, params []byte, priority string, timeout int, callback, idem string) {
		req := CreateRequest{Type: typ, Params: json.RawMessage(params), Priority: priority,
			CallbackURL: callback, IdempotencyKey: idem, CreatedBy: "u1"}
		if timeout != 0 {
			req.TimeoutSeconds = &timeout
		}
		ctx := context.Background()
		row, msg, spec, err := s.prepare(ctx, req)
		if err != nil {
			if _, ok := tasks.AsValidation(err); !ok {
				t.Fatalf("refusal is not a ValidationError: %v", err)
			}
			return
		}
		switch {
		case row.Type != spec.Name || spec.Name != typ:
			t.Fatalf("type %q became %q", typ, row.Type)
		case !queue.ValidPriority(row.Priority):
			t.Fatalf("accepted priority %q", row.Priority)
		case row.TimeoutSeconds < 1 || row.TimeoutSeconds > MaxTimeoutSeconds:
			t.Fatalf("accepted timeout %d", row.TimeoutSeconds)
		case row.IdempotencyKey != nil && len(*row.IdempotencyKey) > MaxIdempotencyKey:
			t.Fatalf("accepted an idempotency key of %d bytes", len(*row.IdempotencyKey))
		case row.RequestHash == "":
			t.Fatal("no request hash")
		}
		if callback != "" {
			if err := egress.CheckURL(callback); err != nil {
				t.Fatalf("accepted callback url that the guard refuses: %v", err)
			}
		}
		stored, err := tasks.DecodeParams(spec, json.RawMessage(row.Params), "params")
		if err != nil {
			t.Fatalf("stored params %s are refused: %v", row.Params, err)
		}
		if !proto.Equal(stored, msg) {
			t.Fatalf("stored params %v differ from validated %v", stored, msg)
		}
		again, _, _, err := s.prepare(ctx, req)
		if err != nil || again.RequestHash != row.RequestHash {
			t.Fatalf("same request: hash %q then %q (err %v)", row.RequestHash, again.RequestHash, err)
		}
	})
}

// FuzzDecodeCursor feeds arbitrary strings to the list cursor decoder. It
// accepts only what encodeCursor produces: an accepted cursor names the
// listing's sort and a row id and encodes back to the very same string.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(cursor{Sort: "-created_at", At: time.Date(2024, 5, 1, 10, 0, 0, 123456000, time.UTC), ID: "task_01hz"}), "-created_at")
	f.Fuzz(func(t *testing.T, s, sort string) {
		c, err := decodeCursor(s, sort)
		if err != nil {
			if _, ok := err.(*InvalidQueryError); !ok {
				t.Fatalf("refusal is not an InvalidQueryError: %v", err)
			}
			return
		}
		if c.ID == "" || c.Sort != sort {
			t.Fatalf("accepted cursor %+v for sort %q", c, sort)
		}
		if again := encodeCursor(c); again != s {
			t.Fatalf("accepted %q, which the encoder writes as %q", s, again)
		}
	})
}

// FuzzCursorRoundTrip checks the other direction: every cursor the encoder
// writes for a page decodes to the same position.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Add("-created_at", int64(1714557600123456), "task_01hzabcdefghjkmnpqrstvwxyz")
	f.Fuzz(func(t *testing.T, sort string, micros int64, id string) {
		// Sorts and ids are ASCII (the sort is validated first, ids are
		// generated); JSON cannot carry invalid UTF-8 through.
		if id == "" || !utf8.ValidString(id) || !utf8.ValidString(sort) || micros < 0 || micros > 253402300799999999 { // year 9999
			return
		}
		at := time.UnixMicro(micros).UTC()
		in := cursor{Sort: sort, At: at, ID: id}
		if b, _ := json.Marshal(in); len(b) > 512 {
			return // Over the decoder's size bound; listings never issue such ids.
		}
		s := encodeCursor(in)
		out, err := decodeCursor(s, sort)
		if err != nil {
			t.Fatalf("encoded cursor %q is refused: %v", s, err)
		}
		if out.Sort != in.Sort || out.ID != in.ID || !out.At.Equal(in.At) {
			t.Fatalf("cursor %+v came back as %+v", in, out)
		}
	})
}
