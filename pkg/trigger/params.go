package trigger

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/taskforge/taskforge/pkg/store"
)

// parsePointer splits a JSON Pointer (RFC 6901) into its unescaped tokens.
// "" (the whole document) has none.
func parsePointer(ptr string) ([]string, error) {
	if ptr == "" {
		return nil, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, errors.New("a JSON Pointer starts with /")
	}
	parts := strings.Split(ptr[1:], "/")
	for i, p := range parts {
		// ~1 is "/", ~0 is "~"; any other ~ escape is invalid.
		for j := 0; j < len(p); j++ {
			if p[j] == '~' && (j+1 == len(p) || (p[j+1] != '0' && p[j+1] != '1')) {
				return nil, errors.New("invalid ~ escape")
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// resolve returns the value ptr points at in doc (decoded JSON), and whether
// it is there.
func resolve(doc any, ptr string) (any, bool) {
	tokens, err := parsePointer(ptr)
	if err != nil {
		return nil, false
	}
	cur := doc
	for _, t := range tokens {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[t]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(v) || (len(t) > 1 && t[0] == '0') {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// buildParams returns a trigger's params for one event: its static params,
// with every mapped param that the event holds replaced by the event's value
// (a mapped param the event lacks keeps its static value, if any).
func buildParams(static store.JSON, paramMap store.JSON, event any) (json.RawMessage, error) {
	params := map[string]any{}
	if len(static) > 0 {
		if err := json.Unmarshal(static, &params); err != nil || params == nil {
			params = map[string]any{}
		}
	}
	var m map[string]string
	if len(paramMap) > 0 {
		_ = json.Unmarshal(paramMap, &m)
	}
	if len(m) > 0 {
		// The event as generic JSON, so that pointers walk it the same way
		// whatever Go type built it.
		b, err := json.Marshal(event)
		if err != nil {
			return nil, err
		}
		var doc any
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(&doc); err != nil {
			return nil, err
		}
		for name, ptr := range m {
			if v, ok := resolve(doc, ptr); ok {
				params[name] = v
			}
		}
	}
	return json.Marshal(params)
}

func protoName(s string) protoreflect.Name { return protoreflect.Name(s) }
