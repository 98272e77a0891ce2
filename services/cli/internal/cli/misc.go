package cli

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskforge/taskforge/services/api/client"
)

func (a *app) taskTypesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "task-types",
		Short: "The task types, their defaults and params",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			var list client.TaskTypeList
			raw, err := into(&list)(api.c.ListTaskTypes(cmd.Context()))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				row(tw, "NAME", "CATEGORY", "PRIORITY", "TIMEOUT", "ADMIN ONLY", "PARAMS")
				for _, t := range list.Items {
					row(tw, t.Name, t.Category, t.DefaultPriority, fmt.Sprintf("%ds", t.TimeoutSeconds), t.AdminOnly, paramSummary(t.ParamsSchema))
				}
			})
		},
	}
}

// paramSummary lists a schema's params, required ones marked with *.
func paramSummary(schema map[string]any) string {
	props, _ := schema["properties"].(map[string]any)
	req := map[string]bool{}
	if r, ok := schema["required"].([]any); ok {
		for _, x := range r {
			if s, ok := x.(string); ok {
				req[s] = true
			}
		}
	}
	var out []string
	for _, k := range sortedKeys(props) {
		p, _ := props[k].(map[string]any)
		s := k + ":" + schemaType(p)
		if req[k] {
			s += "*"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func (a *app) queuesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "The queues: sizes, running, retrying, dead letters, latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			var list client.QueueList
			raw, err := into(&list)(api.c.ListQueues(cmd.Context()))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				row(tw, "QUEUE", "SIZE", "PENDING", "RUNNING", "SCHEDULED", "RETRYING", "DEAD", "LATENCY", "PAUSED")
				for _, q := range list.Items {
					row(tw, q.Name, q.Size, q.Pending, q.Running, q.Scheduled, q.Retrying, q.Dead,
						(time.Duration(q.Latency * float64(time.Second))).Round(time.Millisecond), q.Paused)
				}
			})
		},
	}
	cmd.AddCommand(a.queueSwitch("pause", "Stop the workers taking tasks from a queue (admins); running tasks finish",
		func(api *conn, ctx context.Context, q string) (*http.Response, error) {
			return api.c.PauseQueue(ctx, client.Priority(q))
		}),
		a.queueSwitch("resume", "Let the workers take tasks from a paused queue again (admins)",
			func(api *conn, ctx context.Context, q string) (*http.Response, error) {
				return api.c.ResumeQueue(ctx, client.Priority(q))
			}))
	return cmd
}

// queueSwitch is `queues pause QUEUE` or `queues resume QUEUE`.
func (a *app) queueSwitch(verb, short string, call func(*conn, context.Context, string) (*http.Response, error)) *cobra.Command {
	return &cobra.Command{
		Use:       verb + " QUEUE",
		Short:     short,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"critical", "high", "normal", "low"},
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			var q client.Queue
			raw, err := into(&q)(call(api, cmd.Context(), args[0]))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				state := "running"
				if q.Paused {
					state = "paused"
				}
				fmt.Fprintf(tw, "queue %s %s (%d pending, %d running)\n", q.Name, state, q.Pending, q.Running)
			})
		},
	}
}

func (a *app) statsCommand() *cobra.Command {
	var window string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Task statistics per type over a window",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.GetStatsParams{}
			if window != "" {
				p.Window = &window
			}
			var st client.Stats
			raw, err := into(&st)(api.c.GetStats(cmd.Context(), p))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "window %s (%s to %s)\n\n", st.Window, cell(st.From), cell(st.To))
				row(tw, "TYPE", "COMPLETED", "FAILED", "CANCELLED", "SUCCESS", "PER MIN", "AVG MS", "P95 MS")
				for _, t := range append(st.Types, st.Total) {
					name := "(all)"
					if t.Type != nil {
						name = *t.Type
					}
					row(tw, name, t.Completed, t.Failed, t.Cancelled, t.SuccessRate, fmt.Sprintf("%.2f", t.ThroughputPerMin), t.AvgDurationMs, t.P95DurationMs)
				}
			})
		},
	}
	cmd.Flags().StringVar(&window, "window", "", "the window, e.g. 1h, 24h, 7d (the API's default when empty)")
	return cmd
}

