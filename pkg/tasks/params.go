package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// FieldError names a field of a request and what is wrong with it (the
// problem document's field error). Field paths are dotted, e.g.
// "params.portfolio_id".
type FieldError = problem.FieldError

// ValidationError carries one or more field errors; the API answers it with 422.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid: " + strings.Join(parts, "; ")
}

// Invalid builds a ValidationError for one field.
func Invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Errors: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// AsValidation returns the ValidationError inside err, if any.
func AsValidation(err error) (*ValidationError, bool) {
	var v *ValidationError
	ok := errors.As(err, &v)
	return v, ok
}

// Redacted is what every view shows instead of a secret value. A secret param
// given as Redacted is refused: it is a view sent back (a form filled from a
// GET), and storing it would replace the secret with the mask.
const Redacted = "***"

// DecodeParams decodes JSON params into the type's message. Unknown fields,
// wrong types, missing required fields and the type's own rules give a
// ValidationError whose fields are prefixed with prefix (e.g. "params").
func DecodeParams(spec Spec, raw json.RawMessage, prefix string) (proto.Message, error) {
	msg := spec.NewParams()
	path := func(f string) string {
		if prefix == "" {
			return f
		}
		return prefix + "." + f
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, Invalid(pathOr(prefix, "params"), "must be a JSON object")
	}
	desc := msg.ProtoReflect().Descriptor().Fields()
	var errs []FieldError
	for name, value := range fields {
		fd := desc.ByJSONName(name)
		if fd == nil {
			fd = desc.ByName(protoreflect.Name(name))
		}
		if fd == nil {
			errs = append(errs, FieldError{Field: path(name), Message: "unknown field"})
			continue
		}
		one, _ := json.Marshal(map[string]json.RawMessage{name: value})
		part := spec.NewParams()
		if err := protojson.Unmarshal(one, part); err != nil {
			errs = append(errs, FieldError{Field: path(string(fd.Name())), Message: "must be " + kindName(fd)})
			continue
		}
		proto.Merge(msg, part)
	}
	for i := 0; i < desc.Len(); i++ {
		fd := desc.Get(i)
		if IsRequired(fd) && !present(msg.ProtoReflect(), fd) {
			errs = append(errs, FieldError{Field: path(string(fd.Name())), Message: "is required"})
		}
		if IsSecret(fd) && fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() &&
			msg.ProtoReflect().Get(fd).String() == Redacted {
			errs = append(errs, FieldError{Field: path(string(fd.Name())),
				Message: "is the mask (" + Redacted + ") shown instead of a secret: give the secret itself"})
		}
	}
	if len(errs) == 0 && spec.Check != nil {
		for _, e := range spec.Check(msg) {
			e.Field = path(e.Field)
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
		return nil, &ValidationError{Errors: errs}
	}
	return msg, nil
}

func pathOr(p, def string) string {
	if p == "" {
		return def
	}
	return p
}

func present(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	if !m.Has(fd) {
		return false
	}
	switch {
	case fd.IsList():
		return m.Get(fd).List().Len() > 0
	case fd.Kind() == protoreflect.StringKind:
		return strings.TrimSpace(m.Get(fd).String()) != ""
	}
	return true
}

// IsRequired reports whether a field carries the required option.
func IsRequired(fd protoreflect.FieldDescriptor) bool {
	return proto.GetExtension(fd.Options(), taskpb.E_Required).(bool)
}

// IsSecret reports whether a field carries the secret option.
func IsSecret(fd protoreflect.FieldDescriptor) bool {
	return proto.GetExtension(fd.Options(), taskpb.E_Secret).(bool)
}

func kindName(fd protoreflect.FieldDescriptor) string {
	var k string
	switch fd.Kind() {
	case protoreflect.StringKind:
		k = "a string"
	case protoreflect.BoolKind:
		k = "a boolean"
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		k = "an integer"
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		k = "a number"
	default:
		k = "a JSON value"
	}
	switch {
	case fd.IsMap():
		return "an object of " + strings.TrimPrefix(strings.TrimPrefix(kindName(fd.MapValue()), "a "), "an ") + "s"
	case fd.IsList():
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(k, "a "), "an ") + "s"
	}
	return k
}

