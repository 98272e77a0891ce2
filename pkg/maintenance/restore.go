package maintenance

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
)

// ErrBadArchive means the input is not a backup this package can restore.
var ErrBadArchive = errors.New("not a backup archive")

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// DatabaseURL reaches the target database for pg_restore.
	DatabaseURL string
	// Clean empties the archive's tables before loading. Without it the tables
	// should be empty: rows that already exist make the restore fail.
	Clean bool
}

// RestoreReport says what Restore loaded.
type RestoreReport struct {
	Format string `json:"format"`
	// Tables maps each restored table to its row count after the restore.
	Tables map[string]int64 `json:"tables"`
}

// Restore loads a backup archive (either format, recognised by its first
// bytes) into db, which must be migrated to the archive's schema version.
//
// A JSON-lines archive loads in one transaction: with Clean the tables are
// truncated first, then each table is copied in the archive's (foreign-key)
// order and the tables' sequences are moved past the restored ids. A pg_dump
// archive is loaded by pg_restore --data-only --single-transaction; with Clean
// its tables are truncated just before, in a transaction of their own.
func Restore(ctx context.Context, db *gorm.DB, archive io.Reader, o RestoreOptions) (RestoreReport, error) {
	sdb, err := sqlDB(db)
	if err != nil {
		return RestoreReport{}, err
	}
	br := bufio.NewReaderSize(archive, 64<<10)
	magic, _ := br.Peek(5)
	switch {
	case bytes.HasPrefix(magic, []byte("PGDMP")):
		return restorePGDump(ctx, sdb, br, o)
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return restoreJSONL(ctx, sdb, br, o)
	}
	return RestoreReport{}, ErrBadArchive
}

