package taskservice

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// TestCallbackURLHasItsOwnCheck checks that callback_url is vetted by
// CheckCallbackURL (the callbacks allow-list) and webhook URLs by CheckURL
// (the webhooks allow-list), and that CheckURL covers both when
// CheckCallbackURL is unset.
func TestCallbackURLHasItsOwnCheck(t *testing.T) {
	t.Parallel()
	refuse := func(string) error { return errors.New("refused") }
	accept := func(string) error { return nil }
	req := CreateRequest{Type: tasks.TypeWebhookCallback, Params: json.RawMessage(`{"url":"https://hooks.example.com/x"}`),
		CallbackURL: "https://cb.example.com/done"}
	fields := func(s *Service) []string {
		_, _, _, err := s.prepare(context.Background(), req)
		if err == nil {
			return nil
		}
		v, ok := tasks.AsValidation(err)
		require.True(t, ok, "%v", err)
		var out []string
		for _, f := range v.Errors {
			out = append(out, f.Field)
		}
		return out
	}

	s := fuzzService()
	s.opts.CheckURL, s.opts.CheckCallbackURL = refuse, accept
	require.Equal(t, []string{"params.url"}, fields(s))

	s.opts.CheckURL, s.opts.CheckCallbackURL = accept, refuse
	require.Equal(t, []string{"callback_url"}, fields(s))

	s.opts.CheckURL, s.opts.CheckCallbackURL = refuse, nil
	require.Equal(t, []string{"params.url", "callback_url"}, fields(s))
}
