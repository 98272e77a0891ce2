package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time used so far by this process (server and client
// loop), the PostgreSQL backends serving one database and the Redis server:
// a figure that, unlike throughput, does not depend on what else the machine
// runs.
type cpuSample struct {
	self, postgres, redis time.Duration
}

// clockTick is the kernel's USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

func sampleCPU(dbName, redisPort string) cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, err := os.ReadFile(p + "/cmdline")
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(string(cmd), "\x00", " ")
		switch {
		case strings.HasPrefix(line, "postgres: ") && strings.Contains(line, " "+dbName+" "):
			s.postgres += procCPU(p)
		case strings.Contains(line, "redis-server") && strings.Contains(line, ":"+redisPort):
			s.redis += procCPU(p)
		}
	}
	return s
}

// procCPU reads utime + stime from /proc/<pid>/stat.
func procCPU(dir string) time.Duration {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

func (a cpuSample) sub(b cpuSample) cpuSample {
	return cpuSample{self: a.self - b.self, postgres: a.postgres - b.postgres, redis: a.redis - b.redis}
}

// perRequest is CPU µs per request of each part.
func (a cpuSample) perRequest(n int) (self, pg, rd, total float64) {
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	return us(a.self), us(a.postgres), us(a.redis), us(a.self + a.postgres + a.redis)
}
