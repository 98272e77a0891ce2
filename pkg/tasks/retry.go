package tasks

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"time"

	"github.com/taskforge/taskforge/pkg/taskpb"
)

// RetryPolicy is the specification's retry policy; delays are in seconds.
type RetryPolicy struct {
	MaxRetries         int  `json:"max_retries"`
	RetryDelay         int  `json:"retry_delay"`
	ExponentialBackoff bool `json:"exponential_backoff"`
	MaxRetryDelay      int  `json:"max_retry_delay"`
}

// Limits of a retry policy.
const (
	MaxRetriesLimit = 25
	MaxDelayLimit   = 7 * 24 * 3600
)

// Validate checks the policy, naming fields under prefix.
func (p RetryPolicy) Validate(prefix string) []FieldError {
	var errs []FieldError
	if p.MaxRetries < 0 || p.MaxRetries > MaxRetriesLimit {
		errs = append(errs, FieldError{Field: prefix + ".max_retries", Message: "must be between 0 and 25"})
	}
	if p.RetryDelay < 1 || p.RetryDelay > MaxDelayLimit {
		errs = append(errs, FieldError{Field: prefix + ".retry_delay", Message: "must be between 1 and 604800 seconds"})
	}
	if p.MaxRetryDelay < 1 || p.MaxRetryDelay > MaxDelayLimit {
		errs = append(errs, FieldError{Field: prefix + ".max_retry_delay", Message: "must be between 1 and 604800 seconds"})
	} else if p.MaxRetryDelay < p.RetryDelay {
		errs = append(errs, FieldError{Field: prefix + ".max_retry_delay", Message: "must not be below retry_delay"})
	}
	return errs
}

// OverlayRetryPolicy sets on base the policy fields present in raw, a JSON
// object with any of max_retries, retry_delay, max_retry_delay and
// exponential_backoff. It names every unknown field and every value of the
// wrong type under "retry_policy."; it does not check the values' ranges
// (Validate does).
func OverlayRetryPolicy(raw json.RawMessage, base RetryPolicy) (RetryPolicy, []FieldError) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return base, []FieldError{{Field: "retry_policy", Message: "must be an object"}}
	}
	var errs []FieldError
	for name, v := range fields {
		var target any
		kind := "an integer"
		switch name {
		case "max_retries":
			target = &base.MaxRetries
		case "retry_delay":
			target = &base.RetryDelay
		case "max_retry_delay":
			target = &base.MaxRetryDelay
		case "exponential_backoff":
			target, kind = &base.ExponentialBackoff, "a boolean"
		default:
			errs = append(errs, FieldError{Field: "retry_policy." + name, Message: "unknown field"})
			continue
		}
		if json.Unmarshal(v, target) != nil {
			errs = append(errs, FieldError{Field: "retry_policy." + name, Message: "must be " + kind})
		}
	}
	return base, errs
}

// Delay is the wait before retry number n (1 for the first retry). With
// exponential backoff the delay doubles per retry up to max_retry_delay, and a
// jitter of up to 10 % below it spreads retries of many tasks apart; without
// backoff every retry waits retry_delay. The result is never below one second.
func (p RetryPolicy) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	base := float64(p.RetryDelay)
	if p.ExponentialBackoff {
		base *= math.Pow(2, float64(min(n-1, 40)))
		base -= base * 0.1 * rand.Float64()
	}
	if maxDelay := float64(p.MaxRetryDelay); maxDelay > 0 && base > maxDelay {
		base = maxDelay
	}
	d := time.Duration(base * float64(time.Second))
	return max(d, time.Second)
}

// Proto converts the policy for the envelope.
func (p RetryPolicy) Proto() *taskpb.RetryPolicy {
	return &taskpb.RetryPolicy{
		MaxRetries: int32(p.MaxRetries), RetryDelay: int32(p.RetryDelay),
		ExponentialBackoff: p.ExponentialBackoff, MaxRetryDelay: int32(p.MaxRetryDelay),
	}
}

// PolicyFromProto converts the envelope's policy.
func PolicyFromProto(p *taskpb.RetryPolicy) RetryPolicy {
	if p == nil {
		return DefaultRetry
	}
	return RetryPolicy{
		MaxRetries: int(p.GetMaxRetries()), RetryDelay: int(p.GetRetryDelay()),
		ExponentialBackoff: p.GetExponentialBackoff(), MaxRetryDelay: int(p.GetMaxRetryDelay()),
	}
}
