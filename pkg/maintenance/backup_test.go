package maintenance_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// checksums returns, per table, the row count and an md5 of all rows' text
// forms in a fixed order.
func checksums(t *testing.T, b bundle, tables []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range tables {
		var n int64
		var sum *string
		require.NoError(t, b.pg.SQL.QueryRow(fmt.Sprintf(
			`SELECT count(*), md5(string_agg(x::text, E'\n' ORDER BY x::text)) FROM public.%q x`, table)).Scan(&n, &sum))
		s := ""
		if sum != nil {
			s = *sum
		}
		out[table] = fmt.Sprintf("%d:%s", n, s)
	}
	return out
}

// seedBackup fills the project's tables with awkward values: quotes, tabs,
// newlines, backslashes, unicode, NULLs, JSON and timestamps.
func seedBackup(t *testing.T, b bundle) {
	t.Helper()
	b.domain(t, 30)
	for i := 0; i < 25; i++ {
		b.task(t, id("task", i), "refresh_portfolio", []string{"completed", "failed", "pending"}[i%3], time.Duration(i)*time.Hour)
		b.logLine(t, id("task", i), time.Minute)
	}
	require.NoError(t, lifecycletest.Force(b.db, "task_001", `result = ?, messages = ?, current_step = ?`,
		`{"note":"tab\there","q":"\"quoted\"","nl":"a\nb","bs":"c:\\dir","u":"é€😀"}`,
		`["one","two\\three"]`, "step\twith\ttabs\nand\\ newline"))
	b.exec(t, `INSERT INTO task_logs (task_id, level, message, fields) VALUES ('task_002', 'warn', E'back\\slash \\N not null\r\n', '{"k": null}')`)
	b.exec(t, `INSERT INTO audit_log (action, outcome, details) VALUES ('tasks.create', 'success', '{"x": [1, 2.5, "y"]}')`)
	b.task(t, "task_backup", "backup_data", "running", 0)
}

func TestBackupAndRestore(t *testing.T) {
	t.Parallel()
	for _, format := range []string{maintenance.FormatJSONL, maintenance.FormatPGDump} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			seedBackup(t, b)
			tables, err := maintenance.ProjectTables(b.db)
			require.NoError(t, err)
			before := checksums(t, b, tables)

			rec := &job.Recorder{ID: "task_backup"}
			h := maintenance.NewBackup(b.db, b.pg.URL, b.results, "http://api.test/")
			require.NoError(t, h(b.ctx, rec, &taskpb.BackupDataParams{Format: format}))
			res := decode[maintenance.BackupResult](t, rec)
			require.Equal(t, format, res.Format)
			require.Equal(t, "http://api.test/api/v1/tasks/task_backup/result", res.DownloadURL)
			require.EqualValues(t, 26, res.Tables["tasks"])
			require.EqualValues(t, 26, res.Tables["task_logs"])
			require.EqualValues(t, 90, res.Tables["prices"])
			require.Positive(t, res.MigrationVersion)
			require.Equal(t, 1.0, rec.Fraction())

			// The stored file is what the result describes.
			stored, err := b.results.Get(b.ctx, res.ResultID)
			require.NoError(t, err)
			rc, err := b.results.Open(b.ctx, stored)
			require.NoError(t, err)
			archive, err := io.ReadAll(rc)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			sum := sha256.Sum256(archive)
			require.Equal(t, res.SHA256, hex.EncodeToString(sum[:]))
			require.EqualValues(t, len(archive), res.Size)
			if format == maintenance.FormatPGDump {
				require.True(t, bytes.HasPrefix(archive, []byte("PGDMP")))
			} else {
				require.True(t, bytes.HasPrefix(archive, []byte{0x1f, 0x8b}))
			}

			// Empty every table, restore, compare.
			quoted := make([]string, len(tables))
			for i, tb := range tables {
				quoted[i] = fmt.Sprintf("public.%q", tb)
			}
			// RESTART IDENTITY resets the sequences: the restore must move them on.
			b.exec(t, `TRUNCATE `+strings.Join(quoted, ", ")+` RESTART IDENTITY`)
			require.Zero(t, b.count(t, `SELECT count(*) FROM tasks`))
			rep, err := maintenance.Restore(b.ctx, b.db, bytes.NewReader(archive), maintenance.RestoreOptions{DatabaseURL: b.pg.URL})
			require.NoError(t, err)
			require.Equal(t, format, rep.Format)
			require.EqualValues(t, 26, rep.Tables["tasks"])
			after := checksums(t, b, tables)
			for _, tb := range tables {
				if tb == "results" {
					// The backup's own result row was written after the snapshot.
					continue
				}
				require.Equal(t, before[tb], after[tb], "table %s", tb)
			}

			// Sequences continue past the restored ids.
			b.exec(t, `INSERT INTO task_logs (task_id, level, message) VALUES ('task_003', 'info', 'after restore')`)
			b.exec(t, `INSERT INTO audit_log (action, outcome) VALUES ('after', 'success')`)

			// A second restore over existing rows fails and changes nothing;
			// with clean it replaces them.
			mid := checksums(t, b, tables)
			_, err = maintenance.Restore(b.ctx, b.db, bytes.NewReader(archive), maintenance.RestoreOptions{DatabaseURL: b.pg.URL})
			require.Error(t, err)
			require.Equal(t, mid, checksums(t, b, tables))
			_, err = maintenance.Restore(b.ctx, b.db, bytes.NewReader(archive), maintenance.RestoreOptions{DatabaseURL: b.pg.URL, Clean: true})
			require.NoError(t, err)
			again := checksums(t, b, tables)
			for _, tb := range tables {
				if tb != "results" {
					require.Equal(t, before[tb], again[tb], "table %s", tb)
				}
			}
		})
	}
}

