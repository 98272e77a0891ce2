// Package health serves /healthz, /readyz and /metrics. /healthz says the process
// is alive; /readyz checks each dependency (Redis, PostgreSQL) and answers 503
// naming the ones that are down; /metrics exposes Prometheus metrics.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// Checker runs named checks with a timeout each.
type Checker struct {
	checks  map[string]Check
	timeout time.Duration
	up      *prometheus.GaugeVec
}

// NewChecker returns a Checker for checks. It registers the gauge
// taskforge_dependency_up{dependency} in reg when reg is not nil.
func NewChecker(checks map[string]Check, reg prometheus.Registerer) *Checker {
	c := &Checker{checks: checks, timeout: 2 * time.Second}
	c.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "taskforge_dependency_up",
		Help: "Whether a dependency answered the last readiness check (1) or not (0).",
	}, []string{"dependency"})
	if reg != nil {
		reg.MustRegister(c.up)
	}
	return c
}

// Status is the result of the checks.
type Status struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Down   []string          `json:"down,omitempty"`
}

// Run runs every check concurrently.
func (c *Checker) Run(ctx context.Context) Status {
	st := Status{Status: "ok", Checks: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range c.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			err := check(cctx)
			if err == nil && cctx.Err() != nil {
				err = cctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				st.Checks[name] = "down: " + err.Error()
				st.Down = append(st.Down, name)
				c.up.WithLabelValues(name).Set(0)
				return
			}
			st.Checks[name] = "ok"
			c.up.WithLabelValues(name).Set(1)
		}()
	}
	wg.Wait()
	sort.Strings(st.Down)
	if len(st.Down) > 0 {
		st.Status = "unavailable"
	}
	return st
}

// Healthz answers 200 while the process runs.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Readyz answers 200 when every check passes, else 503 with the checks.
func (c *Checker) Readyz(w http.ResponseWriter, r *http.Request) {
	st := c.Run(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if len(st.Down) > 0 {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}

// Mux returns a mux with /healthz, /readyz and /metrics (gathered from g).
func (c *Checker) Mux(g prometheus.Gatherer) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", Healthz)
	mux.HandleFunc("GET /readyz", c.Readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

// Server is an HTTP server that can be run and shut down with a deadline.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and returns a server for h. Binding early lets callers learn
// the port (addr may end in :0) before serving.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Server{ln: ln, srv: &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second,
	}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting connections and waits for open ones until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
