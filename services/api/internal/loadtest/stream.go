package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// streamStats is what one event-stream client saw.
type streamStats struct {
	// pub is, per task event received while recording, receipt minus the
	// millisecond of the event's Redis stream id (the time Redis appended the
	// event, after the change committed).
	pub []time.Duration
	// commit is, per task event received while recording, receipt minus the
	// row's updated_at in the event data (the writer's transition time).
	commit []time.Duration
	// completed counts the completed task events received while recording.
	completed int
	// events counts every event received.
	events int
	// lastStatus is the status of the last task event.
	lastStatus string
	// endedByServer is set when the server closed the stream (EOF).
	endedByServer bool
	err           error
}

// streamClient opens server-sent event streams over its own transport (no
// compression, no idle pool: each stream holds its connection).
type streamClient struct {
	hc        *http.Client
	recording *atomic.Bool
}

func newStreamClient(recording *atomic.Bool) *streamClient {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: -1, ResponseHeaderTimeout: 30 * time.Second}
	return &streamClient{hc: &http.Client{Transport: tr}, recording: recording}
}

// open sends the request and returns once the server answered 200 and the
// stream's first line arrived; read then consumes it until ctx ends or the
// server closes it.
func (c *streamClient) open(ctx context.Context, url, token string) (*bufio.Reader, io.Closer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, nil, fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, b)
	}
	// Task views are a few KiB; a line longer than this is an error.
	br := bufio.NewReaderSize(resp.Body, 32<<10)
	if _, err := br.ReadSlice('\n'); err != nil { // "retry: …"
		resp.Body.Close()
		return nil, nil, fmt.Errorf("GET %s: first line: %w", url, err)
	}
	return br, resp.Body, nil
}

// read consumes a stream into st. The receipt time of an event is taken when
// its id line is read: the server writes each event in one flushed write.
func (c *streamClient) read(br *bufio.Reader, st *streamStats) {
	var recv time.Time
	var id []byte
	kind := ""
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				st.endedByServer = true
			} else if !errors.Is(err, context.Canceled) {
				st.err = err
			}
			return
		}
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			recv = time.Now()
			id = append(id[:0], bytes.TrimSpace(line[4:])...)
			kind = ""
		case bytes.HasPrefix(line, []byte("event: ")):
			kind = string(bytes.TrimSpace(line[7:]))
		case bytes.HasPrefix(line, []byte("data: ")):
			st.events++
			if kind != "task" {
				continue
			}
			data := line[6:]
			st.lastStatus = jsonString(data, "status")
			if !c.recording.Load() {
				continue
			}
			if at, ok := idTime(id); ok {
				st.pub = append(st.pub, recv.Sub(at))
			}
			if ts, err := time.Parse(time.RFC3339Nano, jsonString(data, "updated_at")); err == nil {
				st.commit = append(st.commit, recv.Sub(ts))
			}
			if st.lastStatus == "completed" {
				st.completed++
			}
		}
	}
}

// idTime is the time in an event id: a stream id "<ms>-<seq>", or a task
// stream's "<ms>-<seq>.<version>".
func idTime(id []byte) (time.Time, bool) {
	i := bytes.IndexByte(id, '-')
	if i <= 0 {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(string(id[:i]), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// jsonString finds the first string value of key in a JSON object without
// decoding it. In a task view status comes first and updated_at after only
// params, which in the benchmark's tasks hold neither key.
func jsonString(data []byte, key string) string {
	pat := `"` + key + `":"`
	i := bytes.Index(data, []byte(pat))
	if i < 0 {
		return ""
	}
	rest := data[i+len(pat):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
