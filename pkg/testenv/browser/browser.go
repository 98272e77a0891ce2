// Package browser drives Debian's Chromium headless through chromedp for the
// console's browser tests: one browser per test, tabs that record every
// request, console error, uncaught exception and error-level log entry (CSP
// violations among them), and steps that save a screenshot and the page's
// text when they fail.
package browser

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// EnvFailures names a directory for the screenshots of failed steps (the
// system's temporary directory when unset); EnvScreenshots one for the
// pictures Shoot takes (none when unset).
const (
	EnvFailures    = "TASKFORGE_CONSOLE_FAILURES"
	EnvScreenshots = "TASKFORGE_CONSOLE_SCREENSHOTS"
)

// Start starts Chromium headless (scripts/test.sh installs it) at width×height
// with a fresh profile and no background traffic; the tabs share it. It is
// stopped when the test ends.
func Start(t *testing.T, width, height int) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: scripts/test.sh installs it (scripts/lib.sh ensure_chromium): %v", err)
	}
	// A fresh profile, removed once the browser is gone (Chromium may still
	// be writing to it as it exits, so not a t.TempDir).
	profile, err := os.MkdirTemp("", "taskforge-chromium-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(profile) })
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile), chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	require.NoError(t, chromedp.Run(bctx), "start chromium")
	return bctx
}

// Tab is one tab of the browser, with what it saw.
type Tab struct {
	t    *testing.T
	ctx  context.Context
	name string

	mu       sync.Mutex
	requests []string
	problems []string
}

// Open opens a tab named name (the name is in failure messages and
// screenshot names) and records what it sees.
func Open(t *testing.T, browser context.Context, name string) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	b := &Tab{t: t, ctx: ctx, name: name}
	chromedp.ListenTarget(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value))
				}
				b.problems = append(b.problems, "console."+string(e.Type)+": "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.problems = append(b.problems, "exception: "+msg)
		case *cdplog.EventEntryAdded:
			// Refused requests the test asks for (the 422 of a bad form) and
			// requests to a stopped server are logged by the network source;
			// anything else at error level (a CSP violation, a script error)
			// is a problem.
			if e.Entry.Level == cdplog.LevelError && e.Entry.Source != cdplog.SourceNetwork {
				b.problems = append(b.problems, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	require.NoError(t, chromedp.Run(ctx, network.Enable(), cdplog.Enable(), runtime.Enable()))
	return b
}

// Run runs actions; on failure it saves a screenshot and fails the test.
func (b *Tab) Run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// fail saves a screenshot and the page's text, then fails the test.
func (b *Tab) fail(what string, err error) {
	b.t.Helper()
	dir := os.Getenv(EnvFailures)
	if dir == "" {
		dir = os.TempDir()
	}
	shot := filepath.Join(dir, fmt.Sprintf("console-%s-%d.png", b.name, time.Now().UnixNano()))
	var png []byte
	var text string
	sctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if chromedp.Run(sctx, chromedp.FullScreenshot(&png, 80), chromedp.Evaluate(`document.body.innerText`, &text)) == nil {
		_ = os.WriteFile(shot, png, 0o644)
	}
	b.mu.Lock()
	problems := append([]string(nil), b.problems...)
	b.mu.Unlock()
	b.t.Fatalf("%s (%s tab): %v\nscreenshot: %s\nproblems: %q\npage text:\n%s", what, b.name, err, shot, problems, text)
}

// Until waits (25 s at most) until the JavaScript expression expr is true.
func (b *Tab) Until(what, expr string) {
	b.t.Helper()
	b.Run(what, chromedp.Poll(expr, nil, chromedp.WithPollingTimeout(25*time.Second)))
}

// Eval evaluates a JavaScript expression into out.
func (b *Tab) Eval(expr string, out any) {
	b.t.Helper()
	b.Run(expr, chromedp.Evaluate(expr, out))
}

// Hash routes the page without reloading it.
func (b *Tab) Hash(h string) {
	b.t.Helper()
	b.Run("route to "+h, chromedp.Evaluate(fmt.Sprintf(`location.hash = %q`, h), nil))
}

// Confirm clicks a control, then the confirmation dialog's Confirm.
func (b *Tab) Confirm(what, sel string) {
	b.t.Helper()
	b.ClickLive(what, sel)
	b.Run(what, chromedp.WaitVisible("#confirm-yes", chromedp.ByQuery), chromedp.Click("#confirm-yes", chromedp.ByQuery))
}

// ClickLive clicks the element sel finds once it is shown, finding and
// clicking it in one step inside the page: rows that update live are
// re-rendered at any time, so a node found by one protocol call may be gone by
// the next (chromedp.Click's "Could not find node with given id").
func (b *Tab) ClickLive(what, sel string) {
	b.t.Helper()
	b.Run(what, chromedp.Poll(fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (!el || el.disabled || !el.checkVisibility()) return false;
		el.click();
		return true;
	})()`, sel), nil, chromedp.WithPollingTimeout(25*time.Second)))
}

// SignIn signs in on the sign-in page with token.
func (b *Tab) SignIn(token string) {
	b.t.Helper()
	b.Run("sign in", chromedp.WaitVisible("#signin-token", chromedp.ByQuery),
		chromedp.SendKeys("#signin-token", token, chromedp.ByQuery), chromedp.Click("#signin-submit", chromedp.ByQuery),
		chromedp.WaitVisible("#signout", chromedp.ByQuery))
}

// CheckClean fails on any console error, exception or CSP violation, and on
// any request that left origin.
func (b *Tab) CheckClean(origin string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Emptyf(b.t, b.problems, "%s tab: console errors, exceptions or CSP violations", b.name)
	require.NotEmpty(b.t, b.requests)
	for _, r := range b.requests {
		u, err := url.Parse(r)
		require.NoError(b.t, err)
		if u.Scheme == "blob" || u.Scheme == "data" {
			require.Truef(b.t, strings.HasPrefix(u.Opaque, origin) || u.Scheme == "data", "%s: %s", b.name, r)
			continue
		}
		require.Equalf(b.t, origin, u.Scheme+"://"+u.Host, "%s tab: a request left the origin: %s", b.name, r)
	}
}

// Shoot saves a screenshot of the page as console-NAME.png into the directory
// EnvScreenshots names, when it is set (the README's pictures are made so).
func (b *Tab) Shoot(name string) {
	b.t.Helper()
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		return
	}
	var png []byte
	b.Run("screenshot "+name, chromedp.CaptureScreenshot(&png))
	require.NoError(b.t, os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644))
}
