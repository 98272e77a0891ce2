package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/problem/problemtest"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/upload"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/services/api/client"
)

// putUpload stores an upload of owner directly.
func putUpload(t *testing.T, b testBundle, owner, name, contentType, body string) upload.Upload {
	t.Helper()
	up, err := b.uploads.Put(context.Background(), owner, name, contentType, strings.NewReader(body))
	require.NoError(t, err)
	return up
}

// multipartBody is a form with the file in its part named field.
func multipartBody(t *testing.T, field, filename, contentType string, content []byte) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	require.NoError(t, w.WriteField("note", "ignored"))
	h := make(map[string][]string)
	h["Content-Disposition"] = []string{`form-data; name="` + field + `"; filename="` + filename + `"`}
	if contentType != "" {
		h["Content-Type"] = []string{contentType}
	}
	part, err := w.CreatePart(h)
	require.NoError(t, err)
	_, err = part.Write(content)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return &buf, w.FormDataContentType()
}

// decodeUpload reads an upload answer.
func decodeUpload(t *testing.T, resp *http.Response) uploadView {
	t.Helper()
	var v uploadView
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

// storedFiles lists the regular files under dir.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	}))
	return out
}

// TestUploadMultipartAndRaw: an operator uploads a CSV as a multipart form and
// a JSON file as a raw body; both answer 201 with the size and SHA-256 of the
// bytes, the metadata route gives a signed link that downloads exactly them,
// and the upload is audited.
func TestUploadMultipartAndRaw(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	csv := []byte("symbol,date,open,high,low,close,volume\nAAPL,2024-01-02,10,11,9,10.5,1000\n")
	body, ct := multipartBody(t, "file", "../prices.csv", "text/csv", csv)
	resp := b.raw(t, http.MethodPost, "/api/v1/uploads", tokOp, body, map[string]string{"Content-Type": ct})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	v := decodeUpload(t, resp)
	sum := sha256.Sum256(csv)
	require.Equal(t, hex.EncodeToString(sum[:]), v.SHA256)
	require.EqualValues(t, len(csv), v.Size)
	require.Equal(t, "prices.csv", v.Name, "the name is sanitized")
	require.Equal(t, "text/csv", v.ContentType)
	require.Equal(t, "key_op", v.CreatedBy)
	require.Equal(t, "/api/v1/uploads/"+v.UploadID, resp.Header.Get("Location"))

	got := b.raw(t, http.MethodGet, "/api/v1/uploads/"+v.UploadID, tokOp, nil, nil)
	require.Equal(t, http.StatusOK, got.StatusCode)
	meta := decodeUpload(t, got)
	require.NotEmpty(t, meta.DownloadURL)
	u, err := url.Parse(meta.DownloadURL)
	require.NoError(t, err)
	dl := b.raw(t, http.MethodGet, u.RequestURI(), "", nil, nil)
	require.Equal(t, http.StatusOK, dl.StatusCode)
	content, err := io.ReadAll(dl.Body)
	require.NoError(t, err)
	require.Equal(t, csv, content)
	require.Contains(t, dl.Header.Get("Content-Disposition"), "prices.csv")

	// A tampered signature is 403; a result link's signature does not open an upload.
	q := u.Query()
	q.Set("sig", q.Get("sig")[1:]+"A")
	bad := b.raw(t, http.MethodGet, u.Path+"?"+q.Encode(), "", nil, nil)
	require.Equal(t, http.StatusForbidden, bad.StatusCode)
	resLink, _ := b.uploads.Signer().LinkFor(v.UploadID, *meta.DownloadExpiresAt)
	ru, err := url.Parse(resLink)
	require.NoError(t, err)
	cross := b.raw(t, http.MethodGet, u.Path+"?"+ru.RawQuery, "", nil, nil)
	require.Equal(t, http.StatusForbidden, cross.StatusCode)

	// A raw body with ?name= and a declared type.
	raw := b.raw(t, http.MethodPost, "/api/v1/uploads?name=holdings.json", tokAdmin,
		strings.NewReader(`[{"symbol":"AAPL"}]`), map[string]string{"Content-Type": "application/json"})
	require.Equal(t, http.StatusCreated, raw.StatusCode)
	rv := decodeUpload(t, raw)
	require.Equal(t, "application/json", rv.ContentType)
	require.Equal(t, "holdings.json", rv.Name)

	var entries []store.AuditEntry
	require.NoError(t, b.pg.DB.Where("action = ? AND outcome = ?", actionUploadCreate, audit.Success).Order("id").Find(&entries).Error)
	require.Len(t, entries, 2)
	require.Equal(t, v.UploadID, entries[0].ResourceID)
	require.Equal(t, "key_op", entries[0].Actor)
	require.NotContains(t, string(entries[0].Details), "prices.csv", "the audit row carries no file name")
}

