package tasks

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/taskpb"
)

// EncodeEnvelope builds the Asynq payload of a task. params must already have its
// secret fields encrypted under keyID; attemptBase is the row's attempt count
// at this enqueue (see the envelope's attempt_base).
func EncodeEnvelope(taskID, typ string, params proto.Message, policy RetryPolicy, timeoutSeconds int, keyID string, attemptBase int) ([]byte, error) {
	pb, err := proto.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("tasks: encode params: %w", err)
	}
	env := &taskpb.Envelope{
		TaskId: taskID, Type: typ, Params: pb, RetryPolicy: policy.Proto(),
		KeyId: keyID, TimeoutSeconds: int32(timeoutSeconds), AttemptBase: int32(attemptBase),
	}
	b, err := proto.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("tasks: encode envelope: %w", err)
	}
	return b, nil
}

// DecodeEnvelope parses an Asynq payload.
func DecodeEnvelope(payload []byte) (*taskpb.Envelope, error) {
	env := &taskpb.Envelope{}
	if err := proto.Unmarshal(payload, env); err != nil {
		return nil, fmt.Errorf("tasks: decode envelope: %w", err)
	}
	if env.GetTaskId() == "" || env.GetType() == "" {
		return nil, fmt.Errorf("tasks: decode envelope: missing task id or type")
	}
	return env, nil
}

// DecodeEnvelopeParams returns the envelope's params as the type's message.
func DecodeEnvelopeParams(env *taskpb.Envelope) (Spec, proto.Message, error) {
	spec, ok := LookupAny(env.GetType())
	if !ok {
		return Spec{}, nil, fmt.Errorf("tasks: %w: %q", ErrUnknownType, env.GetType())
	}
	msg := spec.NewParams()
	if err := proto.Unmarshal(env.GetParams(), msg); err != nil {
		return spec, nil, fmt.Errorf("tasks: decode %s params: %w", spec.Name, err)
	}
	return spec, msg, nil
}
