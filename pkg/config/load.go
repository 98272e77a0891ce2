package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// Load reads the configuration: defaults, then the YAML file at path (or at
// $TASKFORGE_CONFIG when path is empty), then TASKFORGE_* environment variables.
// It does not validate; call Validate.
func Load(path string) (Config, error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	// Every key must be known to viper for AutomaticEnv to find it during
	// Unmarshal, so the defaults are registered key by key.
	defaults := map[string]any{}
	if err := mapstructure.Decode(Defaults(), &defaults); err != nil {
		return Config{}, fmt.Errorf("config: defaults: %w", err)
	}
	setDefaults(v, "", defaults)

	if path == "" {
		path = os.Getenv(EnvConfigFile)
	}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", path, err)
		}
	}

	var cfg Config
	err := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook(),
		stringToSliceHook(),
		stringToMapHook(),
	)))
	if err != nil {
		return Config{}, decodeError(v, err)
	}
	mergeFreeMaps(&cfg)
	return cfg, nil
}

// mergeFreeMaps lays the entries a file or the environment gave for a free map
// over the default entries, so that setting worker.type_limits.backup_data keeps
// the default limit of optimize_database, and one queue weight keeps the others.
func mergeFreeMaps(cfg *Config) {
	d := Defaults()
	cfg.Worker.QueueWeights = mergeMap(d.Worker.QueueWeights, cfg.Worker.QueueWeights)
	cfg.Worker.TypeLimits = mergeMap(d.Worker.TypeLimits, cfg.Worker.TypeLimits)
	cfg.Crypto.Keys = mergeMap(d.Crypto.Keys, cfg.Crypto.Keys)
	cfg.RateLimit.PerRole = mergeMap(d.RateLimit.PerRole, cfg.RateLimit.PerRole)
	cfg.Auth.MaxPriority = mergeMap(d.Auth.MaxPriority, cfg.Auth.MaxPriority)
}

func mergeMap[V any](defaults, given map[string]V) map[string]V {
	out := make(map[string]V, len(defaults)+len(given))
	maps.Copy(out, defaults)
	maps.Copy(out, given)
	return out
}

// durationHook reads durations such as "500ms", "5s" or "2m". A bare number is
// refused rather than read as nanoseconds ("5" is almost surely not 5ns).
func durationHook() mapstructure.DecodeHookFuncType {
	durationType := reflect.TypeOf(time.Duration(0))
	return func(f reflect.Type, t reflect.Type, data any) (any, error) {
		if t != durationType || f == durationType {
			return data, nil
		}
		switch f.Kind() {
		case reflect.String:
			d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
			if err != nil {
				return nil, errBadDuration
			}
			return d, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
			if reflect.ValueOf(data).IsZero() {
				return time.Duration(0), nil
			}
			return nil, errBadDuration
		}
		return data, nil
	}
}

var errBadDuration = errors.New("must be a duration with a unit, such as 500ms, 5s, 2m or 1h")

// decodeError turns mapstructure's errors into one error per key, each naming
// the key and the bad value (masked for secrets) and wrapping ErrInvalid.
func decodeError(v *viper.Viper, err error) error {
	var leaves []*mapstructure.DecodeError
	var walk func(error)
	walk = func(e error) {
		if de, ok := e.(*mapstructure.DecodeError); ok {
			inner := de.Unwrap()
			_, nested := inner.(*mapstructure.DecodeError)
			_, joined := inner.(interface{ Unwrap() []error })
			if !nested && !joined {
				leaves = append(leaves, de)
				return
			}
			walk(inner)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
		}
	}
	walk(err)
	if len(leaves) == 0 {
		return fmt.Errorf("config: %w", err)
	}
	errs := make([]error, 0, len(leaves))
	for _, de := range leaves {
		key := strings.NewReplacer("[", ".", "]", "").Replace(de.Name())
		inner := errors.Unwrap(de)
		value, why := v.Get(key), inner.Error()
		var pe *mapstructure.ParseError
		var ue *mapstructure.UnconvertibleTypeError
		switch {
		case errors.As(inner, &pe):
			value, why = pe.Value, "must be "+describeType(pe.Expected.Type())
		case errors.As(inner, &ue):
			value, why = ue.Value, "must be "+describeType(ue.Expected.Type())
		}
		shown := fmt.Sprintf("%q", fmt.Sprint(value))
		if isSecretKey(key) {
			shown = "(masked)"
		}
		errs = append(errs, fmt.Errorf("%w: %s = %s: %s", ErrInvalid, key, shown, why))
	}
	return errors.Join(errs...)
}

// describeType names what a value of t looks like, for error messages.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list (in the environment: comma-separated)"
	case reflect.Map:
		return "a map (in the environment: key=value pairs, comma-separated)"
	case reflect.Struct:
		return "a map of " + t.Name() + " fields"
	}
	return "a " + t.Kind().String()
}

// isSecretKey reports whether the dotted key is, or lies inside, a field
// tagged secret:"true".
func isSecretKey(key string) bool {
	t := reflect.TypeOf(Config{})
	for _, part := range strings.Split(key, ".") {
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Tag.Get("mapstructure") != part {
				continue
			}
			if f.Tag.Get("secret") == "true" {
				return true
			}
			t, found = f.Type, true
			break
		}
		if !found {
			return false
		}
	}
	return false
}

// setDefaults registers every leaf of m under prefix so that environment
// variables can override keys that no file mentions.
func setDefaults(v *viper.Viper, prefix string, m map[string]any) {
	for k, val := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := val.(map[string]any); ok && !isFreeMap(key) {
			setDefaults(v, key, sub)
			continue
		}
		v.SetDefault(key, val)
	}
}

// isFreeMap reports whether key is a map whose keys are data (queue names, key
// ids, roles) rather than fixed fields, so it is set as one value.
func isFreeMap(key string) bool {
	switch key {
	case "worker.queue_weights", "worker.type_limits", "crypto.keys", "ratelimit.per_role", "auth.max_priority":
		return true
	}
	return false
}

// stringToSliceHook splits a comma-separated environment value into a list.
func stringToSliceHook() mapstructure.DecodeHookFuncType {
	return func(f reflect.Type, t reflect.Type, data any) (any, error) {
		if f.Kind() != reflect.String || t.Kind() != reflect.Slice {
			return data, nil
		}
		s := strings.TrimSpace(data.(string))
		if s == "" {
			return []string{}, nil
		}
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts, nil
	}
}

// stringToMapHook reads "a=1,b=2" from an environment variable into a map.
func stringToMapHook() mapstructure.DecodeHookFuncType {
	return func(f reflect.Type, t reflect.Type, data any) (any, error) {
		if f.Kind() != reflect.String || t.Kind() != reflect.Map {
			return data, nil
		}
		out := map[string]any{}
		for _, pair := range strings.Split(data.(string), ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			if !ok {
				// The pair is not quoted: it may hold a secret (crypto.keys).
				return nil, errors.New("must be key=value pairs separated by commas, such as a=1,b=2")
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		return out, nil
	}
}
