package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

const canary = "canary-Zq8v1-do-not-leak"

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func ring(t *testing.T, keys map[string][]byte, active string) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys, active)
	require.NoError(t, err)
	return k
}

func webhook() *taskpb.WebhookCallbackParams {
	return &taskpb.WebhookCallbackParams{
		Url: "https://example.test/hook", Method: "POST",
		Headers: map[string]string{"X-Trace": "abc", "Authorization": "Bearer " + canary + "-header"},
		Secret:  canary,
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	k := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	msg := webhook()
	keyID, err := k.Seal(msg)
	require.NoError(t, err)
	require.Equal(t, "k1", keyID)
	require.True(t, strings.HasPrefix(msg.GetSecret(), "enc:v1:k1:"), msg.GetSecret())
	require.Equal(t, "https://example.test/hook", msg.GetUrl(), "other fields are untouched")
	for name, v := range msg.GetHeaders() {
		require.True(t, strings.HasPrefix(v, "enc:v1:k1:"), "header %s is sealed: %s", name, v)
	}
	require.Len(t, msg.GetHeaders(), 2, "header names stay as they are")

	// Neither the binary form (the Asynq payload) nor the JSON form (the
	// tasks row) carries the secret.
	bin, err := proto.Marshal(msg)
	require.NoError(t, err)
	require.False(t, bytes.Contains(bin, []byte(canary)))
	js, err := tasks.ParamsJSON(msg)
	require.NoError(t, err)
	require.NotContains(t, string(js), canary)

	// The worker reads the payload back and opens it.
	back := &taskpb.WebhookCallbackParams{}
	require.NoError(t, proto.Unmarshal(bin, back))
	require.NoError(t, k.Open(back))
	require.True(t, proto.Equal(webhook(), back))

	// Sealing twice gives different ciphertexts (random nonces).
	a, b := webhook(), webhook()
	_, err = k.Seal(a)
	require.NoError(t, err)
	_, err = k.Seal(b)
	require.NoError(t, err)
	require.NotEqual(t, a.GetSecret(), b.GetSecret())
}

func TestSealWithoutSecrets(t *testing.T) {
	t.Parallel()
	k := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	for _, m := range []proto.Message{
		&taskpb.RefreshPortfolioParams{PortfolioId: "pf_1"},
		&taskpb.WebhookCallbackParams{Url: "https://example.test"}, // secret field empty
		nil,
	} {
		keyID, err := k.Seal(m)
		require.NoError(t, err)
		require.Empty(t, keyID)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	old := ring(t, map[string][]byte{"2025": k1}, "2025")
	rotated := ring(t, map[string][]byte{"2025": k1, "2026": k2}, "2026")
	retired := ring(t, map[string][]byte{"2026": k2}, "2026")

	sealedOld := webhook()
	_, err := old.Seal(sealedOld)
	require.NoError(t, err)

	// The new key encrypts, the old one still decrypts.
	sealedNew := webhook()
	keyID, err := rotated.Seal(sealedNew)
	require.NoError(t, err)
	require.Equal(t, "2026", keyID)
	require.True(t, strings.HasPrefix(sealedNew.GetSecret(), "enc:v1:2026:"))
	for _, m := range []*taskpb.WebhookCallbackParams{proto.Clone(sealedOld).(*taskpb.WebhookCallbackParams), proto.Clone(sealedNew).(*taskpb.WebhookCallbackParams)} {
		require.NoError(t, rotated.Open(m))
		require.Equal(t, canary, m.GetSecret())
	}

	// Once the old key is removed, its values cannot be opened: a permanent
	// error naming the key, not the value.
	err = retired.Open(proto.Clone(sealedOld))
	require.ErrorIs(t, err, ErrUnknownKey)
	require.True(t, job.IsPermanent(err))
	require.Contains(t, err.Error(), "2025")
	require.NotContains(t, err.Error(), sealedOld.GetSecret())
}

func TestTamperedValues(t *testing.T) {
	t.Parallel()
	k := ring(t, map[string][]byte{"k1": newKey(t), "k2": newKey(t)}, "k1")
	msg := webhook()
	_, err := k.Seal(msg)
	require.NoError(t, err)
	sealed := msg.GetSecret()
	payload := strings.TrimPrefix(sealed, "enc:v1:k1:")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return "enc:v1:k1:" + base64.RawURLEncoding.EncodeToString(b)
	}

	cases := map[string]struct {
		value string
		want  error
	}{
		"flipped nonce bit":       {flip(0), ErrTampered},
		"flipped ciphertext bit":  {flip(nonceSize), ErrTampered},
		"flipped tag bit":         {flip(len(raw) - 1), ErrTampered},
		"truncated":               {sealed[:len(sealed)-10], ErrTampered},
		"relabelled with k2":      {"enc:v1:k2:" + payload, ErrTampered},
		"unknown key id":          {"enc:v1:k9:" + payload, ErrUnknownKey},
		"bad base64":              {"enc:v1:k1:***", ErrTampered},
		"no key id":               {"enc:v1:" + payload, ErrTampered},
		"too short":               {"enc:v1:k1:AAAA", ErrTampered},
		"key id with bad letters": {"enc:v1:k 1:" + payload, ErrTampered},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := webhook()
			m.Secret = tc.value
			err := k.Open(m)
			require.ErrorIs(t, err, tc.want)
			require.ErrorIs(t, err, job.ErrPermanent)
			require.Contains(t, err.Error(), "secret")
		})
	}

	// A value sealed for one field does not open in another.
	ok, err := k.OpenString("taskforge.v1.WebhookCallbackParams.secret", sealed)
	require.NoError(t, err)
	require.Equal(t, canary, ok)
	_, err = k.OpenString("taskforge.v1.WebhookCallbackParams.url", sealed)
	require.ErrorIs(t, err, ErrTampered)

	// A plaintext value (written before encryption was on) is left alone.
	m := webhook()
	require.NoError(t, k.Open(m))
	require.Equal(t, canary, m.GetSecret())
}