// ParamsJSON renders params as JSON with proto field names, unpopulated fields
// omitted.
func ParamsJSON(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}

// Rules of the types beyond required fields.

func checkLookback(m proto.Message) []FieldError {
	var days int32
	switch p := m.(type) {
	case *taskpb.RefreshAllPricesParams:
		days = p.GetLookbackDays()
		if len(p.GetSymbols()) > 10000 {
			return []FieldError{{Field: "symbols", Message: "at most 10000 symbols"}}
		}
	case *taskpb.RefreshBenchmarkParams:
		days = p.GetLookbackDays()
	}
	if days < 0 || days > 3650 {
		return []FieldError{{Field: "lookback_days", Message: "must be between 0 and 3650"}}
	}
	return nil
}

func checkRefreshPortfolio(m proto.Message) []FieldError {
	p := m.(*taskpb.RefreshPortfolioParams)
	if p.GetPortfolioId() == "" && !p.GetAll() {
		return []FieldError{{Field: "portfolio_id", Message: "is required unless all is true"}}
	}
	if p.GetPortfolioId() != "" && p.GetAll() {
		return []FieldError{{Field: "portfolio_id", Message: "must be empty when all is true"}}
	}
	return nil
}

func checkCalculateMetrics(m proto.Message) []FieldError {
	p := m.(*taskpb.CalculateMetricsParams)
	var errs []FieldError
	if p.GetWindowDays() < 0 || p.GetWindowDays() > 3650 || (p.GetWindowDays() > 0 && p.GetWindowDays() < 2) {
		errs = append(errs, FieldError{Field: "window_days", Message: "must be between 2 and 3650 (0 means 252)"})
	}
	if r := p.GetRiskFreeRate(); r < -1 || r > 1 {
		errs = append(errs, FieldError{Field: "risk_free_rate", Message: "must be a fraction between -1 and 1"})
	}
	return errs
}

// CleanupTargets are the tables cleanup_old_data may prune (trigger_events:
// the database triggers' processed change events and the triggers' delivery
// records).
var CleanupTargets = []string{"tasks", "task_logs", "prices", "results", "audit", "trigger_events"}

func checkCleanup(m proto.Message) []FieldError {
	p := m.(*taskpb.CleanupOldDataParams)
	if p.GetOlderThanDays() < 0 {
		return []FieldError{{Field: "older_than_days", Message: "must not be negative"}}
	}
	for _, t := range p.GetTargets() {
		if !slices.Contains(CleanupTargets, t) {
			return []FieldError{{Field: "targets", Message: fmt.Sprintf("%q is not one of %s", t, strings.Join(CleanupTargets, ", "))}}
		}
	}
	return nil
}

// CheckAuditRetention refuses a cleanup_old_data whose older_than_days would
// prune the audit log (it names "audit", or no target, which means all) to
// fewer than minDays days: the audit log is not to be purged through the API.
// older_than_days 0 means each target's configured retention, which
// configuration validation holds to the same minimum. A dry run deletes
// nothing and is allowed.
func CheckAuditRetention(p *taskpb.CleanupOldDataParams, minDays int) []FieldError {
	days := p.GetOlderThanDays()
	if p.GetDryRun() || days == 0 || int64(days) >= int64(minDays) {
		return nil
	}
	if len(p.GetTargets()) > 0 && !slices.Contains(p.GetTargets(), "audit") {
		return nil
	}
	return []FieldError{{Field: "older_than_days", Message: fmt.Sprintf(
		"the audit log keeps at least %d days (retention.audit_min): use %d or more, or leave audit out of targets", minDays, minDays)}}
}

func checkTableNames(tables []string) []FieldError {
	for _, t := range tables {
		if !isIdent(t) {
			return []FieldError{{Field: "tables", Message: fmt.Sprintf("%q is not a table name", t)}}
		}
	}
	return nil
}

