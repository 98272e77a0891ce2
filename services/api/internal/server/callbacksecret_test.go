package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
)

// TestRotateCallbackSecret rotates through the generated client: each caller
// gets its own secret, shown once; an admin's rotation replaces the admin's
// secret only and never shows or changes an operator's; the old secret keeps
// signing during the overlap; the audit row names the principal, not the
// secret.
func TestRotateCallbackSecret(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	rotate := func(token string) []byte {
		t.Helper()
		resp, err := b.client(t, token).RotateCallbackSecretWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
		require.Equal(t, "no-store", resp.HTTPResponse.Header.Get("Cache-Control"))
		key, err := notify.ParseSecret(resp.JSON200.Secret)
		require.NoError(t, err)
		require.Regexp(t, `^whsec_`, resp.JSON200.Secret)
		return key
	}
	op := rotate(tokOp)
	admin := rotate(tokAdmin)
	require.NotEqual(t, op, admin)
	signing, err := b.callbackKeys.Signing(ctx, "key_op")
	require.NoError(t, err)
	require.Equal(t, [][]byte{op}, signing, "the admin's rotation left the operator's secret alone")

	op2 := rotate(tokOp)
	signing, err = b.callbackKeys.Signing(ctx, "key_op")
	require.NoError(t, err)
	require.Equal(t, [][]byte{op2, op}, signing, "during the overlap both sign, the new one first")

	var rows []store.AuditEntry
	require.NoError(t, b.pg.DB.Where("action = ?", actionCallbackSecretRotate).Order("id").Find(&rows).Error)
	require.Len(t, rows, 3)
	require.Equal(t, "key_op", rows[0].ResourceID)
	require.Equal(t, "key_admin", rows[1].ResourceID)
	var sealed []string
	require.NoError(t, b.pg.DB.Model(&store.CallbackSecret{}).Pluck("secret", &sealed).Error)
	for _, s := range sealed {
		require.NotContains(t, s, notify.FormatSecret(op2)[6:], "stored sealed, never in clear")
	}
}
