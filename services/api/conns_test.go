package main

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestShutdownClosesConnectionsThatSentNothing: a client connection that has
// sent no request (a browser's spare connection) does not hold Shutdown,
// which net/http alone would wait on for five seconds; a request in flight
// still finishes.
func TestShutdownClosesConnectionsThatSentNothing(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	inHandler, finish := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-finish
		_, _ = w.Write([]byte("done"))
	})}
	serveShutdownFast(srv)
	go func() { _ = srv.Serve(ln) }()

	spare, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer spare.Close()
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-inHandler

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	time.Sleep(100 * time.Millisecond)
	close(finish)
	require.NoError(t, <-shut, "Shutdown waited on the connection that sent nothing")
	require.Equal(t, http.StatusOK, <-answered, "the request in flight finished")
	_ = spare.SetReadDeadline(time.Now().Add(time.Second))
	_, err = spare.Read(make([]byte, 1))
	require.Error(t, err, "the spare connection was closed")
}
