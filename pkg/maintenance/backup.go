package maintenance

import (
	"bufio"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// Backup formats.
const (
	FormatPGDump = "pg_dump"
	FormatJSONL  = "jsonl"
)

// ErrNoPGDump is returned when format pg_dump is asked for and no pg_dump of
// the server's major version or newer is installed.
var ErrNoPGDump = errors.New("pg_dump not available")

// jsonlVersion is the version of the JSON-lines archive layout.
const jsonlVersion = 1

// BackupResult is backup_data's result.
type BackupResult struct {
	Format string `json:"format"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Tables maps each table to the rows archived (one consistent snapshot).
	Tables map[string]int64 `json:"tables"`
	// MigrationVersion is the schema version the archive restores into.
	MigrationVersion int64  `json:"migration_version"`
	ResultID         string `json:"result_id"`
	// DownloadURL is the task's result route, which redirects to a fresh signed
	// link.
	DownloadURL string    `json:"download_url"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// archiveHeader is the first line of a JSON-lines archive.
type archiveHeader struct {
	Backup           int       `json:"taskforge_backup"`
	CreatedAt        time.Time `json:"created_at"`
	MigrationVersion int64     `json:"migration_version"`
	Tables           []string  `json:"tables"`
}

// tableHeader starts a table's rows in a JSON-lines archive.
type tableHeader struct {
	Table   string   `json:"table"`
	Columns []column `json:"columns"`
}

// tableEnd closes a table's rows with their count, so that a truncated
// archive is detected.
type tableEnd struct {
	End  string `json:"end"`
	Rows int64  `json:"rows"`
}

type column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// NewBackup returns the backup_data handler. The archive streams into result
// storage: a pg_dump custom-format data archive when pg_dump is installed (or
// asked for), else a gzip JSON-lines export. Both hold the tables' rows as of
// one snapshot, in foreign-key order, and restore with Restore into a database
// migrated to the same version.
func NewBackup(db *gorm.DB, databaseURL string, results *result.Store, publicURL string) func(context.Context, job.Reporter, *taskpb.BackupDataParams) error {
	return func(ctx context.Context, r job.Reporter, p *taskpb.BackupDataParams) error {
		if results == nil {
			return job.Permanent(errors.New("maintenance: backup needs result storage"))
		}
		sdb, err := sqlDB(db)
		if err != nil {
			return err
		}
		format := p.GetFormat()
		if format != "" && format != FormatPGDump && format != FormatJSONL {
			return job.Permanent(fmt.Errorf("maintenance: backup format %q is not pg_dump or jsonl", format))
		}
		tables, err := resolveTables(ctx, db, sdb, p.GetTables())
		if err != nil {
			return err
		}
		if tables, err = fkOrder(ctx, sdb, tables); err != nil {
			return err
		}
		var pgDump string
		if format != FormatJSONL {
			major, err := serverMajor(ctx, sdb)
			if err != nil {
				return err
			}
			pgDump = findPGTool(ctx, "pg_dump", major)
			switch {
			case pgDump == "" && format == FormatPGDump:
				return job.Permanent(fmt.Errorf("maintenance: %w (server major version %d)", ErrNoPGDump, major))
			case pgDump == "":
				format = FormatJSONL
				r.Log(job.Info, "pg_dump not found; writing a JSON-lines archive", map[string]any{"server_major": major})
			default:
				format = FormatPGDump
			}
		}
		r.Progress(0.05, "snapshot", fmt.Sprintf("backing up %d tables as %s", len(tables), format))

		// One REPEATABLE READ transaction gives the row counts and, exported,
		// pg_dump's snapshot or the JSON-lines export's reads.
		conn, err := sdb.Conn(ctx)
		if err != nil {
			return fmt.Errorf("maintenance: backup: %w", store.Translate(err))
		}
		defer conn.Close()
		tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
		if err != nil {
			return fmt.Errorf("maintenance: backup: %w", store.Translate(err))
		}
		defer tx.Rollback() //nolint:errcheck // read-only
		version, err := migrationVersion(ctx, tx)
		if err != nil {
			return err
		}
		counts := map[string]int64{}
		for _, t := range tables {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+quote(t)).Scan(&n); err != nil {
				return fmt.Errorf("maintenance: backup: count %s: %w", t, store.Translate(err))
			}
			counts[t] = n
		}

		stamp := time.Now().UTC().Format("20060102-150405")
		var res result.Result
		if format == FormatPGDump {
			var snapshot string
			if err := tx.QueryRowContext(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot); err != nil {
				return fmt.Errorf("maintenance: backup: export snapshot: %w", store.Translate(err))
			}
			r.Progress(0.1, "pg_dump", "")
			res, err = runPGDump(ctx, pgDump, databaseURL, snapshot, tables, results, r.TaskID(), "backup-"+stamp+".dump")
		} else {
			r.Progress(0.1, "export", "")
			res, err = putStream(ctx, results, r.TaskID(), "backup-"+stamp+".jsonl.gz", "application/gzip",
				func(w io.Writer) error {
					return writeJSONL(ctx, tx, w, tables, version, func(i int, table string, rows int64) {
						r.Progress(0.1+0.85*float64(i+1)/float64(len(tables)), "export "+table,
							fmt.Sprintf("%s: %d rows", table, rows))
					})
				})
		}
		if err != nil {
			return err
		}
		out := BackupResult{
			Format: format, Name: res.Name, Size: res.Size, SHA256: res.SHA256, Tables: counts,
			MigrationVersion: version, ResultID: res.ID, ExpiresAt: res.ExpiresAt,
			DownloadURL: strings.TrimRight(publicURL, "/") + "/api/v1/tasks/" + r.TaskID() + "/result",
		}
		r.Log(job.Info, "backup stored", map[string]any{
			"format": format, "result_id": res.ID, "size": res.Size, "sha256": res.SHA256, "tables": len(tables),
		})
		r.Progress(1, "done", fmt.Sprintf("backup %s: %d bytes", res.Name, res.Size))
		return r.SetResult(out)
	}
}

func serverMajor(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&n); err != nil {
		return 0, fmt.Errorf("maintenance: server version: %w", store.Translate(err))
	}
	return n / 10000, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func migrationVersion(ctx context.Context, q querier) (int64, error) {
	var v sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("maintenance: migration version: %w", store.Translate(err))
	}
	return v.Int64, nil
}

