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

// Seal encrypts, in place, every non-empty secret string of msg under the
// active key and returns the key id, or "" when msg holds no secret value. It
// implements taskservice.Sealer. A field is secret when it carries
// (taskforge.v1.secret); in a secret list or map every element is, and in a
// secret message field every string inside it is. Values are always sealed,
// even if they look sealed already: Open removes exactly one layer.
func (k *Keyring) Seal(msg proto.Message) (string, error) {
	if msg == nil {
		return "", nil
	}
	sealed := false
	err := walk(msg.ProtoReflect(), false, func(fd protoreflect.FieldDescriptor, v string) (string, error) {
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

// Open decrypts, in place, every sealed secret value of msg (the worker calls
// it before the handler runs). A secret value that is not sealed (params
// written before encryption was enabled) is left as it is. A tampered value or
// an unknown key id gives an error wrapping job.ErrPermanent and ErrTampered or
// ErrUnknownKey, naming the field but never its value.
func (k *Keyring) Open(msg proto.Message) error {
	if msg == nil {
		return nil
	}
	return walk(msg.ProtoReflect(), false, func(fd protoreflect.FieldDescriptor, v string) (string, error) {
		if !IsSealed(v) {
			return v, nil
		}
		plain, err := k.OpenString(string(fd.FullName()), v)
		if err != nil {
			return "", permanent(fmt.Errorf("secret: open %s: %w", fd.Name(), err))
		}
		return plain, nil
	})
}

// Redact replaces, in place, every non-empty secret value of msg (sealed or
// not) with Redacted, for output.
func Redact(msg proto.Message) {
	if msg == nil {
		return
	}
	// The callback never fails; a non-string secret field (ErrUnsupported) is
	// cleared instead, so it is never shown either.
	_ = walk(msg.ProtoReflect(), false, func(protoreflect.FieldDescriptor, string) (string, error) {
		return Redacted, nil
	})
	clearUnsupported(msg.ProtoReflect(), false)
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

// walk calls fn for every non-empty secret string of m (secret says whether m
// itself sits in a secret field) and stores what fn returns.
func walk(m protoreflect.Message, secret bool, fn func(protoreflect.FieldDescriptor, string) (string, error)) error {
	if !secret && !hasSecret(m.Descriptor()) {
		return nil
	}
	for _, fd := range populated(m) {
		isSecret := secret || tasks.IsSecret(fd)
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if err := walkMap(fd, v.Map(), isSecret, fn); err != nil {
				return err
			}
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len(); i++ {
				if isMessage(fd) {
					if err := walk(list.Get(i).Message(), isSecret, fn); err != nil {
						return err
					}
					continue
				}
				if !isSecret {
					continue
				}
				if fd.Kind() != protoreflect.StringKind {
					return fmt.Errorf("%w: %s is %s", ErrUnsupported, fd.FullName(), fd.Kind())
				}
				s, err := apply(fd, list.Get(i).String(), fn)
				if err != nil {
					return err
				}
				list.Set(i, protoreflect.ValueOfString(s))
			}
		case isMessage(fd):
			if err := walk(v.Message(), isSecret, fn); err != nil {
				return err
			}
		case isSecret:
			if fd.Kind() != protoreflect.StringKind {
				return fmt.Errorf("%w: %s is %s", ErrUnsupported, fd.FullName(), fd.Kind())
			}
			s, err := apply(fd, v.String(), fn)
			if err != nil {
				return err
			}
			m.Set(fd, protoreflect.ValueOfString(s))
		}
	}
	return nil
}

func walkMap(fd protoreflect.FieldDescriptor, mp protoreflect.Map, secret bool, fn func(protoreflect.FieldDescriptor, string) (string, error)) error {
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
			if err := walk(mp.Get(k).Message(), secret, fn); err != nil {
				return err
			}
			continue
		}
		if !secret {
			continue
		}
		if vd.Kind() != protoreflect.StringKind {
			return fmt.Errorf("%w: %s is a map of %s", ErrUnsupported, fd.FullName(), vd.Kind())
		}
		s, err := apply(fd, mp.Get(k).String(), fn)
		if err != nil {
			return err
		}
		mp.Set(k, protoreflect.ValueOfString(s))
	}
	return nil
}

// apply leaves empty values alone: there is nothing to hide.
func apply(fd protoreflect.FieldDescriptor, v string, fn func(protoreflect.FieldDescriptor, string) (string, error)) (string, error) {
	if v == "" {
		return v, nil
	}
	return fn(fd, v)
}

// clearUnsupported clears secret fields that are not strings, for Redact.
func clearUnsupported(m protoreflect.Message, secret bool) {
	if !secret && !hasSecret(m.Descriptor()) {
		return
	}
	for _, fd := range populated(m) {
		isSecret := secret || tasks.IsSecret(fd)
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
// secret, so that params without secrets are not walked.
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
		if tasks.IsSecret(fd) {
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
