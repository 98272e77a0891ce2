package maintenance

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConnTargetKeepsPasswordOffTheCommandLine(t *testing.T) {
	t.Parallel()
	cases := []struct{ dsn, conn, pw string }{
		{"postgres://u:s3cr%40t@db:5432/app?sslmode=require", "postgres://u@db:5432/app?sslmode=require", "s3cr@t"},
		{"postgresql://u@db/app?password=p%26w&sslmode=disable", "postgresql://u@db/app?sslmode=disable", "p&w"},
		{"postgres://db/app", "postgres://db/app", ""},
		{"host=db user=u password='a b\\'c' dbname=app", "host=db user=u dbname=app", `a b\'c`},
	}
	for _, tc := range cases {
		conn, env, err := connTarget(tc.dsn)
		require.NoError(t, err)
		require.Equal(t, tc.conn, conn)
		var pw string
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, "PGPASSWORD="); ok {
				pw = v
			}
		}
		if tc.pw != "" {
			require.Equal(t, tc.pw, pw, tc.dsn)
			require.NotContains(t, conn, tc.pw)
		}
	}
}

func TestToolErrorRedactsPassword(t *testing.T) {
	t.Parallel()
	buf := &tailBuffer{max: 16}
	_, _ = buf.Write([]byte("a long prefix that is dropped; failed for hunter2"))
	err := toolError("pg_dump", errors.New("exit status 1"), buf, []string{"PGPASSWORD=hunter2"})
	require.NotContains(t, err.Error(), "hunter2")
	require.Contains(t, err.Error(), "[redacted]")
	require.NotContains(t, err.Error(), "prefix")
}

func TestArchiveTables(t *testing.T) {
	t.Parallel()
	list := `;
; Archive created at 2026-11-28 13:00:00 UTC
3390; 0 16390 TABLE DATA public assets taskforge
3391; 0 16400 TABLE DATA public prices taskforge
3392; 0 0 SEQUENCE SET public task_logs_id_seq taskforge
`
	require.Equal(t, []string{"assets", "prices"}, archiveTables(list))
}
