package schedule

import (
	"fmt"
	"strings"
	"time"

	// The zone database is embedded so that timezones resolve in containers
	// without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// MaxCronLength caps a cron expression.
const MaxCronLength = 200

// maxWindow bounds the look-back of Ticks' growing window.
const maxWindow = 10 * 365 * 24 * time.Hour

// Cron is a parsed cron expression bound to a timezone: the ticks of a
// schedule. Expressions are the standard five fields (minute hour
// day-of-month month day-of-week), the descriptors @yearly, @monthly, @weekly,
// @daily, @midnight and @hourly, or "@every <duration>" in whole seconds.
//
// "@every" ticks are aligned to the Unix epoch (multiples of the duration), so
// every replica and every fire handler agree on them whatever time the
// process started; five-field ticks are wall-clock times in the timezone.
type Cron struct {
	expr  string
	loc   *time.Location
	spec  cron.Schedule
	every time.Duration
}

// ParseCron parses expr in the IANA timezone tz ("" means UTC). The error is
// a message for the field at fault: cron or timezone.
func ParseCron(expr, tz string) (*Cron, *tasks.FieldError) {
	if tz == "" {
		tz = "UTC"
	}
	loc, err := LoadTimezone(tz)
	if err != nil {
		return nil, &tasks.FieldError{Field: "timezone", Message: err.Error()}
	}
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return nil, &tasks.FieldError{Field: "cron", Message: "is required"}
	case len(expr) > MaxCronLength:
		return nil, &tasks.FieldError{Field: "cron", Message: fmt.Sprintf("must be at most %d characters", MaxCronLength)}
	case strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ="):
		return nil, &tasks.FieldError{Field: "cron", Message: "must not carry a timezone prefix; use the timezone field"}
	}
	if rest, ok := strings.CutPrefix(expr, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second || d%time.Second != 0 {
			return nil, &tasks.FieldError{Field: "cron", Message: "@every needs a whole number of seconds, at least 1s (e.g. @every 30s)"}
		}
		return &Cron{expr: expr, loc: loc, every: d}, nil
	}
	spec, err := cron.ParseStandard("CRON_TZ=" + tz + " " + expr)
	if err != nil {
		return nil, &tasks.FieldError{Field: "cron", Message: "is not a valid cron expression: " + strings.TrimPrefix(err.Error(), "failed to parse ")}
	}
	c := &Cron{expr: expr, loc: loc, spec: spec}
	if c.Next(time.Now()).IsZero() {
		return nil, &tasks.FieldError{Field: "cron", Message: "never fires"}
	}
	return c, nil
}

