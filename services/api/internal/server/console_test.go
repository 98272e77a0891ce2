package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/services/api/internal/console"
)

// The console's pages and assets are documented as strings: the response
// validator reads them as such.
func init() {
	for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/svg+xml"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

// otherOrigin finds a URL with a scheme or a protocol-relative URL: any of
// them in a console file would reach another origin. The SVG namespace is a
// name, never fetched.
var otherOrigin = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|\b(wss?|ftp)://`)

// TestConsoleAssets fetches the console's page and every asset it names:
// each carries the console's Content-Security-Policy, the page is never
// cached and each asset is named by its content's digest and cached for a
// year, and no response references another origin.
func TestConsoleAssets(t *testing.T) {
	t.Parallel()
	srv, err := New(Options{Tasks: nonNilService(t), Auth: principals, Checker: nonNilChecker(), Log: nopLog(), OpenAPI: openapiDoc(t)})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	get := func(path string, h map[string]string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		require.NoError(t, err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, body
	}
	noOtherOrigin := func(name string, body []byte) {
		text := strings.ReplaceAll(string(body), "http://www.w3.org/2000/svg", "")
		found := otherOrigin.FindAllString(text, -1)
		require.Emptyf(t, found, "%s references another origin", name)
	}

	resp, index := get("/console/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, console.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	require.NotContains(t, resp.Header.Get("Content-Security-Policy"), "unsafe-inline")
	require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	noOtherOrigin("index.html", index)
	// No inline script or style: every script has a src, no style element or
	// attribute, no event handler attribute.
	scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(string(index), -1)
	require.NotEmpty(t, scripts)
	for _, tag := range scripts {
		require.Contains(t, tag, ` src="/console/assets/`, "every script is a file of the console")
	}
	require.NotRegexp(t, `(?i)<style|\sstyle=|\son[a-z]+=`, string(index))

	named := regexp.MustCompile(`(?:src|href)="(/console/assets/[^"]+)"`).FindAllStringSubmatch(string(index), -1)
	require.Len(t, named, 3, "the page names its script, style sheet and icon")
	c, err := console.New()
	require.NoError(t, err)
	var fromPage []string
	for _, m := range named {
		fromPage = append(fromPage, m[1])
	}
	require.ElementsMatch(t, c.Assets(), fromPage, "index.html names every asset and only those")
	hashed := regexp.MustCompile(`^/console/assets/[a-z]+\.([0-9a-f]{16})\.(js|css|svg)$`)
	for _, path := range fromPage {
		m := hashed.FindStringSubmatch(path)
		require.NotNil(t, m, path)
		resp, body := get(path, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		sum := sha256.Sum256(body)
		require.Equal(t, hex.EncodeToString(sum[:])[:16], m[1], "%s is named by its content's digest", path)
		require.Equal(t, console.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), path)
		require.Equal(t, "public, max-age=31536000, immutable", resp.Header.Get("Cache-Control"), path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		require.Equal(t, map[string]string{"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}[m[2]],
			resp.Header.Get("Content-Type"), path)
		noOtherOrigin(path, body)
		if m[2] == "js" {
			// The script keeps credentials out of localStorage, cookies and URLs.
			for _, banned := range []string{"localStorage", "document.cookie", "innerHTML", "EventSource", "eval("} {
				require.Falsef(t, strings.Contains(string(body), banned), "%s uses %s", path, banned)
			}
		}
		again, _ := get(path, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
		require.Equal(t, http.StatusNotModified, again.StatusCode, path)
	}

	// An unknown or unhashed asset is a 404 problem, under the API's deny-all policy.
	for _, path := range []string{"/console/assets/app.js", "/console/assets/nope.0123456789abcdef.js", "/console/assets/..%2fconsole.go"} {
		resp, body := get(path, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), path)
		require.Equal(t, contentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), path)
		require.NotContains(t, string(body), "package console", path)
	}
	// The API's own routes keep their deny-all policy.
	resp, _ = get("/healthz", nil)
	require.Equal(t, contentSecurityPolicy, resp.Header.Get("Content-Security-Policy"))
}
