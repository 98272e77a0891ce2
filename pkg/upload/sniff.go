package upload

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strings"
	"unicode/utf8"
)

// TypeError means the declared content type disagrees with the content (or is
// not a media type). The API answers it with 415 naming content_type.
type TypeError struct {
	// Declared is the content type the caller declared.
	Declared string
	// Sniffed is what the content looks like.
	Sniffed string
}

func (e *TypeError) Error() string {
	if e.Sniffed == "" {
		return fmt.Sprintf("%q is not a media type", e.Declared)
	}
	return fmt.Sprintf("declared %s, but the content is %s", e.Declared, e.Sniffed)
}

// aliases maps media types http.DetectContentType names differently from
// their registered names.
var aliases = map[string]string{
	"application/x-gzip":           "application/gzip",
	"application/x-zip-compressed": "application/zip",
	"text/comma-separated-values":  "text/csv",
	"application/csv":              "text/csv",
}

func canonical(t string) string {
	if a, ok := aliases[t]; ok {
		return a
	}
	return t
}

// Check decides an upload's content type from the declared one (empty or
// application/octet-stream: not declared), the file name and the first bytes
// of the content, as http.DetectContentType sniffs them plus two text rules
// it lacks: CSV is text (valid UTF-8 without NUL bytes) and JSON is text
// whose first non-blank byte opens an object or an array. A declared type the
// content contradicts is a *TypeError. An undeclared one is the sniffed type,
// refined by the name's extension for CSV and JSON.
func Check(declared, name string, head []byte) (string, error) {
	sniffedFull := http.DetectContentType(head)
	sniffed, _, _ := mime.ParseMediaType(sniffedFull)
	sniffed = canonical(sniffed)
	text := isText(head, sniffed)
	declared = strings.TrimSpace(declared)
	var base string
	var params map[string]string
	if declared != "" {
		var err error
		base, params, err = mime.ParseMediaType(declared)
		if err != nil {
			return "", &TypeError{Declared: declared}
		}
		base = canonical(base)
	}
	seen := sniffed
	if text {
		switch {
		case looksJSON(head):
			seen = "application/json"
		case sniffed == "text/plain":
			seen = "text (" + sniffed + ")"
		}
	}
	switch {
	case base == "" || base == "application/octet-stream":
		if !text {
			return sniffedFull, nil
		}
		switch strings.ToLower(path.Ext(name)) {
		case ".csv":
			return "text/csv; charset=utf-8", nil
		case ".json":
			if looksJSON(head) {
				return "application/json", nil
			}
		}
		return sniffedFull, nil
	case base == "text/csv":
		if !text {
			return "", &TypeError{Declared: declared, Sniffed: seen}
		}
	case base == "application/json" || strings.HasSuffix(base, "+json"):
		if !text || !looksJSON(head) && len(bytes.TrimSpace(head)) > 0 {
			return "", &TypeError{Declared: declared, Sniffed: seen}
		}
	case strings.HasPrefix(base, "text/"):
		if !text && sniffed != base {
			return "", &TypeError{Declared: declared, Sniffed: seen}
		}
	default:
		// A binary type: the content must be that type, unless the sniffer
		// does not know it (application/octet-stream) and it is not text.
		if base != sniffed && (text || sniffed != "application/octet-stream") {
			return "", &TypeError{Declared: declared, Sniffed: seen}
		}
	}
	return mime.FormatMediaType(base, params), nil
}

// isText reports whether head is text: sniffed as text/plain (or another text
// type), valid UTF-8 (but for a rune cut at the end) and without NUL bytes.
func isText(head []byte, sniffed string) bool {
	if !strings.HasPrefix(sniffed, "text/") || bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	for i := 0; i < len(head); {
		r, n := utf8.DecodeRune(head[i:])
		if r == utf8.RuneError && n <= 1 {
			return len(head)-i < utf8.UTFMax && !utf8.FullRune(head[i:])
		}
		i += n
	}
	return true
}

// looksJSON reports whether head's first non-blank byte opens a JSON object or
// array.
func looksJSON(head []byte) bool {
	t := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\ufeff")), " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}
