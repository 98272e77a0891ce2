// Command healthcheck is the container health probe of the Taskforge images. The
// runtime image has no shell and no curl, so Docker's HEALTHCHECK runs this small
// static binary instead. It GETs one URL (the first argument, or the
// HEALTHCHECK_URL environment variable) and exits 0 on a 2xx answer, 1 otherwise.
// It imports only the standard library, so it builds without any module:
//
//	CGO_ENABLED=0 go build -o healthcheck ./deployments/docker/healthcheck/main.go
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	url := os.Getenv("HEALTHCHECK_URL")
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if url == "" {
		fmt.Fprintln(os.Stderr, "healthcheck: no URL (argument or HEALTHCHECK_URL)")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(os.Stderr, "healthcheck: %s answered %d\n", url, resp.StatusCode)
		os.Exit(1)
	}
}
