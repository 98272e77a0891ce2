package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
)

// The anchors of the system benchmark run in a process of their own (this
// program, re-executed as "loadtest anchor"), as the API and the worker do,
// so that their CPU is read from /proc the same way:
//
//   - -enqueue: a bare Echo server whose POST /enqueue decodes the body the
//     API takes ({"type","params"}) and calls asynq.Client.Enqueue (with the
//     id, the queue and, with -delay, the time an hour ahead), answering 201;
//   - -servers: raw Asynq servers on the worker's four queues, weights and
//     poll interval, with a no-op handler or one doing the HTTP request of
//     webhook_callback (the params' payload as JSON, Content-Type and
//     Idempotency-Key headers) to the params' url;
//   - -list-db: GET /tasks?limit=N, one SQL page of the tasks table in the
//     API's order, as JSON.
//
// It always serves GET /healthz on -http, which tells the parent it is ready.
type anchorConfig struct {
	http        string
	redisAddr   string
	redisDB     int
	enqueue     bool
	delay       time.Duration
	servers     int
	concurrency int
	handler     string
	listDB      string
}

func anchorMain(args []string) error {
	var c anchorConfig
	fs := flag.NewFlagSet("anchor", flag.ContinueOnError)
	fs.StringVar(&c.http, "http", "", "listen address")
	fs.StringVar(&c.redisAddr, "redis", "", "Redis address")
	fs.IntVar(&c.redisDB, "db", 0, "Redis database")
	fs.BoolVar(&c.enqueue, "enqueue", false, "serve POST /enqueue")
	fs.DurationVar(&c.delay, "delay", 0, "enqueue to run this far ahead")
	fs.IntVar(&c.servers, "servers", 0, "Asynq servers")
	fs.IntVar(&c.concurrency, "concurrency", 50, "total concurrency of the servers")
	fs.StringVar(&c.handler, "handler", "noop", "noop or webhook")
	fs.StringVar(&c.listDB, "list-db", "", "serve GET /tasks from this database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	redisOpt := asynq.RedisClientOpt{Addr: c.redisAddr, DB: c.redisDB}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	if c.enqueue {
		client := asynq.NewClient(redisOpt)
		defer client.Close()
		delay := c.delay
		e.POST("/enqueue", func(c echo.Context) error {
			var body struct {
				Type   string          `json:"type"`
				Params json.RawMessage `json:"params"`
			}
			if err := json.NewDecoder(c.Request().Body).Decode(&body); err != nil {
				return echo.ErrBadRequest
			}
			id := newID()
			opts := []asynq.Option{asynq.TaskID(id), asynq.Queue("normal")}
			if delay > 0 {
				opts = append(opts, asynq.ProcessAt(time.Now().Add(delay)))
			}
			if _, err := client.EnqueueContext(c.Request().Context(), asynq.NewTask(body.Type, body.Params), opts...); err != nil {
				return echo.ErrServiceUnavailable
			}
			return c.JSON(http.StatusCreated, map[string]string{"task_id": id, "status": "pending"})
		})
	}
	if c.listDB != "" {
		db, err := sql.Open("pgx", c.listDB)
		if err != nil {
			return err
		}
		defer db.Close()
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(20)
		e.GET("/tasks", func(c echo.Context) error { return listPage(c, db) })
	}
	var servers []*asynq.Server
	if c.servers > 0 {
		h, err := anchorHandler(c.handler, c.concurrency)
		if err != nil {
			return err
		}
		for i := range c.servers {
			n := c.concurrency / c.servers
			if i < c.concurrency%c.servers {
				n++
			}
			srv := asynq.NewServer(redisOpt, asynq.Config{
				Concurrency:              max(n, 1),
				Queues:                   map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1},
				StrictPriority:           true,
				TaskCheckInterval:        100 * time.Millisecond,
				DelayedTaskCheckInterval: time.Second,
				LogLevel:                 asynq.WarnLevel,
			})
			if err := srv.Start(h); err != nil {
				return err
			}
			servers = append(servers, srv)
		}
	}
	ln, err := net.Listen("tcp", c.http)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	<-ctx.Done()
	_ = hs.Close()
	for _, s := range servers {
		s.Shutdown()
	}
	return nil
}

// anchorHandler is the raw Asynq handler of the anchor servers.
func anchorHandler(kind string, concurrency int) (asynq.Handler, error) {
	switch kind {
	case "noop":
		return asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }), nil
	case "webhook":
		// A client as a Go program calling one receiver would use: keep-alive
		// connections, one per concurrent call.
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 100, MaxIdleConnsPerHost: concurrency, IdleConnTimeout: 90 * time.Second,
		}}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			var p struct {
				URL     string          `json:"url"`
				Payload json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal(t.Payload(), &p); err != nil {
				return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
			}
			if len(p.Payload) == 0 {
				p.Payload = []byte("{}")
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, p.Payload); err != nil {
				return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, &buf)
			if err != nil {
				return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
			}
			id, _ := asynq.GetTaskID(ctx)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", id)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}), nil
	}
	return nil, fmt.Errorf("anchor: unknown handler %q", kind)
}

// listPage answers one page of the tasks table, newest first (the API's
// default order, created_at then id), with the columns of a task view.
func listPage(c echo.Context, db *sql.DB) error {
	limit, err := strconv.Atoi(c.QueryParam("limit"))
	if err != nil || limit < 1 || limit > 500 {
		limit = 50
	}
	rows, err := db.QueryContext(c.Request().Context(), `SELECT id, type, status, priority, params, created_by, created_at, updated_at,
		scheduled_for, started_at, completed_at, progress, attempt, max_retries FROM tasks
		ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return echo.ErrServiceUnavailable
	}
	defer rows.Close()
	type task struct {
		ID           string          `json:"task_id"`
		Type         string          `json:"type"`
		Status       string          `json:"status"`
		Priority     string          `json:"priority"`
		Params       json.RawMessage `json:"params"`
		CreatedBy    string          `json:"created_by"`
		CreatedAt    time.Time       `json:"created_at"`
		UpdatedAt    time.Time       `json:"updated_at"`
		ScheduledFor time.Time       `json:"scheduled_for"`
		StartedAt    *time.Time      `json:"started_at"`
		CompletedAt  *time.Time      `json:"completed_at"`
		Progress     float64         `json:"progress"`
		Attempt      int             `json:"attempt"`
		MaxRetries   int             `json:"max_retries"`
	}
	var items []task
	for rows.Next() {
		var t task
		var params []byte
		if err := rows.Scan(&t.ID, &t.Type, &t.Status, &t.Priority, &params, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt,
			&t.ScheduledFor, &t.StartedAt, &t.CompletedAt, &t.Progress, &t.Attempt, &t.MaxRetries); err != nil {
			return echo.ErrServiceUnavailable
		}
		t.Params = params
		items = append(items, t)
	}
	if rows.Err() != nil {
		return echo.ErrServiceUnavailable
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

// startAnchor re-executes this program as "loadtest anchor" with args (and
// -http on a free address) and waits until it answers /healthz. It returns
// the process and its base URL.
func startAnchor(ctx context.Context, dir, name string, args ...string) (*service, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	s, err := startCommand(name, logPath, f, self, append([]string{"anchor", "-http", addr}, args...), os.Environ())
	if err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	if err := s.waitReady(ctx, url+"/healthz", 30*time.Second); err != nil {
		_ = s.stop()
		return nil, "", err
	}
	return s, url, nil
}