func TestNewKeyringChecks(t *testing.T) {
	t.Parallel()
	good := newKey(t)
	for name, tc := range map[string]struct {
		keys   map[string][]byte
		active string
	}{
		"no keys":          {nil, "a"},
		"short key":        {map[string][]byte{"a": good[:16]}, "a"},
		"active missing":   {map[string][]byte{"a": good}, "b"},
		"colon in key id":  {map[string][]byte{"a:b": good}, "a:b"},
		"empty key id":     {map[string][]byte{"": good}, ""},
		"key id too long":  {map[string][]byte{strings.Repeat("k", 33): good}, strings.Repeat("k", 33)},
		"unicode in keyid": {map[string][]byte{"clé": good}, "clé"},
	} {
		_, err := NewKeyring(tc.keys, tc.active)
		require.Error(t, err, name)
	}
}

func TestFromConfig(t *testing.T) {
	t.Parallel()
	dev, err := FromConfig(config.CryptoConfig{ActiveKey: "dev"}, true)
	require.NoError(t, err)
	require.True(t, dev.Dev())
	require.Equal(t, DevKeyID, dev.ActiveKey())
	dev2, err := FromConfig(config.CryptoConfig{}, true)
	require.NoError(t, err)
	m := webhook()
	_, err = dev.Seal(m)
	require.NoError(t, err)
	require.NoError(t, dev2.Open(m), "the development key is the same in every process")

	_, err = FromConfig(config.CryptoConfig{}, false)
	require.Error(t, err, "production needs keys")

	k1, k2 := newKey(t), newKey(t)
	cfg := config.CryptoConfig{ActiveKey: "b", Keys: map[string]string{
		"a": base64.StdEncoding.EncodeToString(k1), "b": base64.StdEncoding.EncodeToString(k2)}}
	k, err := FromConfig(cfg, false)
	require.NoError(t, err)
	require.False(t, k.Dev())
	require.Equal(t, "b", k.ActiveKey())
	require.Equal(t, []string{"a", "b"}, k.KeyIDs())

	cfg.Keys["c"] = "not base64!"
	_, err = FromConfig(cfg, false)
	require.ErrorContains(t, err, "crypto.keys.c")
	require.NotContains(t, err.Error(), base64.StdEncoding.EncodeToString(k1))
}

