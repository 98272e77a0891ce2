package result_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// insertTask adds a minimal task row that results can belong to.
func insertTask(t *testing.T, db *gorm.DB, id string) {
	t.Helper()
	require.NoError(t, db.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds)
		VALUES (?, 'backup_data', 'completed', 'low', 3, '{}', 60)`, id).Error)
}

func newSigner(t *testing.T) *result.Signer {
	t.Helper()
	s, err := result.NewSigner([]byte("0123456789abcdef0123456789abcdef"), "http://api.test", time.Minute)
	require.NoError(t, err)
	return s
}

// fakeS3 starts an in-process S3-compatible server with one bucket and returns
// a backend on it.
func fakeS3(t *testing.T) (*result.S3, *httptest.Server) {
	t.Helper()
	mem := s3mem.New()
	require.NoError(t, mem.CreateBucket("results"))
	srv := httptest.NewServer(gofakes3.New(mem).Server())
	t.Cleanup(srv.Close)
	b, err := result.NewS3(context.Background(), result.S3Options{
		Endpoint: srv.URL, Region: "us-east-1", Bucket: "results",
		AccessKey: "AKIDTEST", SecretKey: "not-a-real-secret", UsePathStyle: true,
		SpoolDir: t.TempDir(),
	})
	require.NoError(t, err)
	return b, srv
}

// randomReader yields n pseudo-random bytes without holding them.
func randomReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)
}

func sumOf(t *testing.T, r io.Reader) (string, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil)), n
}

func TestStoreBackends(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		backend func(t *testing.T) result.Backend
	}{
		{"local", func(t *testing.T) result.Backend {
			l, err := result.NewLocal(t.TempDir())
			require.NoError(t, err)
			return l
		}},
		{"s3", func(t *testing.T) result.Backend { b, _ := fakeS3(t); return b }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pg := testenv.NewPostgres(t)
			ctx := context.Background()
			insertTask(t, pg.DB, "task_a")
			insertTask(t, pg.DB, "task_b")
			st, err := result.New(pg.DB, tc.backend(t), result.Options{TTL: time.Hour, Signer: newSigner(t)})
			require.NoError(t, err)

			// A few MiB streamed through: size and digest are computed on the way.
			const size = 3<<20 + 17
			wantSum, _ := sumOf(t, randomReader(1, size))
			res, err := st.Put(ctx, "task_a", "../../etc/backup 1.dump", "application/octet-stream", randomReader(1, size))
			require.NoError(t, err)
			require.Equal(t, int64(size), res.Size)
			require.Equal(t, wantSum, res.SHA256)
			require.Equal(t, tc.name, res.Backend)
			require.Equal(t, "backup_1.dump", res.Name)
			require.True(t, strings.HasPrefix(res.ID, "res_"))
			require.WithinDuration(t, time.Now().Add(time.Hour), res.ExpiresAt, time.Minute)

			small, err := st.Put(ctx, "task_a", "report.csv", "text/csv; charset=utf-8", strings.NewReader("a,b\n1,2\n"))
			require.NoError(t, err)
			_, err = st.Put(ctx, "task_b", "other.csv", "text/csv", strings.NewReader("x"))
			require.NoError(t, err)

			rc, err := st.Open(ctx, res)
			require.NoError(t, err)
			gotSum, n := sumOf(t, rc)
			require.NoError(t, rc.Close())
			require.Equal(t, int64(size), n)
			require.Equal(t, wantSum, gotSum)

			list, err := st.ForTask(ctx, "task_a")
			require.NoError(t, err)
			require.Len(t, list, 2)
			require.Equal(t, res.ID, list[0].ID)
			require.Equal(t, small.ID, list[1].ID)

			got, err := st.Get(ctx, small.ID)
			require.NoError(t, err)
			require.Equal(t, small.SHA256, got.SHA256)

			require.NoError(t, st.Delete(ctx, res))
			_, err = st.Get(ctx, res.ID)
			require.ErrorIs(t, err, result.ErrNotFound)
			_, err = st.Open(ctx, res)
			require.ErrorIs(t, err, result.ErrNotFound)
			list, err = st.ForTask(ctx, "task_a")
			require.NoError(t, err)
			require.Len(t, list, 1)

			// A result of a task that does not exist is refused, and leaves no file.
			_, err = st.Put(ctx, "task_missing", "x.txt", "text/plain", strings.NewReader("x"))
			require.Error(t, err)
		})
	}
}

func TestStoreExpiry(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	insertTask(t, pg.DB, "task_a")
	dir := t.TempDir()
	l, err := result.NewLocal(dir)
	require.NoError(t, err)
	now := time.Now()
	st, err := result.New(pg.DB, l, result.Options{TTL: time.Hour, Signer: newSigner(t), Now: func() time.Time { return now }})
	require.NoError(t, err)
	res, err := st.Put(ctx, "task_a", "r.txt", "text/plain", strings.NewReader("hello"))
	require.NoError(t, err)

	now = now.Add(2 * time.Hour)
	_, err = st.Open(ctx, res)
	require.ErrorIs(t, err, result.ErrExpired)
	_, _, err = st.URL(ctx, res)
	require.ErrorIs(t, err, result.ErrExpired)
	list, err := st.ForTask(ctx, "task_a")
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestLocalFailedPutLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := result.NewLocal(dir)
	require.NoError(t, err)
	boom := errors.New("source broke")
	err = l.Put(context.Background(), "2026/01/01/res_x", "text/plain", io.MultiReader(strings.NewReader("part"), errReader{boom}))
	require.ErrorIs(t, err, boom)
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	}))
	require.Empty(t, files)

	for _, key := range []string{"../x", "a/../../b", "/etc/passwd", "a//b", "A", ""} {
		require.Error(t, l.Put(context.Background(), key, "", strings.NewReader("x")), key)
		_, err := l.Open(context.Background(), key)
		require.Error(t, err, key)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestSigner(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	link, exp := s.Link(result.Result{ID: "res_abc"})
	require.WithinDuration(t, time.Now().Add(time.Minute), exp, 2*time.Second)
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.Equal(t, "/api/v1/results/res_abc/download", u.Path)
	q := u.Query()
	require.NoError(t, s.Verify("res_abc", q.Get("exp"), q.Get("sig")))

	other, err := result.NewSigner([]byte("another-key-of-32-bytes-length!!"), "http://api.test", time.Minute)
	require.NoError(t, err)
	past, _ := s.LinkFor("res_abc", time.Now().Add(-time.Second))
	pu, _ := url.Parse(past)

	cases := []struct {
		name, id, exp, sig string
		signer             *result.Signer
		want               error
	}{
		{"other id", "res_abd", q.Get("exp"), q.Get("sig"), s, result.ErrLinkInvalid},
		{"later exp", "res_abc", "99999999999", q.Get("sig"), s, result.ErrLinkInvalid},
		{"bad sig", "res_abc", q.Get("exp"), q.Get("sig")[:10], s, result.ErrLinkInvalid},
		{"empty", "res_abc", "", "", s, result.ErrLinkInvalid},
		{"other key", "res_abc", q.Get("exp"), q.Get("sig"), other, result.ErrLinkInvalid},
		{"expired", "res_abc", pu.Query().Get("exp"), pu.Query().Get("sig"), s, result.ErrLinkExpired},
	}
	for _, tc := range cases {
		require.ErrorIs(t, tc.signer.Verify(tc.id, tc.exp, tc.sig), tc.want, tc.name)
	}

	// A link never outlives its result.
	resExp := time.Now().Add(10 * time.Second)
	_, exp = s.Link(result.Result{ID: "res_abc", ExpiresAt: resExp})
	require.Equal(t, resExp.Unix(), exp.Unix())

	_, err = result.NewSigner([]byte("short"), "", 0)
	require.Error(t, err)
}

func TestS3PresignedURL(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	insertTask(t, pg.DB, "task_a")
	b, srv := fakeS3(t)
	st, err := result.New(pg.DB, b, result.Options{TTL: time.Hour, LinkTTL: 5 * time.Minute, Signer: newSigner(t)})
	require.NoError(t, err)
	body := []byte("date,close\n2026-01-02,101.5\n")
	res, err := st.Put(ctx, "task_a", "prices.csv", "text/csv", bytes.NewReader(body))
	require.NoError(t, err)

	link, exp, err := st.URL(ctx, res)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(5*time.Minute), exp, 5*time.Second)
	require.True(t, strings.HasPrefix(link, srv.URL+"/results/"), link)
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.Equal(t, "300", u.Query().Get("X-Amz-Expires"))
	require.NotEmpty(t, u.Query().Get("X-Amz-Signature"))
	require.NotContains(t, link, "not-a-real-secret")

	resp, err := http.Get(link)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, body, got)
	require.Contains(t, u.Query().Get("response-content-disposition"), `filename=prices.csv`)
}

func TestS3ConfigurationErrors(t *testing.T) {
	t.Parallel()
	for _, o := range []result.S3Options{
		{Endpoint: "http://127.0.0.1:9000"},                          // no bucket
		{Bucket: "b", Endpoint: "127.0.0.1:9000"},                    // no scheme
		{Bucket: "b", Endpoint: "ftp://127.0.0.1:9000"},              // not http(s)
		{Bucket: "b", Endpoint: "http://127.0.0.1:9000/some/prefix"}, // a path
	} {
		_, err := result.NewS3(context.Background(), o)
		require.Error(t, err, "%+v", o)
	}
	_, err := result.NewS3(context.Background(), result.S3Options{Bucket: "b"})
	require.NoError(t, err, "AWS's endpoint and the default credential chain")
}

func TestSanitizeFilename(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"report.csv":                     "report.csv",
		"../../etc/passwd":               "passwd",
		`..\..\win.ini`:                  "win.ini",
		"a\"b;c\r\nd.html":               "abcd.html",
		"...":                            "result",
		"":                               "result",
		"my report 2026.pdf":             "my_report_2026.pdf",
		strings.Repeat("x", 300) + ".gz": strings.Repeat("x", 125) + ".gz",
	}
	for in, want := range cases {
		require.Equal(t, want, result.SanitizeFilename(in), in)
	}
}

// TestPutStreamsWithoutBuffering stores 64 MiB and checks that the process
// allocated far less than that on the way: the file is never held in memory.
// It does not run in parallel, so that other tests' allocations stay out of
// the count.
func TestPutStreamsWithoutBuffering(t *testing.T) {
	pg := testenv.NewPostgres(t)
	insertTask(t, pg.DB, "task_big")
	l, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	st, err := result.New(pg.DB, l, result.Options{Signer: newSigner(t)})
	require.NoError(t, err)
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := st.Put(context.Background(), "task_big", "big.bin", "", randomReader(7, size))
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	require.EqualValues(t, size, res.Size)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("stored %d MiB with %d KiB allocated", size>>20, allocated>>10)
	require.Less(t, allocated, uint64(size/8))
}
