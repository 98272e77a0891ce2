package boot

import (
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/secret"
)

// Keyring builds the keyring of secret params from cfg's crypto section. In
// development without configured keys it is the public development key, and
// Keyring logs a loud warning on log saying so.
func Keyring(cfg config.Config, log *zap.Logger) (*secret.Keyring, error) {
	k, err := secret.FromConfig(cfg.Crypto, cfg.IsDevelopment())
	if err != nil {
		return nil, err
	}
	if k.Dev() {
		log.Warn("SECRET PARAMS ARE ENCRYPTED WITH THE PUBLIC DEVELOPMENT KEY: set crypto.keys and crypto.active_key before storing real secrets")
	}
	if k.SealsAll() {
		log.Info("every string of every type's params is sealed (crypto.seal_all_params)")
	}
	return k, nil
}
