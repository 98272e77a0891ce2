package testenv

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinelsFailOver: a write through a Sentinel-backed client lands on
// the master, reaches the replica, and after the master is killed the
// Sentinels promote the replica, which still holds the write.
func TestSentinelsFailOver(t *testing.T) {
	s := StartSentinels(t)
	ctx := context.Background()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.Addrs, MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MasterAddr(ctx); got != s.Master.Addr {
		t.Fatalf("master is %s, want %s", got, s.Master.Addr)
	}
	killed := time.Now()
	s.Master.Kill()
	s.WaitMaster(s.Replica.Addr, 30*time.Second)
	t.Logf("replica promoted %s after the master was killed", time.Since(killed).Round(time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := c.Get(ctx, "k").Result()
		if err == nil {
			if v != "v" {
				t.Fatalf("k = %q after the failover", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client did not follow the new master: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisClusterServesEverySlot: the cluster spreads keys over all its
// masters and a cluster client reaches each of them.
func TestRedisClusterServesEverySlot(t *testing.T) {
	rc := StartRedisCluster(t, 3)
	c := rc.Client(t)
	ctx := context.Background()
	for i := range 30 {
		if err := c.Set(ctx, "key-"+string(rune('a'+i)), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var used atomic.Int32
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if n > 0 {
			used.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if used.Load() != 3 {
		t.Fatalf("keys on %d of 3 masters", used.Load())
	}
}
