package result

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DownloadPath is the API route of signed downloads; %s is the result id.
const DownloadPath = "/api/v1/results/%s/download"

// UploadDownloadPath is the API route of signed downloads of uploads; %s is
// the upload id.
const UploadDownloadPath = "/api/v1/uploads/%s/download"

// linkContext and uploadLinkContext separate the download-link MACs of
// results and of uploads from each other and from any other use of the key,
// so that a link signed for one kind never opens the other.
const (
	linkContext       = "taskforge/result-link/v1"
	uploadLinkContext = "taskforge/upload-link/v1"
)

// Signer makes and checks expiring download links for results:
// <base>/api/v1/results/<id>/download?exp=<unix seconds>&sig=<base64url HMAC-SHA256
// over the id and exp>. A link is authorised by its signature alone.
type Signer struct {
	key     []byte
	baseURL string
	ttl     time.Duration
	now     func() time.Time
}

// NewSigner returns a Signer. key must be at least 16 bytes; baseURL is the API's
// public URL (links are absolute); ttl is the default link lifetime (if zero, 15
// minutes).
func NewSigner(key []byte, baseURL string, ttl time.Duration) (*Signer, error) {
	if len(key) < 16 {
		return nil, errors.New("result: the signing key (storage.signing_key) must be at least 16 bytes")
	}
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	return &Signer{key: append([]byte(nil), key...), baseURL: strings.TrimRight(baseURL, "/"), ttl: ttl, now: time.Now}, nil
}

// RandomKey returns a fresh 32-byte key, for a process without a configured
// signing key (its links then work only in that process).
func RandomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// SigningKey returns the configured key, or a random one when it is empty.
func SigningKey(configured string) []byte {
	if configured == "" {
		return RandomKey()
	}
	return []byte(configured)
}

// Link returns a signed download link for res valid for the signer's TTL (never
// beyond the result's own expiry) and its expiry.
func (s *Signer) Link(res Result) (string, time.Time) {
	exp := s.now().Add(s.ttl)
	if !res.ExpiresAt.IsZero() && res.ExpiresAt.Before(exp) {
		exp = res.ExpiresAt
	}
	return s.LinkFor(res.ID, exp)
}

// LinkFor returns a link for result id expiring at exp (truncated to seconds).
func (s *Signer) LinkFor(id string, exp time.Time) (string, time.Time) {
	return s.linkFor(DownloadPath, linkContext, id, exp)
}

// UploadLinkFor returns a download link for upload id expiring at exp
// (truncated to seconds), on UploadDownloadPath.
func (s *Signer) UploadLinkFor(id string, exp time.Time) (string, time.Time) {
	return s.linkFor(UploadDownloadPath, uploadLinkContext, id, exp)
}

func (s *Signer) linkFor(pathFormat, context, id string, exp time.Time) (string, time.Time) {
	e := strconv.FormatInt(exp.Unix(), 10)
	q := url.Values{"exp": {e}, "sig": {s.sign(context, id, e)}}
	return s.baseURL + fmt.Sprintf(pathFormat, url.PathEscape(id)) + "?" + q.Encode(), time.Unix(exp.Unix(), 0)
}

func (s *Signer) sign(context, id, exp string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(context))
	m.Write([]byte{0})
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks a link's exp and sig for resultID: ErrLinkInvalid when the
// signature does not match (compared in constant time) or exp is malformed,
// ErrLinkExpired when it matches but exp has passed.
func (s *Signer) Verify(resultID, exp, sig string) error {
	return s.verify(linkContext, resultID, exp, sig)
}

// VerifyUpload checks an upload link's exp and sig for uploadID, as Verify
// does for results.
func (s *Signer) VerifyUpload(uploadID, exp, sig string) error {
	return s.verify(uploadLinkContext, uploadID, exp, sig)
}

func (s *Signer) verify(context, id, exp, sig string) error {
	want := s.sign(context, id, exp)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrLinkInvalid
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrLinkInvalid
	}
	if !s.now().Before(time.Unix(e, 0)) {
		return ErrLinkExpired
	}
	return nil
}
