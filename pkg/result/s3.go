package result

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
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
	// SDK's default chain (environment, shared config, instance role) is used.
	AccessKey, SecretKey string
	// UsePathStyle addresses the bucket in the path rather than the host name,
	// as most self-hosted S3-compatible servers need.
	UsePathStyle bool
	// SpoolDir holds a file while it is uploaded (its size must be known before
	// the upload starts). If empty, the system's temporary directory.
	SpoolDir string
	// HTTPClient overrides the SDK's HTTP client (tests).
	HTTPClient *http.Client
}

// S3 keeps result files as objects of one bucket.
type S3 struct {
	client   *s3.Client
	presign  *s3.PresignClient
	bucket   string
	spoolDir string
}

var (
	_ Backend   = (*S3)(nil)
	_ Presigner = (*S3)(nil)
)

// NewS3 returns an S3 backend. It does not contact the service.
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	if o.Bucket == "" {
		return nil, errors.New("result: s3: bucket is required")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	opts := func(so *s3.Options) {
		so.Region = o.Region
		so.UsePathStyle = o.UsePathStyle
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		if o.HTTPClient != nil {
			so.HTTPClient = o.HTTPClient
		}
		// S3-compatible servers do not all accept the SDK's default trailing
		// checksums; send and check them only where the API requires them.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	var client *s3.Client
	if o.AccessKey != "" || o.SecretKey != "" {
		client = s3.New(s3.Options{
			Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")),
		}, opts)
	} else {
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(o.Region))
		if err != nil {
			return nil, fmt.Errorf("result: s3: load default credentials: %w", err)
		}
		client = s3.NewFromConfig(cfg, opts)
	}
	return &S3{client: client, presign: s3.NewPresignClient(client), bucket: o.Bucket, spoolDir: o.SpoolDir}, nil
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
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), Body: f,
		ContentLength: aws.Int64(n), ContentType: aws.String(contentType),
	})
	if err != nil {
		return fmt.Errorf("result: s3: put object: %w", err)
	}
	return nil
}

// Open implements Backend.
func (b *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("result: s3: get object: %w", err)
	}
	return out.Body, nil
}

// Delete implements Backend.
func (b *S3) Delete(ctx context.Context, key string) error {
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil
		}
		return fmt.Errorf("result: s3: delete object: %w", err)
	}
	return nil
}

// Presign implements Presigner: a GET URL valid for ttl that downloads the
// object as an attachment named filename.
func (b *S3) Presign(ctx context.Context, key, filename string, ttl time.Duration) (string, error) {
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key),
		ResponseContentDisposition: aws.String(ContentDisposition(filename)),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", err
	}
	return req.URL, nil
}

// ContentDisposition is an attachment header value for a sanitized filename.
func ContentDisposition(filename string) string {
	return mime.FormatMediaType("attachment", map[string]string{"filename": SanitizeFilename(filename)})
}
