package schedule_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/schedule"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return v
}

// TestNextAcrossDST walks schedules in America/New_York over the 2024 changes:
// clocks jumped 02:00 EST → 03:00 EDT on 10 March and fell back 02:00 EDT →
// 01:00 EST on 3 November.
func TestNextAcrossDST(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, cron, from string
		want             []string // UTC
	}{
		{"daily 09:00 keeps wall time over spring forward", "0 9 * * *", "2024-03-09T14:00:00Z",
			[]string{"2024-03-10T13:00:00Z", "2024-03-11T13:00:00Z"}},
		{"daily 09:00 keeps wall time over fall back", "0 9 * * *", "2024-11-02T13:00:00Z",
			[]string{"2024-11-03T14:00:00Z", "2024-11-04T14:00:00Z"}},
		{"daily 02:30 runs at the jump on the day it does not exist", "30 2 * * *", "2024-03-09T07:30:00Z",
			[]string{"2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"}},
		{"daily 01:30 runs once on the day it happens twice", "30 1 * * *", "2024-11-02T05:30:00Z",
			[]string{"2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"}},
		{"hourly follows real time through the repeated hour", "0 * * * *", "2024-11-03T04:30:00Z",
			[]string{"2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z"}},
		{"hourly skips the missing hour", "0 * * * *", "2024-03-10T06:30:00Z",
			[]string{"2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"}},
		{"weekly Monday 10:00 local", "0 10 * * MON", "2024-03-08T00:00:00Z",
			[]string{"2024-03-11T14:00:00Z", "2024-03-18T14:00:00Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, ferr := schedule.ParseCron(tc.cron, "America/New_York")
			require.Nil(t, ferr)
			at := mustTime(t, tc.from)
			for _, w := range tc.want {
				at = c.Next(at)
				require.Equal(t, w, at.UTC().Format(time.RFC3339))
			}
		})
	}
}

func TestNextInUTCAndEvery(t *testing.T) {
	t.Parallel()
	c, ferr := schedule.ParseCron("0 2 1 * *", "")
	require.Nil(t, ferr)
	require.Equal(t, "2024-02-01T02:00:00Z", c.Next(mustTime(t, "2024-01-01T02:00:00Z")).UTC().Format(time.RFC3339))

	// @every ticks are aligned to the epoch, whenever asked.
	e, ferr := schedule.ParseCron("@every 10s", "Europe/Paris")
	require.Nil(t, ferr)
	from := time.Date(2024, 5, 1, 12, 0, 3, 500, time.UTC)
	require.Equal(t, time.Date(2024, 5, 1, 12, 0, 10, 0, time.UTC), e.Next(from).UTC())
	require.Equal(t, "@every 10s", e.AsynqSpec())
	require.Equal(t, "CRON_TZ=UTC 0 2 1 * *", c.AsynqSpec())
}

func TestParseCronErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ cron, tz, field string }{
		{"", "UTC", "cron"},
		{"61 * * * *", "UTC", "cron"},
		{"* * * *", "UTC", "cron"},
		{"0 9 * * MON", "Mars/Olympus", "timezone"},
		{"0 9 * * MON", "Local", "timezone"},
		{"CRON_TZ=UTC 0 9 * * *", "UTC", "cron"},
		{"@every 500ms", "UTC", "cron"},
		{"@every 1.5s", "UTC", "cron"},
		{"@every soon", "UTC", "cron"},
		{"0 0 30 2 *", "UTC", "cron"}, // 30 February never comes
	}
	for _, tc := range cases {
		_, ferr := schedule.ParseCron(tc.cron, tc.tz)
		require.NotNil(t, ferr, "%q in %q", tc.cron, tc.tz)
		require.Equal(t, tc.field, ferr.Field, "%q in %q", tc.cron, tc.tz)
	}
	for _, ok := range []string{"0 9 * * *", "@hourly", "@every 1s", "*/5 9-17 * * 1-5", "0 10 * * MON"} {
		_, ferr := schedule.ParseCron(ok, "America/New_York")
		require.Nil(t, ferr, ok)
	}
}

func TestTicks(t *testing.T) {
	t.Parallel()
	c, ferr := schedule.ParseCron("@every 1s", "UTC")
	require.Nil(t, ferr)
	until := time.Date(2024, 1, 1, 0, 0, 10, 200, time.UTC)
	// Only the latest max ticks, oldest first, even from far back.
	got := c.Ticks(until.Add(-365*24*time.Hour), until, 3)
	require.Equal(t, []time.Time{
		time.Date(2024, 1, 1, 0, 0, 8, 0, time.UTC), time.Date(2024, 1, 1, 0, 0, 9, 0, time.UTC),
		time.Date(2024, 1, 1, 0, 0, 10, 0, time.UTC),
	}, utcAll(got))
	// The range is half-open: (after, until].
	got = c.Ticks(time.Date(2024, 1, 1, 0, 0, 9, 0, time.UTC), until, 5)
	require.Equal(t, []time.Time{time.Date(2024, 1, 1, 0, 0, 10, 0, time.UTC)}, utcAll(got))
	require.Empty(t, c.Ticks(until, until, 5))

	h, ferr := schedule.ParseCron("0 9 * * *", "UTC")
	require.Nil(t, ferr)
	got = h.Ticks(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC), 2)
	require.Equal(t, []time.Time{time.Date(2024, 1, 29, 9, 0, 0, 0, time.UTC), time.Date(2024, 1, 30, 9, 0, 0, 0, time.UTC)}, utcAll(got))
}

func utcAll(ts []time.Time) []time.Time {
	out := make([]time.Time, len(ts))
	for i, t := range ts {
		out[i] = t.UTC()
	}
	return out
}
