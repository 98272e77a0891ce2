package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// cliActor is the audit actor of changes made with the apikey command.
const cliActor = "cli"

const apikeyUsage = "usage: apikey create --name N --role viewer|operator|admin [--expires-in 720h] | apikey list | apikey revoke ID"

// apikey runs "apikey create", "apikey list" or "apikey revoke ID" against the
// database: the way to make the first keys, or to revoke one while the API is
// down. Changes are audited with the actor "cli".
func apikey(ctx context.Context, cfg config.Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(apikeyUsage)
	}
	sub, args := args[0], args[1:]
	var req auth.NewKey
	var revokeID string
	switch sub {
	case "create":
		fs, f := apikeyCreateFlags()
		name, role, expiresIn := f.name, f.role, f.expiresIn
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("%w; %s", err, apikeyUsage)
		}
		if fs.NArg() > 0 {
			return errors.New(apikeyUsage)
		}
		if *expiresIn < 0 {
			return errors.New("apikey create: --expires-in must be positive")
		}
		req = auth.NewKey{Name: *name, Role: auth.Role(*role), CreatedBy: cliActor}
		if *expiresIn > 0 {
			t := time.Now().Add(*expiresIn)
			req.ExpiresAt = &t
		}
	case "list":
		if len(args) > 0 {
			return errors.New(apikeyUsage)
		}
	case "revoke":
		if len(args) != 1 {
			return errors.New(apikeyUsage)
		}
		revokeID = args[0]
	default:
		return errors.New(apikeyUsage)
	}

	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()
	keys, err := auth.NewKeyStore(deps.DB)
	if err != nil {
		return err
	}
	log, err := audit.New(deps.DB)
	if err != nil {
		return err
	}
	defer log.Close()
	switch sub {
	case "create":
		created, err := keys.Create(ctx, req)
		if v, ok := tasks.AsValidation(err); ok {
			return fmt.Errorf("apikey create: %s", v.Error())
		}
		if err != nil {
			return err
		}
		if err := log.Record(ctx, audit.Entry{Actor: cliActor, Action: audit.ActionAPIKeyCreate,
			ResourceType: audit.ResourceAPIKey, ResourceID: created.Key.ID, Outcome: audit.Success}); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "id:      %s\nname:    %s\nrole:    %s\nexpires: %s\nkey:     %s\n(the key is shown once: store it now)\n",
			created.Key.ID, created.Key.Name, created.Key.Role, expiry(created.Key.ExpiresAt), created.Plaintext)
		return err
	case "list":
		rows, err := keys.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tROLE\tCREATED\tEXPIRES\tSTATE")
		for _, k := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, k.Role,
				k.CreatedAt.UTC().Format(time.RFC3339), expiry(k.ExpiresAt), state(k))
		}
		return tw.Flush()
	default: // revoke
		k, err := keys.Revoke(ctx, revokeID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("apikey revoke: no key %q", revokeID)
		}
		if err != nil {
			return err
		}
		if err := log.Record(ctx, audit.Entry{Actor: cliActor, Action: audit.ActionAPIKeyRevoke,
			ResourceType: audit.ResourceAPIKey, ResourceID: k.ID, Outcome: audit.Success}); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "revoked %s (%s)\n", k.ID, k.Name)
		return err
	}
}

// createFlags are apikey create's flags.
type createFlags struct {
	name, role *string
	expiresIn  *time.Duration
}

func apikeyCreateFlags() (*flag.FlagSet, createFlags) {
	fs := flag.NewFlagSet("apikey create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, createFlags{
		name:      fs.String("name", "", "the key's name"),
		role:      fs.String("role", "", "viewer, operator or admin"),
		expiresIn: fs.Duration("expires-in", 0, "lifetime, e.g. 720h (default: no expiry)"),
	}
}

func expiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func state(k store.APIKey) string {
	switch {
	case k.RevokedAt != nil:
		return "revoked"
	case k.ExpiresAt != nil && !time.Now().Before(*k.ExpiresAt):
		return "expired"
	}
	return "active"
}
