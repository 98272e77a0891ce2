// Package check validates Taskforge's deployment files offline: the compose file
// (compose-go, as docker compose would load it), the Helm chart's rendered
// manifests (strict decoding into the Kubernetes API types, plus checks of the
// KEDA and Prometheus Operator resources and of the chart's own rules), and the
// Dockerfile. It has no non-test code; scripts/check-deployments.sh runs it.
package check
