package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// render prints the API's answer raw as JSON or YAML (the API's own field
// names), or as a table drawn by table.
func (a *app) render(w io.Writer, raw []byte, table func(tw *tabwriter.Writer)) error {
	format, err := a.outputFormat()
	if err != nil {
		return err
	}
	switch format {
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	case "yaml":
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return err
		}
		return enc.Close()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// row writes one tab-separated table row.
func row(tw io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = cell(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

func cell(c any) string {
	switch v := c.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return "-"
		}
		return strings.NewReplacer("\t", " ", "\n", " ").Replace(v)
	case *string:
		if v == nil {
			return "-"
		}
		return cell(*v)
	case time.Time:
		if v.IsZero() {
			return "-"
		}
		return v.Local().Format("2006-01-02 15:04:05")
	case *time.Time:
		if v == nil {
			return "-"
		}
		return cell(*v)
	case *int64:
		if v == nil {
			return "-"
		}
		return fmt.Sprint(*v)
	case *float64:
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", *v)
	}
	return fmt.Sprint(c)
}

// statusColours are ANSI colours of task statuses on a terminal.
var statusColours = map[string]string{
	"completed": "32", "failed": "31", "cancelled": "90", "running": "36", "retrying": "33", "pending": "",
}

func (a *app) status(w io.Writer, s string) string {
	if c := statusColours[s]; c != "" && a.colour(w) {
		return "\x1b[" + c + "m" + s + "\x1b[0m"
	}
	return s
}

// pretty prints a JSON value indented.
func pretty(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
