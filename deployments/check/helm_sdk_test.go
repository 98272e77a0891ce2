package check

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// The chart is rendered and linted with Helm's own packages (the engine that
// `helm template` runs and the linter behind `helm lint`), so the check needs no
// helm binary. The arguments below are the helm CLI's, so a failure can be
// reproduced with helm itself:
//
//	-f FILE                  a values file (later files win)
//	--set KEY=VALUE          a value, as helm parses it
//	--api-versions GROUP/V   an extra API version in .Capabilities.APIVersions

// helmArgs are parsed CLI arguments.
type helmArgs struct {
	values      map[string]any
	apiVersions []string
}

func parseHelmArgs(args []string) (helmArgs, error) {
	h := helmArgs{values: map[string]any{}}
	for i := 0; i < len(args); i++ {
		if i+1 >= len(args) {
			return h, fmt.Errorf("%s needs a value", args[i])
		}
		flag, val := args[i], args[i+1]
		i++
		switch flag {
		case "-f", "--values":
			data, err := os.ReadFile(val)
			if err != nil {
				return h, err
			}
			var file map[string]any
			if err := yaml.Unmarshal(data, &file); err != nil {
				return h, fmt.Errorf("%s: %w", val, err)
			}
			h.values = mergeValues(h.values, file)
		case "--set":
			if err := strvals.ParseInto(val, h.values); err != nil {
				return h, fmt.Errorf("--set %s: %w", val, err)
			}
		case "--api-versions":
			h.apiVersions = append(h.apiVersions, val)
		default:
			return h, fmt.Errorf("unsupported helm argument %s", flag)
		}
	}
	return h, nil
}

// mergeValues lays src over dst as helm merges values files.
func mergeValues(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if cur, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeValues(cur, sub)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// render renders the chart as `helm template tf <chart> --namespace taskforge
// --kube-version <kubeVersion> ARGS` does: every manifest (hooks included), each
// headed by its "# Source:" comment.
func render(t interface{ Helper() }, args ...string) (string, error) {
	t.Helper()
	h, err := parseHelmArgs(args)
	if err != nil {
		return "", err
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return "", err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	caps.APIVersions = append(caps.APIVersions, h.apiVersions...)
	opts := chartutil.ReleaseOptions{Name: "tf", Namespace: "taskforge", Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(chrt, h.values, opts, caps)
	if err != nil {
		return "", err
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" || strings.TrimSpace(files[name]) == "" {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, files[name])
	}
	return b.String(), nil
}

// lintStrict lints the chart as `helm lint --strict <chart> --kube-version
// <kubeVersion> ARGS` does: warnings fail as errors do.
func lintStrict(args ...string) error {
	h, err := parseHelmArgs(args)
	if err != nil {
		return err
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return err
	}
	linter := lint.AllWithKubeVersion(chartDir, h.values, "taskforge", kv)
	var errs []error
	for _, msg := range linter.Messages {
		if msg.Severity >= support.WarningSev {
			errs = append(errs, errors.New(msg.Error()))
		}
	}
	return errors.Join(errs...)
}