func checkTables(m proto.Message) []FieldError {
	return checkTableNames(m.(*taskpb.OptimizeDatabaseParams).GetTables())
}

func checkBackup(m proto.Message) []FieldError {
	p := m.(*taskpb.BackupDataParams)
	if f := p.GetFormat(); f != "" && f != "pg_dump" && f != "jsonl" {
		return []FieldError{{Field: "format", Message: "must be pg_dump or jsonl"}}
	}
	return checkTableNames(p.GetTables())
}

func isIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func checkDate(field, v string) []FieldError {
	if v == "" {
		return nil
	}
	if _, err := time.Parse(time.DateOnly, v); err != nil {
		return []FieldError{{Field: field, Message: "must be a date YYYY-MM-DD"}}
	}
	return nil
}

func checkReport(m proto.Message) []FieldError {
	p := m.(*taskpb.GenerateReportsParams)
	var errs []FieldError
	if !slices.Contains([]string{"portfolio_summary", "risk", "task_activity"}, p.GetReport()) {
		errs = append(errs, FieldError{Field: "report", Message: "must be portfolio_summary, risk or task_activity"})
	}
	if p.GetReport() == "portfolio_summary" && p.GetPortfolioId() == "" {
		errs = append(errs, FieldError{Field: "portfolio_id", Message: "is required for report portfolio_summary"})
	}
	if f := p.GetFormat(); f != "" && f != "csv" && f != "html" && f != "pdf" {
		errs = append(errs, FieldError{Field: "format", Message: "must be csv, html or pdf"})
	}
	errs = append(errs, checkDate("period_start", p.GetPeriodStart())...)
	errs = append(errs, checkDate("period_end", p.GetPeriodEnd())...)
	if p.GetPeriodStart() != "" && p.GetPeriodEnd() != "" && p.GetPeriodStart() > p.GetPeriodEnd() {
		errs = append(errs, FieldError{Field: "period_end", Message: "must not be before period_start"})
	}
	return errs
}

func checkAddresses(field string, addrs []string) []FieldError {
	if len(addrs) > 100 {
		return []FieldError{{Field: field, Message: "at most 100 addresses"}}
	}
	for _, a := range addrs {
		if _, err := mail.ParseAddress(a); err != nil || strings.ContainsAny(a, "\r\n") {
			return []FieldError{{Field: field, Message: fmt.Sprintf("%q is not an email address", a)}}
		}
	}
	return nil
}

func checkEmail(m proto.Message) []FieldError {
	p := m.(*taskpb.SendEmailParams)
	var errs []FieldError
	errs = append(errs, checkAddresses("to", p.GetTo())...)
	errs = append(errs, checkAddresses("cc", p.GetCc())...)
	if strings.ContainsAny(p.GetSubject(), "\r\n") || len(p.GetSubject()) > 998 {
		errs = append(errs, FieldError{Field: "subject", Message: "must be one line of at most 998 characters"})
	}
	for _, a := range p.GetAttachments() {
		if !strings.HasPrefix(a, "task_") {
			errs = append(errs, FieldError{Field: "attachments", Message: fmt.Sprintf("%q is not a task id", a)})
			break
		}
	}
	return errs
}

func checkAlert(m proto.Message) []FieldError {
	p := m.(*taskpb.SendAlertParams)
	var errs []FieldError
	if !slices.Contains([]string{"slack", "sms", "push"}, p.GetChannel()) {
		errs = append(errs, FieldError{Field: "channel", Message: "must be slack, sms or push"})
	}
	if s := p.GetSeverity(); s != "" && !slices.Contains([]string{"info", "warning", "critical"}, s) {
		errs = append(errs, FieldError{Field: "severity", Message: "must be info, warning or critical"})
	}
	if p.GetChannel() == "sms" && len(p.GetRecipients()) == 0 {
		errs = append(errs, FieldError{Field: "recipients", Message: "sms needs at least one phone number"})
	}
	if len(p.GetPrincipals()) > 0 && p.GetChannel() != "push" {
		errs = append(errs, FieldError{Field: "principals", Message: "only push alerts reach principals' subscriptions"})
	}
	for _, pr := range p.GetPrincipals() {
		if strings.TrimSpace(pr) == "" {
			errs = append(errs, FieldError{Field: "principals", Message: "must not hold an empty principal"})
			break
		}
	}
	return errs
}

