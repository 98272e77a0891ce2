package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/upload"
)

// Audit names of uploads. Rows name the upload id, its size and content type,
// never its file name or content.
const (
	actionUploadCreate = "upload.create"
	readUpload         = "upload.read"
	resourceUpload     = "upload"
)

// uploadPath is the upload route, whose body limit is the upload cap rather
// than the JSON body limit.
const uploadPath = "/api/v1/uploads"

// multipartSlack is what a multipart body may carry beyond the file itself
// (boundaries, part headers, small form fields) within the upload route's
// body limit; the file is held to the cap exactly.
const multipartSlack = 64 << 10

var (
	errUploadsOff      = newError(http.StatusServiceUnavailable, "unavailable", "uploads are not configured on this server")
	errUploadNotFound  = newError(http.StatusNotFound, "not-found", "no such upload")
	errUploadFileField = newError(http.StatusUnprocessableEntity, "validation", "the request breaks a rule",
		tasks.FieldError{Field: "file", Message: "is required: a multipart form needs a part named file"})
)

// uploadView is an upload as the API shows it.
type uploadView struct {
	UploadID    string    `json:"upload_id"`
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// DownloadURL and DownloadExpiresAt are set on GET only.
	DownloadURL       string     `json:"download_url,omitempty"`
	DownloadExpiresAt *time.Time `json:"download_expires_at,omitempty"`
}

func viewUpload(u upload.Upload) uploadView {
	return uploadView{UploadID: u.ID, Name: u.Name, Size: u.Size, SHA256: u.SHA256, ContentType: u.ContentType,
		CreatedBy: u.CreatedBy, CreatedAt: u.CreatedAt.UTC(), ExpiresAt: u.ExpiresAt.UTC()}
}

// uploadBodyLimit is the body limit of the upload route.
func (s *Server) uploadBodyLimit() int64 { return s.uploads.MaxBytes() + multipartSlack }

// createUpload handles POST /api/v1/uploads (operators and admins): a
// multipart form with the file in the part named file, or the raw file as the
// body with ?name=. The file streams to result storage; 201 with the upload.
func (s *Server) createUpload(c echo.Context) error {
	var up upload.Upload
	err := s.doCreateUpload(c, &up)
	o, details := outcome(err)
	if err == nil {
		details = map[string]any{"size": up.Size, "content_type": up.ContentType}
	}
	s.record(c, audit.Entry{Action: actionUploadCreate, ResourceType: resourceUpload, ResourceID: up.ID, Outcome: o, Details: details})
	if err == nil && s.uploadObserver != nil {
		s.uploadObserver.Uploaded(context.WithoutCancel(c.Request().Context()), up)
	}
	return err
}

