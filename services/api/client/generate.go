// Package client is the typed Go client of the Taskforge API, generated from
// services/api/openapi.yaml by oapi-codegen. It is a module of its own,
// github.com/taskforge/taskforge/services/api/client, that depends on published
// modules only, so that other programs can import it.
//
// The generator is a tool dependency of the API's module (services/api), not of
// this one, so that importers do not inherit it: run `go generate` here (or
// `make generate`) after changing the document; scripts/check-generated.sh fails
// when client.gen.go is stale.
package client

//go:generate go -C .. tool oapi-codegen -config client/oapi-codegen.yaml openapi.yaml
