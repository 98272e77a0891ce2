package worker

import (
	"sync"
	"time"
)

// delays keeps the retry delay of a task's pending retry so that Asynq's
// RetryDelayFunc and the recorded next_retry_at agree (the policy's jitter is
// random): whichever asks first computes it, the other takes it.
type delays struct {
	mu sync.Mutex
	m  map[string]delayEntry
}

type delayEntry struct {
	retried int
	d       time.Duration
	at      time.Time
}

func newDelays() *delays { return &delays{m: map[string]delayEntry{}} }

func (d *delays) get(id string, retried int, compute func() time.Duration) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[id]; ok && e.retried == retried && time.Since(e.at) < time.Minute {
		delete(d.m, id)
		return e.d
	}
	v := compute()
	if len(d.m) > 10000 {
		for k, e := range d.m {
			if time.Since(e.at) > time.Minute {
				delete(d.m, k)
			}
		}
	}
	d.m[id] = delayEntry{retried: retried, d: v, at: time.Now()}
	return v
}
