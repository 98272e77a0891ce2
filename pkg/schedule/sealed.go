package schedule

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Keyring seals and opens the secret fields of params (secret.Keyring). A
// schedule keeps its params in PostgreSQL for every fire: with a keyring, the
// secret ones are stored sealed, and opened only to create each fire's task
// (which the task service seals again under its own nonce).
type Keyring interface {
	Seal(msg proto.Message) (keyID string, err error)
	Open(msg proto.Message) error
}

// NewSealedStore returns a Store on db that stores secret params sealed with
// keys.
func NewSealedStore(db *gorm.DB, keys Keyring) (*Store, error) {
	s, err := NewStore(db)
	if err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, errors.New("schedule: nil keyring")
	}
	s.keys = keys
	return s, nil
}

// storedParams decodes a schedule's stored params as its type's message. They
// were validated when the schedule was written; sealed values would not pass
// the type's rules again, so only the proto shape is read.
func storedParams(spec tasks.Spec, params store.JSON) (proto.Message, error) {
	msg := spec.NewParams()
	if len(params) == 0 || string(params) == "null" {
		return msg, nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(params, msg); err != nil {
		return nil, fmt.Errorf("schedule: stored params of %s: %w", spec.Name, err)
	}
	return msg, nil
}

// openParams returns row's params with their secrets opened, ready for the
// task service (which seals them again).
func openParams(keys Keyring, row store.Schedule) (proto.Message, error) {
	spec, ok := tasks.Lookup(row.Type)
	if !ok {
		return nil, tasks.Invalid("type", "unknown task type %q", row.Type)
	}
	msg, err := storedParams(spec, row.Params)
	if err != nil {
		return nil, tasks.Invalid("params", "the stored params cannot be read")
	}
	if err := keys.Open(msg); err != nil {
		// The message names the field, never its value.
		return nil, tasks.Invalid("params", "a stored secret cannot be decrypted: %v", err)
	}
	return msg, nil
}

// seal rewrites row's params with every secret sealed exactly once: values
// already sealed (a patch that kept them) are opened first, so nothing is ever
// sealed twice. Without a keyring it does nothing.
func (s *Store) seal(row *store.Schedule) error {
	if s.keys == nil {
		return nil
	}
	if row.Workflow != nil {
		sealed, err := sealSteps(s.keys, row.Workflow)
		if err != nil {
			return err
		}
		row.Workflow = sealed
		return nil
	}
	msg, err := openParams(s.keys, *row)
	if err != nil {
		if _, ok := tasks.AsValidation(err); ok && row.Type != "" {
			return tasks.Invalid("params", "the stored secret belongs to another type or key: send params again")
		}
		return err
	}
	if _, err := s.keys.Seal(msg); err != nil {
		return fmt.Errorf("schedule: seal params: %w", err)
	}
	b, err := tasks.ParamsJSON(msg)
	if err != nil {
		return fmt.Errorf("schedule: params: %w", err)
	}
	row.Params = store.JSON(json.RawMessage(b))
	return nil
}