func TestRedact(t *testing.T) {
	t.Parallel()
	k := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	plain := webhook()
	sealed := webhook()
	_, err := k.Seal(sealed)
	require.NoError(t, err)
	for _, m := range []*taskpb.WebhookCallbackParams{plain, sealed} {
		Redact(m)
		require.Equal(t, Redacted, m.GetSecret())
		require.Equal(t, map[string]string{"X-Trace": Redacted, "Authorization": Redacted}, m.GetHeaders(),
			"every header value is masked, the names kept")
		require.Equal(t, "https://example.test/hook", m.GetUrl())
	}

	// Rows hold the sealed JSON; the API shows it redacted.
	js, err := tasks.ParamsJSON(webhookSealed(t, k))
	require.NoError(t, err)
	out := RedactJSON(tasks.TypeWebhookCallback, js)
	var got map[string]any
	require.NoError(t, json.Unmarshal(out, &got))
	require.Equal(t, Redacted, got["secret"])
	require.Equal(t, map[string]any{"X-Trace": Redacted, "Authorization": Redacted}, got["headers"])
	require.Equal(t, "https://example.test/hook", got["url"])
	require.NotContains(t, string(out), "enc:v1")

	plainJS, err := tasks.ParamsJSON(webhook())
	require.NoError(t, err)
	require.NotContains(t, string(RedactJSON(tasks.TypeWebhookCallback, plainJS)), canary)

	// Undecodable params are hidden whole.
	require.JSONEq(t, "{}", string(RedactJSON("no_such_type", plainJS)))
	require.JSONEq(t, "{}", string(RedactJSON(tasks.TypeWebhookCallback, json.RawMessage(`{"secret": 5}`))))
	require.JSONEq(t, "{}", string(RedactJSON(tasks.TypeWebhookCallback, json.RawMessage(`{`))))
	require.JSONEq(t, "{}", string(RedactJSON(tasks.TypeWebhookCallback, nil)))
}

func webhookSealed(t *testing.T, k *Keyring) *taskpb.WebhookCallbackParams {
	t.Helper()
	m := webhook()
	m.Payload = structpb.NewStringValue("hello")
	_, err := k.Seal(m)
	require.NoError(t, err)
	return m
}

