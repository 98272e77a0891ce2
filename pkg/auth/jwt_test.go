package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

const testSecret = "0123456789abcdef0123456789abcdef-hs256"

// jwksServer serves a key set that a test can change or break.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	mu     sync.Mutex
	body   []byte
	status int
}

func (s *jwksServer) set(status int, keys ...map[string]string) {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	s.mu.Lock()
	s.body, s.status = b, status
	s.mu.Unlock()
}

func newJWKSServer(t *testing.T, keys ...map[string]string) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(http.StatusOK, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t *testing.T, kid string, k *ecdsa.PublicKey) map[string]string {
	t.Helper()
	b, err := k.Bytes()
	require.NoError(t, err)
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])}
}

type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
}

// keys are generated once for the package's tests: RSA generation is slow under
// the race detector.
var keysOnce = sync.OnceValues(func() (testKeys, error) {
	r1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return testKeys{}, err
	}
	r2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return testKeys{}, err
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return testKeys{rsa: r1, rsa2: r2, ec: ec}, err
})

func getKeys(t *testing.T) testKeys {
	t.Helper()
	k, err := keysOnce()
	require.NoError(t, err)
	return k
}

func sign(t *testing.T, m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func TestJWTVerification(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	srv := newJWKSServer(t, rsaJWK("r1", &k.rsa.PublicKey), ecJWK(t, "e1", &k.ec.PublicKey))
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "iss": "https://idp.test", "aud": "taskforge",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "role": "operator"}
	}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := good()
		edit(c)
		return c
	}
	pubPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	full, err := NewJWTVerifier(JWTConfig{Secret: []byte(testSecret), JWKSURL: srv.URL, HTTPClient: srv.Client(),
		Issuer: "https://idp.test", Audience: "taskforge"})
	require.NoError(t, err)
	jwksOnly, err := NewJWTVerifier(JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client()})
	require.NoError(t, err)
	rsOnly, err := NewJWTVerifier(JWTConfig{Secret: []byte(testSecret), JWKSURL: srv.URL, HTTPClient: srv.Client(),
		Algorithms: []string{"RS256"}})
	require.NoError(t, err)

	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		payload = []byte(strings.Replace(string(payload), `"operator"`, `"admin"`, 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(payload)
		return strings.Join(parts, ".")
	}

	cases := []struct {
		name   string
		v      *JWTVerifier
		token  string
		wantOK bool
		want   Principal
	}{
		{"hs256 good", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), good()), true,
			Principal{ID: "jwt:alice", Name: "alice", Role: Operator}},
		{"rs256 good", full, sign(t, jwt.SigningMethodRS256, "r1", k.rsa, good()), true,
			Principal{ID: "jwt:alice", Name: "alice", Role: Operator}},
		{"es256 good, name claim", full, sign(t, jwt.SigningMethodES256, "e1", k.ec, with(func(c jwt.MapClaims) { c["name"] = "Alice A." })), true,
			Principal{ID: "jwt:alice", Name: "Alice A.", Role: Operator}},
		{"no role means viewer", jwksOnly, sign(t, jwt.SigningMethodRS256, "r1", k.rsa, with(func(c jwt.MapClaims) { delete(c, "role") })), true,
			Principal{ID: "jwt:alice", Name: "alice", Role: Viewer}},
		{"alg none", full, none, false, Principal{}},
		{"hs256 signed with the rsa public key, hs256 enabled", full, sign(t, jwt.SigningMethodHS256, "r1", pubPEM, good()), false, Principal{}},
		{"hs256 signed with the rsa public key, hs256 disabled", jwksOnly, sign(t, jwt.SigningMethodHS256, "r1", pubPEM, good()), false, Principal{}},
		{"algorithm not pinned", rsOnly, sign(t, jwt.SigningMethodES256, "e1", k.ec, good()), false, Principal{}},
		{"hs256 not pinned", rsOnly, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), good()), false, Principal{}},
		{"rs256 token naming an ec key", full, sign(t, jwt.SigningMethodRS256, "e1", k.rsa, good()), false, Principal{}},
		{"expired", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), false, Principal{}},
		{"future nbf", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() })), false, Principal{}},
		{"nbf within leeway", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Second).Unix() })), true,
			Principal{ID: "jwt:alice", Name: "alice", Role: Operator}},
		{"future iat", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Minute).Unix() })), false, Principal{}},
		{"no exp", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { delete(c, "exp") })), false, Principal{}},
		{"wrong iss", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), false, Principal{}},
		{"no iss", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { delete(c, "iss") })), false, Principal{}},
		{"wrong aud", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["aud"] = "other" })), false, Principal{}},
		{"aud list containing ours", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["aud"] = []string{"other", "taskforge"} })), true,
			Principal{ID: "jwt:alice", Name: "alice", Role: Operator}},
		{"bad hs256 signature", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret+"x"), good()), false, Principal{}},
		{"tampered payload", full, tamper(sign(t, jwt.SigningMethodRS256, "r1", k.rsa, good())), false, Principal{}},
		{"signed by another rsa key", full, sign(t, jwt.SigningMethodRS256, "r1", k.rsa2, good()), false, Principal{}},
		{"unknown kid", full, sign(t, jwt.SigningMethodRS256, "r9", k.rsa, good()), false, Principal{}},
		{"no kid", full, sign(t, jwt.SigningMethodRS256, "", k.rsa, good()), false, Principal{}},
		{"unknown role", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { c["role"] = "root" })), false, Principal{}},
		{"no sub", full, sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), with(func(c jwt.MapClaims) { delete(c, "sub") })), false, Principal{}},
		{"garbage", full, "a.b.c", false, Principal{}},
		{"too large", full, strings.Repeat("a", MaxTokenBytes+1), false, Principal{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.v.Authenticate(context.Background(), tc.token)
			if tc.wantOK {
				require.NoError(t, err)
				require.Equal(t, tc.want, p)
				return
			}
			require.ErrorIs(t, err, ErrUnauthenticated)
			require.NotErrorIs(t, err, ErrUnavailable)
			require.Equal(t, Principal{}, p)
			t.Log(err)
		})
	}
}

