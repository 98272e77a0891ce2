package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// ErrUnsupported means a field marked secret is not a string (or a list or map
// of strings, or a message holding strings): only strings can be sealed.
var ErrUnsupported = errors.New("secret: only string fields can be secret")

// Seal encrypts, in place, every non-empty secret or sensitive string of msg
// under the active key and returns the key id, or "" when msg holds no such
// value. It implements taskservice.Sealer. A field is secret when it carries
// (taskforge.v1.secret) and sensitive when its type's registry entry names it
// (tasks.Spec.Sensitive); in such a list or map every element is, and in such
// a message field every string inside it is. A keyring that seals all
// (crypto.seal_all_params, WithSealAll) seals every string of msg, its lists',
// maps' and JSON values' strings included. Values are always sealed, even if
// they look sealed already: Open removes exactly one layer.
func (k *Keyring) Seal(msg proto.Message) (string, error) {
	if msg == nil {
		return "", nil
	}
	sealed := false
	err := walk(msg.ProtoReflect(), false, k.sealAll, func(fd protoreflect.FieldDescriptor, v string, _ bool) (string, error) {
		sealed = true
		return k.SealString(string(fd.FullName()), v), nil
	})
	if err != nil {
		return "", err
	}
	if !sealed {
		return "", nil
	}
	return k.active, nil
}

// Open decrypts, in place, every sealed value of msg (the worker calls it
// before the handler runs), whichever field holds it: what a keyring sealing
// all sealed opens under one that no longer does. A secret value that is not
// sealed (params written before encryption was enabled) is left as it is. A
// tampered secret or sensitive value or an unknown key id gives an error
// wrapping job.ErrPermanent and ErrTampered or ErrUnknownKey, naming the field
// but never its value; in any other field a value that only looks sealed is
// the caller's own text and is left as it is.
func (k *Keyring) Open(msg proto.Message) error {
	if msg == nil {
		return nil
	}
	return walk(msg.ProtoReflect(), false, true, func(fd protoreflect.FieldDescriptor, v string, sensitive bool) (string, error) {
		if !IsSealed(v) {
			return v, nil
		}
		plain, err := k.OpenString(string(fd.FullName()), v)
		if err != nil {
			if !sensitive {
				return v, nil
			}
			return "", permanent(fmt.Errorf("secret: open %s: %w", fd.Name(), err))
		}
		return plain, nil
	})
}

// Redact replaces, in place, every non-empty secret or sensitive value of msg
// (sealed or not), and every sealed value of any field, with Redacted, for
// output.
func Redact(msg proto.Message) {
	if msg == nil {
		return
	}
	// The callback never fails; a non-string secret field (ErrUnsupported) is
	// cleared instead, so it is never shown either.
	_ = walk(msg.ProtoReflect(), false, true, func(_ protoreflect.FieldDescriptor, v string, sensitive bool) (string, error) {
		if sensitive || IsSealed(v) {
			return Redacted, nil
		}
		return v, nil
	})
	clearUnsupported(msg.ProtoReflect(), false)
}

// SensitiveValues returns the non-empty secret and sensitive strings of msg,
// as they are (the worker calls it on opened params to mask their values in
// the task's log lines, progress and result).
func SensitiveValues(msg proto.Message) []string {
	if msg == nil {
		return nil
	}
	var out []string
	_ = walk(msg.ProtoReflect(), false, false, func(_ protoreflect.FieldDescriptor, v string, _ bool) (string, error) {
		out = append(out, v)
		return v, nil
	})
	return out
}

