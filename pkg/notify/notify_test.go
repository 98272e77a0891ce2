package notify_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
)

func TestConfigsMaskSecretsWhenPrinted(t *testing.T) {
	t.Parallel()

	configs := []any{
		notify.MailConfig{Host: "smtp.example.test", Username: "u", Password: "s3cr3t"},
		notify.SMSConfig{AccountSID: "AC1", AuthToken: "s3cr3t"},
		notify.PushConfig{URL: "https://push.example.test", Token: "s3cr3t"},
	}
	for _, c := range configs {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(verb, c)
			require.NotContains(t, out, "s3cr3t", verb)
			require.Contains(t, out, "[redacted]", verb)
		}
	}
}