func restoreJSONL(ctx context.Context, sdb *sql.DB, r io.Reader, o RestoreOptions) (RestoreReport, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return RestoreReport{}, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	lines := bufio.NewReaderSize(gz, 256<<10)
	first, err := readLine(lines)
	if err != nil {
		return RestoreReport{}, fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	var head archiveHeader
	if err := json.Unmarshal(first, &head); err != nil || head.Backup != jsonlVersion {
		return RestoreReport{}, fmt.Errorf("%w: unknown header", ErrBadArchive)
	}
	version, err := migrationVersion(ctx, sdb)
	if err != nil {
		return RestoreReport{}, err
	}
	if head.MigrationVersion != version {
		return RestoreReport{}, fmt.Errorf("maintenance: restore: archive is of schema version %d, database is at %d: migrate to the same version first", head.MigrationVersion, version)
	}
	exist, err := existingTables(ctx, sdb, head.Tables)
	if err != nil {
		return RestoreReport{}, err
	}
	for _, t := range head.Tables {
		if !exist[t] {
			return RestoreReport{}, fmt.Errorf("maintenance: restore: table %q: %w", t, ErrUnknownTable)
		}
	}

	rep := RestoreReport{Format: FormatJSONL, Tables: map[string]int64{}}
	conn, err := sdb.Conn(ctx)
	if err != nil {
		return rep, fmt.Errorf("maintenance: restore: %w", store.Translate(err))
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
		for _, set := range strings.Split(textSettings, ";") {
			if _, err := tx.Exec(ctx, set); err != nil {
				return err
			}
		}
		if o.Clean && len(head.Tables) > 0 {
			names := make([]string, len(head.Tables))
			for i, t := range head.Tables {
				names[i] = quote(t)
			}
			if _, err := tx.Exec(ctx, `TRUNCATE `+strings.Join(names, ", ")); err != nil {
				return fmt.Errorf("truncate: %w", err)
			}
		}
		for {
			line, err := readLine(lines)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: %w", ErrBadArchive, err)
			}
			var th tableHeader
			if err := json.Unmarshal(line, &th); err != nil || th.Table == "" {
				return fmt.Errorf("%w: expected a table line", ErrBadArchive)
			}
			if !slices.Contains(head.Tables, th.Table) {
				return fmt.Errorf("%w: table %q is not in the header", ErrBadArchive, th.Table)
			}
			n, err := copyTable(ctx, tx, lines, th)
			if err != nil {
				return fmt.Errorf("table %s: %w", th.Table, err)
			}
			rep.Tables[th.Table] = n
		}
		for _, t := range head.Tables {
			if err := resetSequences(ctx, tx, t); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return RestoreReport{}, fmt.Errorf("maintenance: restore: %w", err)
	}
	return rep, nil
}

// copyTable copies one table's rows from the archive with COPY, checking the
// columns against the catalog and the row count against the end line.
func copyTable(ctx context.Context, tx pgx.Tx, lines *bufio.Reader, th tableHeader) (int64, error) {
	var cols []string
	rows, err := tx.Query(ctx, `SELECT a.attname FROM pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''`, quote(th.Table))
	if err != nil {
		return 0, err
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	for _, c := range th.Columns {
		if !slices.Contains(known, c.Name) {
			return 0, fmt.Errorf("%w: column %q does not exist", ErrBadArchive, c.Name)
		}
		cols = append(cols, quoteIdent(c.Name))
	}
	src := &copySource{lines: lines, width: len(th.Columns)}
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, src,
		`COPY `+quote(th.Table)+` (`+strings.Join(cols, ", ")+`) FROM STDIN`)
	if src.err != nil {
		return 0, src.err
	}
	if err != nil {
		return 0, err
	}
	if src.end == nil || src.end.End != th.Table {
		return 0, fmt.Errorf("%w: the rows of %s are not closed (truncated archive?)", ErrBadArchive, th.Table)
	}
	if src.end.Rows != tag.RowsAffected() {
		return 0, fmt.Errorf("%w: %s has %d rows, its end line says %d", ErrBadArchive, th.Table, tag.RowsAffected(), src.end.Rows)
	}
	return tag.RowsAffected(), nil
}

// copySource turns the archive's row lines into COPY text format until the
// table's end line.
type copySource struct {
	lines *bufio.Reader
	width int
	buf   bytes.Buffer
	end   *tableEnd
	err   error
	row   []*string
}

func (c *copySource) Read(p []byte) (int, error) {
	for c.buf.Len() == 0 {
		if c.end != nil {
			return 0, io.EOF
		}
		line, err := readLine(c.lines)
		if err != nil {
			c.err = fmt.Errorf("%w: %w", ErrBadArchive, err)
			return 0, c.err
		}
		if len(line) > 0 && line[0] == '{' {
			var e tableEnd
			if err := json.Unmarshal(line, &e); err != nil || e.End == "" {
				c.err = fmt.Errorf("%w: expected a row or an end line", ErrBadArchive)
				return 0, c.err
			}
			c.end = &e
			continue
		}
		c.row = c.row[:0]
		if err := json.Unmarshal(line, &c.row); err != nil || len(c.row) != c.width {
			c.err = fmt.Errorf("%w: malformed row", ErrBadArchive)
			return 0, c.err
		}
		for i, v := range c.row {
			if i > 0 {
				c.buf.WriteByte('\t')
			}
			if v == nil {
				c.buf.WriteString(`\N`)
				continue
			}
			copyEscape(&c.buf, *v)
		}
		c.buf.WriteByte('\n')
	}
	return c.buf.Read(p)
}

// copyEscape writes s in COPY's text format.
func copyEscape(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
}

// readLine reads one line without its newline; io.EOF at the end.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if len(line) > 0 && err == io.EOF {
		return bytes.TrimRight(line, "\n"), nil
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}

// resetSequences moves every sequence owned by a column of table past the
// column's largest value.
func resetSequences(ctx context.Context, tx pgx.Tx, table string) error {
	rows, err := tx.Query(ctx, `SELECT a.attname, pg_get_serial_sequence($1, a.attname)
		FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
		AND pg_get_serial_sequence($1, a.attname) IS NOT NULL`, quote(table))
	if err != nil {
		return err
	}
	type seq struct{ col, name string }
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seq, error) {
		var s seq
		err := r.Scan(&s.col, &s.name)
		return s, err
	})
	if err != nil {
		return err
	}
	for _, s := range seqs {
		_, err := tx.Exec(ctx, `SELECT setval($1, COALESCE(max(`+quoteIdent(s.col)+`), 1), max(`+quoteIdent(s.col)+`) IS NOT NULL) FROM `+quote(table), s.name)
		if err != nil {
			return fmt.Errorf("sequence of %s.%s: %w", table, s.col, err)
		}
	}
	return nil
}

