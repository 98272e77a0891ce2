package notify_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/notify"
)

func TestSignKnownAnswer(t *testing.T) {
	t.Parallel()

	// echo -n '1700000000.{"task_id":"t1","status":"done"}' | openssl dgst -sha256 -hmac whsec_test
	got := notify.Sign([]byte("whsec_test"), time.Unix(1700000000, 0), []byte(`{"task_id":"t1","status":"done"}`))
	require.Equal(t, "t=1700000000,v1=a31f7c197d9d54ba2f244f195deb07d8b5118d40c74720cd280d300bfa1b25c2", got)
}

func TestVerify(t *testing.T) {
	t.Parallel()

	secret := []byte("whsec_test")
	body := []byte(`{"a":1}`)
	now := time.Unix(1700000000, 0)
	valid := notify.Sign(secret, now, body)
	other := notify.Sign([]byte("old-secret"), now, body)
	otherSig := other[strings.Index(other, "v1="):]

	tests := []struct {
		name      string
		header    string
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{name: "valid", header: valid, body: body, now: now},
		{name: "valid within tolerance", header: valid, body: body, now: now.Add(4 * time.Minute)},
		{name: "rotated secrets", header: valid + "," + otherSig, body: body, now: now},
		{name: "rotated secrets other order", header: "t=1700000000," + otherSig + "," + valid[strings.Index(valid, "v1="):], body: body, now: now},
		{name: "spaces", header: strings.ReplaceAll(valid, ",", ", "), body: body, now: now},
		{name: "unknown scheme ignored", header: valid + ",v0=abc", body: body, now: now},
		{name: "tampered body", header: valid, body: []byte(`{"a":2}`), now: now, want: notify.ErrBadSignature},
		{name: "wrong secret", header: other, body: body, now: now, want: notify.ErrBadSignature},
		{name: "too old", header: valid, body: body, now: now.Add(6 * time.Minute), want: notify.ErrSignatureExpired},
		{name: "from the future", header: valid, body: body, now: now.Add(-6 * time.Minute), want: notify.ErrSignatureExpired},
		{name: "custom tolerance", header: valid, body: body, now: now.Add(time.Minute), tolerance: 30 * time.Second, want: notify.ErrSignatureExpired},
		{name: "empty", header: "", body: body, now: now, want: notify.ErrBadSignature},
		{name: "no timestamp", header: valid[strings.Index(valid, "v1="):], body: body, now: now, want: notify.ErrBadSignature},
		{name: "no signature", header: "t=1700000000", body: body, now: now, want: notify.ErrBadSignature},
		{name: "two timestamps", header: "t=1," + valid, body: body, now: now, want: notify.ErrBadSignature},
		{name: "short signature", header: "t=1700000000,v1=abcd", body: body, now: now, want: notify.ErrBadSignature},
		{name: "not hex", header: "t=1700000000,v1=" + strings.Repeat("z", 64), body: body, now: now, want: notify.ErrBadSignature},
		{name: "retimed", header: strings.Replace(valid, "t=1700000000", "t=1700000100", 1), body: body, now: now, want: notify.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := notify.Verify(secret, tt.header, tt.body, tt.now, tt.tolerance)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestValidateHeaders(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		headers map[string]string
		want    error
	}{
		{name: "none"},
		{name: "ordinary", headers: map[string]string{"Authorization": "Bearer x", "X-Request-Id": "1", "content-type": "application/vnd.x+json"}},
		{name: "host", headers: map[string]string{"Host": "evil.example"}, want: notify.ErrForbiddenHeader},
		{name: "host lower case", headers: map[string]string{"host": "evil.example"}, want: notify.ErrForbiddenHeader},
		{name: "content-length", headers: map[string]string{"Content-Length": "0"}, want: notify.ErrForbiddenHeader},
		{name: "signature", headers: map[string]string{"x-taskforge-signature": "t=1,v1=00"}, want: notify.ErrForbiddenHeader},
		{name: "reserved prefix", headers: map[string]string{"X-Taskforge-Task": "1"}, want: notify.ErrForbiddenHeader},
		{name: "connection", headers: map[string]string{"Connection": "close"}, want: notify.ErrForbiddenHeader},
		{name: "keep-alive", headers: map[string]string{"Keep-Alive": "timeout=5"}, want: notify.ErrForbiddenHeader},
		{name: "transfer-encoding", headers: map[string]string{"Transfer-Encoding": "chunked"}, want: notify.ErrForbiddenHeader},
		{name: "te", headers: map[string]string{"TE": "trailers"}, want: notify.ErrForbiddenHeader},
		{name: "trailer", headers: map[string]string{"Trailer": "X"}, want: notify.ErrForbiddenHeader},
		{name: "upgrade", headers: map[string]string{"Upgrade": "websocket"}, want: notify.ErrForbiddenHeader},
		{name: "proxy-authorization", headers: map[string]string{"Proxy-Authorization": "Basic x"}, want: notify.ErrForbiddenHeader},
		{name: "proxy-connection", headers: map[string]string{"Proxy-Connection": "keep-alive"}, want: notify.ErrForbiddenHeader},
		{name: "expect", headers: map[string]string{"Expect": "100-continue"}, want: notify.ErrForbiddenHeader},
		{name: "crlf in value", headers: map[string]string{"X-A": "1\r\nHost: evil"}, want: notify.ErrInvalid},
		{name: "bad name", headers: map[string]string{"X A": "1"}, want: notify.ErrInvalid},
		{name: "empty name", headers: map[string]string{"": "1"}, want: notify.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := notify.ValidateHeaders(tt.headers)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
			require.True(t, notify.IsPermanent(err))
		})
	}
}

func TestPostJSON(t *testing.T) {
	t.Parallel()

	secret := []byte("whsec_s3cr3t")
	payload := []byte(`{"task_id":"t1","result":{"ok":true}}`)
	p := newFakeProvider(t, func(r recorded) (int, string) {
		switch r.Path {
		case "/ok":
			return http.StatusOK, ""
		case "/accepted":
			return http.StatusAccepted, ""
		default:
			status, err := strconv.Atoi(strings.TrimPrefix(r.Path, "/status/"))
			if err != nil {
				return http.StatusTeapot, "bad test path"
			}
			return status, "nope"
		}
	})
	client := guardedClient(t)

	t.Run("signed delivery", func(t *testing.T) {
		t.Parallel()

		start := time.Now()
		status, err := notify.PostJSON(t.Context(), client, p.srv.URL+"/ok?token=q", "", map[string]string{
			"Authorization": "Bearer abc", "x-custom": "v",
		}, payload, secret)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)

		var r recorded
		for _, got := range p.requests() {
			if got.Path == "/ok" {
				r = got
			}
		}
		require.Equal(t, http.MethodPost, r.Method)
		require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		require.Equal(t, "Bearer abc", r.Header.Get("Authorization"))
		require.Equal(t, "v", r.Header.Get("X-Custom"))
		require.NotEmpty(t, r.Header.Get("User-Agent"))
		require.JSONEq(t, string(payload), string(r.Body))
		sig := r.Header.Get(notify.SignatureHeader)
		require.NoError(t, notify.Verify(secret, sig, r.Body, time.Now(), time.Minute))
		require.NoError(t, notify.Verify(secret, sig, r.Body, start, time.Minute))
	})

	t.Run("method and no secret", func(t *testing.T) {
		t.Parallel()

		status, err := notify.PostJSON(t.Context(), client, p.srv.URL+"/accepted", "put", nil, []byte(`[1,2]`), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, status)
		var r recorded
		for _, got := range p.requests() {
			if got.Path == "/accepted" {
				r = got
			}
		}
		require.Equal(t, http.MethodPut, r.Method)
		require.Empty(t, r.Header.Get(notify.SignatureHeader))
	})

	statusTests := []struct {
		status    int
		permanent bool
	}{
		{status: 400, permanent: true},
		{status: 401, permanent: true},
		{status: 404, permanent: true},
		{status: 410, permanent: true},
		{status: 422, permanent: true},
		{status: 408},
		{status: 429},
		{status: 500},
		{status: 502},
		{status: 503},
	}
	for _, tt := range statusTests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()

			url := p.srv.URL + "/status/" + strconv.Itoa(tt.status) + "?sig=s3cr3tquery"
			status, err := notify.PostJSON(t.Context(), client, url, http.MethodPost, nil, payload, secret)
			require.Error(t, err)
			require.Equal(t, tt.status, status)
			require.Equal(t, tt.permanent, notify.IsPermanent(err), "error: %v", err)
			require.Equal(t, !tt.permanent, notify.IsRetryable(err))
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

func TestPostJSONRefusals(t *testing.T) {
	t.Parallel()

	p := newFakeProvider(t, nil)
	client := guardedClient(t)
	payload := []byte(`{}`)

	tests := []struct {
		name    string
		url     string
		method  string
		headers map[string]string
		payload []byte
		want    error
	}{
		{name: "forbidden header", url: p.srv.URL, headers: map[string]string{"Host": "x"}, payload: payload, want: notify.ErrForbiddenHeader},
		{name: "signature header", url: p.srv.URL, headers: map[string]string{"X-Taskforge-Signature": "t=1,v1=0"}, payload: payload, want: notify.ErrForbiddenHeader},
		{name: "header injection", url: p.srv.URL, headers: map[string]string{"X-A": "a\nB: c"}, payload: payload, want: notify.ErrInvalid},
		{name: "bad method", url: p.srv.URL, method: "GET", payload: payload, want: notify.ErrInvalid},
		{name: "not json", url: p.srv.URL, payload: []byte(`{`), want: notify.ErrInvalid},
		{name: "bad scheme", url: "file:///etc/passwd", payload: payload, want: notify.ErrInvalid},
		{name: "userinfo", url: strings.Replace(p.srv.URL, "://", "://u:s3cr3t@", 1), payload: payload, want: egress.ErrBlocked},
		{name: "metadata", url: "http://169.254.169.254/latest/meta-data/s3cr3t", payload: payload, want: egress.ErrBlocked},
		{name: "unparsable", url: "http://exa mple.com/s3cr3t", payload: payload, want: notify.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			status, err := notify.PostJSON(t.Context(), client, tt.url, tt.method, tt.headers, tt.payload, []byte("k"))
			require.ErrorIs(t, err, tt.want)
			require.Zero(t, status)
			require.True(t, notify.IsPermanent(err), "error: %v", err)
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
	require.Empty(t, p.requests())
}

func TestPostJSONNetworkErrorsRetry(t *testing.T) {
	t.Parallel()

	p := newFakeProvider(t, nil)
	url := p.srv.URL + "/hook/s3cr3t"
	p.srv.Close()

	_, err := notify.PostJSON(t.Context(), guardedClient(t), url, "", nil, []byte(`{}`), nil)
	require.Error(t, err)
	require.True(t, notify.IsRetryable(err), "error: %v", err)
	require.NotContains(t, err.Error(), "s3cr3t")
}

func TestPostJSONTimeoutRetries(t *testing.T) {
	t.Parallel()

	release := make(chan struct{})
	p := newFakeProvider(t, func(recorded) (int, string) {
		<-release
		return http.StatusOK, ""
	})
	t.Cleanup(func() { close(release) })
	g, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)

	_, err = notify.PostJSON(t.Context(), g.Client(), p.srv.URL+"/slow", "", nil, []byte(`{}`), nil)
	require.Error(t, err)
	require.True(t, notify.IsRetryable(err), "error: %v", err)
}
