package config

import (
	"fmt"
	"net/url"
)

// TracingConfig configures OpenTelemetry tracing (package tracing). The
// standard OTEL_* environment variables are honoured by the SDK as well:
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) when
// endpoint is empty, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER (which then replaces
// sample_ratio), OTEL_BSP_* (the batch's delay and size) and
// OTEL_SDK_DISABLED=true (tracing off whatever enabled says).
type TracingConfig struct {
	// Enabled turns tracing on. Off, no span is made and nothing is
	// exported. Default false.
	Enabled bool `mapstructure:"enabled"`
	// Endpoint is the OTLP/HTTP collector's base URL, such as
	// http://127.0.0.1:4318 (spans are posted to its /v1/traces). Empty: the
	// OTEL_EXPORTER_OTLP_* variables, else the SDK's default
	// http://localhost:4318. Default empty.
	Endpoint string `mapstructure:"endpoint"`
	// SampleRatio is the share of new traces sampled, from 0 to 1; a request
	// that arrives with a sampled traceparent is sampled whatever it says.
	// Default 1.
	SampleRatio float64 `mapstructure:"sample_ratio"`
	// ServiceName is the service.name of the process's spans. Empty: the
	// binary's name (taskforge-api, taskforge-worker, taskforge-scheduler);
	// set it per binary with TASKFORGE_TRACING_SERVICE_NAME or
	// OTEL_SERVICE_NAME. Default empty.
	ServiceName string `mapstructure:"service_name"`
}

// validateTracing checks the tracing section.
func (c Config) validateTracing(bad func(string, any, string)) {
	t := c.Tracing
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		bad("tracing.sample_ratio", t.SampleRatio, "must be between 0 and 1")
	}
	if u, err := url.Parse(t.Endpoint); t.Endpoint != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		bad("tracing.endpoint", fmt.Sprintf("%q", t.Endpoint), "must be an http(s) URL such as http://127.0.0.1:4318")
	}
}