// RedactJSON returns a row's params JSON (as written by tasks.ParamsJSON) with
// the secret values of type typ redacted: every value of a secret field (in a
// secret map such as webhook_callback's headers, every value, its keys kept)
// reads Redacted, sealed or not. It is the one redaction of stored params that
// every read path calls: tasks (taskservice.RedactParams, also used for
// completion callbacks), schedules (schedule.View) and any later resource that
// keeps params (triggers). Nobody reads a secret back, admins included. If the
// params cannot be decoded as the type's message, or the type is unknown, it
// returns {} rather than risk showing a secret.
func RedactJSON(typ string, params json.RawMessage) json.RawMessage {
	spec, ok := tasks.LookupAny(typ)
	if !ok {
		return json.RawMessage("{}")
	}
	msg := spec.NewParams()
	if len(params) > 0 && string(params) != "null" {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(params, msg); err != nil {
			return json.RawMessage("{}")
		}
	}
	Redact(msg)
	out, err := tasks.ParamsJSON(msg)
	if err != nil {
		return json.RawMessage("{}")
	}
	return out
}

// FormatPayload renders an Asynq payload (the task envelope) as JSON with its
// params decoded and secrets redacted, for Asynqmon: wrap it as
// asynqmon.PayloadFormatterFunc(secret.FormatPayload). A payload that cannot
// be decoded is described, never dumped.
func FormatPayload(taskType string, payload []byte) string {
	env, err := tasks.DecodeEnvelope(payload)
	if err != nil {
		return fmt.Sprintf("(undecodable %s payload, %d bytes)", taskType, len(payload))
	}
	out := struct {
		TaskID         string          `json:"task_id"`
		Type           string          `json:"type"`
		KeyID          string          `json:"key_id,omitempty"`
		TimeoutSeconds int32           `json:"timeout_seconds,omitempty"`
		RetryPolicy    json.RawMessage `json:"retry_policy,omitempty"`
		Params         json.RawMessage `json:"params"`
	}{TaskID: env.GetTaskId(), Type: env.GetType(), KeyID: env.GetKeyId(), TimeoutSeconds: env.GetTimeoutSeconds()}
	if rp := env.GetRetryPolicy(); rp != nil {
		if b, err := (protojson.MarshalOptions{UseProtoNames: true}).Marshal(rp); err == nil {
			out.RetryPolicy = b
		}
	}
	out.Params = json.RawMessage(`"(undecodable params)"`)
	if _, msg, err := tasks.DecodeEnvelopeParams(env); err == nil {
		Redact(msg)
		if b, err := tasks.ParamsJSON(msg); err == nil {
			out.Params = b
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Sprintf("(unprintable %s payload)", taskType)
	}
	return string(b)
}

// walk calls fn for every non-empty secret or sensitive string of m (secret
// says whether m itself sits in such a field), or with all for every
// non-empty string, and stores what fn returns; fn's last argument says
// whether the string is secret or sensitive.
func walk(m protoreflect.Message, secret, all bool, fn func(protoreflect.FieldDescriptor, string, bool) (string, error)) error {
	if !secret && !all && !hasSecret(m.Descriptor()) {
		return nil
	}
	for _, fd := range populated(m) {
		isSecret := secret || tasks.IsSensitive(fd)
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if err := walkMap(fd, v.Map(), isSecret, all, fn); err != nil {
				return err
			}
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len(); i++ {
				if isMessage(fd) {
					if err := walk(list.Get(i).Message(), isSecret, all, fn); err != nil {
						return err
					}
					continue
				}
				if fd.Kind() != protoreflect.StringKind {
					if tasks.IsSensitive(fd) {
						return fmt.Errorf("%w: %s is %s", ErrUnsupported, fd.FullName(), fd.Kind())
					}
					continue // a number inside a sensitive message is not sealed
				}
				if !isSecret && !all {
					continue
				}
				s, err := apply(fd, list.Get(i).String(), isSecret, fn)
				if err != nil {
					return err
				}
				list.Set(i, protoreflect.ValueOfString(s))
			}
		case isMessage(fd):
			if err := walk(v.Message(), isSecret, all, fn); err != nil {
				return err
			}
		case fd.Kind() != protoreflect.StringKind:
			// Only strings can be sealed: a non-string field marked itself is
			// refused; one inside a sensitive message (a number of a webhook
			// payload) is not sealed, and Redact masks it.
			if tasks.IsSensitive(fd) {
				return fmt.Errorf("%w: %s is %s", ErrUnsupported, fd.FullName(), fd.Kind())
			}
		case isSecret || all:
			s, err := apply(fd, v.String(), isSecret, fn)
			if err != nil {
				return err
			}
			m.Set(fd, protoreflect.ValueOfString(s))
		}
	}
	return nil
}

