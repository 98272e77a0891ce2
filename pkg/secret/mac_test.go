package secret_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// The keyring is the task service's Sealer. The assertion lives in the
// external test package: the task service imports this package to redact.
var _ taskservice.Sealer = (*secret.Keyring)(nil)

// TestMAC checks the keyed digest: stable for one active key, different under
// another key, and not the plain SHA-256 anyone could compute offline.
func TestMAC(t *testing.T) {
	t.Parallel()
	k1, err := secret.NewKeyring(map[string][]byte{"a": bytes.Repeat([]byte{1}, 32)}, "a")
	require.NoError(t, err)
	again, err := secret.NewKeyring(map[string][]byte{"a": bytes.Repeat([]byte{1}, 32), "b": bytes.Repeat([]byte{2}, 32)}, "a")
	require.NoError(t, err)
	k2, err := secret.NewKeyring(map[string][]byte{"a": bytes.Repeat([]byte{1}, 32), "b": bytes.Repeat([]byte{2}, 32)}, "b")
	require.NoError(t, err)
	data := []byte("webhook_callback\x00password123")
	require.Len(t, k1.MAC(data), sha256.Size)
	require.Equal(t, k1.MAC(data), again.MAC(data), "same active key, same digest")
	require.NotEqual(t, k1.MAC(data), k2.MAC(data), "another active key, another digest")
	require.NotEqual(t, k1.MAC(data), k1.MAC([]byte("webhook_callback\x00password124")))
	sum := sha256.Sum256(data)
	require.NotEqual(t, sum[:], k1.MAC(data))
}
