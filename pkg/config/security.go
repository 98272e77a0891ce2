package config

import "time"

// AuthConfig configures authentication.
type AuthConfig struct {
	// BootstrapAdminKey is an admin API key accepted for first use. Default empty.
	BootstrapAdminKey string `mapstructure:"bootstrap_admin_key" secret:"true"`
	// JWTSecret verifies HS256 tokens. Empty disables HS256. Outside development
	// the example value is refused.
	JWTSecret string `mapstructure:"jwt_secret" secret:"true"`
	// JWKSURL is fetched for RS256/ES256 keys. Default empty.
	JWKSURL string `mapstructure:"jwks_url"`
	// JWTIssuer and JWTAudience are required claims when set.
	JWTIssuer   string `mapstructure:"jwt_issuer"`
	JWTAudience string `mapstructure:"jwt_audience"`
	// JWTAlgorithms pins the accepted algorithms. Default [HS256, RS256, ES256].
	JWTAlgorithms []string `mapstructure:"jwt_algorithms"`
	// JWTLeeway is the clock skew allowed on exp, nbf and iat, at most 5m.
	// Default 30s.
	JWTLeeway time.Duration `mapstructure:"jwt_leeway"`
	// JWTMaxLifetime is the longest a token may live (exp - iat; iat is
	// required). Default 24h.
	JWTMaxLifetime time.Duration `mapstructure:"jwt_max_lifetime"`
	// JWTRevokedIDs lists the jti of revoked tokens. Default empty.
	JWTRevokedIDs []string `mapstructure:"jwt_revoked_ids"`
	// JWTMinIssuedAt refuses every token issued before it (RFC 3339), to log
	// everyone out at once. Default empty (none refused).
	JWTMinIssuedAt string `mapstructure:"jwt_min_issued_at"`
	// MaxPriority maps a role to the most urgent priority its callers may
	// give a task (critical > high > normal > low); a more urgent one is
	// refused with 403. Default: viewer low, operator high, admin critical
	// (critical carries the scheduler's fire jobs, so only admins and the
	// scheduler use it).
	MaxPriority map[string]string `mapstructure:"max_priority"`
	// KeyCacheTTL keeps each accepted API key's row in the API's memory for
	// this long, so that a request costs no database read for its
	// credential. Every replica listens for the announcements of key changes
	// (revocation, expiry, role; by any replica, the keys command or SQL:
	// auth.APIKeysChannel) and forgets a changed key at once; while it cannot
	// listen it serves no key from memory. The ttl bounds only a listening
	// connection that died without telling. 0 reads the row on every
	// request. Default 30s, at most 1m.
	KeyCacheTTL time.Duration `mapstructure:"key_cache_ttl"`
}

// CryptoConfig holds the keyring for secret task params.
type CryptoConfig struct {
	// Keys maps key ids to base64-encoded 32-byte AES-256 keys. Default empty; in
	// development a fixed key "dev" is used.
	Keys map[string]string `mapstructure:"keys" secret:"true"`
	// ActiveKey is the id of the key that encrypts new data. Default "dev".
	ActiveKey string `mapstructure:"active_key"`
	// SealAllParams seals every string, list, map and JSON value of every
	// type's params, not only the fields the registry marks secret or
	// sensitive (numbers and booleans stay as they are). Default false.
	SealAllParams bool `mapstructure:"seal_all_params"`
}

// EgressConfig guards every outbound HTTP call.
type EgressConfig struct {
	// AllowCIDRs lists ranges that are reachable although private or loopback.
	// Default empty.
	AllowCIDRs []string `mapstructure:"allow_cidrs"`
	// ConnectTimeout bounds dialling. Default 5s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Timeout bounds a whole request. Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxResponseBytes caps a response body. Default 10485760.
	MaxResponseBytes int64 `mapstructure:"max_response_bytes"`
	// MaxRedirects is how many redirects are followed, each re-checked. Default 3.
	MaxRedirects int `mapstructure:"max_redirects"`
	// Price, Notify, Callbacks, Webhooks and JWKS are the allow-lists of each
	// kind of outbound call: the price provider; Slack, SMS, push and ntfy;
	// task completion callbacks; webhook_callback tasks; the identity
	// provider's key set (auth.jwks_url). A purpose whose list is empty uses
	// AllowCIDRs. Default empty.
	Price     EgressPurposeConfig `mapstructure:"price"`
	Notify    EgressPurposeConfig `mapstructure:"notify"`
	Callbacks EgressPurposeConfig `mapstructure:"callbacks"`
	Webhooks  EgressPurposeConfig `mapstructure:"webhooks"`
	JWKS      EgressPurposeConfig `mapstructure:"jwks"`
}

// EgressPurposeConfig is the allow-list of one kind of outbound call.
type EgressPurposeConfig struct {
	// AllowCIDRs lists ranges this kind of call may reach although private or
	// loopback. If empty, egress.allow_cidrs applies. Default empty.
	AllowCIDRs []string `mapstructure:"allow_cidrs"`
}

// Purposes returns the per-purpose allow-list sections by name, for
// validation and documentation.
func (c EgressConfig) Purposes() map[string]EgressPurposeConfig {
	return map[string]EgressPurposeConfig{"price": c.Price, "notify": c.Notify, "callbacks": c.Callbacks, "webhooks": c.Webhooks, "jwks": c.JWKS}
}
