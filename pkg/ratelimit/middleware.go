package ratelimit

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/problem"
)

// errorLogEvery throttles the log line of a Redis outage.
const errorLogEvery = 10 * time.Second

// MiddlewareOptions configure Middleware.
type MiddlewareOptions struct {
	// Config holds whether limiting is on and the rate and burst per role
	// (config.RateLimitConfig.PerRole, keyed "viewer", "operator", "admin").
	Config config.RateLimitConfig
	// Anonymous limits requests without a principal, per client address (put
	// the middleware before authentication to slow credential guessing). If
	// zero, the viewer limit.
	Anonymous config.RateLimit
	// ClientIP returns the client's address for anonymous requests. If nil, the
	// host of r.RemoteAddr.
	ClientIP func(r *http.Request) string
	// AddressKey groups client addresses into budgets (clientip.Resolver.Key:
	// an IPv6 address counts as its /64). If nil, each IPv4 address and each
	// IPv6 /64 has a budget of its own.
	AddressKey func(addr string) string
	// Local judges every request by this replica's memory alone, never
	// Redis: for the pre-authentication address guard, whose budget then is
	// per replica (N replicas allow an address N times the limit) and costs
	// no round trip. A caller's limit stays shared through Redis.
	Local bool
	// Log receives the fallback to local limits when Redis fails (at most
	// one line every few seconds) and the return to Redis. If nil, nothing is
	// logged.
	Log *zap.Logger
}

// Middleware limits each caller: the principal on the request's context (see
// auth.Middleware) by its role's limit, keyed by principal id, or without a
// principal the client address by the Anonymous limit. A refused request gets
// 429 problem+json with Retry-After in whole seconds (at least 1). A principal
// whose role has no configured limit is not limited. Disabled configuration
// makes it a pass-through. While Redis is unavailable both limits are this
// replica's own (Limiter.Decide); the fallback is logged at most every
// errorLogEvery, and the return to Redis once.
func Middleware(l *Limiter, o MiddlewareOptions) (func(http.Handler) http.Handler, error) {
	if !o.Config.Enabled {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	if l == nil {
		return nil, fmt.Errorf("ratelimit: nil limiter")
	}
	for role, rl := range o.Config.PerRole {
		if !auth.Role(role).Valid() {
			return nil, fmt.Errorf("ratelimit: ratelimit.per_role.%s: unknown role", role)
		}
		if !(rl.RPS > 0) || rl.Burst < 1 {
			return nil, fmt.Errorf("ratelimit: ratelimit.per_role.%s: %w", role, ErrInvalidLimit)
		}
	}
	if o.Anonymous == (config.RateLimit{}) {
		o.Anonymous = o.Config.PerRole[string(auth.Viewer)]
	}
	if o.ClientIP == nil {
		o.ClientIP = func(r *http.Request) string {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				return r.RemoteAddr
			}
			return host
		}
	}
	if o.AddressKey == nil {
		o.AddressKey = func(addr string) string { return clientip.Key(addr, clientip.DefaultIPv6Prefix) }
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	var lastLog atomic.Int64
	var wasLocal atomic.Bool
	decide := l.Decide
	if o.Local {
		own := newLocalLimiter(l.opts.MaxLocalKeys)
		decide = func(_ context.Context, key string, rate float64, burst int) (Result, bool, error) {
			return own.check(key, rate, burst, time.Now()), false, nil
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var key string
			var limit config.RateLimit
			if p, ok := auth.FromContext(r.Context()); ok {
				key, limit = "p:"+p.ID, o.Config.PerRole[string(p.Role)]
			} else {
				key, limit = "ip:"+o.AddressKey(o.ClientIP(r)), o.Anonymous
			}
			if limit.RPS <= 0 || limit.Burst < 1 {
				next.ServeHTTP(w, r)
				return
			}
			res, local, err := decide(r.Context(), key, limit.RPS, limit.Burst)
			if local {
				if now := time.Now().UnixNano(); err != nil {
					if last := lastLog.Load(); now-last > int64(errorLogEvery) && lastLog.CompareAndSwap(last, now) {
						o.Log.Warn("rate limiter: Redis unavailable, judging requests by this replica's local limits", zap.Error(err))
					}
				}
				wasLocal.Store(true)
			} else if err == nil && wasLocal.CompareAndSwap(true, false) {
				o.Log.Info("rate limiter: Redis is back, shared limits again")
			}
			w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit.Burst))
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
			if !res.Allowed {
				secs := int(math.Ceil(res.RetryAfter.Seconds()))
				if secs < 1 {
					secs = 1
				}
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				problem.WriteStatus(w, r, http.StatusTooManyRequests,
					fmt.Sprintf("rate limit exceeded: retry in %d s", secs))
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}
