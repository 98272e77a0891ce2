package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ErrStillRunning is returned by Process.Wait when the process has not exited
// within the timeout.
var ErrStillRunning = errors.New("testenv: process still running")

// binaries are the binaries BuildBinary built in this test process, by absolute
// package directory.
var binaries = struct {
	sync.Mutex
	dir   string
	built map[string]*builtBinary
}{built: map[string]*builtBinary{}}

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// The version and revision BuildBinary stamps into every binary, as the release
// build does (pkg/buildinfo), so tests can see that the linker flags land.
const (
	BinaryVersion  = "v0.0.0-test"
	BinaryRevision = "0123456789abcdef0123456789abcdef01234567"
)

// BuildBinary builds the main package in pkgDir ("." for the package under
// test) once per test process and returns the binary's path. Binaries live in
// a temporary directory that Main removes.
func BuildBinary(tb testing.TB, pkgDir string) string {
	tb.Helper()
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		tb.Fatalf("testenv: build %s: %v", pkgDir, err)
	}
	binaries.Lock()
	b, ok := binaries.built[abs]
	if !ok {
		b = &builtBinary{}
		binaries.built[abs] = b
	}
	if binaries.dir == "" {
		binaries.dir, err = os.MkdirTemp("", "taskforge-test-bin-")
	}
	dir := binaries.dir
	binaries.Unlock()
	if err != nil {
		tb.Fatalf("testenv: build %s: %v", pkgDir, err)
	}
	b.once.Do(func() {
		out, err := os.MkdirTemp(dir, filepath.Base(abs)+"-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(out, filepath.Base(abs))
		cmd := exec.Command("go", "build", "-ldflags",
			"-X github.com/taskforge/taskforge/pkg/buildinfo.version="+BinaryVersion+
				" -X github.com/taskforge/taskforge/pkg/buildinfo.revision="+BinaryRevision,
			"-o", b.path, ".")
		cmd.Dir = abs
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", abs, err, msg)
		}
	})
	if b.err != nil {
		tb.Fatalf("testenv: %v", b.err)
	}
	return b.path
}

// Main runs the tests of m and removes the binaries BuildBinary built. A
// package whose tests build binaries calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	binaries.Lock()
	defer binaries.Unlock()
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
	return code
}

// Environ returns the environment of the test process without its TASKFORGE_*
// variables, followed by kv ("KEY=value"), for a process whose configuration
// the test sets in full.
func Environ(kv ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "TASKFORGE_") {
			env = append(env, e)
		}
	}
	return append(env, kv...)
}

// Process is a program a test runs, with its standard output and error
// collected together.
type Process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// StartProcess starts bin with args and the environment env ("KEY=value"; nil
// means none) and kills it, if it still runs, when the test ends. When the test
// has failed, the end of the process's output is logged.
func StartProcess(tb testing.TB, bin string, args, env []string) *Process {
	tb.Helper()
	p := &Process{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	if env == nil {
		p.cmd.Env = []string{}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("testenv: start %s: %v", bin, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s (pid %d, exit: %v), last lines of its output:\n%s", filepath.Base(bin), p.Pid(), p.err, p.Tail(60))
		}
	})
	return p
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process, if it still runs, and waits for it to exit.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its exit error
// (nil for status 0), or ErrStillRunning.
func (p *Process) Wait(timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return ErrStillRunning
	}
}

// Stop sends sig and waits up to timeout for the process to exit, failing the
// test if it does not. It returns the exit error (nil for status 0).
func (p *Process) Stop(tb testing.TB, sig os.Signal, timeout time.Duration) error {
	tb.Helper()
	if err := p.Signal(sig); err != nil {
		tb.Fatalf("testenv: signal %v: %v", sig, err)
	}
	err := p.Wait(timeout)
	if errors.Is(err, ErrStillRunning) {
		tb.Fatalf("testenv: process still running %v after %v; output:\n%s", timeout, sig, p.Tail(40))
	}
	return err
}

// WaitHTTP waits up to timeout until a GET of url answers 200. It fails the
// test, with the end of the output, if the process exits first or the time
// runs out.
func (p *Process) WaitHTTP(tb testing.TB, url string, timeout time.Duration) {
	tb.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			tb.Fatalf("testenv: process exited (%v) before %s answered; output:\n%s", p.err, url, p.Tail(40))
		}
		resp, err := hc.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: %s did not answer 200 within %v; output:\n%s", url, timeout, p.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Output returns everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Tail returns the last n lines the process wrote.
func (p *Process) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// syncBuffer collects a process's output; it is safe to read while the
// process writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
