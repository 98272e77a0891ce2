package maintenance

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// pgBinDirs is where Debian and Ubuntu install PostgreSQL's client programs of
// each major version.
const pgBinDirs = "/usr/lib/postgresql/*/bin"

// findPGTool finds a PostgreSQL client program (pg_dump, pg_restore) whose major
// version is at least minMajor: on PATH first, then in /usr/lib/postgresql/*/bin,
// newest first. It returns "" when there is none.
func findPGTool(ctx context.Context, name string, minMajor int) string {
	var candidates []string
	if p, err := exec.LookPath(name); err == nil {
		candidates = append(candidates, p)
	}
	matches, _ := filepath.Glob(filepath.Join(pgBinDirs, name))
	sort.Slice(matches, func(i, j int) bool { return dirMajor(matches[i]) > dirMajor(matches[j]) })
	candidates = append(candidates, matches...)
	for _, c := range candidates {
		if v := toolMajor(ctx, c); v >= minMajor {
			return c
		}
	}
	return ""
}

func dirMajor(p string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return n
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// toolMajor runs "<tool> --version" and returns its major version, or 0.
func toolMajor(ctx context.Context, path string) int {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return 0
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// connTarget turns a database URL or key=value DSN into a connection string
// without the password, plus the environment that carries the password
// (PGPASSWORD), so that the password never appears on a command line.
func connTarget(dsn string) (conn string, env []string, err error) {
	env = os.Environ()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", nil, fmt.Errorf("maintenance: database url is malformed")
		}
		q := u.Query()
		pw, hasPw := "", false
		if u.User != nil {
			pw, hasPw = u.User.Password()
			u.User = url.User(u.User.Username())
		}
		if p := q.Get("password"); p != "" {
			pw, hasPw = p, true
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		if hasPw {
			env = append(env, "PGPASSWORD="+pw)
		}
		return u.String(), env, nil
	}
	// key=value form; values may be single-quoted.
	var kept []string
	for _, f := range splitDSN(dsn) {
		k, v, _ := strings.Cut(f, "=")
		if strings.TrimSpace(k) == "password" {
			env = append(env, "PGPASSWORD="+strings.Trim(v, "'"))
			continue
		}
		kept = append(kept, f)
	}
	return strings.Join(kept, " "), env, nil
}

// splitDSN splits a key=value DSN on spaces outside single quotes.
func splitDSN(dsn string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(dsn); i++ {
		c := dsn[i]
		switch {
		case c == '\\' && quoted && i+1 < len(dsn):
			cur.WriteByte(c)
			i++
			cur.WriteByte(dsn[i])
		case c == '\'':
			quoted = !quoted
			cur.WriteByte(c)
		case c == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// tailBuffer keeps the last max bytes written to it (a tool's stderr).
type tailBuffer struct {
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

// toolError describes a failed tool run by its stderr, with any password in
// the environment redacted.
func toolError(name string, err error, stderr *tailBuffer, env []string) error {
	msg := strings.TrimSpace(stderr.buf.String())
	for _, e := range env {
		if pw, ok := strings.CutPrefix(e, "PGPASSWORD="); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[redacted]")
		}
	}
	if msg == "" {
		return fmt.Errorf("maintenance: %s: %w", name, err)
	}
	return fmt.Errorf("maintenance: %s: %w: %s", name, err, msg)
}