func TestJWKSRotationAndOutage(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	srv := newJWKSServer(t, rsaJWK("r1", &k.rsa.PublicKey))
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	v, err := NewJWTVerifier(JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client(), Now: now,
		JWKSRefresh: time.Minute, JWKSMinInterval: 10 * time.Second})
	require.NoError(t, err)
	tok := func(kid string, key *rsa.PrivateKey) string {
		return sign(t, jwt.SigningMethodRS256, kid, key, jwt.MapClaims{"sub": "svc", "iat": now().Unix(), "exp": now().Add(time.Hour).Unix()})
	}
	ctx := context.Background()

	_, err = v.Authenticate(ctx, tok("r1", k.rsa))
	require.NoError(t, err)
	_, err = v.Authenticate(ctx, tok("r1", k.rsa))
	require.NoError(t, err)
	require.EqualValues(t, 1, srv.hits.Load(), "a fresh key set is cached")

	// The identity provider rotates in r2: a token naming it makes the cache
	// fetch again, but unknown kids cannot make it fetch more than once per
	// min interval.
	srv.set(http.StatusOK, rsaJWK("r1", &k.rsa.PublicKey), rsaJWK("r2", &k.rsa2.PublicKey))
	advance(11 * time.Second)
	_, err = v.Authenticate(ctx, tok("r2", k.rsa2))
	require.NoError(t, err)
	require.EqualValues(t, 2, srv.hits.Load())
	for range 5 {
		_, err = v.Authenticate(ctx, tok("nope", k.rsa))
		require.ErrorIs(t, err, ErrUnauthenticated)
	}
	require.EqualValues(t, 2, srv.hits.Load(), "unknown kids are rate limited")
	advance(11 * time.Second)
	_, err = v.Authenticate(ctx, tok("nope", k.rsa))
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.EqualValues(t, 3, srv.hits.Load())

	// The key server fails: the stale set keeps working.
	srv.set(http.StatusInternalServerError)
	advance(2 * time.Minute)
	_, err = v.Authenticate(ctx, tok("r2", k.rsa2))
	require.NoError(t, err)
	require.EqualValues(t, 4, srv.hits.Load())

	// r1 is retired: once the set is refreshed, its tokens are refused.
	srv.set(http.StatusOK, rsaJWK("r2", &k.rsa2.PublicKey))
	advance(2 * time.Minute)
	_, err = v.Authenticate(ctx, tok("r1", k.rsa))
	require.ErrorIs(t, err, ErrUnauthenticated)
}

func TestJWKSUnavailableBeforeFirstFetch(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	srv := newJWKSServer(t)
	srv.set(http.StatusServiceUnavailable)
	v, err := NewJWTVerifier(JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client()})
	require.NoError(t, err)
	_, err = v.Authenticate(context.Background(),
		sign(t, jwt.SigningMethodRS256, "r1", k.rsa, jwt.MapClaims{"sub": "x", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}))
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotErrorIs(t, err, ErrUnauthenticated)
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	b384, err := p384.PublicKey.Bytes()
	require.NoError(t, err)
	enc := rsaJWK("enc", &k.rsa.PublicKey)
	enc["use"] = "enc"
	noKid := rsaJWK("", &k.rsa.PublicKey)
	wrongAlg := rsaJWK("ps", &k.rsa.PublicKey)
	wrongAlg["alg"] = "PS256"
	offCurve := ecJWK(t, "off", &k.ec.PublicKey)
	offCurve["y"] = offCurve["x"]
	body, err := json.Marshal(map[string]any{"keys": []map[string]string{
		rsaJWK("good", &k.rsa.PublicKey), rsaJWK("small", &small.PublicKey), enc, noKid, wrongAlg, offCurve,
		{"kty": "EC", "kid": "p384", "crv": "P-384", "x": base64.RawURLEncoding.EncodeToString(b384[1:49]), "y": base64.RawURLEncoding.EncodeToString(b384[49:])},
		{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
	}})
	require.NoError(t, err)
	keys, err := parseJWKS(body)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Contains(t, keys, "good")

	_, err = parseJWKS([]byte(`{"keys":[{"kty":"oct","kid":"a","k":"eA"}]}`))
	require.Error(t, err)
	_, err = parseJWKS([]byte(`not json`))
	require.Error(t, err)
}

