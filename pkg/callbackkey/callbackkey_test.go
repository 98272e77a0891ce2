package callbackkey_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestStore holds the secrets to their principal: one is made on first need
// and kept, a sealed secret moved to another principal's row does not open,
// and with no overlap a rotation drops the old secret at once.
func TestStore(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	k, err := secret.NewKeyring(map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")}, "k1")
	require.NoError(t, err)
	s, err := callbackkey.New(pg.DB, k, -1)
	require.NoError(t, err)
	ctx := t.Context()

	first, err := s.Signing(ctx, "key_a")
	require.NoError(t, err)
	require.Len(t, first, 1)
	again, err := s.Signing(ctx, "key_a")
	require.NoError(t, err)
	require.Equal(t, first, again, "made once, then kept")
	_, err = s.Signing(ctx, "key_b")
	require.NoError(t, err)

	var sealed string
	require.NoError(t, pg.DB.Raw(`SELECT secret FROM callback_secrets WHERE principal = 'key_a'`).Scan(&sealed).Error)
	require.True(t, secret.IsSealed(sealed))
	require.NoError(t, pg.DB.Exec(`UPDATE callback_secrets SET secret = ? WHERE principal = 'key_b'`, sealed).Error)
	_, err = s.Signing(ctx, "key_b")
	require.ErrorIs(t, err, secret.ErrTampered, "a secret sealed for key_a does not open as key_b's")

	r, err := s.Rotate(ctx, "key_a")
	require.NoError(t, err)
	require.Nil(t, r.PreviousExpiresAt, "no overlap")
	key, err := notify.ParseSecret(r.Secret)
	require.NoError(t, err)
	now, err := s.Signing(ctx, "key_a")
	require.NoError(t, err)
	require.Equal(t, [][]byte{key}, now, "without an overlap only the new secret signs")
	require.WithinDuration(t, time.Now(), r.CreatedAt, time.Minute)
}
