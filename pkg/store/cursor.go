package store

import "encoding/base64"

// ClampLimit returns a page size within 1..maxLimit: def when limit is not
// positive.
func ClampLimit(limit, def, maxLimit int) int {
	switch {
	case limit <= 0:
		return def
	case limit > maxLimit:
		return maxLimit
	}
	return limit
}

// EncodeCursor makes the opaque cursor of a keyset page from the last key
// (an id, or an id with a sort value) of the page before.
func EncodeCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// DecodeCursor returns the key EncodeCursor made, or false for anything
// that is no cursor of at most maxLen bytes.
func DecodeCursor(c string, maxLen int) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 || len(b) > maxLen {
		return "", false
	}
	return string(b), true
}