func TestNewJWTVerifierConfig(t *testing.T) {
	t.Parallel()
	_, err := NewJWTVerifier(JWTConfig{})
	require.ErrorIs(t, err, ErrNoJWT)
	_, err = NewJWTVerifier(JWTConfig{Secret: []byte(testSecret), Algorithms: []string{"RS256"}})
	require.ErrorIs(t, err, ErrNoJWT, "RS256 without a JWKS enables nothing")
	_, err = NewJWTVerifier(JWTConfig{Secret: []byte(testSecret), Algorithms: []string{"none"}})
	require.Error(t, err)
	_, err = NewJWTVerifier(JWTConfig{JWKSURL: "http://127.0.0.1:1/jwks"})
	require.Error(t, err, "a JWKS URL needs a client")
	v, err := NewJWTVerifier(JWTConfig{Secret: []byte(testSecret)})
	require.NoError(t, err)
	require.Equal(t, []string{"HS256"}, v.Algorithms())
}

// TestJWTLifetimeAndRevocation is finding 8's fix: a token must carry iat and
// live at most the maximum lifetime (an exp 100 years out is refused, so is
// an iat forged into the past), and revoked tokens (by jti, issued before the
// global minimum, or refused by the Revoked hook) are 401.
func TestJWTLifetimeAndRevocation(t *testing.T) {
	t.Parallel()
	secret := []byte("lifetime-test-secret-0123456789abcdef")
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	claims := func(edit func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"sub": "alice", "jti": "t-1", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return sign(t, jwt.SigningMethodHS256, "", secret, c)
	}
	v, err := NewJWTVerifier(JWTConfig{Secret: secret, Now: func() time.Time { return now }})
	require.NoError(t, err)
	_, err = v.Authenticate(context.Background(), claims(nil))
	require.NoError(t, err)
	for name, tok := range map[string]string{
		"exp 100 years out":           claims(func(c jwt.MapClaims) { c["exp"] = now.AddDate(100, 0, 0).Unix() }),
		"25 hours":                    claims(func(c jwt.MapClaims) { c["iat"] = now.Unix(); c["exp"] = now.Add(25 * time.Hour).Unix() }),
		"iat forged into the past":    claims(func(c jwt.MapClaims) { c["iat"] = now.AddDate(-1, 0, 0).Unix(); c["exp"] = now.AddDate(0, 0, 2).Unix() }),
		"no iat":                      claims(func(c jwt.MapClaims) { delete(c, "iat") }),
		"iat in the future past skew": claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }),
	} {
		_, err := v.Authenticate(context.Background(), tok)
		require.ErrorIs(t, err, ErrUnauthenticated, name)
	}

	v, err = NewJWTVerifier(JWTConfig{Secret: secret, Now: func() time.Time { return now }, MaxLifetime: 2 * time.Hour,
		RevokedIDs: []string{"t-revoked"}, MinIssuedAt: now.Add(-10 * time.Minute),
		Revoked: func(sub, _ string, iat time.Time) bool { return sub == "bob" && iat.Before(now) }})
	require.NoError(t, err)
	_, err = v.Authenticate(context.Background(), claims(nil))
	require.NoError(t, err)
	for name, tok := range map[string]string{
		"revoked jti":               claims(func(c jwt.MapClaims) { c["jti"] = "t-revoked" }),
		"issued before the minimum": claims(func(c jwt.MapClaims) { c["iat"] = now.Add(-time.Hour).Unix() }),
		"revoked by the hook":       claims(func(c jwt.MapClaims) { c["sub"] = "bob" }),
		"3 hours":                   claims(func(c jwt.MapClaims) { c["exp"] = now.Add(3 * time.Hour).Unix() }),
	} {
		_, err := v.Authenticate(context.Background(), tok)
		require.ErrorIs(t, err, ErrUnauthenticated, name)
	}
}

// TestJWKSRedirectNotFollowed: the key set is fetched from the configured URL
// only; a redirect elsewhere is a failed fetch, never followed.
func TestJWKSRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	target := newJWKSServer(t, rsaJWK("r1", &k.rsa.PublicKey))
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	v, err := NewJWTVerifier(JWTConfig{JWKSURL: redirect.URL, HTTPClient: redirect.Client()})
	require.NoError(t, err)
	now := time.Now()
	_, err = v.Authenticate(context.Background(), sign(t, jwt.SigningMethodRS256, "r1", k.rsa,
		jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}))
	require.Error(t, err)
	require.Zero(t, target.hits.Load(), "the redirect was not followed")
}
