package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressMode is the --progress flag: when to draw bars on stderr.
type progressMode string

func (m *progressMode) String() string { return string(*m) }

func (m *progressMode) Set(v string) error {
	switch v {
	case "auto", "always", "never":
		*m = progressMode(v)
		return nil
	}
	return fmt.Errorf("%q is not auto, always or never", v)
}

func registerProgress(fs *flag.FlagSet) *progressMode {
	m := progressMode("auto")
	fs.Var(&m, "progress", "progress bars on stderr: auto (when stderr is a terminal), always or never")
	return &m
}

// bars draws progress bars on w. A nil *bars draws nothing, so callers need
// not check.
type bars struct{ p *mpb.Progress }

// newBars starts a bar container, or returns nil when no bars are wanted.
// With auto, mpb itself leaves a non-terminal untouched.
func newBars(ctx context.Context, w io.Writer, m progressMode) *bars {
	if m == "never" {
		return nil
	}
	opts := []mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(120)} // the line width where the terminal's is unknown
	if m == "always" {
		// On a terminal this changes nothing; elsewhere (a log file) each
		// refresh appends the bars' lines, so refresh less often.
		opts = append(opts, mpb.WithAutoRefresh(), mpb.WithRefreshRate(500*time.Millisecond))
	}
	return &bars{p: mpb.NewWithContext(ctx, opts...)}
}

// bar is one line: a name, a bar, a percentage, bytes and speed.
type bar struct{ b *mpb.Bar }

// add makes a bar for a transfer of total bytes (≤ 0: not known yet);
// a transient bar disappears once it completes.
func (bs *bars) add(name string, total int64, transient bool) *bar {
	if bs == nil {
		return nil
	}
	b := bs.p.AddBar(0, mpb.BarWidth(30), mpb.BarOptional(mpb.BarRemoveOnComplete(), transient),
		mpb.PrependDecorators(
			decor.Name(shorten(name, 28), decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 29}),
		),
		mpb.AppendDecorators(
			decor.OnAbort(decor.OnComplete(decor.Percentage(decor.WC{W: 5}), "done"), "failed"),
			decor.Counters(decor.SizeB1024(0), " % .1f / % .1f"),
			decor.OnAbortOrOnComplete(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), ""),
		),
	)
	if total > 0 {
		b.SetTotal(total, false)
	}
	return &bar{b}
}

// addTotal makes the summary bar of several transfers; label is called at
// each render.
func (bs *bars) addTotal(label func() string) *bar {
	if bs == nil {
		return nil
	}
	b := bs.p.AddBar(0, mpb.BarWidth(30),
		mpb.BarPriority(1<<30), // last line
		mpb.PrependDecorators(
			decor.Any(func(decor.Statistics) string { return label() }, decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 29}),
		),
		mpb.AppendDecorators(
			decor.OnAbort(decor.OnComplete(decor.Percentage(decor.WC{W: 5}), "done"), "stopped"),
			decor.Counters(decor.SizeB1024(0), " % .1f / % .1f"),
			decor.OnAbortOrOnComplete(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), ""),
		),
	)
	return &bar{b}
}

func (b *bar) set(done, total int64) {
	if b == nil {
		return
	}
	if total > 0 {
		b.b.SetTotal(total, false)
	}
	b.b.SetCurrent(done)
}

// finish marks the bar complete (ok) or failed.
func (b *bar) finish(ok bool) {
	if b == nil {
		return
	}
	if ok {
		b.b.SetTotal(-1, true)
	} else {
		b.b.Abort(false)
	}
}

// wait ends the container once every bar is finished.
func (bs *bars) wait() {
	if bs != nil {
		bs.p.Wait()
	}
}

// shorten cuts s to at most n runes, keeping its end (the file name).
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}
