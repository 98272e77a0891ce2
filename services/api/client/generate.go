// Package client is the typed Go client of the Taskforge API, generated from
// services/api/openapi.yaml by oapi-codegen (a tool dependency of this module).
// Run `go generate ./client` in services/api after changing the document;
// scripts/check-generated.sh fails when client.gen.go is stale.
package client

//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../openapi.yaml
