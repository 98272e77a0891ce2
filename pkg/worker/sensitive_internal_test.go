package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// TestMasker checks that a task's sensitive param values never reach what its
// attempt writes: log messages and fields (the registry's log keys too),
// progress text, the result and the error, whose kind survives.
func TestMasker(t *testing.T) {
	t.Parallel()
	const canary = "CANARY-mask-7f3e"
	spec, ok := tasks.Lookup(tasks.TypeSendEmail)
	require.True(t, ok)
	m := newMasker(spec, &taskpb.SendEmailParams{
		To: []string{canary + "@to.example"}, Subject: "kept", BodyText: `say "` + canary + `"`,
	})
	require.NotNil(t, m)

	require.Equal(t, "sent to "+secret.Redacted, m.text("sent to "+canary+"@to.example"))
	require.Equal(t, "kept", m.text("kept"), "a field that is not sensitive is not masked")

	fields := m.fields(fieldsJSON(map[string]any{"to": "someone@else.example", "note": "for " + canary + "@to.example", "n": 2}))
	require.JSONEq(t, `{"to":"***","note":"for ***","n":2}`, fields)
	quoted := m.fields(fieldsJSON(map[string]any{"body": `say "` + canary + `"`}))
	require.NotContains(t, quoted, canary, "the JSON-escaped form is masked too")

	res := m.result([]byte(`{"recipients":1,"first":"` + canary + `@to.example"}`))
	require.JSONEq(t, `{"recipients":1,"first":"***"}`, string(res))

	err := m.error(job.Permanent(fmt.Errorf("smtp: 550 no mailbox %s@to.example", canary)))
	require.NotContains(t, err.Error(), canary)
	require.True(t, job.IsPermanent(err), "the error stays permanent")
	plain := errors.New("dial tcp: refused")
	require.Equal(t, plain, m.error(plain))

	var none *masker
	require.Equal(t, canary, none.text(canary), "a nil masker masks nothing")
}
