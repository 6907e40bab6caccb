package batch

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// progress shows done/total, rate and ETA: a redrawn bar on a terminal,
// plain lines every few seconds otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	total    int
	start    time.Time
}

func newProgress(w io.Writer, terminal bool, total int, start time.Time) *progress {
	return &progress{w: w, terminal: terminal, total: total, start: start}
}

func (p *progress) run(done *atomic.Int64, stop <-chan struct{}) {
	if p.w == nil {
		return
	}
	every := 5 * time.Second
	if p.terminal {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.draw(done.Load(), false)
		}
	}
}

func (p *progress) finish(done int64) {
	if p.w != nil {
		p.draw(done, true)
	}
}

func (p *progress) draw(done int64, last bool) {
	el := time.Since(p.start)
	rate := float64(done) / max(el.Seconds(), 1e-9)
	eta := "-"
	if rate > 0 && int(done) < p.total {
		eta = (time.Duration(float64(p.total-int(done))/rate) * time.Second).Round(time.Second).String()
	}
	if !p.terminal {
		fmt.Fprintf(p.w, "progress: %d/%d done, %.0f/s, eta %s\n", done, p.total, rate, eta)
		return
	}
	const width = 30
	filled := width
	if p.total > 0 {
		filled = int(done) * width / p.total
	}
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	end := ""
	if last {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r[%s] %d/%d %.0f/s eta %s   %s", bar, done, p.total, rate, eta, end)
}