func (s *Server) doCreateUpload(c echo.Context, out *upload.Upload) error {
	if s.uploads == nil {
		return errUploadsOff
	}
	p := principal(c)
	if !auth.Allowed(p, auth.CreateUpload) {
		return errForbidden
	}
	// A large file on a slow link outlasts the server's read and write
	// timeouts, which suit JSON bodies; this request gets its own.
	rc := http.NewResponseController(c.Response())
	deadline := time.Now().Add(s.uploadTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
	r := c.Request()
	name, declared, body, err := uploadSource(c)
	if err != nil {
		return err
	}
	up, err := s.uploads.Put(r.Context(), p.ID, name, declared, body)
	var te *upload.TypeError
	switch {
	case errors.Is(err, upload.ErrTooLarge):
		return newError(http.StatusRequestEntityTooLarge, "payload-too-large",
			fmt.Sprintf("the file exceeds %d bytes (api.upload_limit)", s.uploads.MaxBytes()))
	case errors.As(err, &te):
		return newError(http.StatusUnsupportedMediaType, "unsupported-media-type", "the declared content type does not match the content",
			tasks.FieldError{Field: "content_type", Message: te.Error()})
	case err != nil:
		return err
	}
	*out = up
	s.log.Info("upload stored", logging.RequestID(requestID(c)), zap.String("upload_id", up.ID),
		zap.Int64("size", up.Size), zap.String("content_type", up.ContentType))
	c.Response().Header().Set(echo.HeaderLocation, uploadPath+"/"+up.ID)
	return writeJSON(c, http.StatusCreated, viewUpload(up))
}

// uploadSource finds the file of an upload request: the multipart part named
// file (its file name, or ?name=, and its declared type), or the raw body
// (?name= required, the request's Content-Type).
func uploadSource(c echo.Context) (name, declared string, body io.Reader, err error) {
	r := c.Request()
	name = c.QueryParam("name")
	ct := r.Header.Get(echo.HeaderContentType)
	if mt, _, perr := mime.ParseMediaType(ct); perr == nil && mt == "multipart/form-data" {
		mr, merr := r.MultipartReader()
		if merr != nil {
			return "", "", nil, badRequest("file", "the multipart body is malformed")
		}
		for {
			part, perr := mr.NextPart()
			if errors.Is(perr, io.EOF) {
				return "", "", nil, errUploadFileField
			}
			if perr != nil {
				var mbe *http.MaxBytesError
				if errors.As(perr, &mbe) {
					return "", "", nil, perr
				}
				return "", "", nil, badRequest("file", "the multipart body is malformed")
			}
			if part.FormName() != "file" {
				continue // the next NextPart discards it
			}
			if name == "" {
				name = part.FileName()
			}
			if name == "" {
				return "", "", nil, validationError("name", "is required: give the part a file name or pass ?name=")
			}
			return name, part.Header.Get(echo.HeaderContentType), part, nil
		}
	}
	if name == "" {
		return "", "", nil, validationError("name", "is required with a raw body")
	}
	if r.Body == nil {
		return name, ct, http.NoBody, nil
	}
	return name, ct, r.Body, nil
}

// validationError is a 422 naming one field.
func validationError(field, message string) *apiError {
	return newError(http.StatusUnprocessableEntity, "validation", "the request breaks a rule",
		tasks.FieldError{Field: field, Message: message})
}

// getUpload handles GET /api/v1/uploads/{upload_id}: the upload's metadata
// and a fresh download link, to its uploader and to admins (another's is 404).
func (s *Server) getUpload(c echo.Context) error {
	if s.uploads == nil {
		return errUploadsOff
	}
	p := principal(c)
	if !auth.Allowed(p, auth.ReadUpload) {
		return errForbidden
	}
	up, err := s.uploads.Get(c.Request().Context(), c.Param("upload_id"))
	if errors.Is(err, upload.ErrNotFound) {
		return errUploadNotFound
	}
	if err != nil {
		return err
	}
	ok, override := auth.AllowedOn(p, auth.ReadUpload, up.CreatedBy)
	if !ok {
		return errUploadNotFound
	}
	v := viewUpload(up)
	u, exp, err := s.uploads.URL(c.Request().Context(), up)
	if errors.Is(err, upload.ErrNotFound) {
		return errUploadNotFound
	}
	if err != nil {
		return err
	}
	v.DownloadURL, v.DownloadExpiresAt = u, &exp
	if override {
		s.record(c, audit.Entry{Action: audit.ActionAdminOverride, ResourceType: resourceUpload, ResourceID: up.ID,
			Outcome: audit.Success, Details: map[string]any{"action": readUpload, "owner": up.CreatedBy},
			Aggregate: p.ID + "|" + readUpload + "|" + up.ID})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeJSON(c, http.StatusOK, v)
}

// downloadUpload handles GET /api/v1/uploads/{upload_id}/download?exp=&sig=,
// authorised by its signature alone: 403 for a bad signature, 410 for an
// expired link or upload, else the file as an attachment.
func (s *Server) downloadUpload(c echo.Context) error {
	if s.uploads == nil {
		return errUploadsOff
	}
	id := c.Param("upload_id")
	q := c.QueryParams()
	switch err := s.uploads.Signer().VerifyUpload(id, q.Get("exp"), q.Get("sig")); {
	case errors.Is(err, result.ErrLinkExpired):
		return newError(http.StatusGone, "link-expired", "the download link has expired; ask GET /api/v1/uploads/{upload_id} for a new one")
	case err != nil:
		return newError(http.StatusForbidden, "forbidden", "the download link is not valid")
	}
	ctx := c.Request().Context()
	up, err := s.uploads.Get(ctx, id)
	if errors.Is(err, upload.ErrNotFound) {
		return newError(http.StatusGone, "upload-gone", "the upload no longer exists")
	}
	if err != nil {
		return err
	}
	rc, err := s.uploads.Open(ctx, up)
	if errors.Is(err, upload.ErrNotFound) {
		return newError(http.StatusGone, "upload-gone", "the upload no longer exists")
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, up.ContentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(up.Size, 10))
	h.Set(echo.HeaderContentDisposition, result.ContentDisposition(up.Name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, no-store")
	c.Response().WriteHeader(http.StatusOK)
	if _, err := io.Copy(c.Response(), rc); err != nil {
		s.log.Warn("upload download interrupted", zap.String("upload_id", id), zap.Error(err))
	}
	return nil
}
