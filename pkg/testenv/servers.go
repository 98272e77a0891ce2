package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Servers of a test's own, for outage tests: unlike NewRedis and NewPostgres,
// which share the servers scripts/test.sh started, these can be stopped and
// started again on the same address while the code under test keeps running.

// RedisServer is a redis-server that belongs to one test.
type RedisServer struct {
	// Addr is host:port on loopback; it stays the same across Stop and Start.
	Addr string
	tb   testing.TB
	dir  string
	port int
	// args are added to every start's command line.
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	// exited receives the running server's exit status.
	exited chan error
}

// StartRedisServer starts a redis-server (from PATH) on a free loopback port and
// stops it at the end of the test. Without redis-server the test fails, or is
// skipped under -short.
func StartRedisServer(tb testing.TB) *RedisServer {
	tb.Helper()
	return StartRedisServerWith(tb)
}

// StartRedisServerWith is StartRedisServer with extra redis-server options
// (such as "--cluster-enabled", "yes" or "--replicaof", host, port), given on
// every start.
func StartRedisServerWith(tb testing.TB, args ...string) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing(tb, "redis-server")
	}
	s := &RedisServer{tb: tb, dir: tb.TempDir(), args: args}
	var err error
	for range 5 { // a port found free may be taken before redis binds it
		s.port = freePort(tb)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Start starts the server again after Stop, on the same address.
func (s *RedisServer) Start() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("testenv: %v", err)
	}
}

func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--dir", s.dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.Args = append(cmd.Args, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on %s exited (%v): %s", s.Addr, err, tail(log))
		default:
		}
		if c.Ping(context.Background()).Err() == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("redis-server on %s did not answer in 15s", s.Addr)
}

// Freeze suspends the running server (SIGSTOP): it keeps its port and its
// connections, and the kernel still accepts new ones, but it answers nothing
// until Thaw — the stall that a deadline, not a refused connection, has to
// catch.
func (s *RedisServer) Freeze() {
	s.tb.Helper()
	s.signal(syscall.SIGSTOP)
}

// Thaw resumes a server suspended by Freeze (SIGCONT); it then executes what
// it was sent while frozen. Thawing a running server does nothing.
func (s *RedisServer) Thaw() {
	s.tb.Helper()
	s.signal(syscall.SIGCONT)
}

func (s *RedisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.tb.Fatalf("testenv: redis-server on %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("testenv: signal redis-server: %v", err)
	}
}

// Kill kills the running server (SIGKILL: no shutdown, no last save) and
// waits until it has exited. Start starts it again on the same address.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Log returns the end of the server's log file, for failure messages.
func (s *RedisServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return tail(b)
}

// Stop stops the server (SIGTERM) and waits until it has exited; a frozen
// server is thawed first. Stopping a stopped server does nothing.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	stopProcess(s.tb, s.cmd, s.exited, syscall.SIGTERM, "redis-server")
	s.cmd = nil
}

// PostgresServer is a PostgreSQL cluster that belongs to one test, with trust
// authentication for the superuser postgres.
type PostgresServer struct {
	// Addr is host:port on loopback; it stays the same across Stop and Start.
	Addr string
	// URL connects to the database postgres as the superuser postgres.
	URL  string
	tb   testing.TB
	bin  string
	dir  string
	port int
	cred *syscall.Credential
	mu   sync.Mutex
	cmd  *exec.Cmd
	// exited receives the running server's exit status.
	exited chan error
}

// StartPostgresServer initialises a cluster in a temporary directory and runs
// it on a free loopback port until the end of the test. As root the server runs
// as the user postgres (PostgreSQL refuses root), which must exist (the
// project's scripts create it). Without the PostgreSQL binaries the test fails,
// or is skipped under -short.
func StartPostgresServer(tb testing.TB) *PostgresServer {
	tb.Helper()
	bin, err := postgresBin()
	if err != nil {
		missing(tb, "PostgreSQL (initdb, postgres)")
	}
	s := &PostgresServer{tb: tb, bin: bin}
	if os.Geteuid() == 0 {
		s.cred, err = credential("postgres")
		if err != nil {
			tb.Fatalf("testenv: as root PostgreSQL must run as the user postgres: %v", err)
		}
	}
	// Not t.TempDir: its parents are private to root, and postgres must reach
	// the data directory.
	s.dir, err = os.MkdirTemp("", "taskforge-pg-")
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(s.dir) })
	if err := os.Chmod(s.dir, 0o755); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			tb.Fatalf("testenv: %v", err)
		}
	}
	initdb := s.command(filepath.Join(bin, "initdb"), "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("testenv: initdb: %v: %s", err, tail(out))
	}
	for range 5 {
		s.port = freePort(tb)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		s.URL = fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", s.Addr)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

func (s *PostgresServer) data() string { return filepath.Join(s.dir, "data") }

func (s *PostgresServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// Start starts the server again after Stop, on the same address.
func (s *PostgresServer) Start() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("testenv: %v", err)
	}
}

func (s *PostgresServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logPath := filepath.Join(s.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.data(), "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	db, err := sql.Open("pgx", s.URL)
	if err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres on %s exited (%v): %s", s.Addr, err, tail(log))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("postgres on %s did not answer in 60s", s.Addr)
}

// Stop stops the server (fast shutdown: sessions are ended) and waits until it
// has exited. Stopping a stopped server does nothing.
func (s *PostgresServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	stopProcess(s.tb, s.cmd, s.exited, syscall.SIGINT, "postgres")
	s.cmd = nil
}

// postgresBin finds the directory of initdb and postgres: pg_config's bindir,
// else the newest /usr/lib/postgresql/*/bin (Debian does not put them in PATH).
func postgresBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := string(trimNewline(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found")
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func missing(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("%s not installed; skipped under -short", what)
	}
	tb.Fatalf("testenv: %s is not installed: run the tests through `make test` (scripts/test.sh), which installs it", what)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	// The kernel may hand out a port it gave a moment ago, before the first
	// taker bound it: a port is given once per test process.
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("testenv: free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if _, taken := givenPorts.LoadOrStore(port, true); !taken {
			return port
		}
	}
	tb.Fatalf("testenv: free port: every port offered was given already")
	return 0
}

// givenPorts are the ports freePort returned.
var givenPorts sync.Map

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// server the test starts itself.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(tb)))
}

// stopProcess sends sig and waits for the process to exit; after 30 s it kills it.
func stopProcess(tb testing.TB, cmd *exec.Cmd, exited <-chan error, sig os.Signal, name string) {
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		tb.Errorf("testenv: %s did not stop within 30s of %v; killed", name, sig)
	}
}

// tail returns the last 2 KiB of b.
func tail(b []byte) string {
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}