// TestUploadBadRequests: a missing file part or name is 422 naming the field;
// a declared type the content contradicts is 415 naming content_type; none
// of them stores anything.
func TestUploadBadRequests(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	pdf := []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n")
	cases := []struct {
		name   string
		send   func() *http.Response
		status int
		field  string
	}{
		{"no file part", func() *http.Response {
			body, ct := multipartBody(t, "other", "x.csv", "text/csv", []byte("a,b\n"))
			return b.raw(t, http.MethodPost, "/api/v1/uploads", tokOp, body, map[string]string{"Content-Type": ct})
		}, http.StatusUnprocessableEntity, "file"},
		{"raw without name", func() *http.Response {
			return b.raw(t, http.MethodPost, "/api/v1/uploads", tokOp, strings.NewReader("a,b\n"), map[string]string{"Content-Type": "text/csv"})
		}, http.StatusUnprocessableEntity, "name"},
		{"csv that is a pdf", func() *http.Response {
			body, ct := multipartBody(t, "file", "prices.csv", "text/csv", pdf)
			return b.raw(t, http.MethodPost, "/api/v1/uploads", tokOp, body, map[string]string{"Content-Type": ct})
		}, http.StatusUnsupportedMediaType, "content_type"},
		{"json that is csv", func() *http.Response {
			return b.raw(t, http.MethodPost, "/api/v1/uploads?name=x.json", tokOp, strings.NewReader("a,b\n1,2\n"),
				map[string]string{"Content-Type": "application/json"})
		}, http.StatusUnsupportedMediaType, "content_type"},
	}
	for _, tc := range cases {
		resp := tc.send()
		require.Equal(t, tc.status, resp.StatusCode, tc.name)
		var p client.Problem
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&p), tc.name)
		require.Equal(t, []string{tc.field}, fields(&p), tc.name)
	}
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Upload{}).Count(&n).Error)
	require.Zero(t, n)
	require.Empty(t, storedFiles(t, b.storageDir))
}

// TestUploadOverCapLeavesNothing: past api.upload_limit an upload is 413,
// whether the length is announced (refused before reading), streamed without
// one (cut while streaming) or wrapped in a multipart form; no row and no file
// remain. An upload of exactly the cap is stored.
func TestUploadOverCapLeavesNothing(t *testing.T) {
	t.Parallel()
	const limit = 4096
	b := setupWith(t, setupOptions{secure: true, uploadLimit: limit})
	over := bytes.Repeat([]byte("a,b\n"), limit/4+1)
	send := func(r io.Reader, ct string, length int64) *http.Response {
		req, err := http.NewRequest(http.MethodPost, b.http.URL+"/api/v1/uploads?name=big.csv", r)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tokOp)
		req.Header.Set("Content-Type", ct)
		req.ContentLength = length
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	// Announced length within the route's envelope, file over the cap.
	require.Equal(t, http.StatusRequestEntityTooLarge, send(bytes.NewReader(over), "text/csv", int64(len(over))).StatusCode)
	// Chunked: no length announced.
	require.Equal(t, http.StatusRequestEntityTooLarge, send(io.MultiReader(bytes.NewReader(over)), "text/csv", -1).StatusCode)
	// Announced length past the envelope: refused before reading.
	huge := bytes.Repeat([]byte("x"), limit+multipartSlack+1)
	require.Equal(t, http.StatusRequestEntityTooLarge, send(bytes.NewReader(huge), "text/csv", int64(len(huge))).StatusCode)
	// Multipart.
	body, ct := multipartBody(t, "file", "big.csv", "text/csv", over)
	resp := b.raw(t, http.MethodPost, "/api/v1/uploads", tokOp, body, map[string]string{"Content-Type": ct})
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	problemtest.Require(t, resp, "multipart over the cap")

	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Upload{}).Count(&n).Error)
	require.Zero(t, n, "no upload row")
	require.Empty(t, storedFiles(t, b.storageDir), "nothing left in storage")

	exact := bytes.Repeat([]byte("a,b\n"), limit/4)
	ok := send(bytes.NewReader(exact), "text/csv", int64(len(exact)))
	require.Equal(t, http.StatusCreated, ok.StatusCode)
	require.Len(t, storedFiles(t, b.storageDir), 1)
}

