// Command sigserver is a test program for testenv's process helpers: it prints
// its arguments and $GREETING, serves 200 on $ADDR, and on SIGTERM prints
// "stopping" and exits with status $EXIT_CODE.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	fmt.Println(strings.Join(os.Args[1:], " "), os.Getenv("GREETING"))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		_ = http.ListenAndServe(os.Getenv("ADDR"), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	}()
	<-sig
	fmt.Fprintln(os.Stderr, "stopping")
	code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
	os.Exit(code)
}
