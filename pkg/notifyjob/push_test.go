package notifyjob_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

var b64 = base64.RawURLEncoding

// browser is a Web Push subscriber: its P-256 key pair and auth secret, as a
// browser's PushManager.subscribe() makes them.
type browser struct {
	key  *ecdh.PrivateKey
	auth []byte
}

func newBrowser(t *testing.T) browser {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	auth := make([]byte, 16)
	_, err = rand.Read(auth)
	require.NoError(t, err)
	return browser{key: key, auth: auth}
}

// decrypt opens an RFC 8291 aes128gcm message with the browser's keys.
func (b browser) decrypt(t *testing.T, body []byte) []byte {
	t.Helper()
	require.Greater(t, len(body), 21)
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	require.Equal(t, 65, idlen, "the key id is the sender's uncompressed public key")
	require.GreaterOrEqual(t, rs, uint32(18))
	senderPub := body[21 : 21+idlen]
	ciphertext := body[21+idlen:]
	asPub, err := ecdh.P256().NewPublicKey(senderPub)
	require.NoError(t, err)
	shared, err := b.key.ECDH(asPub)
	require.NoError(t, err)
	info := append(append([]byte("WebPush: info\x00"), b.key.PublicKey().Bytes()...), senderPub...)
	ikm, err := hkdf.Key(sha256.New, shared, b.auth, string(info), 32)
	require.NoError(t, err)
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	require.NoError(t, err)
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	require.NoError(t, err)
	block, err := aes.NewCipher(cek)
	require.NoError(t, err)
	gcm, err := cipher.NewGCM(block)
	require.NoError(t, err)
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	require.NoError(t, err, "the message must decrypt with the subscription's keys")
	// One record: the content, the delimiter 0x02, then zero padding.
	end := len(plain) - 1
	for end >= 0 && plain[end] == 0 {
		end--
	}
	require.GreaterOrEqual(t, end, 0)
	require.Equal(t, byte(2), plain[end], "last record delimiter")
	return plain[:end]
}

// vapidKeys returns a VAPID key pair, base64url, and the public key.
func vapidKeys(t *testing.T) (pub, priv string, key *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	raw := k.PublicKey().Bytes()
	key = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(raw[1:33]), Y: new(big.Int).SetBytes(raw[33:])}
	return b64.EncodeToString(raw), b64.EncodeToString(k.Bytes()), key
}

// insertSub adds a push subscription row.
func insertSub(t *testing.T, db *gorm.DB, id, principal, kind, endpoint, p256dh, auth string) {
	t.Helper()
	require.NoError(t, db.Exec(`INSERT INTO push_subscriptions (id, principal, kind, endpoint, p256dh, auth) VALUES (?, ?, ?, ?, ?, ?)`,
		id, principal, kind, endpoint, p256dh, auth).Error)
}

// subIDs lists the ids of the remaining subscriptions.
func subIDs(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var ids []string
	require.NoError(t, db.Raw(`SELECT id FROM push_subscriptions ORDER BY id`).Scan(&ids).Error)
	return ids
}

const vapidSubject = "mailto:ops@example.com"

