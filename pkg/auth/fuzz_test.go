package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzKeyLookupPrefix checks the API key parser: it accepts exactly the shape
// GenerateKey produces (prefix, lookup part in the alphabet, separator, the
// canonical unpadded base64url of 32 bytes) and returns the key's first
// len("tfk_")+8 characters as its lookup prefix.
func FuzzKeyLookupPrefix(f *testing.F) {
	plain, _, _ := GenerateKey()
	f.Add(plain)
	f.Fuzz(func(t *testing.T, s string) {
		prefix, ok := KeyLookupPrefix(s)
		if !ok {
			if prefix != "" {
				t.Fatalf("refused %q but returned prefix %q", s, prefix)
			}
			return
		}
		if len(s) != keyLen || !strings.HasPrefix(s, KeyPrefix) || prefix != s[:len(KeyPrefix)+lookupLen] {
			t.Fatalf("accepted %q with prefix %q", s, prefix)
		}
		for _, c := range s[len(KeyPrefix) : len(KeyPrefix)+lookupLen] {
			if !strings.ContainsRune(lookupAlphabet, c) {
				t.Fatalf("accepted lookup character %q", c)
			}
		}
		secret, err := base64.RawURLEncoding.DecodeString(s[len(prefix)+1:])
		if err != nil || len(secret) != secretBytes {
			t.Fatalf("accepted secret part %q", s[len(prefix)+1:])
		}
		if again := s[:len(prefix)+1] + base64.RawURLEncoding.EncodeToString(secret); again != s {
			t.Fatalf("accepted %q, which GenerateKey cannot produce (canonical form %q)", s, again)
		}
	})
}

// fuzzNow is the verifiers' clock in the JWT fuzz targets.
var fuzzNow = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

const (
	fuzzSecret   = "fuzz-secret-0123456789abcdef0123456789"
	fuzzIssuer   = "https://idp.example.com/"
	fuzzAudience = "taskforge"
)

func fuzzVerifier(t *testing.T, secret, audience string) *JWTVerifier {
	t.Helper()
	v, err := NewJWTVerifier(JWTConfig{
		Secret: []byte(secret), Issuer: fuzzIssuer, Audience: audience,
		RevokedIDs: []string{"revoked-jti"}, Now: func() time.Time { return fuzzNow },
	})
	if err != nil {
		t.Fatalf("new verifier: %v", err)
	}
	return v
}

func fuzzToken(f *testing.F, c jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(fuzzSecret))
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// FuzzJWTAuthenticate feeds arbitrary bearer strings to the verifier. An
// accepted token names a subject and a valid role, and is refused by a
// verifier with another secret or another audience: acceptance is bound to
// the key and the audience, never to the token's shape alone.
func FuzzJWTAuthenticate(f *testing.F) {
	iat := fuzzNow.Add(-time.Minute).Unix()
	f.Add(fuzzToken(f, jwt.MapClaims{"sub": "u1", "iss": fuzzIssuer, "aud": fuzzAudience, "iat": iat, "exp": iat + 3600, "role": "admin"}))
	f.Add(fuzzToken(f, jwt.MapClaims{"sub": "u1", "iss": fuzzIssuer, "aud": []string{"other", fuzzAudience}, "iat": iat, "exp": iat + 60}))
	f.Add(fuzzToken(f, jwt.MapClaims{"sub": "u1", "iss": fuzzIssuer, "aud": "other", "iat": iat, "exp": iat + 60}))
	f.Add(fuzzToken(f, jwt.MapClaims{"sub": "u1", "iss": fuzzIssuer, "aud": fuzzAudience, "iat": iat, "exp": iat + 100*365*86400}))
	f.Fuzz(func(t *testing.T, token string) {
		ctx := context.Background()
		p, err := fuzzVerifier(t, fuzzSecret, fuzzAudience).Authenticate(ctx, token)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p.ID, "jwt:") || len(p.ID) == len("jwt:") || !p.Role.Valid() || p.Name == "" {
			t.Fatalf("accepted token gives principal %+v", p)
		}
		if _, err := fuzzVerifier(t, fuzzSecret+"x", fuzzAudience).Authenticate(ctx, token); err == nil {
			t.Fatal("token accepted under another secret")
		}
		if _, err := fuzzVerifier(t, fuzzSecret, "another-app").Authenticate(ctx, token); err == nil {
			t.Fatal("token accepted for another audience")
		}
	})
}

// FuzzJWTClaims signs arbitrary claims with the right key and checks what
// the verifier accepts against the rules read independently from the claims:
// issuer and audience match, iat and exp are present, the token is not
// expired, lives at most the maximum lifetime, has a subject without control
// characters and a known role, and is not revoked.
func FuzzJWTClaims(f *testing.F) {
	f.Add([]byte(`{"sub":"u1","iss":"https://idp.example.com/","aud":"taskforge","iat":1735732740,"exp":1735736340,"role":"operator"}`))
	f.Fuzz(func(t *testing.T, claimsJSON []byte) {
		enc := base64.RawURLEncoding
		signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claimsJSON)
		m := hmac.New(sha256.New, []byte(fuzzSecret))
		m.Write([]byte(signing))
		token := signing + "." + enc.EncodeToString(m.Sum(nil))

		p, err := fuzzVerifier(t, fuzzSecret, fuzzAudience).Authenticate(context.Background(), token)
		if err != nil {
			return
		}
		var c struct {
			Sub  string          `json:"sub"`
			Iss  string          `json:"iss"`
			Aud  json.RawMessage `json:"aud"`
			Iat  *float64        `json:"iat"`
			Exp  *float64        `json:"exp"`
			Jti  string          `json:"jti"`
			Role string          `json:"role"`
		}
		if err := json.Unmarshal(claimsJSON, &c); err != nil {
			t.Fatalf("accepted claims that are not a JSON object: %v", err)
		}
		var auds []string
		if err := json.Unmarshal(c.Aud, &auds); err != nil {
			var one string
			if json.Unmarshal(c.Aud, &one) == nil {
				auds = []string{one}
			}
		}
		now := float64(fuzzNow.Unix())
		leeway := DefaultLeeway.Seconds()
		switch {
		case c.Iss != fuzzIssuer:
			t.Fatalf("accepted issuer %q", c.Iss)
		case !containsString(auds, fuzzAudience):
			t.Fatalf("accepted audience %s", c.Aud)
		case c.Iat == nil || c.Exp == nil:
			t.Fatal("accepted a token without iat or exp")
		case *c.Exp < now-leeway-1:
			t.Fatalf("accepted a token expired at %v", *c.Exp)
		case *c.Iat > now+leeway+1:
			t.Fatalf("accepted a token issued in the future at %v", *c.Iat)
		case *c.Exp-*c.Iat > DefaultMaxLifetime.Seconds()+1:
			t.Fatalf("accepted a lifetime of %vs", *c.Exp-*c.Iat)
		case c.Sub == "" || strings.ContainsFunc(c.Sub, isControl):
			t.Fatalf("accepted subject %q", c.Sub)
		case c.Jti == "revoked-jti":
			t.Fatal("accepted a revoked token")
		case c.Role != "" && string(p.Role) != c.Role:
			t.Fatalf("role %q became %q", c.Role, p.Role)
		case c.Role == "" && p.Role != Viewer:
			t.Fatalf("a token without a role became %q", p.Role)
		case p.ID != "jwt:"+c.Sub:
			t.Fatalf("subject %q became principal %q", c.Sub, p.ID)
		}
	})
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
