package main

import (
	"net"
	"net/http"
	"sync"
)

// freshConns tracks the connections that have not sent a request yet
// (http.StateNew). http.Server.Shutdown closes such a connection only once it
// is five seconds old (it might be about to send a request), so a spare
// connection a browser opened just before a SIGTERM would hold the shutdown
// for up to five seconds, past a shorter api.shutdown_timeout. On shutdown
// they are closed at once: nothing was asked on them.
type freshConns struct {
	mu   sync.Mutex
	m    map[net.Conn]struct{}
	shut bool
}

func newFreshConns() *freshConns { return &freshConns{m: map[net.Conn]struct{}{}} }

// track is the server's ConnState hook.
func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case st == http.StateNew && f.shut:
		_ = c.Close()
	case st == http.StateNew:
		f.m[c] = struct{}{}
	default:
		delete(f.m, c)
	}
}

// closeAll closes the tracked connections, and from now on every new one:
// for http.Server.RegisterOnShutdown.
func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shut = true
	for c := range f.m {
		_ = c.Close()
	}
	clear(f.m)
}

// serveShutdownFast makes srv's Shutdown close connections that sent nothing
// at once.
func serveShutdownFast(srv *http.Server) {
	f := newFreshConns()
	srv.ConnState = f.track
	srv.RegisterOnShutdown(f.closeAll)
}
