package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// Defaults of the JWKS cache.
const (
	// DefaultJWKSRefresh is how long a fetched key set is trusted before it is
	// fetched again.
	DefaultJWKSRefresh = 5 * time.Minute
	// DefaultJWKSMinInterval is the least time between two fetches, so tokens
	// with unknown key ids cannot make every request hit the key server.
	DefaultJWKSMinInterval = 30 * time.Second
	jwksFetchTimeout       = 10 * time.Second
	jwksMaxBytes           = 1 << 20
	minRSABits             = 2048
)

// jwk is one verification key of a set.
type jwk struct {
	key crypto.PublicKey
	// alg is the algorithm the key is for: RS256 or ES256.
	alg string
}

// jwksCache fetches a JSON Web Key Set, keeps it for refresh, and fetches again
// when a token names a key id it does not hold (key rotation), at most once per
// minInterval.
type jwksCache struct {
	url         string
	client      *http.Client
	refresh     time.Duration
	minInterval time.Duration
	now         func() time.Time

	mu          sync.RWMutex
	keys        map[string]jwk
	fetchedAt   time.Time // last successful fetch
	attemptedAt time.Time // last fetch, successful or not

	fetchMu sync.Mutex // one fetch at a time
}

// key returns the key with id kid.
func (c *jwksCache) key(ctx context.Context, kid string) (jwk, error) {
	c.mu.RLock()
	k, ok := c.keys[kid]
	fresh := c.keys != nil && c.now().Sub(c.fetchedAt) < c.refresh
	c.mu.RUnlock()
	if ok && fresh {
		return k, nil
	}

	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	// Another request may have fetched while this one waited.
	c.mu.RLock()
	k, ok = c.keys[kid]
	fresh = c.keys != nil && c.now().Sub(c.fetchedAt) < c.refresh
	have := c.keys != nil
	recent := c.now().Sub(c.attemptedAt) < c.minInterval
	c.mu.RUnlock()
	if ok && fresh {
		return k, nil
	}
	var fetchErr error
	if !recent {
		keys, err := c.fetch(ctx)
		c.mu.Lock()
		c.attemptedAt = c.now()
		if err == nil {
			c.keys, c.fetchedAt, have = keys, c.now(), true
		}
		k, ok = c.keys[kid]
		c.mu.Unlock()
		fetchErr = err
	}
	switch {
	case ok:
		// A stale key is still used while the key server is unreachable.
		return k, nil
	case !have && fetchErr != nil:
		return jwk{}, fmt.Errorf("%w: jwks: %w", ErrUnavailable, fetchErr)
	case !have:
		return jwk{}, fmt.Errorf("%w: jwks not fetched yet", ErrUnavailable)
	}
	return jwk{}, fmt.Errorf("%w: unknown key id", ErrUnauthenticated)
}

func (c *jwksCache) fetch(ctx context.Context) (map[string]jwk, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > jwksMaxBytes {
		return nil, errors.New("key set larger than 1 MiB")
	}
	return parseJWKS(body)
}

// rawJWK is a JSON Web Key as served (RFC 7517/7518), the fields used here.
type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads the signature keys of a set: RSA keys (2048 bits or more) for
// RS256 and P-256 keys for ES256. Keys without an id, for encryption, or of
// other kinds are skipped; a set with no usable key is an error.
func parseJWKS(body []byte) (map[string]jwk, error) {
	var set struct {
		Keys []rawJWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decode key set: %w", err)
	}
	out := map[string]jwk{}
	for _, r := range set.Keys {
		if r.Kid == "" || (r.Use != "" && r.Use != "sig") {
			continue
		}
		k, err := r.parse()
		if err != nil {
			continue
		}
		out[r.Kid] = k
	}
	if len(out) == 0 {
		return nil, errors.New("key set holds no usable signature key")
	}
	return out, nil
}

func (r rawJWK) parse() (jwk, error) {
	b64 := base64.RawURLEncoding
	switch r.Kty {
	case "RSA":
		if r.Alg != "" && r.Alg != "RS256" {
			return jwk{}, fmt.Errorf("rsa key for %s", r.Alg)
		}
		n, err := b64.DecodeString(r.N)
		if err != nil {
			return jwk{}, err
		}
		e, err := b64.DecodeString(r.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return jwk{}, errors.New("bad rsa exponent")
		}
		exp := new(big.Int).SetBytes(e)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}
		if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			return jwk{}, errors.New("weak rsa key")
		}
		return jwk{key: pub, alg: "RS256"}, nil
	case "EC":
		if r.Crv != "P-256" || (r.Alg != "" && r.Alg != "ES256") {
			return jwk{}, fmt.Errorf("ec key on %s for %s", r.Crv, r.Alg)
		}
		x, errX := b64.DecodeString(r.X)
		y, errY := b64.DecodeString(r.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return jwk{}, errors.New("bad ec coordinates")
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return jwk{}, err
		}
		return jwk{key: pub, alg: "ES256"}, nil
	}
	return jwk{}, fmt.Errorf("key type %q", r.Kty)
}
