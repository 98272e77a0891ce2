// Package httpresult serves task results over HTTP:
//
//	GET /api/v1/tasks/{task_id}/result       the task's JSON result, or a 302 to a
//	                                         download link of its stored file
//	GET /api/v1/results/{id}/download?exp=&sig=
//	                                         the file itself, for a valid signed link
//
// The first route needs an authenticated caller (auth.FromContext) who may see
// the task; anyone else gets 404. The second is authorised by its signature
// alone. Handlers are plain net/http functions taking the path parameter, so
// that an Echo router and a ServeMux can both mount them.
package httpresult

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
)

// Paths of the two routes in net/http ServeMux pattern syntax.
const (
	TaskResultPattern = "GET /api/v1/tasks/{task_id}/result"
	DownloadPattern   = "GET /api/v1/results/{id}/download"
)

// Handler serves the result routes.
type Handler struct {
	db      *gorm.DB
	results *result.Store
	log     *zap.Logger
}

// New returns a Handler.
func New(db *gorm.DB, results *result.Store, log *zap.Logger) (*Handler, error) {
	if db == nil || results == nil || log == nil {
		return nil, errors.New("httpresult: db, results and log are required")
	}
	return &Handler{db: db, results: results, log: log}, nil
}

// Register mounts both routes on mux. The task route expects an earlier
// middleware to have put the caller's principal in the request context.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc(TaskResultPattern, func(w http.ResponseWriter, r *http.Request) {
		h.TaskResult(w, r, r.PathValue("task_id"))
	})
	mux.HandleFunc(DownloadPattern, func(w http.ResponseWriter, r *http.Request) {
		h.Download(w, r, r.PathValue("id"))
	})
}

// taskResultBody is the JSON answer of a task without a stored file.
type taskResultBody struct {
	TaskID string     `json:"task_id"`
	Status string     `json:"status"`
	Result store.JSON `json:"result"`
}

// TaskResult serves GET /api/v1/tasks/{task_id}/result. With files, the newest
// (or the one named by ?name=) is reached through a 302 to a fresh download
// link: an S3 presigned URL or the API's signed link. A JSON result carries a
// strong ETag (its SHA-256); If-None-Match with it answers 304. An ended
// task's view comes from the result cache when the store has one.
func (h *Handler) TaskResult(w http.ResponseWriter, r *http.Request, taskID string) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "missing or invalid bearer token")
		return
	}
	task, err := h.view(r.Context(), taskID)
	if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && !p.CanSee(task.CreatedBy)) {
		writeProblem(w, r, http.StatusNotFound, "not-found", "task not found")
		return
	}
	if err != nil {
		h.fail(w, r, "task result", err, taskID)
		return
	}
	name := r.URL.Query().Get("name")
	var pick *result.Result
	now := time.Now()
	for i, f := range task.Files {
		if (name == "" || f.Name == name) && f.ExpiresAt.After(now) {
			pick = &task.Files[i]
		}
	}
	if pick != nil {
		u, _, err := h.results.URL(r.Context(), *pick)
		if err != nil {
			h.fail(w, r, "task result: link", err, taskID)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, u, http.StatusFound)
		return
	}
	if name != "" {
		writeProblem(w, r, http.StatusNotFound, "not-found", "the task has no result file of that name")
		return
	}
	if len(task.Result) == 0 || string(task.Result) == "null" {
		writeProblem(w, r, http.StatusNotFound, "not-found", "the task has no result (status "+task.Status+")")
		return
	}
	body, err := json.Marshal(taskResultBody{TaskID: task.ID, Status: task.Status, Result: task.Result})
	if err != nil {
		h.fail(w, r, "task result: encode", err, taskID)
		return
	}
	sum := sha256.Sum256(body)
	tag := `"` + hex.EncodeToString(sum[:16]) + `"`
	hd := w.Header()
	hd.Set("ETag", tag)
	// Private: a shared cache must not keep one caller's result for another.
	hd.Set("Cache-Control", "private, no-cache")
	if matches(r.Header.Get("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

// view reads what the result route needs of task id: from the cache, or from
// PostgreSQL (then cached when the task has ended). A missing task is
// gorm.ErrRecordNotFound.
func (h *Handler) view(ctx context.Context, id string) (result.Cached, error) {
	cache := h.results.Cache()
	if v, ok := cache.Get(ctx, id); ok {
		return v, nil
	}
	var task store.Task
	if err := h.db.WithContext(ctx).Select("id", "status", "created_by", "result").
		Where("id = ?", id).Take(&task).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return result.Cached{}, err
		}
		return result.Cached{}, store.Translate(err)
	}
	files, err := h.results.ForTask(ctx, id)
	if err != nil {
		return result.Cached{}, err
	}
	v := result.Cached{ID: task.ID, Status: task.Status, CreatedBy: task.CreatedBy, Result: task.Result, Files: files}
	cache.Put(ctx, v)
	return v, nil
}

// matches reports whether an If-None-Match header names tag (or is "*").
func matches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		if t = strings.TrimSpace(t); t == tag || t == "*" {
			return true
		}
	}
	return false
}

// Download serves GET /api/v1/results/{id}/download?exp=…&sig=…: 403 for a bad
// signature, 410 for an expired link or result, else the file as an
// attachment.
func (h *Handler) Download(w http.ResponseWriter, r *http.Request, resultID string) {
	q := r.URL.Query()
	switch err := h.results.Signer().Verify(resultID, q.Get("exp"), q.Get("sig")); {
	case errors.Is(err, result.ErrLinkExpired):
		writeProblem(w, r, http.StatusGone, "link-expired", "the download link has expired; ask the task's result route for a new one")
		return
	case err != nil:
		writeProblem(w, r, http.StatusForbidden, "forbidden", "the download link is not valid")
		return
	}
	res, err := h.results.Get(r.Context(), resultID)
	if errors.Is(err, result.ErrNotFound) {
		writeProblem(w, r, http.StatusGone, "result-gone", "the result no longer exists")
		return
	}
	if err != nil {
		h.fail(w, r, "download: read result", err, resultID)
		return
	}
	rc, err := h.results.Open(r.Context(), res)
	if errors.Is(err, result.ErrExpired) || errors.Is(err, result.ErrNotFound) {
		writeProblem(w, r, http.StatusGone, "result-gone", "the result has expired")
		return
	}
	if err != nil {
		h.fail(w, r, "download: open result", err, resultID)
		return
	}
	defer rc.Close()
	hd := w.Header()
	hd.Set("Content-Type", res.ContentType)
	hd.Set("Content-Length", strconv.FormatInt(res.Size, 10))
	hd.Set("Content-Disposition", result.ContentDisposition(res.Name))
	hd.Set("X-Content-Type-Options", "nosniff")
	// An HTML report opened in place runs nothing and loads nothing.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	hd.Set("Cache-Control", "private, no-store")
	hd.Set("ETag", `"`+res.SHA256+`"`)
	if matches(r.Header.Get("If-None-Match"), `"`+res.SHA256+`"`) {
		hd.Del("Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		h.log.Warn("download interrupted", zap.String("result_id", resultID), zap.Error(err))
	}
}

// fail logs a server-side error and answers 500 without its details.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, msg string, err error, id string) {
	status, kind, detail := http.StatusInternalServerError, "internal", "an internal error occurred"
	if errors.Is(err, store.ErrUnavailable) {
		status, kind, detail = http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable; retry shortly"
	}
	h.log.Error(msg, zap.String("id", id), zap.Error(err))
	problem.Write(w, r, problem.New(status, kind, detail))
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, kind, detail string) {
	problem.Write(w, r, problem.New(status, kind, detail))
}
