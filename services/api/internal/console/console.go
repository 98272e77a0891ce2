// Package console is the Taskforge console: a static single-page application
// served by the API at /console/. Its files are embedded in the binary; each
// asset is served under a name carrying a digest of its content (app.<hash>.js),
// computed once from the embedded files when the package is loaded, so that
// hashed assets are cached for a year and index.html never.
//
// The page has no inline script or style and loads nothing from another
// origin: its Content-Security-Policy is default-src 'self'. It signs in with
// an API key or a JWT held in the page's memory (sessionStorage at most) and
// sends it in the Authorization header of every API call; the console's own
// routes need no credentials.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

// AssetPrefix is where its hashed assets are served.
const AssetPrefix = Prefix + "assets/"

// ContentSecurityPolicy is the console's policy: its own origin only, no
// inline script or style, no framing, forms and connections to itself.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

//go:embed static
var files embed.FS

// asset is one embedded file under its hashed name.
type asset struct {
	name, contentType string
	body              []byte
}

// Console serves index.html and the hashed assets.
type Console struct {
	index  []byte
	assets map[string]asset
	// names maps each source file name (app.js) to its hashed name.
	names map[string]string
}

// New reads the embedded files, names each asset by its content digest and
// writes those names into index.html (each {{name}} placeholder becomes the
// asset's hashed URL).
func New() (*Console, error) { return build(files) }

func build(fsys fs.FS) (*Console, error) {
	c := &Console{assets: map[string]asset{}, names: map[string]string{}}
	var index []byte
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			index = body
			return nil
		}
		if strings.Contains(name, "/") {
			return fmt.Errorf("console: %s: assets live at the top of static/", p)
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:])[:16] + ext
		ct := mime.TypeByExtension(ext)
		switch ext {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		case ".txt":
			ct = "text/plain; charset=utf-8"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		c.assets[hashed] = asset{name: hashed, contentType: ct, body: body}
		c.names[name] = hashed
		return nil
	})
	if err != nil {
		return nil, err
	}
	if index == nil {
		return nil, fmt.Errorf("console: static/index.html is missing")
	}
	// Longest names first, so that no placeholder is a prefix of another's.
	srcs := make([]string, 0, len(c.names))
	for n := range c.names {
		srcs = append(srcs, n)
	}
	sort.Slice(srcs, func(i, j int) bool { return len(srcs[i]) > len(srcs[j]) })
	for _, n := range srcs {
		index = bytes.ReplaceAll(index, []byte("{{"+n+"}}"), []byte(AssetPrefix+c.names[n]))
	}
	if i := bytes.Index(index, []byte("{{")); i >= 0 {
		end := min(i+40, len(index))
		return nil, fmt.Errorf("console: index.html names an unknown asset near %q", index[i:end])
	}
	c.index = index
	return c, nil
}

// Assets lists the hashed asset URLs, sorted.
func (c *Console) Assets() []string {
	out := make([]string, 0, len(c.assets))
	for n := range c.assets {
		out = append(out, AssetPrefix+n)
	}
	sort.Strings(out)
	return out
}

// AssetURL is the hashed URL of a source file name (app.js), or "".
func (c *Console) AssetURL(name string) string {
	if h, ok := c.names[name]; ok {
		return AssetPrefix + h
	}
	return ""
}

// headers sets what every console response carries.
func headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}

// ServeIndex writes index.html: never cached, so that a new release's asset
// names are seen at once.
func (c *Console) ServeIndex(w http.ResponseWriter, r *http.Request) {
	headers(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(c.index)
	}
}

// ServeAsset writes the asset of that hashed name, cached for a year, and
// reports whether it exists (when not, nothing is written).
func (c *Console) ServeAsset(w http.ResponseWriter, r *http.Request, name string) bool {
	a, ok := c.assets[name]
	if !ok {
		return false
	}
	headers(w)
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("ETag", `"`+strings.TrimSuffix(a.name, path.Ext(a.name))+`"`)
	if r.Header.Get("If-None-Match") == w.Header().Get("ETag") {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
	return true
}
