package result

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The operations on the backend counted by taskforge_result_storage_errors_total.
const (
	opPut     = "put"
	opOpen    = "open"
	opDelete  = "delete"
	opPresign = "presign"
)

func newStorageErrors() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskforge_result_storage_errors_total",
		Help: "Failed operations on the result storage backend (put, open, delete, presign), by backend and operation; a missing file and a cancelled request are not counted.",
	}, []string{"backend", "op"})
}

// RegisterMetrics adds the store's taskforge_result_storage_errors_total to
// reg, every operation of its backend at 0, so that rates are defined before
// the first error.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) error {
	for _, op := range []string{opPut, opOpen, opDelete, opPresign} {
		s.storageErrors.WithLabelValues(s.backend.Name(), op)
	}
	return reg.Register(s.storageErrors)
}

// storageFailed counts err, when it is one, as a failed backend operation op.
func (s *Store) storageFailed(op string, err error) {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, context.Canceled) {
		return
	}
	s.storageErrors.WithLabelValues(s.backend.Name(), op).Inc()
}