// TestUploadOwnership: a viewer cannot upload; an operator cannot read
// another operator's upload (404, as an unknown id); an admin can, and the
// read is an audited override.
func TestUploadOwnership(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	viewer := b.raw(t, http.MethodPost, "/api/v1/uploads?name=x.csv", tokViewer, strings.NewReader("a,b\n"), map[string]string{"Content-Type": "text/csv"})
	require.Equal(t, http.StatusForbidden, viewer.StatusCode)

	up := putUpload(t, b, "key_op", "mine.csv", "text/csv", "a,b\n1,2\n")
	require.Equal(t, http.StatusOK, b.raw(t, http.MethodGet, "/api/v1/uploads/"+up.ID, tokOp, nil, nil).StatusCode)
	require.Equal(t, http.StatusNotFound, b.raw(t, http.MethodGet, "/api/v1/uploads/"+up.ID, tokOp2, nil, nil).StatusCode)
	require.Equal(t, http.StatusNotFound, b.raw(t, http.MethodGet, "/api/v1/uploads/"+up.ID, tokViewer, nil, nil).StatusCode)
	require.Equal(t, http.StatusNotFound, b.raw(t, http.MethodGet, "/api/v1/uploads/upl_01hz3k8c2m4n5p6q7r8s9t0v1w", tokOp, nil, nil).StatusCode)
	require.Equal(t, http.StatusOK, b.raw(t, http.MethodGet, "/api/v1/uploads/"+up.ID, tokAdmin, nil, nil).StatusCode)

	var o store.AuditEntry
	require.NoError(t, b.pg.DB.Where("action = ? AND resource_id = ?", audit.ActionAdminOverride, up.ID).Take(&o).Error)
	require.Equal(t, "key_admin", o.Actor)
	require.Contains(t, string(o.Details), readUpload)
}