func (a *app) apiKeysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "api-keys", Aliases: []string{"api-key"}, Short: "API keys (admins)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List API keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			var keys client.APIKeyList
			raw, err := into(&keys)(api.c.ListAPIKeys(cmd.Context()))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				row(tw, "ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
				for _, k := range keys.Items {
					row(tw, k.Id, k.Name, k.Role, k.Prefix, k.CreatedAt, k.LastUsedAt, k.ExpiresAt, k.RevokedAt)
				}
			})
		},
	}
	var name, role, expires string
	create := &cobra.Command{
		Use:   "create --name NAME --role admin|operator|viewer",
		Short: "Create an API key; the key is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || role == "" {
				return usageErrorf("--name and --role are required")
			}
			api, err := a.connect()
			if err != nil {
				return err
			}
			req := client.CreateAPIKeyRequest{Name: name, Role: client.CreateAPIKeyRequestRole(role)}
			if expires != "" {
				t, err := parseAt(expires, time.Now())
				if err != nil {
					return usageErrorf("--expires %q: want RFC 3339 or +duration (+720h)", expires)
				}
				req.ExpiresAt = &t
			}
			var k client.APIKey
			raw, err := into(&k)(api.c.CreateAPIKey(cmd.Context(), req))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				row(tw, "ID:", k.Id)
				row(tw, "Name:", k.Name)
				row(tw, "Role:", k.Role)
				row(tw, "Expires:", k.ExpiresAt)
				row(tw, "Key:", k.Key)
				fmt.Fprintln(tw, "\nThe key is shown only now: keep it (e.g. taskforge config set-context NAME --token-file FILE).")
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the key is for")
	create.Flags().StringVar(&role, "role", "", "admin, operator or viewer")
	create.Flags().StringVar(&expires, "expires", "", "expiry: RFC 3339 or +duration (+720h)")
	_ = create.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"admin", "operator", "viewer"}, cobra.ShellCompDirectiveNoFileComp))
	revoke := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an API key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			if _, err := body(api.c.RevokeAPIKey(cmd.Context(), args[0])); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, create, revoke)
	return cmd
}

func (a *app) auditCommand() *cobra.Command {
	var actor, action, resource, since, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The audit log, newest first (admins)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.ListAuditParams{}
			if actor != "" {
				p.Actor = &actor
			}
			if action != "" {
				p.Action = &action
			}
			if resource != "" {
				p.ResourceId = &resource
			}
			if since != "" {
				t, err := time.Parse(time.RFC3339, since)
				if err != nil {
					d, derr := time.ParseDuration(since)
					if derr != nil {
						return usageErrorf("--since %q: want RFC 3339 or a duration back from now (24h)", since)
					}
					t = time.Now().Add(-d)
				}
				p.Since = &t
			}
			if limit > 0 {
				p.Limit = &limit
			}
			if cursor != "" {
				p.Cursor = &cursor
			}
			var page client.AuditPage
			raw, err := into(&page)(api.c.ListAudit(cmd.Context(), p))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
				row(tw, "TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "COUNT", "CLIENT")
				for _, e := range page.Items {
					row(tw, e.Ts, e.Actor, e.Action, e.ResourceType+" "+e.ResourceId, e.Outcome, e.Count, e.ClientIp)
				}
				if page.NextCursor != nil && *page.NextCursor != "" {
					fmt.Fprintf(tw, "\n(more: --cursor %s)\n", *page.NextCursor)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&actor, "actor", "", "only this actor")
	f.StringVar(&action, "action", "", "only this action (e.g. task.create)")
	f.StringVar(&resource, "resource", "", "only this resource id")
	f.StringVar(&since, "since", "", "only entries since: RFC 3339 or a duration back (24h)")
	f.IntVar(&limit, "limit", 0, "entries per page")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	return cmd
}
