package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

const defaultURL = "http://127.0.0.1:8080"

// fileConfig is the config file: named contexts, one of them current.
type fileConfig struct {
	CurrentContext string                 `yaml:"current-context,omitempty"`
	Contexts       map[string]*apiContext `yaml:"contexts,omitempty"`
}

// apiContext is where one API is and how to authenticate to it.
type apiContext struct {
	URL       string `yaml:"url,omitempty"`
	Token     string `yaml:"token,omitempty"`
	TokenFile string `yaml:"token-file,omitempty"`
}

func (a *app) configFile() (string, error) {
	if a.configPath != "" {
		return a.configPath, nil
	}
	if p := os.Getenv("TASKFORGE_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no user config directory (set --config or TASKFORGE_CONFIG): %w", err)
	}
	return filepath.Join(dir, "taskforge", "config.yaml"), nil
}

// loadConfig reads the config file; a missing file is an empty config. A file
// that holds a token must be readable by its owner only.
func (a *app) loadConfig() (*fileConfig, string, error) {
	path, err := a.configFile()
	if err != nil {
		return nil, "", err
	}
	fc := &fileConfig{Contexts: map[string]*apiContext{}}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fc, path, nil
	}
	if err != nil {
		return nil, path, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, path, err
	}
	if err := yaml.Unmarshal(b, fc); err != nil {
		return nil, path, fmt.Errorf("config %s: %w", path, err)
	}
	if fc.Contexts == nil {
		fc.Contexts = map[string]*apiContext{}
	}
	for _, c := range fc.Contexts {
		if c != nil && c.Token != "" && st.Mode().Perm()&0o077 != 0 {
			return nil, path, fmt.Errorf("config %s holds a token and is readable by others (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
		}
	}
	return fc, path, nil
}

func saveConfig(path string, fc *fileConfig) error {
	b, err := yaml.Marshal(fc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// resolve decides the URL and token: flags, then the environment, then the
// context.
func (a *app) resolve() (url, token string, err error) {
	fc, _, err := a.loadConfig()
	if err != nil {
		return "", "", exitWith(ExitUsage, err)
	}
	name := a.contextName
	if name == "" {
		name = fc.CurrentContext
	}
	var ctx apiContext
	if name != "" {
		c, ok := fc.Contexts[name]
		if !ok {
			return "", "", usageErrorf("no context %q in the config file (taskforge config get-contexts)", name)
		}
		if c != nil {
			ctx = *c
		}
	}
	url = firstNonEmpty(a.url, os.Getenv("TASKFORGE_URL"), ctx.URL, defaultURL)
	switch {
	case a.token != "":
		token = a.token
	case a.tokenFile != "":
		token, err = readTokenFile(a.tokenFile)
	case os.Getenv("TASKFORGE_TOKEN") != "":
		token = os.Getenv("TASKFORGE_TOKEN")
	case ctx.Token != "":
		token = ctx.Token
	case ctx.TokenFile != "":
		token, err = readTokenFile(ctx.TokenFile)
	}
	if err != nil {
		return "", "", exitWith(ExitUsage, err)
	}
	return strings.TrimRight(url, "/"), token, nil
}

func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Named contexts: where an API is and which token to use"}
	var url, token, tokenFile string
	set := &cobra.Command{
		Use:   "set-context NAME",
		Short: "Create or change a context (and make it current if there is none)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if token != "" && tokenFile != "" {
				return usageErrorf("--token and --token-file exclude each other")
			}
			fc, path, err := a.loadConfig()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			c := fc.Contexts[args[0]]
			if c == nil {
				c = &apiContext{}
				fc.Contexts[args[0]] = c
			}
			if cmd.Flags().Changed("url") {
				c.URL = url
			}
			if cmd.Flags().Changed("token") {
				c.Token, c.TokenFile = token, ""
			}
			if cmd.Flags().Changed("token-file") {
				abs, err := filepath.Abs(tokenFile)
				if err != nil {
					return err
				}
				c.TokenFile, c.Token = abs, ""
			}
			if fc.CurrentContext == "" {
				fc.CurrentContext = args[0]
			}
			if err := saveConfig(path, fc); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q saved in %s\n", args[0], path)
			return nil
		},
	}
	// Local flags of their own: the global --url/--token select the API of
	// this invocation, these are what the context keeps.
	set.Flags().StringVar(&url, "url", "", "the API's base URL")
	set.Flags().StringVar(&token, "token", "", "the token to keep (stored in the file, mode 0600)")
	set.Flags().StringVar(&tokenFile, "token-file", "", "a file to read the token from at each use")

	use := &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a context the current one",
		Args:  cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			fc, _, err := a.loadConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveError
			}
			names := make([]string, 0, len(fc.Contexts))
			for n := range fc.Contexts {
				names = append(names, n)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			fc, path, err := a.loadConfig()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if _, ok := fc.Contexts[args[0]]; !ok {
				return usageErrorf("no context %q", args[0])
			}
			fc.CurrentContext = args[0]
			return saveConfig(path, fc)
		},
	}
	get := &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts (tokens are never printed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, _, err := a.loadConfig()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			names := make([]string, 0, len(fc.Contexts))
			for n := range fc.Contexts {
				names = append(names, n)
			}
			sort.Strings(names)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tURL\tTOKEN")
			for _, n := range names {
				c := fc.Contexts[n]
				if c == nil {
					c = &apiContext{}
				}
				cur, tok := "", "none"
				if n == fc.CurrentContext {
					cur = "*"
				}
				switch {
				case c.Token != "":
					tok = "in the file"
				case c.TokenFile != "":
					tok = "from " + c.TokenFile
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, n, firstNonEmpty(c.URL, defaultURL), tok)
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fc, path, err := a.loadConfig()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if _, ok := fc.Contexts[args[0]]; !ok {
				return usageErrorf("no context %q", args[0])
			}
			delete(fc.Contexts, args[0])
			if fc.CurrentContext == args[0] {
				fc.CurrentContext = ""
			}
			return saveConfig(path, fc)
		},
	}
	path := &cobra.Command{
		Use:   "path",
		Short: "Print where the config file is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.configFile()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), p)
			return nil
		},
	}
	cmd.AddCommand(set, use, get, del, path)
	return cmd
}
