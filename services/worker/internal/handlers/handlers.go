// Package handlers is the one place where the worker registers a handler per
// task type. Handlers live in pkg packages (portfolio for data refresh and
// imports, maintenance and notifyjob for the others); each adds its registration here.
// A type without a handler is accepted by the API and fails permanently in the
// worker with "no handler registered for type X".
package handlers

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/upload"
)

// Deps are what the handlers are built from.
type Deps struct {
	// Config is the whole configuration; each registration passes on only the
	// sections its handlers need.
	Config config.Config
	DB     *gorm.DB
	Redis  redis.UniversalClient
	// HTTP is the egress-guarded client of webhook_callback tasks (allow-list
	// egress.webhooks).
	HTTP *http.Client
	// Notify is the egress-guarded client of Slack, SMS, push and ntfy
	// (allow-list egress.notify). If nil, HTTP is used.
	Notify *http.Client
	// Keyring seals and opens secret params (the scheduler's fire job opens a
	// schedule's and seals its task's).
	Keyring *secret.Keyring
	// Results is the result storage of backups, reports and large results.
	Results *result.Store
	// ScheduleMetrics counts the schedule fires this worker carries out
	// (schedule.NewMetrics on its registry). If nil, they are not counted.
	ScheduleMetrics *schedule.Metrics
	Log             *zap.Logger
}

// Build returns the handlers by task type.
func Build(d Deps) (map[string]job.Handler, error) {
	out := map[string]job.Handler{}
	add := func(hs map[string]job.Handler) error {
		for typ, h := range hs {
			if _, dup := out[typ]; dup {
				return fmt.Errorf("handlers: %s registered twice", typ)
			}
			out[typ] = h
		}
		return nil
	}

	// Data refresh: refresh_all_prices, refresh_portfolio, refresh_benchmark,
	// calculate_metrics.
	prices, err := portfolio.ProviderFromConfig(d.Config.Prices, d.Config.Egress)
	if err != nil {
		return nil, err
	}
	refresh, err := portfolio.NewHandlers(d.DB, prices, d.Config.Prices.BatchSize, d.Log.Named("portfolio"))
	if err != nil {
		return nil, err
	}
	if err := add(refresh); err != nil {
		return nil, err
	}

	// Notification: send_email, send_alert, webhook_callback, generate_digest.
	smtp := d.Config.SMTP
	if smtp.TLS == "" && d.Config.IsDevelopment() {
		smtp.TLS = notify.MailTLSNone
	}
	notifyClient := d.Notify
	if notifyClient == nil {
		notifyClient = d.HTTP
	}
	senders, err := notifyjob.SendersFromConfig(smtp, d.Config.Alerts, notifyClient)
	if err != nil {
		return nil, err
	}
	subscriptions, err := notifyjob.SubscriptionsFromConfig(d.Config.Push, d.DB, notifyClient)
	if err != nil {
		return nil, err
	}
	results := d.Results
	if results == nil {
		return nil, errors.New("handlers: nil result store")
	}
	notifications, err := notifyjob.New(notifyjob.Options{
		DB: d.DB, HTTPClient: d.HTTP, Mailer: senders.EmailSender(), Alerts: senders.Alerts, Subscriptions: subscriptions, Results: results,
		IsAdmin: notifyjob.KeyAdmins(d.DB, auth.BootstrapPrincipalID), Log: d.Log.Named("notify"),
		RecipientMAC: recipientMAC(d.Keyring),
	})
	if err != nil {
		return nil, err
	}
	if err := add(notifications.Handlers()); err != nil {
		return nil, err
	}

	// Maintenance: cleanup_old_data, optimize_database, backup_data,
	// generate_reports. Backups and reports go to the same result storage.
	if err := add(maintenance.Handlers(maintenance.Deps{
		DB: d.DB, DatabaseURL: d.Config.Database.URL, Results: results,
		Retention: d.Config.Retention, PublicURL: d.Config.API.PublicURL,
	})); err != nil {
		return nil, err
	}

	// Imports: import_prices, import_holdings, reading uploads from the same
	// result storage.
	uploads, err := upload.New(d.DB, results, upload.Options{
		MaxBytes: d.Config.API.UploadLimit, TTL: d.Config.Storage.ResultTTL, LinkTTL: d.Config.Storage.LinkTTL})
	if err != nil {
		return nil, err
	}
	importer, err := portfolio.NewImporter(d.DB, uploads, d.Log.Named("import"), portfolio.ImportOptions{
		IsAdmin: portfolio.AdminFunc(notifyjob.KeyAdmins(d.DB, auth.BootstrapPrincipalID))})
	if err != nil {
		return nil, err
	}
	if err := add(importer.Handlers()); err != nil {
		return nil, err
	}

	// Internal: the scheduler's fire job (a schedule's tick becomes its task).
	if d.Keyring == nil {
		return nil, errors.New("handlers: nil keyring")
	}
	fire, err := schedule.WorkerHandlers(d.DB, d.Redis, d.Config.Scheduler, d.Config.Egress, d.Keyring, d.ScheduleMetrics, d.Log.Named("schedule"))
	if err != nil {
		return nil, err
	}
	if err := add(fire); err != nil {
		return nil, err
	}

	return out, nil
}

// recipientMAC is the keyring's MAC, or nil without a keyring.
func recipientMAC(k *secret.Keyring) func([]byte) []byte {
	if k == nil {
		return nil
	}
	return k.MAC
}
