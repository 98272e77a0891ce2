# Taskforge. `make help` lists the targets.
SHELL := /bin/bash
MODULES = $(shell go list -m -f '{{.Dir}}')
export PATH := $(CURDIR)/bin:$(PATH)

.DEFAULT_GOAL := help

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

dev: ## Start Redis, PostgreSQL, api, worker, scheduler and monitor; Ctrl-C stops all.
	@scripts/dev.sh

test: ## Run every test of every module against throw-away Redis and PostgreSQL.
	@scripts/test.sh

test-race: ## make test with the race detector (as CI runs it).
	@RACE=1 scripts/test.sh

test-short: ## Run the unit tests only (no servers).
	@for m in $(MODULES); do (cd $$m && go test -short -count=1 ./...) || exit 1; done

build: ## Build every service (bin/taskforge-NAME) and the CLI (bin/taskforge) into ./bin.
	@. scripts/lib.sh && build_services bin

build-check: ## Build each service with GOWORK=off, as a container build does.
	@for s in api worker scheduler monitor cli; do (cd services/$$s && GOWORK=off CGO_ENABLED=0 go build -o /dev/null .) || exit 1; done

lint: ## go vet every module (and golangci-lint when installed); gofmt check.
	@for m in $(MODULES); do (cd $$m && go vet ./...) || exit 1; done
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	@if command -v golangci-lint >/dev/null; then for m in $(MODULES); do (cd $$m && golangci-lint run ./...) || exit 1; done; fi

proto: ## Regenerate Go from proto/ with the project's pinned tools.
	@scripts/proto.sh

proto-check: ## Fail when the committed generated code is stale.
	@scripts/proto.sh --check

generate: ## Regenerate the API client from services/api/openapi.yaml.
	@cd services/api/client && go generate .

generate-check: ## Fail when the generated API client is stale.
	@scripts/check-generated.sh

tidy: ## go work sync, then go mod tidy every module.
	@go work sync
	@for m in $(MODULES); do (cd $$m && go mod tidy) || exit 1; done

tidy-check: ## Fail when go.mod/go.sum files are not tidy.
	@scripts/tidy-check.sh

fresh-check: ## Run the README's two commands in a clean Debian 12 root (debootstrap, chroot; root only).
	@scripts/fresh-check.sh

fuzz: ## Run every fuzz target for FUZZTIME each (default 60s); failing inputs land in testdata/fuzz.
	@scripts/fuzz.sh

bench: ## Run the benchmarks: the real binaries against their anchors (scripts/bench/system-*.sh), then the micro-benchmarks.
	@scripts/bench/run.sh

.PHONY: fuzz test-race fresh-check generate generate-check help dev test test-short build build-check lint proto proto-check tidy tidy-check bench