func walkMap(fd protoreflect.FieldDescriptor, mp protoreflect.Map, secret, all bool, fn func(protoreflect.FieldDescriptor, string, bool) (string, error)) error {
	vd := fd.MapValue()
	var keys []protoreflect.MapKey
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	// A stable order keeps errors deterministic.
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		if isMessage(vd) {
			if err := walk(mp.Get(k).Message(), secret, all, fn); err != nil {
				return err
			}
			continue
		}
		if vd.Kind() != protoreflect.StringKind {
			if tasks.IsSensitive(fd) {
				return fmt.Errorf("%w: %s is a map of %s", ErrUnsupported, fd.FullName(), vd.Kind())
			}
			continue
		}
		if !secret && !all {
			continue
		}
		s, err := apply(fd, mp.Get(k).String(), secret, fn)
		if err != nil {
			return err
		}
		mp.Set(k, protoreflect.ValueOfString(s))
	}
	return nil
}

// apply leaves empty values alone: there is nothing to hide.
func apply(fd protoreflect.FieldDescriptor, v string, sensitive bool, fn func(protoreflect.FieldDescriptor, string, bool) (string, error)) (string, error) {
	if v == "" {
		return v, nil
	}
	return fn(fd, v, sensitive)
}

// clearUnsupported clears secret fields that are not strings, for Redact. A
// JSON value (google.protobuf.Value) inside a sensitive field that is a
// number, a boolean or null reads Redacted instead.
func clearUnsupported(m protoreflect.Message, secret bool) {
	if !secret && !hasSecret(m.Descriptor()) {
		return
	}
	if secret && m.Descriptor().FullName() == "google.protobuf.Value" {
		if str := m.Descriptor().Fields().ByName("string_value"); str != nil {
			if od := str.ContainingOneof(); od != nil {
				if set := m.WhichOneof(od); set != nil && set.Kind() != protoreflect.MessageKind && set != str {
					m.Set(str, protoreflect.ValueOfString(Redacted))
				}
			}
		}
	}
	for _, fd := range populated(m) {
		isSecret := secret || tasks.IsSensitive(fd)
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if isMessage(fd.MapValue()) {
				v.Map().Range(func(_ protoreflect.MapKey, e protoreflect.Value) bool {
					clearUnsupported(e.Message(), isSecret)
					return true
				})
			} else if isSecret && fd.MapValue().Kind() != protoreflect.StringKind {
				m.Clear(fd)
			}
		case fd.IsList():
			if isMessage(fd) {
				for i := 0; i < v.List().Len(); i++ {
					clearUnsupported(v.List().Get(i).Message(), isSecret)
				}
			} else if isSecret && fd.Kind() != protoreflect.StringKind {
				m.Clear(fd)
			}
		case isMessage(fd):
			clearUnsupported(v.Message(), isSecret)
		case isSecret && fd.Kind() != protoreflect.StringKind:
			m.Clear(fd)
		}
	}
}

func populated(m protoreflect.Message) []protoreflect.FieldDescriptor {
	var fds []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fds = append(fds, fd)
		return true
	})
	return fds
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

// hasSecret reports whether any field of md, or of a message below it, is
// secret or sensitive, so that params without secrets are not walked.
func hasSecret(md protoreflect.MessageDescriptor) bool {
	return searchSecret(md, map[protoreflect.FullName]bool{})
}

func searchSecret(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if tasks.IsSensitive(fd) {
			return true
		}
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if isMessage(fd) && searchSecret(fd.Message(), seen) {
			return true
		}
	}
	return false
}
