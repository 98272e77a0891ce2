// Package secret protects the secret fields of task params (those marked
// (taskforge.v1.secret) in the proto) and the sensitive ones (named by the
// type's registry entry, tasks.Spec.Sensitive): it encrypts them in place
// with AES-256-GCM under a keyring of named keys before params are stored in
// PostgreSQL or queued in Redis, decrypts them in the worker, and redacts them
// wherever params are shown (the API, Asynqmon). With crypto.seal_all_params
// the keyring seals every string of every type's params.
//
// A sealed value is the string "enc:v1:<key id>:<base64url(nonce|ciphertext)>";
// the key id and the field's full name are bound as additional data, so a
// value can be neither relabelled with another key id nor moved to another
// field. Rotation: add a new key and make it active; old keys keep decrypting
// what they sealed until they are removed.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Errors of opening a sealed value. Both are wrapped in job.Permanent by Open:
// retrying cannot fix them.
var (
	// ErrTampered means a sealed value is malformed or fails authentication.
	ErrTampered = errors.New("secret: sealed value is corrupt or was tampered with")
	// ErrUnknownKey means a sealed value names a key id the keyring lacks.
	ErrUnknownKey = errors.New("secret: unknown key id")
)

// Format of sealed values.
const (
	sealedPrefix = "enc:v1:"
	nonceSize    = 12
	keySize      = 32
	maxKeyID     = 32
	// Redacted replaces secret values in output (tasks.Redacted, which a
	// secret param may not be).
	Redacted = tasks.Redacted
)

// DevKeyID is the id of the development key used when no key is configured.
const DevKeyID = "dev"

// Keyring holds the AES-256 keys by id and which one seals new values.
type Keyring struct {
	aeads  map[string]cipher.AEAD
	active string
	dev    bool
	// macKey keys MAC: derived from the active key, never the key itself.
	macKey []byte
	// sealAll makes Seal seal every string of params (crypto.seal_all_params).
	sealAll bool
}

// NewKeyring returns a keyring of 32-byte keys; active names the key that seals.
// Key ids are 1–32 characters of letters, digits, '-' and '_'.
func NewKeyring(keys map[string][]byte, active string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("secret: keyring needs at least one key")
	}
	k := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys)), active: active}
	for id, key := range keys {
		if !validKeyID(id) {
			return nil, fmt.Errorf("secret: key id %q must be 1-%d letters, digits, '-' or '_'", id, maxKeyID)
		}
		if len(key) != keySize {
			return nil, fmt.Errorf("secret: key %q must be %d bytes, not %d", id, keySize, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("secret: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secret: key %q: %w", id, err)
		}
		k.aeads[id] = aead
	}
	if _, ok := k.aeads[active]; !ok {
		return nil, fmt.Errorf("secret: active key %q is not in the keyring", active)
	}
	d := hmac.New(sha256.New, keys[active])
	d.Write([]byte(macLabel))
	k.macKey = d.Sum(nil)
	return k, nil
}

// macLabel separates the MAC key from the active key it is derived from.
const macLabel = "taskforge/secret/v1/mac"

// MAC returns HMAC-SHA256 of data under a key derived from the active key: a
// keyed digest of plaintext that may hold secrets (the task service's
// idempotency request hash), which unlike a plain hash cannot be checked
// against guesses offline without the keyring. It changes when the active key
// does.
func (k *Keyring) MAC(data []byte) []byte {
	m := hmac.New(sha256.New, k.macKey)
	m.Write(data)
	return m.Sum(nil)
}

// FromConfig builds the keyring of the crypto section: base64-encoded keys,
// sealing every param when crypto.seal_all_params is set.
// With no keys configured it returns, in development only, a keyring holding a
// fixed key derived from a public string under DevKeyID; Dev then reports true
// and the caller must log a loud warning. Outside development no keys is an
// error.
func FromConfig(c config.CryptoConfig, development bool) (*Keyring, error) {
	if len(c.Keys) == 0 {
		if !development {
			return nil, errors.New("secret: crypto.keys is empty outside development")
		}
		sum := sha256.Sum256([]byte("taskforge development key: NOT SECRET, never use in production"))
		k, err := NewKeyring(map[string][]byte{DevKeyID: sum[:]}, DevKeyID)
		if err != nil {
			return nil, err
		}
		k.dev = true
		k.sealAll = c.SealAllParams
		return k, nil
	}
	keys := make(map[string][]byte, len(c.Keys))
	for id, b64 := range c.Keys {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("secret: crypto.keys.%s is not base64", id)
		}
		keys[id] = raw
	}
	k, err := NewKeyring(keys, c.ActiveKey)
	if err != nil {
		return nil, err
	}
	k.sealAll = c.SealAllParams
	return k, nil
}

// WithSealAll returns a copy of k whose Seal seals every string of params, not
// only the secret and sensitive ones (on), or only those (off). Open opens
// both kinds either way.
func (k *Keyring) WithSealAll(on bool) *Keyring {
	c := *k
	c.sealAll = on
	return &c
}

// SealsAll reports whether Seal seals every string of params.
func (k *Keyring) SealsAll() bool { return k.sealAll }

// Dev reports whether the keyring is the built-in development key.
func (k *Keyring) Dev() bool { return k.dev }

// ActiveKey returns the id of the key that seals new values.
func (k *Keyring) ActiveKey() string { return k.active }

// KeyIDs returns the ids of every key, sorted.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// SealString encrypts plaintext under the active key, bound to context (for
// params, the field's full name). The result is a sealed value.
func (k *Keyring) SealString(context, plaintext string) string {
	aead := k.aeads[k.active]
	buf := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(buf) // crypto/rand.Read never fails
	buf = aead.Seal(buf, buf[:nonceSize], []byte(plaintext), aad(k.active, context))
	return sealedPrefix + k.active + ":" + base64.RawURLEncoding.EncodeToString(buf)
}

// OpenString decrypts a sealed value bound to context. Errors wrap ErrTampered
// or ErrUnknownKey.
func (k *Keyring) OpenString(context, sealed string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, sealedPrefix)
	if !ok {
		return "", fmt.Errorf("%w: not a sealed value", ErrTampered)
	}
	id, b64, ok := strings.Cut(rest, ":")
	if !ok || !validKeyID(id) {
		return "", fmt.Errorf("%w: malformed key id", ErrTampered)
	}
	aead, ok := k.aeads[id]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(raw) < nonceSize+aead.Overhead() {
		return "", fmt.Errorf("%w: malformed ciphertext", ErrTampered)
	}
	plain, err := aead.Open(nil, raw[:nonceSize], raw[nonceSize:], aad(id, context))
	if err != nil {
		return "", fmt.Errorf("%w: authentication failed", ErrTampered)
	}
	return string(plain), nil
}

// IsSealed reports whether s has the form of a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, sealedPrefix) }

func aad(keyID, context string) []byte {
	return []byte("taskforge/secret/v1\x00" + keyID + "\x00" + context)
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyID {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// permanent marks an open failure so that the task fails at once.
func permanent(err error) error { return job.Permanent(err) }
