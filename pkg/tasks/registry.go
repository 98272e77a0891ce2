// Package tasks describes Taskforge's task types: the registry of the fourteen
// types (category, default priority, timeout, retry policy, who may create them,
// params message), typed params decoding and validation, the Asynq envelope, the
// retry policy's delays and the state machine.
package tasks

import (
	"errors"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/taskforge/taskforge/pkg/taskpb"
)

// Category groups task types.
type Category string

// The categories of the specification.
const (
	DataRefresh  Category = "data_refresh"
	Maintenance  Category = "maintenance"
	Notification Category = "notification"
	// Import holds the consumers of uploads (import_prices, import_holdings).
	Import   Category = "import"
	Internal Category = "internal"
)

// Permissions needed to create a task of a type.
const (
	PermCreate      = "tasks:create"
	PermCreateAdmin = "tasks:create:admin"
)

// The task type names. They never change once shipped.
const (
	TypeRefreshAllPrices = "refresh_all_prices"
	TypeRefreshPortfolio = "refresh_portfolio"
	TypeRefreshBenchmark = "refresh_benchmark"
	TypeCalculateMetrics = "calculate_metrics"
	TypeCleanupOldData   = "cleanup_old_data"
	TypeOptimizeDatabase = "optimize_database"
	TypeBackupData       = "backup_data"
	TypeGenerateReports  = "generate_reports"
	TypeSendEmail        = "send_email"
	TypeSendAlert        = "send_alert"
	TypeWebhookCallback  = "webhook_callback"
	TypeGenerateDigest   = "generate_digest"
	TypeImportPrices     = "import_prices"
	TypeImportHoldings   = "import_holdings"
	// TypeScheduleFire is the scheduler's internal job; it is not a user task.
	TypeScheduleFire = "taskforge:schedule_fire"
)

// ErrUnknownType is returned for a type name the registry does not know.
var ErrUnknownType = errors.New("unknown task type")

// Spec is everything about one task type.
type Spec struct {
	// Name is the type's stable name.
	Name string
	// Description says what the type does.
	Description string
	Category    Category
	// Priority is the default queue.
	Priority string
	// Timeout is the default per-attempt timeout.
	Timeout time.Duration
	// Retry is the default retry policy.
	Retry RetryPolicy
	// Permission is what a caller needs to create the type.
	Permission string
	// EstimatedDuration is the default estimate, in seconds, before any run of
	// the type has completed.
	EstimatedDuration int
	// NewParams returns an empty params message.
	NewParams func() proto.Message
	// Check validates params beyond the message's own field rules.
	Check func(proto.Message) []FieldError
	// Sensitive names the type's fields that hold personal or business data
	// (the README's Security section lists them). If zero, none.
	Sensitive Sensitive
}

// Sensitive names the fields of one type that hold personal or business data:
// recipients' addresses and phone numbers, message bodies, the data a webhook
// carries. Params fields named here are handled exactly as those marked
// (taskforge.v1.secret) in the proto, by package secret: sealed in tasks.params,
// schedules.params and the Asynq envelope, opened only by the worker, masked
// for every reader. Result and Log are redacted by the worker before they are
// stored (see pkg/worker's reporter).
type Sensitive struct {
	// Params are proto field names of the params message. A list, a map or a
	// message field is sensitive as a whole: every string inside it.
	Params []string
	// Result are top-level keys of the result JSON whose values are masked.
	Result []string
	// Log are keys of the handler's log line fields whose values are masked.
	Log []string
}

// IsSensitive reports whether params field fd is secret (the proto option) or
// named sensitive by its type's registry entry.
func IsSensitive(fd protoreflect.FieldDescriptor) bool {
	return IsSecret(fd) || sensitiveFields[fd.FullName()]
}

