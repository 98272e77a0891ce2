package schedule_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// storedSecret opens a schedule's stored secret once.
func storedSecret(t *testing.T, k *secret.Keyring, params store.JSON) (sealed, plain string) {
	t.Helper()
	m := &taskpb.WebhookCallbackParams{}
	require.NoError(t, protojson.Unmarshal(params, m))
	sealed = m.GetSecret()
	require.NoError(t, k.Open(m))
	return sealed, m.GetSecret()
}

// TestSealedStore checks that a sealed store never keeps a secret param in
// clear and never seals one twice, whatever the edit, and that its fires hand
// the task service the plaintext (which seals it once for the task).
func TestSealedStore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	k, err := secret.NewKeyring(map[string][]byte{"s1": []byte(strings.Repeat("k", 32))}, "s1")
	require.NoError(t, err)
	st, err := schedule.NewSealedStore(b.pg.DB, k)
	require.NoError(t, err)
	_, err = schedule.NewSealedStore(b.pg.DB, nil)
	require.Error(t, err)

	name, cron, typ := "hook", "*/5 * * * *", tasks.TypeWebhookCallback
	s, err := st.Create(ctx, schedule.Input{Name: &name, Cron: &cron, Type: &typ,
		Params: json.RawMessage(`{"url":"https://hooks.example/a","secret":"first-secret"}`)}, "key_admin")
	require.NoError(t, err)
	require.NotContains(t, string(s.Params), "first-secret")
	row, err := st.Row(ctx, s.ID)
	require.NoError(t, err)
	sealed, plain := storedSecret(t, k, row.Params)
	require.True(t, secret.IsSealed(sealed))
	require.Equal(t, "first-secret", plain)

	// Edits that keep the params re-seal them, once.
	on := false
	_, err = st.Patch(ctx, s.ID, schedule.Input{Enabled: &on})
	require.NoError(t, err)
	row, err = st.Row(ctx, s.ID)
	require.NoError(t, err)
	_, plain = storedSecret(t, k, row.Params)
	require.Equal(t, "first-secret", plain)
	// New params are sealed; a replace too.
	_, err = st.Patch(ctx, s.ID, schedule.Input{Params: json.RawMessage(`{"url":"https://hooks.example/b","secret":"second-secret"}`)})
	require.NoError(t, err)
	row, err = st.Row(ctx, s.ID)
	require.NoError(t, err)
	require.NotContains(t, string(row.Params), "second-secret")
	_, plain = storedSecret(t, k, row.Params)
	require.Equal(t, "second-secret", plain)
	_, err = st.Replace(ctx, s.ID, schedule.Input{Name: &name, Cron: &cron, Type: &typ,
		Params: json.RawMessage(`{"url":"https://hooks.example/c","secret":"third-secret"}`)})
	require.NoError(t, err)
	row, err = st.Row(ctx, s.ID)
	require.NoError(t, err)
	require.NotContains(t, string(row.Params), "third-secret")
	_, plain = storedSecret(t, k, row.Params)
	require.Equal(t, "third-secret", plain)

	// A secret sealed under a key the keyring lacks is refused, not re-sealed.
	other, err := secret.NewKeyring(map[string][]byte{"x9": []byte(strings.Repeat("z", 32))}, "x9")
	require.NoError(t, err)
	foreign := &taskpb.WebhookCallbackParams{Url: "https://hooks.example/d", Secret: "foreign"}
	_, err = other.Seal(foreign)
	require.NoError(t, err)
	raw, err := tasks.ParamsJSON(foreign)
	require.NoError(t, err)
	_, err = st.Patch(ctx, s.ID, schedule.Input{Params: raw})
	v, ok := tasks.AsValidation(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "params", v.Errors[0].Field)

	// A fire opens the secret; the task service seals it again, once.
	on = true
	_, err = st.Patch(ctx, s.ID, schedule.Input{Enabled: &on})
	require.NoError(t, err)
	row, err = st.Row(ctx, s.ID)
	require.NoError(t, err)
	next := schedule.NextRun(row, time.Now())
	require.NotNil(t, next)
	ac := asynq.NewClient(b.rd.Opt())
	t.Cleanup(func() { _ = ac.Close() })
	svc, err := taskservice.New(b.pg.DB, ac, b.inspector, b.log, taskservice.Options{Sealer: k})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	f, err := schedule.NewFirer(b.pg.DB, svc, b.log, schedule.FireOptions{Keyring: k, Now: func() time.Time { return next.Add(time.Second) }})
	require.NoError(t, err)
	out, err := f.FireJob(ctx, s.ID)
	require.NoError(t, err)
	require.Len(t, out.Created, 1)
	require.Equal(t, "s1", out.Created[0].KeyID)
	_, plain = storedSecret(t, k, out.Created[0].Params)
	require.Equal(t, "third-secret", plain)
}
