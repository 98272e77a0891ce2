package result

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options reach an S3-compatible bucket.
type S3Options struct {
	// Endpoint is the service URL (e.g. "https://s3.example.com"); empty means
	// AWS's own endpoint for Region.
	Endpoint string
	// Region is the bucket's region. If empty, "us-east-1".
	Region string
	// Bucket holds the results. Required.
	Bucket string
	// AccessKey and SecretKey are static credentials; when both are empty the
	// usual chain is used: the AWS_* environment variables, the shared
	// credentials file, then the instance, task or web-identity role.
	AccessKey, SecretKey string
	// UsePathStyle addresses the bucket in the path rather than the host name,
	// as most self-hosted S3-compatible servers need.
	UsePathStyle bool
	// SpoolDir holds a file while it is uploaded (its size must be known before
	// the upload starts). If empty, the system's temporary directory.
	SpoolDir string
	// Transport overrides the client's HTTP transport (tests).
	Transport http.RoundTripper
}

// S3 keeps result files as objects of one bucket.
type S3 struct {
	client   *minio.Client
	bucket   string
	spoolDir string
}

var (
	_ Backend   = (*S3)(nil)
	_ Presigner = (*S3)(nil)
)

// NewS3 returns an S3 backend. It does not contact the service.
func NewS3(_ context.Context, o S3Options) (*S3, error) {
	if o.Bucket == "" {
		return nil, errors.New("result: s3: bucket is required")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	host, secure := "s3."+o.Region+".amazonaws.com", true
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("result: s3: endpoint %q is not an http(s) URL without a path", o.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	var creds *credentials.Credentials
	if o.AccessKey != "" || o.SecretKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupDNS
	if o.UsePathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Region: o.Region, BucketLookup: lookup, Transport: o.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("result: s3: %w", err)
	}
	return &S3{client: client, bucket: o.Bucket, spoolDir: o.SpoolDir}, nil
}

// Name implements Backend.
func (b *S3) Name() string { return "s3" }

// Put implements Backend. The stream is spooled to a temporary file first, so
// that the upload has a known length and can be signed and retried; memory use
// stays bounded whatever the size.
func (b *S3) Put(ctx context.Context, key, contentType string, r io.Reader) error {
	if !validKey(key) {
		return fmt.Errorf("result: s3: invalid key %q", key)
	}
	f, err := os.CreateTemp(b.spoolDir, "taskforge-result-*")
	if err != nil {
		return fmt.Errorf("result: s3: spool: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	n, err := io.Copy(f, ctxReader{ctx: ctx, r: r})
	if err != nil {
		return fmt.Errorf("result: s3: spool: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("result: s3: spool: %w", err)
	}
	_, err = b.client.PutObject(ctx, b.bucket, key, f, n, minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		return fmt.Errorf("result: s3: put object: %w", err)
	}
	return nil
}

// Open implements Backend.
func (b *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := b.client.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
	if err == nil {
		// The request is made by the first Stat or Read: Stat, so that a
		// missing object is ErrNotFound here rather than at the first Read.
		_, err = obj.Stat()
	}
	if err != nil {
		if obj != nil {
			_ = obj.Close()
		}
		if noSuchKey(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("result: s3: get object: %w", err)
	}
	return obj, nil
}

// Delete implements Backend.
func (b *S3) Delete(ctx context.Context, key string) error {
	err := b.client.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !noSuchKey(err) {
		return fmt.Errorf("result: s3: delete object: %w", err)
	}
	return nil
}

func noSuchKey(err error) bool {
	return minio.ToErrorResponse(err).Code == minio.NoSuchKey
}

// Presign implements Presigner: a GET URL valid for ttl that downloads the
// object as an attachment named filename.
func (b *S3) Presign(ctx context.Context, key, filename string, ttl time.Duration) (string, error) {
	u, err := b.client.PresignedGetObject(ctx, b.bucket, key, ttl,
		url.Values{"response-content-disposition": {ContentDisposition(filename)}})
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// ContentDisposition is an attachment header value for a sanitized filename.
func ContentDisposition(filename string) string {
	return mime.FormatMediaType("attachment", map[string]string{"filename": SanitizeFilename(filename)})
}