func TestBackupSubsetAndCommand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seedBackup(t, b)
	rec := &job.Recorder{ID: "task_backup"}
	// Child first: the archive still loads parents first.
	h := maintenance.NewBackup(b.db, b.pg.URL, b.results, "")
	require.NoError(t, h(b.ctx, rec, &taskpb.BackupDataParams{Tables: []string{"prices", "assets"}, Format: "jsonl"}))
	res := decode[maintenance.BackupResult](t, rec)
	require.Len(t, res.Tables, 2)
	before := checksums(t, b, []string{"assets", "prices"})

	b.exec(t, `DELETE FROM prices`)
	b.exec(t, `INSERT INTO prices (asset_symbol, date, open, high, low, close) VALUES ('AAA', '2000-01-03', 1, 1, 1, 1)`)
	var out bytes.Buffer
	err := maintenance.RestoreCommand(b.ctx, []string{"--result", res.ResultID}, b.db, b.pg.URL, b.results, &out)
	require.Error(t, err, "assets still hold rows: restoring without --clean must fail")
	// --clean cannot empty assets while holdings reference them: the restore
	// fails as a whole and the database is unchanged.
	err = maintenance.RestoreCommand(b.ctx, []string{"--result", res.ResultID, "--clean"}, b.db, b.pg.URL, b.results, &out)
	require.ErrorContains(t, err, "truncate")
	require.EqualValues(t, 1, b.count(t, `SELECT count(*) FROM prices`))

	require.Error(t, maintenance.RestoreCommand(b.ctx, nil, b.db, b.pg.URL, b.results, &out))
	require.Error(t, maintenance.RestoreCommand(b.ctx, []string{"--file", "x", "--result", "y"}, b.db, b.pg.URL, b.results, &out))

	// A leaf table (nothing references prices) restores with --clean, here
	// from a file.
	rec = &job.Recorder{ID: "task_backup"}
	require.NoError(t, h(b.ctx, rec, &taskpb.BackupDataParams{Tables: []string{"prices"}}))
	leaf := decode[maintenance.BackupResult](t, rec)
	wantPrices := checksums(t, b, []string{"prices"})
	b.exec(t, `UPDATE prices SET volume = volume + 1`)
	stored, err := b.results.Get(b.ctx, leaf.ResultID)
	require.NoError(t, err)
	rc, err := b.results.Open(b.ctx, stored)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "backup.dump")
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = io.Copy(f, rc)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, rc.Close())
	out.Reset()
	require.NoError(t, maintenance.RestoreCommand(b.ctx, []string{"--file", path, "--clean"}, b.db, b.pg.URL, b.results, &out))
	require.Contains(t, out.String(), `"prices": 1`)
	require.Equal(t, wantPrices, checksums(t, b, []string{"prices"}))
	require.NotEqual(t, before["prices"], wantPrices["prices"])

	// Unknown tables are refused before anything runs.
	err = h(b.ctx, &job.Recorder{ID: "task_backup"}, &taskpb.BackupDataParams{Tables: []string{"nope"}})
	require.ErrorIs(t, err, maintenance.ErrUnknownTable)
	require.True(t, job.IsPermanent(err))
}

func TestRestoreRefusesGarbage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := maintenance.Restore(context.Background(), b.db, strings.NewReader("hello"), maintenance.RestoreOptions{})
	require.ErrorIs(t, err, maintenance.ErrBadArchive)
}
