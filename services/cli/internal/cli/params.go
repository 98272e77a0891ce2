package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// buildParams merges --params-file (a JSON object; "-" reads stdin) with the
// --param key=value pairs, each value typed by the params schema of the task
// type: integers, numbers and booleans parsed, arrays split on commas (or
// given as JSON), objects as JSON. A key the schema does not know is refused
// here with the known keys listed; the API checks the rest.
func buildParams(schema map[string]any, pairs []string, file string, stdin io.Reader) (map[string]any, error) {
	params := map[string]any{}
	if file != "" {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(io.LimitReader(stdin, 8<<20))
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, usageErrorf("--params-file: %v", err)
		}
		if err := json.Unmarshal(b, &params); err != nil {
			return nil, usageErrorf("--params-file %s: not a JSON object: %v", file, err)
		}
	}
	props, _ := schema["properties"].(map[string]any)
	for _, p := range pairs {
		key, raw, ok := strings.Cut(p, "=")
		if !ok || key == "" {
			return nil, usageErrorf("--param %q: want key=value", p)
		}
		prop, known := props[key].(map[string]any)
		if props != nil && !known {
			return nil, usageErrorf("--param %s: the type has no such param (known: %s)", key, strings.Join(sortedKeys(props), ", "))
		}
		v, err := typed(prop, raw)
		if err != nil {
			return nil, usageErrorf("--param %s: %v", key, err)
		}
		params[key] = v
	}
	return params, nil
}

func typed(prop map[string]any, raw string) (any, error) {
	t := schemaType(prop)
	switch t {
	case "integer":
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", raw)
		}
		return n, nil
	case "number":
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", raw)
		}
		return f, nil
	case "boolean":
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", raw)
		}
		return b, nil
	case "array":
		if strings.HasPrefix(strings.TrimSpace(raw), "[") {
			var v []any
			if err := json.Unmarshal([]byte(raw), &v); err != nil {
				return nil, fmt.Errorf("not a JSON array: %v", err)
			}
			return v, nil
		}
		items, _ := prop["items"].(map[string]any)
		out := []any{}
		if raw == "" {
			return out, nil
		}
		for _, s := range strings.Split(raw, ",") {
			v, err := typed(items, strings.TrimSpace(s))
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "object":
		var v map[string]any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
		return v, nil
	}
	return raw, nil
}

// schemaType is a property's JSON Schema type; for a list of types (e.g.
// ["integer","string"] of 64-bit integers) the first that is not "null".
func schemaType(prop map[string]any) string {
	switch t := prop["type"].(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && s != "null" {
				return s
			}
		}
	}
	return "string"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseAt reads --at: RFC 3339, or +DURATION from now (e.g. +10m, +1h30m).
func parseAt(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil || dur < 0 {
			return time.Time{}, usageErrorf("--at %q: want RFC 3339 (2026-01-02T15:04:05Z) or +duration (+10m)", s)
		}
		return now.Add(dur), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErrorf("--at %q: want RFC 3339 (2026-01-02T15:04:05Z) or +duration (+10m)", s)
	}
	return t, nil
}

// parseSeconds reads a timeout: whole seconds or a Go duration (90s, 5m).
func parseSeconds(flag, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, usageErrorf("--%s %q: want seconds or a duration of at least 1s (90, 90s, 5m)", flag, s)
	}
	return int(d / time.Second), nil
}
