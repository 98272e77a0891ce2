package result

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
)

// FromConfig builds the Store a service uses from the storage section and the
// API's public URL (the base of local download links), with cache (may be
// nil: see CacheFromConfig).
func FromConfig(ctx context.Context, db *gorm.DB, c config.StorageConfig, publicURL string, cache *Cache) (*Store, error) {
	var backend Backend
	switch c.Backend {
	case "", "local":
		l, err := NewLocal(c.LocalDir)
		if err != nil {
			return nil, err
		}
		backend = l
	case "s3":
		b, err := NewS3(ctx, S3Options{
			Endpoint: c.S3.Endpoint, Region: c.S3.Region, Bucket: c.S3.Bucket,
			AccessKey: c.S3.AccessKey, SecretKey: c.S3.SecretKey, UsePathStyle: c.S3.UsePathStyle,
		})
		if err != nil {
			return nil, err
		}
		backend = b
	default:
		return nil, fmt.Errorf("result: unknown storage backend %q", c.Backend)
	}
	signer, err := NewSigner(SigningKey(c.SigningKey), publicURL, c.LinkTTL)
	if err != nil {
		return nil, err
	}
	return New(db, backend, Options{TTL: c.ResultTTL, LinkTTL: c.LinkTTL, Signer: signer, Cache: cache})
}

// CacheFromConfig builds the result cache of the storage section on rc, its
// metrics in reg (may be nil); nil when the section disables it.
func CacheFromConfig(rc redis.UniversalClient, c config.ResultCacheConfig, reg prometheus.Registerer) (*Cache, error) {
	if !c.Enabled {
		return nil, nil
	}
	return NewCache(rc, CacheOptions{TTL: c.TTL, MaxBytes: c.MaxBytes, Registerer: reg})
}
