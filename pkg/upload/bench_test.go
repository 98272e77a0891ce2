package upload_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/upload"
)

// csvStream yields n bytes of CSV-looking text without holding them.
type csvStream struct{ left int64 }

func (s *csvStream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	const line = "AAA,2024-01-02,10.25,11.5,9.75,10.5,123456\n"
	n := 0
	for n < len(p) && int64(n) < s.left {
		n += copy(p[n:min(len(p), n+int(s.left)-n)], line[n%len(line):])
	}
	s.left -= int64(n)
	return n, nil
}

// BenchmarkPut streams a 64 MiB CSV through Store.Put into a local backend
// and PostgreSQL's index, reporting throughput and, through -benchmem, the
// bytes allocated per upload: a small fraction of the file, since nothing
// holds it whole. A micro-benchmark: no HTTP, multipart parsing or network.
func BenchmarkPut(b *testing.B) {
	const size = 64 << 20
	pg := testenv.NewPostgres(b)
	l, err := result.NewLocal(b.TempDir())
	require.NoError(b, err)
	signer, err := result.NewSigner([]byte("bench-signing-key-0123456789abcdef"), "http://api.test", time.Minute)
	require.NoError(b, err)
	rs, err := result.New(pg.DB, l, result.Options{Signer: signer})
	require.NoError(b, err)
	st, err := upload.New(pg.DB, rs, upload.Options{MaxBytes: size})
	require.NoError(b, err)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		up, err := st.Put(context.Background(), "key_bench", "big.csv", "text/csv", &csvStream{left: size})
		require.NoError(b, err)
		require.EqualValues(b, size, up.Size)
	}
}
