package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/store"
)

// migrateUsage is the migrate command's synopsis, for its errors.
const migrateUsage = "usage: migrate up | migrate down [N] | migrate status"

// migrate runs "migrate up", "migrate down [N]" or "migrate status".
func migrate(ctx context.Context, cfg config.Config, args []string, stdout io.Writer) error {
	if len(args) == 0 || len(args) > 2 || (args[0] != "down" && len(args) != 1) {
		return errors.New(migrateUsage)
	}
	n := 1
	switch args[0] {
	case "up", "status":
	case "down":
		if len(args) == 2 {
			v, err := strconv.Atoi(args[1])
			if err != nil || v < 1 {
				return fmt.Errorf("migrate down: N must be a whole number of migrations, at least 1, not %q; %s", args[1], migrateUsage)
			}
			n = v
		}
	default:
		return errors.New(migrateUsage)
	}

	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()
	sqlDB, err := deps.DB.DB()
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		if err := store.Migrate(ctx, sqlDB); err != nil {
			return err
		}
		_, err := fmt.Fprintln(stdout, "migrations applied")
		return err
	case "down":
		done, err := store.MigrateDown(ctx, sqlDB, n)
		for _, name := range done {
			if _, werr := fmt.Fprintln(stdout, "rolled back", name); werr != nil {
				return werr
			}
		}
		if errors.Is(err, store.ErrTooManyDown) {
			return fmt.Errorf("migrate down %d refused, nothing was rolled back: %w (see migrate status)", n, err)
		}
		return err
	}
	// status: one line per migration, oldest first.
	st, err := store.Migrations(ctx, sqlDB)
	if err != nil {
		return err
	}
	for _, m := range st {
		line := fmt.Sprintf("%05d pending", m.Version)
		if m.Applied {
			line = fmt.Sprintf("%05d applied %s", m.Version, m.AppliedAt.UTC().Format("2006-01-02T15:04:05Z"))
		}
		switch {
		case m.Name == "":
			line += "  (not in this binary: a newer release's; roll it back with that release)"
		default:
			line += "  " + m.Name
		}
		if m.Destructive {
			line += "  [down drops data]"
		}
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return err
		}
	}
	return nil
}
