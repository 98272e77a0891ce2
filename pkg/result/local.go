package result

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Local keeps result files in a directory. A file is written to a temporary
// name, synced and renamed, so a reader never sees half a file.
type Local struct {
	dir string
}

var _ Backend = (*Local)(nil)

// NewLocal returns a Local backend rooted at dir, creating it (mode 0700).
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("result: local: directory is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("result: local: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("result: local: %w", err)
	}
	return &Local{dir: abs}, nil
}

// Name implements Backend.
func (l *Local) Name() string { return "local" }

// validKey accepts only keys of the form the Store generates: segments of
// [0-9a-z_] separated by '/'. It is defence in depth: keys never come from users.
func validKey(key string) bool {
	if key == "" || len(key) > 200 {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" {
			return false
		}
		for _, r := range seg {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

func (l *Local) path(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("result: local: invalid key %q", key)
	}
	return filepath.Join(l.dir, filepath.FromSlash(key)), nil
}

// Put implements Backend.
func (l *Local) Put(ctx context.Context, key, _ string, r io.Reader) (err error) {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("result: local: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fmt.Errorf("result: local: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		return fmt.Errorf("result: local: write: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("result: local: sync: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("result: local: close: %w", err)
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("result: local: rename: %w", err)
	}
	return nil
}

// Open implements Backend.
func (l *Local) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("result: local: %w", err)
	}
	return f, nil
}

// Delete implements Backend.
func (l *Local) Delete(_ context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("result: local: %w", err)
	}
	return nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
