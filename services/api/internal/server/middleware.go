package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// HeaderRequestID carries the request id in and out.
const HeaderRequestID = problem.HeaderRequestID

const ctxRequestID = "request_id"

// httpMetrics are the API's request metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_api_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "taskforge_api_request_duration_seconds", Help: "HTTP request latency by method and route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe gives each request an id (X-Request-ID, echoed), turns panics into a
// logged 500 without details, handles the error and logs one line per request
// (never bodies or the Authorization header) and records the metrics.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		start := time.Now()
		rid := c.Request().Header.Get(HeaderRequestID)
		if !problem.ValidRequestID(rid) {
			rid = problem.NewRequestID()
		}
		c.Set(ctxRequestID, rid)
		c.Response().Header().Set(HeaderRequestID, rid)
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
				if rerr, ok := r.(error); ok && errors.Is(rerr, http.ErrAbortHandler) {
					panic(r)
				}
			}
			if err != nil {
				c.Error(err)
				err = nil
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			elapsed := time.Since(start)
			tracing.SetRoute(c.Request().Context(), c.Request().Method, route)
			s.metrics.requests.WithLabelValues(c.Request().Method, route, strconv.Itoa(status)).Inc()
			s.metrics.duration.WithLabelValues(c.Request().Method, route).Observe(elapsed.Seconds())
			fields := []zap.Field{
				logging.RequestID(rid), zap.String("method", c.Request().Method), zap.String("route", route),
				zap.String("path", c.Request().URL.Path), zap.Int("status", status), zap.Duration("duration", elapsed),
				zap.Int64("bytes_out", c.Response().Size),
			}
			if p, ok := auth.FromContext(c.Request().Context()); ok {
				fields = append(fields, zap.String("principal", p.ID))
			}
			if ce := s.log.Check(zap.InfoLevel, "request"); ce != nil {
				ce.Write(fields...)
			}
		}()
		return next(c)
	}
}

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// limitBody refuses bodies over the limit: at once when Content-Length says so,
// else when reading passes it (*http.MaxBytesError, mapped to 413). The upload
// route's limit is the upload cap (plus room for a multipart envelope).
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		limit := s.limit
		if s.uploads != nil && r.Method == http.MethodPost && c.Path() == uploadPath {
			limit = s.uploadBodyLimit()
		}
		// A webhook hook reads its body through the cap itself, so that
		// the trigger's deliveries record the refusal too.
		if r.ContentLength > limit && c.Path() != hookRoute {
			return newError(http.StatusRequestEntityTooLarge, "payload-too-large",
				fmt.Sprintf("the body exceeds %d bytes", limit))
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
		}
		return next(c)
	}
}

// requireAdmin lets admins through and answers 403 to everyone else.
func requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !principal(c).IsAdmin() {
			return errForbidden
		}
		return next(c)
	}
}

// principal is the authenticated caller; routes without authenticate get the
// zero Principal, which may do nothing.
func principal(c echo.Context) auth.Principal {
	p, _ := auth.FromContext(c.Request().Context())
	return p
}

// jsonEncoder writes compact JSON without HTML escaping.
func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// writeJSON answers status with v as JSON.
func writeJSON(c echo.Context, status int, v any) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	c.Response().WriteHeader(status)
	return jsonEncoder(c.Response()).Encode(v)
}