func TestFormatPayload(t *testing.T) {
	t.Parallel()
	k := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	m := webhookSealed(t, k)
	payload, err := tasks.EncodeEnvelope("task_01", tasks.TypeWebhookCallback, m, tasks.DefaultRetry, 30, "k1", 0)
	require.NoError(t, err)
	out := FormatPayload(tasks.TypeWebhookCallback, payload)
	require.NotContains(t, out, canary)
	require.NotContains(t, out, "enc:v1")
	var got struct {
		TaskID string         `json:"task_id"`
		Type   string         `json:"type"`
		KeyID  string         `json:"key_id"`
		Params map[string]any `json:"params"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, "task_01", got.TaskID)
	require.Equal(t, "k1", got.KeyID)
	require.Equal(t, Redacted, got.Params["secret"])
	require.Equal(t, Redacted, got.Params["payload"], "the payload is sensitive (the registry's webhook_callback entry)")

	// Even an unsealed secret (encryption off) is not shown.
	payload, err = tasks.EncodeEnvelope("task_02", tasks.TypeWebhookCallback, webhook(), tasks.DefaultRetry, 30, "", 0)
	require.NoError(t, err)
	require.NotContains(t, FormatPayload(tasks.TypeWebhookCallback, payload), canary)

	bad := FormatPayload("x", []byte("\xff\xff not proto "+canary))
	require.Contains(t, bad, "undecodable")
	require.NotContains(t, bad, canary)
}

// testMessages builds, at run time, messages with secrets in every position
// the walk supports: a scalar, a list, a map, nested messages, lists and maps
// of messages, and a whole message marked secret.
func testMessages(t *testing.T) (outer, bad protoreflect.MessageType) {
	t.Helper()
	secretOpt := func() *descriptorpb.FieldOptions {
		o := &descriptorpb.FieldOptions{}
		proto.SetExtension(o, taskpb.E_Secret, true)
		return o
	}
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	msgT := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ *descriptorpb.FieldDescriptorProto_Type, typeName string, secret bool) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ, JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		if secret {
			f.Options = secretOpt()
		}
		return f
	}
	entry := func(name, valueType string, valueKind *descriptorpb.FieldDescriptorProto_Type) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{
			Name:    proto.String(name),
			Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, opt, str, "", false), field("value", 2, opt, valueKind, valueType, false)},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("secrettest/test.proto"), Package: proto.String("secrettest"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Inner"), Field: []*descriptorpb.FieldDescriptorProto{
				field("token", 1, opt, str, "", true), field("note", 2, opt, str, "", false),
			}},
			{Name: proto.String("Outer"), Field: []*descriptorpb.FieldDescriptorProto{
				field("plain", 1, opt, str, "", false),
				field("secret", 2, opt, str, "", true),
				field("secrets", 3, rep, str, "", true),
				field("headers", 4, rep, msgT, ".secrettest.Outer.HeadersEntry", true),
				field("inner", 5, opt, msgT, ".secrettest.Inner", false),
				field("inners", 6, rep, msgT, ".secrettest.Inner", false),
				field("by_name", 7, rep, msgT, ".secrettest.Outer.ByNameEntry", false),
				field("whole", 8, opt, msgT, ".secrettest.Inner", true),
				field("n", 9, opt, i32, "", false),
			}, NestedType: []*descriptorpb.DescriptorProto{
				entry("HeadersEntry", "", str),
				entry("ByNameEntry", ".secrettest.Inner", msgT),
			}},
			{Name: proto.String("Bad"), Field: []*descriptorpb.FieldDescriptorProto{
				field("pin", 1, opt, i32, "", true),
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	require.NoError(t, err)
	return dynamicpb.NewMessageType(fd.Messages().ByName("Outer")), dynamicpb.NewMessageType(fd.Messages().ByName("Bad"))
}

func TestNestedListsAndMaps(t *testing.T) {
	t.Parallel()
	outerT, badT := testMessages(t)
	k := ring(t, map[string][]byte{"k1": newKey(t)}, "k1")
	const doc = `{
		"plain": "visible", "secret": "` + canary + `-1", "secrets": ["` + canary + `-2", "", "` + canary + `-3"],
		"headers": {"Authorization": "` + canary + `-4"},
		"inner": {"token": "` + canary + `-5", "note": "visible"},
		"inners": [{"token": "` + canary + `-6", "note": "visible"}],
		"by_name": {"x": {"token": "` + canary + `-7", "note": "visible"}},
		"whole": {"token": "` + canary + `-8", "note": "` + canary + `-9"},
		"n": 7
	}`
	newMsg := func() proto.Message {
		m := outerT.New().Interface()
		require.NoError(t, protojson.Unmarshal([]byte(doc), m))
		return m
	}
	original := newMsg()
	m := newMsg()
	keyID, err := k.Seal(m)
	require.NoError(t, err)
	require.Equal(t, "k1", keyID)

	bin, err := proto.Marshal(m)
	require.NoError(t, err)
	require.False(t, bytes.Contains(bin, []byte(canary)), "binary form leaks")
	js, err := protojson.Marshal(m)
	require.NoError(t, err)
	require.NotContains(t, string(js), canary)
	require.Contains(t, string(js), "visible", "non-secret strings stay readable")
	require.Equal(t, 9, strings.Count(string(js), "enc:v1:k1:"))

	back := outerT.New().Interface()
	require.NoError(t, proto.Unmarshal(bin, back))
	require.NoError(t, k.Open(back))
	require.True(t, proto.Equal(original, back), "round trip")

	red := newMsg()
	Redact(red)
	js, err = protojson.Marshal(red)
	require.NoError(t, err)
	require.NotContains(t, string(js), canary)
	require.Equal(t, 9, strings.Count(string(js), `"***"`))

	// A secret that is not a string cannot be sealed; Redact drops it.
	b := badT.New().Interface()
	require.NoError(t, protojson.Unmarshal([]byte(`{"pin": 1234}`), b))
	_, err = k.Seal(b)
	require.ErrorIs(t, err, ErrUnsupported)
	Redact(b)
	js, err = protojson.Marshal(b)
	require.NoError(t, err)
	require.NotContains(t, string(js), "1234")
}

// BenchmarkSealOpen prints the cost of sealing and opening webhook params.
func BenchmarkSealOpen(b *testing.B) {
	key := make([]byte, 32)
	k, err := NewKeyring(map[string][]byte{"k1": key}, "k1")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m := webhook()
		if _, err := k.Seal(m); err != nil {
			b.Fatal(err)
		}
		if err := k.Open(m); err != nil {
			b.Fatal(err)
		}
	}
}