// checkScheme is the creation-time URL rule the registry can check alone; the
// task service adds the egress guard's address checks.
func checkScheme(raw string) error {
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		return errors.New("must be an http or https URL")
	}
	return nil
}

func checkWebhook(m proto.Message) []FieldError {
	p := m.(*taskpb.WebhookCallbackParams)
	var errs []FieldError
	if err := checkScheme(p.GetUrl()); err != nil {
		errs = append(errs, FieldError{Field: "url", Message: err.Error()})
	}
	if meth := p.GetMethod(); meth != "" && meth != "POST" && meth != "PUT" && meth != "PATCH" {
		errs = append(errs, FieldError{Field: "method", Message: "must be POST, PUT or PATCH"})
	}
	for k, v := range p.GetHeaders() {
		if k == "" || strings.ContainsAny(k, " :\r\n") || strings.ContainsAny(v, "\r\n") {
			errs = append(errs, FieldError{Field: "headers", Message: fmt.Sprintf("%q is not a valid header", k)})
			break
		}
	}
	return errs
}

// checkUploadID holds an upload id to its shape (upl_ and a lower-case ULID).
func checkUploadID(id string) []FieldError {
	ok := len(id) == 30 && strings.HasPrefix(id, "upl_")
	for _, r := range id[min(len(id), 4):] {
		ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}
	if !ok {
		return []FieldError{{Field: "upload_id", Message: "must be an upload id (upl_…, from POST /api/v1/uploads)"}}
	}
	return nil
}

func checkImportPrices(m proto.Message) []FieldError {
	p := m.(*taskpb.ImportPricesParams)
	errs := checkUploadID(p.GetUploadId())
	switch p.GetFormat() {
	case "", "csv":
		if p.GetSymbol() != "" {
			errs = append(errs, FieldError{Field: "symbol", Message: "is only for format stooq: the csv format names the symbol per row"})
		}
	case "stooq":
		if strings.TrimSpace(p.GetSymbol()) == "" {
			errs = append(errs, FieldError{Field: "symbol", Message: "is required for format stooq"})
		}
	default:
		errs = append(errs, FieldError{Field: "format", Message: "must be csv or stooq"})
	}
	if r := p.GetMaxBadRatio(); !(r >= 0 && r <= 1) {
		errs = append(errs, FieldError{Field: "max_bad_ratio", Message: "must be a fraction between 0 and 1"})
	}
	return errs
}

func checkImportHoldings(m proto.Message) []FieldError {
	p := m.(*taskpb.ImportHoldingsParams)
	errs := checkUploadID(p.GetUploadId())
	if mode := p.GetMode(); mode != "" && mode != "replace" && mode != "merge" {
		errs = append(errs, FieldError{Field: "mode", Message: "must be replace or merge"})
	}
	return errs
}

func checkDigest(m proto.Message) []FieldError {
	p := m.(*taskpb.GenerateDigestParams)
	var errs []FieldError
	if s := p.GetPeriod(); s != "" && s != "daily" && s != "weekly" {
		errs = append(errs, FieldError{Field: "period", Message: "must be daily or weekly"})
	}
	errs = append(errs, checkDate("date", p.GetDate())...)
	errs = append(errs, checkAddresses("recipients", p.GetRecipients())...)
	return errs
}

// CheckName trims a resource's name (a schedule's, a trigger's) and says
// what is wrong with it ("" when nothing): empty, longer than maxLen, or more
// than one line.
func CheckName(name string, maxLen int) (string, string) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return name, "must not be empty"
	case len(name) > maxLen:
		return name, fmt.Sprintf("must be at most %d characters", maxLen)
	case strings.ContainsAny(name, "\r\n\t"):
		return name, "must be one line"
	}
	return name, ""
}