// TestUploadImportsThroughTheWorker: an operator's uploaded CSV becomes an
// import_prices task (created through the API, run by the worker's real
// handler) after which the prices are queryable, its bad row reported with
// its line number; a file over max_bad_ratio fails and writes nothing; an
// import_holdings replace, then a merge, change the operator's portfolio.
func TestUploadImportsThroughTheWorker(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	require.NoError(t, queue.Register(ctx, b.rd.Client))
	importer, err := portfolio.NewImporter(b.pg.DB, b.uploads, nil, portfolio.ImportOptions{})
	require.NoError(t, err)
	rt, err := worker.New(b.pg.DB, b.rd.Client, b.inspector, zap.NewNop(), worker.Options{
		WorkerID: "imports-worker", Handlers: importer.Handlers(),
		FlushInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	serveTasks(t, b, rt, 2)
	for _, q := range []string{
		`INSERT INTO assets (symbol, name, kind) VALUES ('AAA', 'A', 'equity'), ('BBB', 'B', 'equity')`,
		`INSERT INTO portfolios (id, name, owner) VALUES ('pf_ops', 'Ops', 'key_op')`,
		`INSERT INTO holdings (portfolio_id, asset_symbol, quantity) VALUES ('pf_ops', 'AAA', 3)`,
	} {
		require.NoError(t, b.pg.DB.Exec(q).Error)
	}
	op := b.client(t, tokOp)
	uploadCSV := func(name, content string) string {
		body, ct := multipartBody(t, "file", name, "text/csv", []byte(content))
		resp := b.raw(t, http.MethodPost, "/api/v1/uploads", tokOp, body, map[string]string{"Content-Type": ct})
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		return decodeUpload(t, resp).UploadID
	}
	run := func(typ string, params map[string]any) store.Task {
		id := create(t, op, createBody(typ, params))
		require.Eventually(t, func() bool { return tasks.IsTerminal(taskRow(t, b, id).Status) }, 30*time.Second, 20*time.Millisecond)
		return taskRow(t, b, id)
	}

	good := uploadCSV("prices.csv", "symbol,date,open,high,low,close,volume\n"+
		"AAA,2024-01-02,10,11,9,10.5,1000\nAAA,2024-01-03,10.5,12,10,11.5,1100\nBBB,2024-01-02,20,21,19,20.5,5\nBBB,2024-01-03,20,19,21,20,5\n")
	done := run(tasks.TypeImportPrices, map[string]any{"upload_id": good, "max_bad_ratio": 0.3})
	require.Equal(t, tasks.StatusCompleted, done.Status, string(done.Result))
	var res portfolio.ImportPricesResult
	require.NoError(t, json.Unmarshal(done.Result, &res))
	require.Equal(t, 3, res.RowsUpserted)
	require.Equal(t, []portfolio.Rejected{{Line: 5, Reason: "low above high", Value: "21"}}, res.Rejected)
	var closes []float64
	require.NoError(t, b.pg.DB.Raw(`SELECT close FROM prices ORDER BY asset_symbol, date`).Scan(&closes).Error)
	require.Equal(t, []float64{10.5, 11.5, 20.5}, closes)

	bad := uploadCSV("bad.csv", "symbol,date,open,high,low,close,volume\nBBB,2024-02-01,1,1,1,1,1\nBBB,2024-02-02,x,1,1,1,1\n")
	failed := run(tasks.TypeImportPrices, map[string]any{"upload_id": bad})
	require.Equal(t, tasks.StatusFailed, failed.Status)
	var n int64
	require.NoError(t, b.pg.DB.Raw(`SELECT count(*) FROM prices WHERE date >= '2024-02-01'`).Scan(&n).Error)
	require.Zero(t, n, "a file over max_bad_ratio writes nothing")

	positions := uploadCSV("holdings.csv", "portfolio_id,symbol,quantity,cost_basis\npf_ops,BBB,4,80\n")
	replaced := run(tasks.TypeImportHoldings, map[string]any{"upload_id": positions})
	require.Equal(t, tasks.StatusCompleted, replaced.Status, string(replaced.Result))
	held := func() []string {
		var out []string
		require.NoError(t, b.pg.DB.Raw(`SELECT asset_symbol || '=' || quantity FROM holdings WHERE portfolio_id = 'pf_ops' ORDER BY 1`).Scan(&out).Error)
		return out
	}
	require.Equal(t, []string{"BBB=4"}, held())
	more := uploadCSV("more.csv", "symbol,quantity\nAAA,2\n")
	merged := run(tasks.TypeImportHoldings, map[string]any{"upload_id": more, "portfolio_id": "pf_ops", "mode": "merge"})
	require.Equal(t, tasks.StatusCompleted, merged.Status, string(merged.Result))
	require.Equal(t, []string{"AAA=2", "BBB=4"}, held())
}

// TestUploadOutlastsTheServerTimeouts: an upload slower than the HTTP
// server's read and write timeouts (which suit JSON bodies) still completes
// within api.upload_timeout.
func TestUploadOutlastsTheServerTimeouts(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	hs := httptest.NewUnstartedServer(b.srv)
	hs.Config.ReadTimeout, hs.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	hs.Start()
	t.Cleanup(hs.Close)
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "a,b\n")
		time.Sleep(600 * time.Millisecond) // a slow client: past both timeouts
		_, _ = io.WriteString(pw, "1,2\n")
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, hs.URL+"/api/v1/uploads?name=slow.csv", pr)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tokOp)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.EqualValues(t, 8, decodeUpload(t, resp).Size)
}