// sensitiveFields holds the full names of the registry's sensitive params
// fields, built once with the registry.
var sensitiveFields = func() map[protoreflect.FullName]bool {
	m := map[protoreflect.FullName]bool{}
	for _, s := range registry {
		if s.NewParams == nil {
			continue
		}
		fields := s.NewParams().ProtoReflect().Descriptor().Fields()
		for _, name := range s.Sensitive.Params {
			fd := fields.ByName(protoreflect.Name(name))
			if fd == nil {
				panic("tasks: " + s.Name + ": sensitive params field " + name + " does not exist")
			}
			m[fd.FullName()] = true
		}
	}
	return m
}()

// The specification's defaults.
var (
	// DefaultRetry is the specification's retry policy.
	DefaultRetry = RetryPolicy{MaxRetries: 3, RetryDelay: 60, ExponentialBackoff: true, MaxRetryDelay: 3600}
	// DefaultTimeout applies to types without a more specific one.
	DefaultTimeout = 300 * time.Second
)

// registry holds the specs by name; it is a static table built once.
var registry = newRegistry()

func normalize(s Spec) Spec {
	if s.Retry == (RetryPolicy{}) {
		s.Retry = DefaultRetry
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Permission == "" {
		s.Permission = PermCreate
		if s.Category == Maintenance {
			s.Permission = PermCreateAdmin
		}
	}
	return s
}

// Lookup returns the spec of a user-visible type.
func Lookup(name string) (Spec, bool) {
	s, ok := registry[name]
	return s, ok && s.Category != Internal
}

// LookupAny returns the spec of any type, internal ones included.
func LookupAny(name string) (Spec, bool) {
	s, ok := registry[name]
	return s, ok
}

// All returns the user-visible specs sorted by category then name.
func All() []Spec {
	out := make([]Spec, 0, len(registry))
	for _, s := range registry {
		if s.Category != Internal {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Category != out[j].Category {
			return categoryOrder(out[i].Category) < categoryOrder(out[j].Category)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func categoryOrder(c Category) int {
	switch c {
	case DataRefresh:
		return 0
	case Maintenance:
		return 1
	case Notification:
		return 2
	case Import:
		return 3
	}
	return 4
}

// recipientLogFields are the log fields a notification handler would name an
// address or a phone number under; the worker masks them (handlers log counts).
var recipientLogFields = []string{"to", "cc", "recipient", "address", "phone"}

// newRegistry is the registry itself: one entry per type.
func newRegistry() map[string]Spec {
	const (
		refreshTimeout = 600 * time.Second
		reportTimeout  = 1800 * time.Second
		importTimeout  = 1800 * time.Second
		cleanupTimeout = 3600 * time.Second
	)
	m := map[string]Spec{}
	add := func(s Spec) { m[s.Name] = normalize(s) }
	add(Spec{Name: TypeRefreshAllPrices, Category: DataRefresh, Priority: "normal", Timeout: refreshTimeout,
		Description: "Update all asset prices from the price provider.", EstimatedDuration: 60,
		NewParams: func() proto.Message { return &taskpb.RefreshAllPricesParams{} }, Check: checkLookback})
	add(Spec{Name: TypeRefreshPortfolio, Category: DataRefresh, Priority: "normal", Timeout: refreshTimeout,
		Description: "Value a portfolio's holdings at the latest close.", EstimatedDuration: 10,
		NewParams: func() proto.Message { return &taskpb.RefreshPortfolioParams{} }, Check: checkRefreshPortfolio})
	add(Spec{Name: TypeRefreshBenchmark, Category: DataRefresh, Priority: "normal", Timeout: refreshTimeout,
		Description: "Update benchmark index prices.", EstimatedDuration: 10,
		NewParams: func() proto.Message { return &taskpb.RefreshBenchmarkParams{} }, Check: checkLookback})
	add(Spec{Name: TypeCalculateMetrics, Category: DataRefresh, Priority: "normal", Timeout: refreshTimeout,
		Description: "Compute a portfolio's risk metrics.", EstimatedDuration: 10,
		NewParams: func() proto.Message { return &taskpb.CalculateMetricsParams{} }, Check: checkCalculateMetrics})
	add(Spec{Name: TypeCleanupOldData, Category: Maintenance, Priority: "low", Timeout: cleanupTimeout,
		Description: "Remove outdated records.", EstimatedDuration: 60,
		NewParams: func() proto.Message { return &taskpb.CleanupOldDataParams{} }, Check: checkCleanup})
	add(Spec{Name: TypeOptimizeDatabase, Category: Maintenance, Priority: "low", Timeout: cleanupTimeout,
		Description: "Vacuum, analyse and reindex the database.", EstimatedDuration: 120,
		NewParams: func() proto.Message { return &taskpb.OptimizeDatabaseParams{} }, Check: checkTables})
	add(Spec{Name: TypeBackupData, Category: Maintenance, Priority: "low", Timeout: cleanupTimeout,
		Description: "Create a backup of the database.", EstimatedDuration: 120,
		NewParams: func() proto.Message { return &taskpb.BackupDataParams{} }, Check: checkBackup})
	add(Spec{Name: TypeGenerateReports, Category: Maintenance, Priority: "low", Timeout: reportTimeout,
		Description: "Create a report file.", EstimatedDuration: 30,
		NewParams: func() proto.Message { return &taskpb.GenerateReportsParams{} }, Check: checkReport})
	add(Spec{Name: TypeSendEmail, Category: Notification, Priority: "high",
		Description: "Send an email.", EstimatedDuration: 2,
		NewParams: func() proto.Message { return &taskpb.SendEmailParams{} }, Check: checkEmail,
		Sensitive: Sensitive{Params: []string{"to", "cc", "body_text", "body_html"}, Log: recipientLogFields}})
	add(Spec{Name: TypeSendAlert, Category: Notification, Priority: "high",
		Description: "Send a Slack, SMS or push alert.", EstimatedDuration: 2,
		NewParams: func() proto.Message { return &taskpb.SendAlertParams{} }, Check: checkAlert,
		Sensitive: Sensitive{Params: []string{"recipients"}, Log: recipientLogFields}})
	add(Spec{Name: TypeWebhookCallback, Category: Notification, Priority: "high",
		Description: "Call an external webhook with a signed body.", EstimatedDuration: 2,
		NewParams: func() proto.Message { return &taskpb.WebhookCallbackParams{} }, Check: checkWebhook,
		Sensitive: Sensitive{Params: []string{"payload"}}})
	add(Spec{Name: TypeGenerateDigest, Category: Notification, Priority: "high",
		Description: "Email a daily or weekly summary.", EstimatedDuration: 10,
		NewParams: func() proto.Message { return &taskpb.GenerateDigestParams{} }, Check: checkDigest,
		Sensitive: Sensitive{Params: []string{"recipients"}, Log: recipientLogFields}})
	add(Spec{Name: TypeImportPrices, Category: Import, Priority: "normal", Timeout: importTimeout,
		Description: "Import daily prices from an uploaded CSV.", EstimatedDuration: 30,
		NewParams: func() proto.Message { return &taskpb.ImportPricesParams{} }, Check: checkImportPrices})
	add(Spec{Name: TypeImportHoldings, Category: Import, Priority: "normal", Timeout: importTimeout,
		Description: "Replace or merge portfolio holdings from an uploaded CSV.", EstimatedDuration: 10,
		NewParams: func() proto.Message { return &taskpb.ImportHoldingsParams{} }, Check: checkImportHoldings})
	add(Spec{Name: TypeScheduleFire, Category: Internal, Priority: "critical", Timeout: 30 * time.Second,
		Retry:       RetryPolicy{MaxRetries: 5, RetryDelay: 1, ExponentialBackoff: true, MaxRetryDelay: 30},
		Description: "Create a schedule's task for one fire time.", EstimatedDuration: 1,
		NewParams: func() proto.Message { return &taskpb.ScheduleFireParams{} }})
	return m
}