// restorePGDump loads a custom-format archive with pg_restore. The archive is
// spooled to a temporary file so that its table list can be read first.
func restorePGDump(ctx context.Context, sdb *sql.DB, r io.Reader, o RestoreOptions) (RestoreReport, error) {
	major, err := serverMajor(ctx, sdb)
	if err != nil {
		return RestoreReport{}, err
	}
	bin := findPGTool(ctx, "pg_restore", major)
	if bin == "" {
		return RestoreReport{}, fmt.Errorf("maintenance: restore: pg_restore of version %d or newer is not installed", major)
	}
	f, err := os.CreateTemp("", "taskforge-restore-*.dump")
	if err != nil {
		return RestoreReport{}, fmt.Errorf("maintenance: restore: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	if _, err := io.Copy(f, r); err != nil {
		return RestoreReport{}, fmt.Errorf("maintenance: restore: spool archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return RestoreReport{}, fmt.Errorf("maintenance: restore: spool archive: %w", err)
	}
	list, err := exec.CommandContext(ctx, bin, "--list", f.Name()).Output()
	if err != nil {
		return RestoreReport{}, fmt.Errorf("%w: pg_restore --list: %w", ErrBadArchive, err)
	}
	tables := archiveTables(string(list))
	exist, err := existingTables(ctx, sdb, tables)
	if err != nil {
		return RestoreReport{}, err
	}
	for _, t := range tables {
		if !exist[t] {
			return RestoreReport{}, fmt.Errorf("maintenance: restore: table %q: %w", t, ErrUnknownTable)
		}
	}
	if o.Clean && len(tables) > 0 {
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = quote(t)
		}
		if _, err := sdb.ExecContext(ctx, `TRUNCATE `+strings.Join(names, ", ")); err != nil {
			return RestoreReport{}, fmt.Errorf("maintenance: restore: truncate: %w", store.Translate(err))
		}
	}
	conn, env, err := connTarget(o.DatabaseURL)
	if err != nil {
		return RestoreReport{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "--data-only", "--single-transaction", "--exit-on-error",
		"--no-owner", "--no-privileges", "--dbname="+conn, f.Name())
	cmd.Env = env
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return RestoreReport{}, toolError("pg_restore", err, stderr, env)
	}
	rep := RestoreReport{Format: FormatPGDump, Tables: map[string]int64{}}
	for _, t := range tables {
		var n int64
		if err := sdb.QueryRowContext(ctx, `SELECT count(*) FROM `+quote(t)).Scan(&n); err != nil {
			return rep, fmt.Errorf("maintenance: restore: count %s: %w", t, store.Translate(err))
		}
		rep.Tables[t] = n
	}
	return rep, nil
}

// archiveTables reads the public tables with data from pg_restore --list
// output ("<id>; <oid> <oid> TABLE DATA public <name> <owner>").
func archiveTables(list string) []string {
	var out []string
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(line, ";") {
			continue
		}
		_, rest, ok := strings.Cut(line, " TABLE DATA public ")
		if !ok {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 && !slices.Contains(out, f[0]) {
			out = append(out, f[0])
		}
	}
	return out
}

// RestoreCommand runs "restore" from a service's command line:
//
//	restore (--result <id> | --file <path>) [--clean]
//
// It restores a backup held in result storage or in a file and prints what it
// loaded to stdout.
func RestoreCommand(ctx context.Context, args []string, db *gorm.DB, databaseURL string, results *result.Store, stdout io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stdout)
	resultID := fs.String("result", "", "id of a stored backup result (res_…)")
	file := fs.String("file", "", "path of a backup archive")
	clean := fs.Bool("clean", false, "empty the archive's tables first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*resultID == "") == (*file == "") {
		return errors.New("restore: give exactly one of --result and --file")
	}
	var in io.ReadCloser
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		in = f
	} else {
		if results == nil {
			return errors.New("restore: no result storage configured")
		}
		res, err := results.Get(ctx, *resultID)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if in, err = results.Open(ctx, res); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	defer in.Close()
	rep, err := Restore(ctx, db, in, RestoreOptions{DatabaseURL: databaseURL, Clean: *clean})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
