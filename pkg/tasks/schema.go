package tasks

import (
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ParamsSchema describes the type's params as a JSON Schema object. Secret fields
// are marked writeOnly and "x-secret"; the registry's sensitive fields
// writeOnly and "x-sensitive" (both are sealed and read back masked).
func (s Spec) ParamsSchema() map[string]any {
	fields := s.NewParams().ProtoReflect().Descriptor().Fields()
	props := map[string]any{}
	required := []string{}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		p := fieldSchema(fd)
		switch {
		case IsSecret(fd):
			p["writeOnly"] = true
			p["x-secret"] = true
		case IsSensitive(fd):
			p["writeOnly"] = true
			p["x-sensitive"] = true
		}
		props[name] = p
		if IsRequired(fd) {
			required = append(required, name)
		}
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

func fieldSchema(fd protoreflect.FieldDescriptor) map[string]any {
	if fd.IsMap() {
		return map[string]any{"type": "object", "additionalProperties": scalarSchema(fd.MapValue())}
	}
	if fd.IsList() {
		return map[string]any{"type": "array", "items": scalarSchema(fd)}
	}
	return scalarSchema(fd)
}

func scalarSchema(fd protoreflect.FieldDescriptor) map[string]any {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return map[string]any{"type": "string"}
	case protoreflect.BoolKind:
		return map[string]any{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return map[string]any{"type": "integer"}
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return map[string]any{"type": "number"}
	}
	return map[string]any{} // any JSON value (google.protobuf.Value)
}
