package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis topologies of a test's own on loopback: a Sentinel-watched master
// with a replica, and a Redis Cluster.

// SentinelMaster is the name the Sentinels of StartSentinels watch.
const SentinelMaster = "taskforge"

// Sentinels is a master, one replica and three redis-sentinel processes
// watching them, tuned for fast failover: the master is judged down after
// DownAfter without an answer, and a failover that stalls is tried again
// after 3 s.
type Sentinels struct {
	// MasterName is the name to ask the Sentinels for (SentinelMaster).
	MasterName string
	// Master and Replica are the data nodes, as started: after a failover
	// the replica is the master.
	Master, Replica *RedisServer
	// Addrs are the Sentinels' host:port addresses.
	Addrs []string
	// DownAfter is the Sentinels' down-after-milliseconds.
	DownAfter time.Duration
	tb        testing.TB
	procs     []*sentinelProc
}

type sentinelProc struct {
	addr, dir string
	cmd       *exec.Cmd
	exited    chan error
}

// StartSentinels starts the master, its replica and three Sentinels (quorum
// 2) on free loopback ports, waits until the replica is in sync and every
// Sentinel knows the replica and the two other Sentinels, and stops them all
// at the end of the test. Without redis-server or redis-sentinel the test
// fails, or is skipped under -short.
func StartSentinels(tb testing.TB) *Sentinels {
	tb.Helper()
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		missing(tb, "redis-sentinel")
	}
	fast := []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	s := &Sentinels{MasterName: SentinelMaster, DownAfter: time.Second, tb: tb}
	s.Master = StartRedisServerWith(tb, fast...)
	host, port, _ := net.SplitHostPort(s.Master.Addr)
	s.Replica = StartRedisServerWith(tb, append([]string{"--replicaof", host, port}, fast...)...)
	tb.Cleanup(s.stop)
	for i := range 3 {
		p, err := s.startSentinel(i, port)
		if err != nil {
			tb.Fatalf("testenv: %v", err)
		}
		s.procs = append(s.procs, p)
		s.Addrs = append(s.Addrs, p.addr)
	}
	if err := s.waitSettled(30 * time.Second); err != nil {
		tb.Fatalf("testenv: sentinels: %v\n%s", err, s.logs())
	}
	return s
}

func (s *Sentinels) startSentinel(i int, masterPort string) (*sentinelProc, error) {
	var last error
	for range 5 { // a port found free may be taken before the sentinel binds it
		dir := filepath.Join(s.tb.TempDir(), "sentinel-"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		port := freePort(s.tb)
		conf := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "sentinel.log"),
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2", s.MasterName, masterPort),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.MasterName, s.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s 3000", s.MasterName),
			fmt.Sprintf("sentinel parallel-syncs %s 1", s.MasterName),
		}, "\n") + "\n"
		// The Sentinel rewrites its configuration file: it must be its own.
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		p := &sentinelProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir,
			cmd: exec.Command("redis-sentinel", path), exited: make(chan error, 1)}
		if err := p.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-sentinel: %w", err)
		}
		go func() { p.exited <- p.cmd.Wait() }()
		if last = p.waitUp(10 * time.Second); last == nil {
			return p, nil
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return nil, last
}

func (p *sentinelProc) waitUp(within time.Duration) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: p.addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("redis-sentinel on %s exited (%v): %s", p.addr, err, p.log())
		default:
		}
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-sentinel on %s did not answer in %s", p.addr, within)
}

func (p *sentinelProc) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "sentinel.log"))
	return tail(b)
}

// waitSettled waits until the replica's link to the master is up and every
// Sentinel sees the master up, the replica, and the other Sentinels: only
// then can two of them agree on a failover.
func (s *Sentinels) waitSettled(within time.Duration) error {
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: s.Replica.Addr, MaxRetries: -1})
	defer rc.Close()
	deadline := time.Now().Add(within)
	var why string
	for time.Now().Before(deadline) {
		why = ""
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			why = fmt.Sprintf("replica not in sync: %v %s", err, info)
		}
		for _, addr := range s.Addrs {
			if why != "" {
				break
			}
			why = sentinelView(ctx, addr, s.MasterName, len(s.Addrs)-1)
		}
		if why == "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not settled within %s: %s", within, why)
}

// sentinelView returns why the Sentinel at addr is not yet ready to fail
// name over, or "".
func sentinelView(ctx context.Context, addr, name string, peers int) string {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	m, err := c.Master(ctx, name).Result()
	if err != nil {
		return fmt.Sprintf("sentinel %s: %v", addr, err)
	}
	if m["flags"] != "master" {
		return fmt.Sprintf("sentinel %s: master flags %q", addr, m["flags"])
	}
	if m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(peers) {
		return fmt.Sprintf("sentinel %s: knows %s replicas and %s other sentinels", addr, m["num-slaves"], m["num-other-sentinels"])
	}
	return ""
}

// MasterAddr is the master's address as the first Sentinel that answers
// reports it.
func (s *Sentinels) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, addr := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		_ = c.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel names the master: %v", last)
}

// WaitMaster waits until the Sentinels name addr as the master.
func (s *Sentinels) WaitMaster(addr string, within time.Duration) {
	s.tb.Helper()
	deadline := time.Now().Add(within)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = s.MasterAddr(context.Background()); err == nil && got == addr {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.tb.Fatalf("testenv: the sentinels name %q (%v) as master after %s, want %s\n%s", got, err, within, addr, s.logs())
}

// logs returns the end of every Sentinel's log.
func (s *Sentinels) logs() string {
	var b strings.Builder
	for _, p := range s.procs {
		fmt.Fprintf(&b, "---- sentinel %s:\n%s\n", p.addr, p.log())
	}
	return b.String()
}

// Logs returns the end of every Sentinel's and data node's log, for failure
// messages.
func (s *Sentinels) Logs() string {
	return s.logs() + "---- master:\n" + s.Master.Log() + "\n---- replica:\n" + s.Replica.Log()
}

func (s *Sentinels) stop() {
	for _, p := range s.procs {
		stopProcess(s.tb, p.cmd, p.exited, syscall.SIGTERM, "redis-sentinel")
	}
}

// RedisCluster is a Redis Cluster of masters only, on loopback.
type RedisCluster struct {
	// Nodes are the masters; Addrs their host:port addresses.
	Nodes []*RedisServer
	Addrs []string
}

// StartRedisCluster starts masters redis-server nodes with cluster mode on,
// joins them with redis-cli --cluster create (the 16384 slots spread over
// them, no replicas), waits until every node reports the cluster ok, and
// stops them at the end of the test.
func StartRedisCluster(tb testing.TB, masters int) *RedisCluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		missing(tb, "redis-cli")
	}
	c := &RedisCluster{}
	for range masters {
		n := StartRedisServerWith(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("testenv: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range c.Addrs {
		nc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		for {
			info, err := nc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)+"\r\n") {
				break
			}
			if time.Now().After(deadline) {
				_ = nc.Close()
				tb.Fatalf("testenv: cluster node %s not ok after 30s: %v %s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = nc.Close()
	}
	return c
}

// Client returns a cluster client on c, closed at the end of the test.
func (c *RedisCluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}
