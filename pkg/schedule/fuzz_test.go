package schedule_test

import (
	"strings"
	"testing"
	"time"

	"github.com/taskforge/taskforge/pkg/schedule"
)

// FuzzParseCron feeds arbitrary expressions and timezones to the cron parser.
// A refusal names the cron or timezone field; an accepted expression parses
// again to the same ticks, its next tick always lies after the time asked
// about, and a window's ticks are in order and inside the window.
func FuzzParseCron(f *testing.F) {
	f.Add("*/5 * * * *", "Europe/Paris")
	f.Fuzz(func(t *testing.T, expr, tz string) {
		c, ferr := schedule.ParseCron(expr, tz)
		if ferr != nil {
			if ferr.Field != "cron" && ferr.Field != "timezone" {
				t.Fatalf("refusal names field %q", ferr.Field)
			}
			return
		}
		if c == nil {
			t.Fatal("no error and no schedule")
		}
		again, ferr := schedule.ParseCron(strings.TrimSpace(expr), c.Location().String())
		if ferr != nil {
			t.Fatalf("accepted %q in %s does not parse again: %v", expr, tz, ferr.Message)
		}
		if spec := c.AsynqSpec(); !strings.HasPrefix(strings.TrimSpace(expr), "@every") &&
			!strings.HasPrefix(spec, "CRON_TZ="+c.Location().String()+" ") {
			t.Fatalf("asynq spec %q carries no timezone", spec)
		}
		from := time.Date(2024, 3, 30, 23, 59, 30, 0, time.UTC)
		for i := 0; i < 4; i++ {
			n := c.Next(from)
			if n.IsZero() {
				break
			}
			if !n.After(from) {
				t.Fatalf("%q: next after %s is %s", expr, from, n)
			}
			if m := again.Next(from); !m.Equal(n) {
				t.Fatalf("%q: reparsed schedule ticks at %s, not %s", expr, m, n)
			}
			from = n
		}
		after := time.Date(2024, 10, 26, 12, 0, 0, 0, time.UTC)
		until := after.Add(36 * time.Hour)
		ticks := c.Ticks(after, until, 5)
		if len(ticks) > 5 {
			t.Fatalf("%d ticks, asked for at most 5", len(ticks))
		}
		for i, tick := range ticks {
			if !tick.After(after) || tick.After(until) || (i > 0 && !tick.After(ticks[i-1])) {
				t.Fatalf("%q: ticks %v out of order or outside (%s, %s]", expr, ticks, after, until)
			}
		}
		if c.MinGap() <= 0 {
			t.Fatalf("%q: min gap %s", expr, c.MinGap())
		}
	})
}