// putStream stores what write produces as a result, streaming through a pipe.
func putStream(ctx context.Context, results *result.Store, taskID, name, contentType string, write func(io.Writer) error) (result.Result, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	res, putErr := results.Put(ctx, taskID, name, contentType, pr)
	pr.CloseWithError(errors.New("reader closed")) // unblocks the writer if Put stopped early
	writeErr := <-done
	if writeErr != nil {
		if putErr == nil {
			_ = results.Delete(context.WithoutCancel(ctx), res)
		}
		return result.Result{}, writeErr
	}
	if putErr != nil {
		return result.Result{}, putErr
	}
	return res, nil
}

// runPGDump streams a data-only custom-format archive of tables, read in the
// exported snapshot, into result storage.
func runPGDump(ctx context.Context, bin, databaseURL, snapshot string, tables []string, results *result.Store, taskID, name string) (result.Result, error) {
	conn, env, err := connTarget(databaseURL)
	if err != nil {
		return result.Result{}, job.Permanent(err)
	}
	args := []string{"--format=custom", "--data-only", "--no-owner", "--no-privileges",
		"--snapshot=" + snapshot, "--dbname=" + conn}
	for _, t := range tables {
		args = append(args, "--table="+quote(t))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return result.Result{}, fmt.Errorf("maintenance: pg_dump: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return result.Result{}, fmt.Errorf("maintenance: pg_dump: %w", err)
	}
	res, putErr := results.Put(ctx, taskID, name, "application/octet-stream", stdout)
	if putErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if waitErr != nil {
		if putErr == nil {
			_ = results.Delete(context.WithoutCancel(ctx), res)
		}
		if ctx.Err() != nil {
			return result.Result{}, ctx.Err()
		}
		return result.Result{}, toolError("pg_dump", waitErr, stderr, env)
	}
	if putErr != nil {
		return result.Result{}, putErr
	}
	return res, nil
}

// tableColumns lists a table's insertable columns in order, with their types.
func tableColumns(ctx context.Context, q querier, table string) ([]column, error) {
	rows, err := q.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, quote(table))
	if err != nil {
		return nil, fmt.Errorf("maintenance: columns of %s: %w", table, store.Translate(err))
	}
	defer rows.Close()
	var out []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.Name, &c.Type); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// textSettings make every value's text form exact and independent of the
// server's defaults, for export and import alike, and lift the statement
// timeout: a backup or restore of a large table runs long.
const textSettings = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
	SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL statement_timeout = 0`

// writeJSONL writes the gzip JSON-lines archive: a header line, then per table a
// table line with its columns and types, one JSON array per row (each value its
// PostgreSQL text form, or null) and an end line with the row count.
func writeJSONL(ctx context.Context, tx *sql.Tx, w io.Writer, tables []string, version int64, done func(int, string, int64)) error {
	for _, s := range strings.Split(textSettings, ";") {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("maintenance: export settings: %w", store.Translate(err))
		}
	}
	gz := gzip.NewWriter(w)
	bw := bufio.NewWriterSize(gz, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(archiveHeader{Backup: jsonlVersion, CreatedAt: time.Now().UTC(), MigrationVersion: version, Tables: tables}); err != nil {
		return err
	}
	for i, t := range tables {
		if err := ctx.Err(); err != nil {
			return err
		}
		cols, err := tableColumns(ctx, tx, t)
		if err != nil {
			return err
		}
		if err := enc.Encode(tableHeader{Table: t, Columns: cols}); err != nil {
			return err
		}
		sel := make([]string, len(cols))
		for j, c := range cols {
			sel[j] = quoteIdent(c.Name) + "::text"
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+strings.Join(sel, ", ")+` FROM `+quote(t))
		if err != nil {
			return fmt.Errorf("maintenance: export %s: %w", t, store.Translate(err))
		}
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for j := range vals {
			ptrs[j] = &vals[j]
		}
		row := make([]*string, len(cols))
		var n int64
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			for j, v := range vals {
				row[j] = nil
				if v.Valid {
					s := v.String
					row[j] = &s
				}
			}
			if err := enc.Encode(row); err != nil {
				rows.Close()
				return err
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("maintenance: export %s: %w", t, store.Translate(err))
		}
		rows.Close()
		if err := enc.Encode(tableEnd{End: t, Rows: n}); err != nil {
			return err
		}
		done(i, t, n)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return gz.Close()
}

// quoteIdent quotes one identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
