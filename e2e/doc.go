// Package e2e holds the end-to-end test of the whole Taskforge stack: it builds
// the api, worker, scheduler and monitor binaries, runs them against one
// PostgreSQL database and one Redis database of the test environment
// (pkg/testenv), with mail, Slack, SMS, push and webhook receivers on loopback,
// and drives them through the REST API with the generated client, as a user
// would. Run it with `TEST_PKGS="./e2e/..." scripts/test.sh`.
package e2e
