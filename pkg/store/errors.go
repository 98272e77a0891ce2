package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsConnError reports whether err means PostgreSQL could not be reached (as
// opposed to a query that PostgreSQL rejected).
func IsConnError(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		c := pgErr.Code
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "57P") || c == "53300"
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "bad connection") ||
		strings.Contains(msg, "unexpected EOF") || strings.Contains(msg, "conn closed") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "failed to connect")
}

// Codes of PostgreSQL's lock conflicts: a deadlock the server broke, a
// lock_timeout that expired, a serialization failure.
const (
	codeDeadlock      = "40P01"
	codeLockTimeout   = "55P03"
	codeSerialization = "40001"
)

// IsLockConflict reports whether err is a lock conflict PostgreSQL resolved
// by failing this statement (a deadlock, an expired lock_timeout, a
// serialization failure): the statement may succeed if run again.
func IsLockConflict(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case codeDeadlock, codeLockTimeout, codeSerialization:
		return true
	}
	return false
}

// lockRetries bounds how often RetryLockConflicts runs fn.
const lockRetries = 4

// RetryLockConflicts runs fn and runs it again, after a short jittered
// pause, while it fails with a lock conflict (IsLockConflict), up to four
// runs in all or until ctx ends. fn must be a whole transaction (or one
// statement): a conflict rolls it back entirely. The last error is returned.
func RetryLockConflicts(ctx context.Context, fn func() error) error {
	var err error
	for i := range lockRetries {
		if err = fn(); !IsLockConflict(err) {
			return err
		}
		pause := time.Duration(5<<i)*time.Millisecond + time.Duration(rand.Int64N(int64(5*time.Millisecond)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
	return err
}
