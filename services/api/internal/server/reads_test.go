package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
)

// TestAdminReadsOfOthersAreAudited is finding 7's fix for reads: an admin
// reading another caller's task, its logs and its result leaves
// admin.override rows naming the read and the owner (aggregated per minute:
// reading twice counts twice in one row); an admin's reads of its own tasks
// and an owner's reads leave none.
func TestAdminReadsOfOthersAreAudited(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap})
	code, body, _ := b.call(t, http.MethodPost, "/api/v1/api-keys", testBootstrap, `{"name":"op","role":"operator"}`)
	require.Equal(t, http.StatusCreated, code, body)
	var key struct{ ID, Key string }
	require.NoError(t, json.Unmarshal([]byte(body), &key))
	create := func(token string) string {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/tasks", token, `{"type":"refresh_all_prices"}`)
		require.Equal(t, http.StatusCreated, code, body)
		var task struct {
			TaskID string `json:"task_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &task))
		return task.TaskID
	}
	theirs, mine := create(key.Key), create(testBootstrap)

	for _, path := range []string{"", "/logs", "/result"} {
		b.call(t, http.MethodGet, "/api/v1/tasks/"+theirs+path, key.Key, "")
		b.call(t, http.MethodGet, "/api/v1/tasks/"+mine+path, testBootstrap, "")
	}
	for range 2 {
		code, _, _ = b.call(t, http.MethodGet, "/api/v1/tasks/"+theirs, testBootstrap, "")
		require.Equal(t, http.StatusOK, code)
	}
	code, _, _ = b.call(t, http.MethodGet, "/api/v1/tasks/"+theirs+"/logs", testBootstrap, "")
	require.Equal(t, http.StatusOK, code)
	b.call(t, http.MethodGet, "/api/v1/tasks/"+theirs+"/result", testBootstrap, "") // 404 until a result exists

	reads := map[string]int{}
	for _, r := range auditRows(t, b, audit.ActionAdminOverride) {
		var d map[string]any
		require.NoError(t, json.Unmarshal(r.Details, &d))
		require.Equal(t, theirs, r.ResourceID, "only another caller's task")
		require.Equal(t, auth.BootstrapPrincipalID, r.Actor)
		require.Equal(t, key.ID, d["owner"])
		reads[d["action"].(string)] += r.Count
	}
	require.Equal(t, 2, reads[readTask], "%v", reads)
	require.Equal(t, 1, reads[readLogs], "%v", reads)
	require.Zero(t, reads[readResult], "a 404 read is no read")
}

// TestAuditPurgeBelowMinimumIs422 reproduces finding 7's purge: an admin's
// cleanup_old_data that would prune the audit log below retention.audit_min
// (365 days by default) is refused with 422 naming older_than_days.
func TestAuditPurgeBelowMinimumIs422(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, params := range []string{
		`{"targets":["audit"],"older_than_days":1}`,
		`{"older_than_days":30}`,
		`{"targets":["tasks","audit"],"older_than_days":364}`,
	} {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/tasks", tokAdmin, `{"type":"cleanup_old_data","params":`+params+`}`)
		require.Equal(t, http.StatusUnprocessableEntity, code, "%s: %s", params, body)
		require.Contains(t, body, `"field":"params.older_than_days"`)
		require.Contains(t, body, "retention.audit_min")
	}
	for _, params := range []string{
		`{"targets":["audit"],"older_than_days":365}`,
		`{"targets":["tasks"],"older_than_days":1}`,
		`{"targets":["audit"],"older_than_days":1,"dry_run":true}`,
		`{}`,
	} {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/tasks", tokAdmin, `{"type":"cleanup_old_data","params":`+params+`}`)
		require.Equal(t, http.StatusCreated, code, "%s: %s", params, body)
	}
}