// TestSendAlertWebPush sends a push alert to the creator's two browser
// subscriptions at a local push service: the live one receives a message
// that decrypts with its keys under a VAPID header that verifies; the one
// answering 410 is deleted.
func TestSendAlertWebPush(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	live, dead, other := newBrowser(t), newBrowser(t), newBrowser(t)
	pushService := newFakeServer(t, func(r recorded) (int, string) {
		if strings.HasSuffix(r.Path, "/dead") {
			return http.StatusGone, "push subscription has unsubscribed or expired"
		}
		return http.StatusCreated, ""
	})
	pub, priv, vapidPub := vapidKeys(t)
	client := guardedClient(t, true)
	subs, err := notifyjob.SubscriptionsFromConfig(config.PushConfig{
		VAPIDPublicKey: pub, VAPIDPrivateKey: priv, VAPIDSubject: vapidSubject, TTL: time.Hour,
	}, pg.DB, client)
	require.NoError(t, err)
	require.NotNil(t, subs.WebPush)
	require.Nil(t, subs.FCM)
	svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Subscriptions: subs})

	owner := "key_owner"
	insertTask(t, pg.DB, taskRow{ID: "task_push_1", Type: "send_alert", Status: "running", CreatedBy: owner})
	base := pushService.srv.URL + "/wpush/v2/"
	insertSub(t, pg.DB, "psub_1live", owner, "webpush", base+"live", b64.EncodeToString(live.key.PublicKey().Bytes()), b64.EncodeToString(live.auth))
	insertSub(t, pg.DB, "psub_2dead", owner, "webpush", base+"dead", b64.EncodeToString(dead.key.PublicKey().Bytes()), b64.EncodeToString(dead.auth))
	insertSub(t, pg.DB, "psub_3other", "key_other", "webpush", base+"other", b64.EncodeToString(other.key.PublicKey().Bytes()), b64.EncodeToString(other.auth))

	rec := &job.Recorder{ID: "task_push_1"}
	err = svc.SendAlert(t.Context(), rec, &taskpb.SendAlertParams{
		Channel: "push", Title: "Backup failed", Message: "disk full on db-1", Severity: "critical",
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"channel":"push","recipients":0,"subscriptions":1,"removed":1}`, string(rec.Result()))

	reqs := pushService.requests()
	require.Len(t, reqs, 2, "only the creator's subscriptions are reached")
	var got recorded
	for _, r := range reqs {
		require.NotEqual(t, "/wpush/v2/other", r.Path)
		if r.Path == "/wpush/v2/live" {
			got = r
		}
	}
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "aes128gcm", got.Header.Get("Content-Encoding"))
	require.Equal(t, "3600", got.Header.Get("TTL"))
	require.Equal(t, "high", got.Header.Get("Urgency"))
	var msg struct{ Title, Body, Severity string }
	require.NoError(t, json.Unmarshal(live.decrypt(t, got.Body), &msg))
	require.Equal(t, "Backup failed", msg.Title)
	require.Equal(t, "disk full on db-1", msg.Body)
	require.Equal(t, "critical", msg.Severity)

	// VAPID (RFC 8292): "vapid t=<ES256 JWT>, k=<public key>", the JWT signed
	// by the configured key for the push service's origin.
	authz := got.Header.Get("Authorization")
	require.True(t, strings.HasPrefix(authz, "vapid t="), authz)
	parts := strings.SplitN(strings.TrimPrefix(authz, "vapid t="), ", k=", 2)
	require.Len(t, parts, 2)
	require.Equal(t, pub, parts[1])
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(parts[0], claims, func(*jwt.Token) (any, error) { return vapidPub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired())
	require.NoError(t, err)
	require.True(t, tok.Valid)
	u, err := url.Parse(pushService.srv.URL)
	require.NoError(t, err)
	aud, err := claims.GetAudience()
	require.NoError(t, err)
	require.Equal(t, jwt.ClaimStrings{"http://" + u.Host}, aud)
	require.Equal(t, vapidSubject, claims["sub"])
	exp, err := claims.GetExpirationTime()
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(12*time.Hour), exp.Time, time.Hour, "RFC 8292: at most 24 hours")

	// The 410 removed the dead subscription; the others stay.
	require.Equal(t, []string{"psub_1live", "psub_3other"}, subIDs(t, pg.DB))
	requireNoSecret(t, rec, nil, priv)
}

// TestSendAlertPushPrincipals: a non-admin's alert may not name another
// principal's subscriptions; an admin's may.
func TestSendAlertPushPrincipals(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	target := newBrowser(t)
	pushService := newFakeServer(t, func(recorded) (int, string) { return http.StatusCreated, "" })
	pub, priv, _ := vapidKeys(t)
	client := guardedClient(t, true)
	subs, err := notifyjob.SubscriptionsFromConfig(config.PushConfig{VAPIDPublicKey: pub, VAPIDPrivateKey: priv, VAPIDSubject: vapidSubject}, pg.DB, client)
	require.NoError(t, err)
	svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Subscriptions: subs})
	insertKey(t, pg.DB, "key_admin", "admin", false)
	insertKey(t, pg.DB, "key_op", "operator", false)
	insertSub(t, pg.DB, "psub_t", "key_target", "webpush", pushService.srv.URL+"/t",
		b64.EncodeToString(target.key.PublicKey().Bytes()), b64.EncodeToString(target.auth))
	params := &taskpb.SendAlertParams{Channel: "push", Title: "t", Message: "m", Principals: []string{"key_target"}}

	insertTask(t, pg.DB, taskRow{ID: "task_push_op", Type: "send_alert", Status: "running", CreatedBy: "key_op"})
	err = svc.SendAlert(t.Context(), &job.Recorder{ID: "task_push_op"}, params)
	require.ErrorIs(t, err, notifyjob.ErrPrincipalsNotAllowed)
	require.True(t, job.IsPermanent(err))
	require.Empty(t, pushService.requests())

	insertTask(t, pg.DB, taskRow{ID: "task_push_admin", Type: "send_alert", Status: "running", CreatedBy: "key_admin"})
	rec := &job.Recorder{ID: "task_push_admin"}
	require.NoError(t, svc.SendAlert(t.Context(), rec, params))
	require.Len(t, pushService.requests(), 1)
	require.JSONEq(t, `{"channel":"push","recipients":0,"subscriptions":1}`, string(rec.Result()))
}

// serviceAccount returns a service account key file's JSON and its RSA key.
func serviceAccount(t *testing.T, tokenURL string) (string, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	doc, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "tf-proj", "private_key_id": "kid1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "push@tf-proj.iam.gserviceaccount.com", "token_uri": tokenURL,
	})
	require.NoError(t, err)
	return string(doc), key
}

// TestSendAlertFCM sends a push alert to FCM registration tokens at a local
// server speaking FCM HTTP v1, with an access token obtained from a local
// OAuth token endpoint by the JWT bearer grant; the token FCM calls
// unregistered (404) is removed.
func TestSendAlertFCM(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	const accessToken = "ya29.local-access-token"
	var saKey *rsa.PrivateKey
	var tokenURL string
	var exchanges atomic.Int32
	tokens := newFakeServer(t, func(r recorded) (int, string) {
		form, err := url.ParseQuery(string(r.Body))
		if err != nil || form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			return http.StatusBadRequest, `{"error":"unsupported_grant_type"}`
		}
		claims := jwt.MapClaims{}
		_, err = jwt.ParseWithClaims(form.Get("assertion"), claims, func(*jwt.Token) (any, error) { return &saKey.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(tokenURL), jwt.WithIssuer("push@tf-proj.iam.gserviceaccount.com"))
		if err != nil || claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
			return http.StatusBadRequest, `{"error":"invalid_grant"}`
		}
		exchanges.Add(1)
		return http.StatusOK, `{"access_token":"` + accessToken + `","token_type":"Bearer","expires_in":3600}`
	})
	tokens.srv.Config.Handler = withJSON(tokens.srv.Config.Handler)
	tokenURL = tokens.srv.URL + "/token"
	creds, key := serviceAccount(t, tokenURL)
	saKey = key
	fcm := newFakeServer(t, func(r recorded) (int, string) {
		if r.Header.Get("Authorization") != "Bearer "+accessToken {
			return http.StatusUnauthorized, `{"error":{"code":401,"status":"UNAUTHENTICATED"}}`
		}
		if r.Path != "/v1/projects/tf-proj/messages:send" {
			return http.StatusNotFound, `{"error":{"code":404}}`
		}
		var body struct {
			Message struct {
				Token        string            `json:"token"`
				Notification map[string]string `json:"notification"`
			} `json:"message"`
		}
		if json.Unmarshal(r.Body, &body) != nil {
			return http.StatusBadRequest, `{}`
		}
		if body.Message.Token == "tok-unregistered" {
			return http.StatusNotFound, `{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}`
		}
		return http.StatusOK, `{"name":"projects/tf-proj/messages/0:1"}`
	})
	client := guardedClient(t, true)
	subs, err := notifyjob.SubscriptionsFromConfig(config.PushConfig{FCMCredentials: creds, FCMBaseURL: fcm.srv.URL}, pg.DB, client)
	require.NoError(t, err)
	require.NotNil(t, subs.FCM)
	require.Nil(t, subs.WebPush)
	svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Subscriptions: subs})
	insertTask(t, pg.DB, taskRow{ID: "task_fcm_1", Type: "send_alert", Status: "running", CreatedBy: "key_app"})
	insertSub(t, pg.DB, "psub_a", "key_app", "fcm", "tok-phone", "", "")
	insertSub(t, pg.DB, "psub_b", "key_app", "fcm", "tok-unregistered", "", "")

	rec := &job.Recorder{ID: "task_fcm_1"}
	require.NoError(t, svc.SendAlert(t.Context(), rec, &taskpb.SendAlertParams{Channel: "push", Title: "Nightly export", Message: "done"}))
	require.JSONEq(t, `{"channel":"push","recipients":0,"subscriptions":1,"removed":1}`, string(rec.Result()))
	reqs := fcm.requests()
	require.Len(t, reqs, 2)
	var sent struct {
		Message struct {
			Token        string            `json:"token"`
			Notification map[string]string `json:"notification"`
		} `json:"message"`
	}
	require.NoError(t, json.Unmarshal(reqs[0].Body, &sent))
	require.Equal(t, "tok-phone", sent.Message.Token)
	require.Equal(t, map[string]string{"title": "Nightly export", "body": "done"}, sent.Message.Notification)
	require.Equal(t, int32(1), exchanges.Load(), "one token exchange, reused for both messages")
	require.Equal(t, []string{"psub_a"}, subIDs(t, pg.DB))
	requireNoSecret(t, rec, nil, accessToken)
	requireNoSecret(t, rec, nil, "PRIVATE KEY")
}

// withJSON labels the token endpoint's replies as JSON, as the oauth2
// package expects.
func withJSON(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		h.ServeHTTP(w, r)
	})
}

// TestSendAlertPushEgress: push services and the FCM token endpoint are
// reached through the egress guard: with loopback not allowed, nothing
// reaches the local servers, the task fails permanently with the guard's
// refusal (egress.ErrBlocked), and the subscriptions stay (a refusal is not a gone subscription).
func TestSendAlertPushEgress(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	pushService := newFakeServer(t, nil)
	tokens := newFakeServer(t, nil)
	creds, _ := serviceAccount(t, tokens.srv.URL+"/token")
	pub, priv, _ := vapidKeys(t)
	client := guardedClient(t, false)
	subs, err := notifyjob.SubscriptionsFromConfig(config.PushConfig{
		VAPIDPublicKey: pub, VAPIDPrivateKey: priv, VAPIDSubject: vapidSubject,
		FCMCredentials: creds, FCMBaseURL: pushService.srv.URL,
	}, pg.DB, client)
	require.NoError(t, err)
	svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Subscriptions: subs})
	br := newBrowser(t)
	insertTask(t, pg.DB, taskRow{ID: "task_push_egress", Type: "send_alert", Status: "running", CreatedBy: "key_u"})
	insertSub(t, pg.DB, "psub_e1", "key_u", "webpush", pushService.srv.URL+"/w", b64.EncodeToString(br.key.PublicKey().Bytes()), b64.EncodeToString(br.auth))
	insertSub(t, pg.DB, "psub_e2", "key_u", "fcm", "tok-1", "", "")

	err = svc.SendAlert(t.Context(), &job.Recorder{ID: "task_push_egress"}, &taskpb.SendAlertParams{Channel: "push", Title: "t", Message: "m"})
	require.Error(t, err)
	require.True(t, job.IsPermanent(err), "a refused destination cannot succeed later: %v", err)
	require.ErrorIs(t, err, egress.ErrBlocked)
	require.Empty(t, pushService.requests())
	require.Empty(t, tokens.requests())
	require.Equal(t, []string{"psub_e1", "psub_e2"}, subIDs(t, pg.DB))
}

// TestSubscriptionsFromConfig refuses keys that no push service would
// accept, and says which setting is wrong without quoting a secret.
func TestSubscriptionsFromConfig(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	client := guardedClient(t, true)
	none, err := notifyjob.SubscriptionsFromConfig(config.PushConfig{}, pg.DB, client)
	require.NoError(t, err)
	require.Nil(t, none)
	pub, priv, _ := vapidKeys(t)
	otherPub, _, _ := vapidKeys(t)
	for name, c := range map[string]config.PushConfig{
		"mismatched vapid keys": {VAPIDPublicKey: otherPub, VAPIDPrivateKey: priv, VAPIDSubject: vapidSubject},
		"bad vapid subject":     {VAPIDPublicKey: pub, VAPIDPrivateKey: priv, VAPIDSubject: "ops@example.com"},
		"fcm not json":          {FCMCredentials: "secret-CANARY-not-json"},
		"fcm no key":            {FCMCredentials: `{"type":"service_account","project_id":"p","client_email":"a@b"}`},
	} {
		_, err := notifyjob.SubscriptionsFromConfig(c, pg.DB, client)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "push.", name)
		require.NotContains(t, err.Error(), priv, name)
		require.NotContains(t, err.Error(), "CANARY", name)
	}
}

// TestSendAlertPushRetry: a push service failing with 503 makes the attempt
// retryable; the retry pushes only to the subscription not reached yet.
func TestSendAlertPushRetry(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	var down atomic.Bool
	down.Store(true)
	pushService := newFakeServer(t, func(r recorded) (int, string) {
		if r.Path == "/flaky" && down.Load() {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusCreated, ""
	})
	pub, priv, _ := vapidKeys(t)
	client := guardedClient(t, true)
	subs, err := notifyjob.SubscriptionsFromConfig(config.PushConfig{VAPIDPublicKey: pub, VAPIDPrivateKey: priv, VAPIDSubject: vapidSubject}, pg.DB, client)
	require.NoError(t, err)
	svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Subscriptions: subs})
	a, b := newBrowser(t), newBrowser(t)
	insertTask(t, pg.DB, taskRow{ID: "task_push_retry", Type: "send_alert", Status: "running", CreatedBy: "key_r"})
	insertSub(t, pg.DB, "psub_r1", "key_r", "webpush", pushService.srv.URL+"/steady", b64.EncodeToString(a.key.PublicKey().Bytes()), b64.EncodeToString(a.auth))
	insertSub(t, pg.DB, "psub_r2", "key_r", "webpush", pushService.srv.URL+"/flaky", b64.EncodeToString(b.key.PublicKey().Bytes()), b64.EncodeToString(b.auth))
	params := &taskpb.SendAlertParams{Channel: "push", Title: "t", Message: "m"}

	err = svc.SendAlert(t.Context(), &job.Recorder{ID: "task_push_retry"}, params)
	require.Error(t, err)
	require.False(t, job.IsPermanent(err), "a 503 may pass later: %v", err)
	require.Len(t, pushService.requests(), 2)

	down.Store(false)
	rec := &job.Recorder{ID: "task_push_retry", N: 2}
	require.NoError(t, svc.SendAlert(t.Context(), rec, params))
	reqs := pushService.requests()
	require.Len(t, reqs, 3, "the retry skips the subscription already reached")
	require.Equal(t, "/flaky", reqs[2].Path)
	require.JSONEq(t, `{"channel":"push","recipients":0,"subscriptions":2}`, string(rec.Result()))
	require.Equal(t, []string{"psub_r1", "psub_r2"}, subIDs(t, pg.DB), "a 503 removes nothing")
}