// LoadTimezone resolves an IANA timezone name. "Local" is refused: a
// schedule must not depend on the host's zone.
func LoadTimezone(tz string) (*time.Location, error) {
	if tz == "Local" || strings.ContainsAny(tz, " \t\r\n") || len(tz) > 64 {
		return nil, fmt.Errorf("%q is not an IANA timezone name", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA timezone name", tz)
	}
	return loc, nil
}

// Location is the timezone of the ticks.
func (c *Cron) Location() *time.Location { return c.loc }

// Next returns the first tick strictly after t, or the zero time if there is
// none within five years.
func (c *Cron) Next(t time.Time) time.Time {
	if c.every > 0 {
		return t.Truncate(c.every).Add(c.every).In(c.loc)
	}
	t = t.In(c.loc)
	for {
		n := c.spec.Next(t)
		if g, ok := c.gapTick(t, n); ok {
			return g
		}
		if n.IsZero() || !c.repeatedWallTime(n) {
			return n
		}
		t = n
	}
}

// starBit marks a cron field written as "*" in robfig/cron's bit sets.
const starBit = 1 << 63

// fixedHour reports whether the expression names its hours: such schedules
// fire once per wall-clock day-time across daylight-saving changes, as cron
// does ("30 2 * * *" runs once, also on the days 02:30 happens twice or never),
// while "*"-hour schedules follow real time.
func (c *Cron) fixedHour() (*cron.SpecSchedule, bool) {
	s, ok := c.spec.(*cron.SpecSchedule)
	return s, ok && s.Hour&starBit == 0
}

// repeatedWallTime reports whether n is the second occurrence of its wall
// time (the hour a fall-back change repeats) in a fixed-hour schedule.
func (c *Cron) repeatedWallTime(n time.Time) bool {
	if _, ok := c.fixedHour(); !ok {
		return false
	}
	start, _ := n.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, before := start.Add(-time.Nanosecond).Zone()
	_, after := start.Zone()
	back := time.Duration(before-after) * time.Second
	return back > 0 && n.Sub(start) < back
}

// gapTick returns the instant a spring-forward change skips over wall times
// the fixed-hour schedule names, when that change lies in (t, n]: the
// schedule fires at the change instead of losing the day's run.
func (c *Cron) gapTick(t, n time.Time) (time.Time, bool) {
	s, ok := c.fixedHour()
	if !ok {
		return time.Time{}, false
	}
	for cur := t; ; {
		_, end := cur.ZoneBounds()
		if end.IsZero() || (!n.IsZero() && end.After(n)) || end.Sub(t) > 5*366*24*time.Hour {
			return time.Time{}, false
		}
		_, before := cur.Zone()
		_, after := end.Zone()
		if after > before {
			// Wall times [end at the old offset, end at the new one) never happen.
			wall := end.In(time.FixedZone("", before))
			for m := 0; m < (after-before)/60; m++ {
				w := wall.Add(time.Duration(m) * time.Minute)
				if matches(s, w) {
					return end, true
				}
			}
		}
		cur = end
	}
}

// matches reports whether the wall time w fits the schedule's minute, hour,
// day and month fields, with cron's rule that day-of-month and day-of-week
// are OR-ed when both are restricted.
func matches(s *cron.SpecSchedule, w time.Time) bool {
	bit := func(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }
	if !bit(s.Minute, w.Minute()) || !bit(s.Hour, w.Hour()) || !bit(s.Month, int(w.Month())) {
		return false
	}
	dom, dow := bit(s.Dom, w.Day()), bit(s.Dow, int(w.Weekday()))
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// AsynqSpec is the cronspec registered with Asynq's scheduler: the expression
// with a CRON_TZ prefix, so that Asynq fires at the same wall-clock ticks as
// Next. Asynq runs "@every" start-relative rather than epoch-aligned; for one
// second they coincide, and for longer periods the fire handler still creates
// the aligned tick once (see Firer).
func (c *Cron) AsynqSpec() string {
	if c.every > 0 {
		return c.expr
	}
	return "CRON_TZ=" + c.loc.String() + " " + c.expr
}

// Period estimates the time between the ticks around t.
func (c *Cron) Period(t time.Time) time.Duration {
	if c.every > 0 {
		return c.every
	}
	a := c.Next(t)
	b := c.Next(a)
	if a.IsZero() || b.IsZero() {
		return 24 * time.Hour
	}
	return b.Sub(a)
}

// MinGap is the shortest time between consecutive ticks over a sample of
// them from a fixed reference time: a stable value (unlike Period, which
// varies with the time asked about) to derive per-schedule settings from.
func (c *Cron) MinGap() time.Duration {
	if c.every > 0 {
		return c.every
	}
	gap := time.Duration(1<<63 - 1)
	t := c.Next(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := 0; i < 32 && !t.IsZero(); i++ {
		n := c.Next(t)
		if n.IsZero() {
			break
		}
		gap = min(gap, n.Sub(t))
		t = n
	}
	if gap == time.Duration(1<<63-1) {
		return 24 * time.Hour
	}
	return gap
}

// Ticks returns the latest max ticks in (after, until], oldest first.
func (c *Cron) Ticks(after, until time.Time, max int) []time.Time {
	if max <= 0 || !until.After(after) {
		return nil
	}
	// Walk forward from a window that grows until it holds max ticks or
	// reaches after: never a walk over years of one-second ticks.
	window := c.Period(until.Add(-c.Period(until))) * time.Duration(max+1)
	for {
		start := until.Add(-window)
		if window > maxWindow || !start.After(after) {
			start = after
		}
		ticks, total := c.walk(start, until, max)
		if total >= max || start.Equal(after) {
			return ticks
		}
		window *= 4
	}
}

// walk collects the last max ticks in (start, until] and counts them all.
func (c *Cron) walk(start, until time.Time, max int) ([]time.Time, int) {
	var ring []time.Time
	total := 0
	for t := c.Next(start); !t.IsZero() && !t.After(until); t = c.Next(t) {
		total++
		ring = append(ring, t)
		if len(ring) > max {
			ring = ring[1:]
		}
	}
	return ring, total
}
