package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// The status page: GET /status (HTML, everything inline, no external
// asset) and GET /status.json (what the page refreshes itself from). It
// shows the queue's depth and the signing rate over the last minutes, the
// CA's versions and algorithms, and the latest certificates and
// revocations.

const (
	// DefaultSampleEvery is how often the server reads the queue for the
	// status page's chart.
	DefaultSampleEvery = 5 * time.Second
	// chartSpan is how far back the chart goes.
	chartSpan = 10 * time.Minute
	// latestRows is how many certificates and revocations the page lists.
	latestRows = 10
)

// queueSample is one reading of the queue.
type queueSample struct {
	Time     int64   `json:"t"` // Unix milliseconds
	Pending  uint64  `json:"pending"`
	InFlight uint64  `json:"in_flight"`
	Dead     uint64  `json:"dead_letters"`
	Rate     float64 `json:"rate"` // results stored per second since the previous reading
}

// sampler keeps the last readings of the queue in a ring.
type sampler struct {
	mu    sync.Mutex
	ring  []queueSample
	next  int
	full  bool
	last  *queue.Status
	err   bool
	every time.Duration
}

func newSampler(every time.Duration) *sampler {
	if every <= 0 {
		every = DefaultSampleEvery
	}
	n := min(max(int(chartSpan/every), 12), 720)
	return &sampler{ring: make([]queueSample, n), every: every}
}

func (sm *sampler) add(st queue.Status) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	s := queueSample{Time: st.Time.UnixMilli(), Dead: st.DeadLetters,
		Pending: st.Interactive.Pending + st.Batch.Pending, InFlight: st.Interactive.InFlight + st.Batch.InFlight}
	if sm.last != nil {
		s.Rate = st.ResultRate(*sm.last)
	}
	sm.last, sm.err = &st, false
	sm.ring[sm.next] = s
	sm.next = (sm.next + 1) % len(sm.ring)
	sm.full = sm.full || sm.next == 0
}

func (sm *sampler) failed() {
	sm.mu.Lock()
	sm.err = true
	sm.mu.Unlock()
}

// samples returns the readings, oldest first, and whether the last read
// failed.
func (sm *sampler) samples() ([]queueSample, bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if !sm.full {
		return append([]queueSample(nil), sm.ring[:sm.next]...), sm.err
	}
	return append(append([]queueSample(nil), sm.ring[sm.next:]...), sm.ring[:sm.next]...), sm.err
}

// sample reads the queue every sm.every until ctx is done.
func (core *Core) sample(ctx context.Context) {
	t := time.NewTicker(core.samples.every)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, min(core.samples.every, 3*time.Second))
		st, err := core.Queue.Status(rctx)
		cancel()
		switch {
		case err == nil:
			core.samples.add(st)
		case ctx.Err() == nil:
			core.samples.failed()
			core.cfg.Log.Debug("status page: reading the queue", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusDoc is GET /status.json.
type statusDoc struct {
	Time        time.Time     `json:"time"`
	CA          caStatus      `json:"ca"`
	Queue       *queueSample  `json:"queue"` // the latest reading; null before the first
	QueueError  bool          `json:"queue_error,omitempty"`
	Samples     []queueSample `json:"samples"`
	SampleEvery float64       `json:"sample_every"` // seconds
	Certs       certSummary   `json:"certs"`
}

type caStatus struct {
	Name     string          `json:"name"`
	Subject  string          `json:"subject"`
	Active   string          `json:"active"`
	Versions []versionStatus `json:"versions"`
}

type versionStatus struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Algorithms []string   `json:"algorithms"`
	Mode       string     `json:"mode,omitempty"`
	Storage    []string   `json:"storage"`
	Created    time.Time  `json:"created"`
	NotAfter   *time.Time `json:"not_after,omitempty"`
}

type certSummary struct {
	Total       int       `json:"total"`
	Valid       int       `json:"valid"`
	Revoked     int       `json:"revoked"`
	Expired     int       `json:"expired"`
	Latest      []certRow `json:"latest"`
	Revocations []certRow `json:"revocations"`
	AsOf        time.Time `json:"as_of"`
	Error       string    `json:"error,omitempty"`
	scanTook    time.Duration
}

type certRow struct {
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	Names     []string  `json:"names,omitempty"`
	Profile   string    `json:"profile"`
	Algorithm string    `json:"algorithm"`
	Issued    time.Time `json:"issued"`
	NotAfter  time.Time `json:"not_after"`
	Status    string    `json:"status"`
	Revoked   time.Time `json:"revoked,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// certCache keeps the last scan of the store: listing it costs time in
// proportion to the certificates, so a scan is reused for at least 20
// times as long as it took (and 2s).
type certCache struct {
	mu  sync.Mutex
	sum certSummary
}

func (cc *certCache) get(c *ca.CA) certSummary {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !cc.sum.AsOf.IsZero() && time.Since(cc.sum.AsOf) < max(2*time.Second, 20*cc.sum.scanTook) {
		return cc.sum
	}
	start := time.Now()
	cc.sum = scanCerts(c, start)
	cc.sum.scanTook = time.Since(start)
	return cc.sum
}

func scanCerts(c *ca.CA, now time.Time) certSummary {
	sum := certSummary{AsOf: now, Latest: []certRow{}, Revocations: []certRow{}}
	st, err := c.Store()
	if err != nil {
		sum.Error = "the store is unavailable"
		return sum
	}
	certs, err := st.List(store.Filter{Now: now})
	if err != nil {
		sum.Error = "the store is unavailable"
		return sum
	}
	var revoked []*store.Cert
	for _, cert := range certs {
		switch cert.Status(now) {
		case "valid":
			sum.Valid++
		case "revoked":
			sum.Revoked++
			revoked = append(revoked, cert)
		case "expired":
			sum.Expired++
		}
	}
	sum.Total = len(certs)
	row := func(cert *store.Cert) certRow {
		r := certRow{Serial: cert.Serial, Subject: cert.Subject, Names: cert.Names, Profile: cert.Profile,
			Algorithm: cert.Algorithm, Issued: cert.Issued, NotAfter: cert.NotAfter, Status: cert.Status(now)}
		if len(r.Names) > 3 {
			r.Names = append(r.Names[:3:3], "…")
		}
		if cert.Revocation != nil {
			r.Revoked, r.Reason = cert.Revocation.Time, ca.ReasonName(cert.Revocation.Reason)
		}
		return r
	}
	for i := len(certs) - 1; i >= 0 && len(sum.Latest) < latestRows; i-- {
		sum.Latest = append(sum.Latest, row(certs[i]))
	}
	sort.SliceStable(revoked, func(i, j int) bool { return revoked[i].Revocation.Time.After(revoked[j].Revocation.Time) })
	for _, cert := range revoked[:min(len(revoked), latestRows)] {
		sum.Revocations = append(sum.Revocations, row(cert))
	}
	return sum
}

func caInfo(c *ca.CA) caStatus {
	m := c.Meta
	cs := caStatus{Name: c.Name(), Subject: m.Subject.CommonName, Active: m.Active, Versions: []versionStatus{}}
	if m.Subject.Organization != "" {
		cs.Subject += ", " + m.Subject.Organization
	}
	names := m.VersionNames()
	for i := len(names) - 1; i >= 0; i-- { // newest first
		v := m.Versions[names[i]]
		vs := versionStatus{Name: names[i], Status: v.Status, Algorithms: v.Algos, Mode: v.Mode,
			Created: v.Created, NotAfter: v.NotAfter, Storage: []string{}}
		for _, k := range v.Keys {
			vs.Storage = append(vs.Storage, k.Storage.Type)
		}
		cs.Versions = append(cs.Versions, vs)
	}
	return cs
}

func (s *Server) status() statusDoc {
	samples, qerr := s.Core.samples.samples()
	doc := statusDoc{Time: time.Now().UTC(), CA: caInfo(s.Core.CA), Samples: samples, QueueError: qerr,
		SampleEvery: s.Core.samples.every.Seconds(), Certs: s.certs.get(s.Core.CA)}
	if len(samples) > 0 {
		doc.Queue = &samples[len(samples)-1]
	}
	return doc
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.status())
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	var b [16]byte
	rand.Read(b[:])
	nonce := base64.StdEncoding.EncodeToString(b[:])
	h := w.Header()
	// Nothing leaves the page: no external script, style, font or image.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
		"'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if err := statusTemplate.Execute(w, struct {
		Nonce string
		Name  string
		Data  statusDoc
	}{nonce, s.Core.CA.Name(), s.status()}); err != nil {
		s.Core.cfg.Log.Debug("status page", "error", err)
	}
}

var statusTemplate = template.Must(template.New("status").Parse(statusHTML))

const statusHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qpki · {{.Name}}</title>
<style nonce="{{.Nonce}}">
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --card:#fff; --a:#2f6fde; --b:#0f9d76; --bad:#c4320a; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:baseline; gap:1em; flex-wrap:wrap; padding:14px 24px; background:var(--card); border-bottom:1px solid var(--line); }
header h1 { margin:0; font-size:20px; }
header .sub { color:var(--muted); }
header .upd { margin-left:auto; color:var(--muted); font-size:12px; }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; background:var(--b); margin-right:6px; }
.stale .dot { background:var(--bad); }
main { padding:16px 24px; max-width:1200px; }
.figs { display:grid; grid-template-columns:repeat(auto-fill, minmax(140px, 1fr)); gap:10px; margin-bottom:16px; }
.fig { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.fig b { display:block; font-size:22px; font-variant-numeric:tabular-nums; }
.fig span { color:var(--muted); font-size:12px; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(360px, 1fr)); gap:10px; margin-bottom:16px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 12px; margin-bottom:16px; overflow-x:auto; }
h2 { font-size:14px; margin:0 0 8px; }
svg { width:100%; height:auto; display:block; }
svg text { font-size:10px; fill:var(--muted); }
svg .grid { stroke:var(--line); }
svg .series { fill:none; stroke-width:2; }
#chart-depth .series { stroke:var(--a); }
#chart-rate .series { stroke:var(--b); }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { color:var(--muted); font-weight:500; font-size:12px; }
td.mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12px; }
.st-valid { color:var(--b); } .st-revoked { color:var(--bad); } .st-expired { color:var(--muted); }
.empty { color:var(--muted); }
</style>
</head>
<body>
<header><h1>qpki · <span id="ca-name"></span></h1><span class="sub" id="ca-subject"></span>
<span class="upd" id="updated"><span class="dot"></span><span id="updated-text"></span></span></header>
<main>
<div class="figs">
<div class="fig"><b id="issued">–</b><span>certificates issued</span></div>
<div class="fig"><b id="valid">–</b><span>valid</span></div>
<div class="fig"><b id="revoked">–</b><span>revoked</span></div>
<div class="fig"><b id="pending">–</b><span>jobs pending</span></div>
<div class="fig"><b id="inflight">–</b><span>jobs in flight</span></div>
<div class="fig"><b id="rate">–</b><span>signatures / s</span></div>
<div class="fig"><b id="dead">–</b><span>dead letters</span></div>
</div>
<div class="charts">
<section><h2>Queue depth (pending + in flight)</h2><svg id="chart-depth" viewBox="0 0 600 170" role="img" aria-label="queue depth"></svg></section>
<section><h2>Signing rate (results / s)</h2><svg id="chart-rate" viewBox="0 0 600 170" role="img" aria-label="signing rate"></svg></section>
</div>
<section><h2>CA versions</h2><table><thead><tr><th>version</th><th>status</th><th>algorithms</th><th>mode</th><th>keys</th><th>created</th><th>not after</th></tr></thead><tbody id="versions"></tbody></table></section>
<section><h2>Latest certificates</h2><table><thead><tr><th>serial</th><th>subject</th><th>names</th><th>profile</th><th>algorithm</th><th>issued</th><th>status</th></tr></thead><tbody id="latest"></tbody></table></section>
<section><h2>Latest revocations</h2><table><thead><tr><th>serial</th><th>subject</th><th>revoked</th><th>reason</th></tr></thead><tbody id="revocations"></tbody></table></section>
</main>
<script id="qpki-data" type="application/json">{{.Data}}</script>
<script nonce="{{.Nonce}}">
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  function $(id) { return document.getElementById(id); }
  function text(id, v) { $(id).textContent = v; }
  function num(n) { return Number(n).toLocaleString("en-US"); }
  function when(s) { return s ? s.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : ""; }
  function el(tag, txt, cls) { var e = document.createElement(tag); if (txt !== undefined) e.textContent = txt; if (cls) e.className = cls; return e; }
  function rows(id, items, cols, empty, ncols) {
    var body = $(id);
    body.replaceChildren();
    if (!items || items.length === 0) { var tr = el("tr"), td = el("td", empty, "empty"); td.colSpan = ncols; tr.appendChild(td); body.appendChild(tr); return; }
    items.forEach(function (it) {
      var tr = el("tr");
      cols.forEach(function (c) { tr.appendChild(c(it)); });
      body.appendChild(tr);
    });
  }
  function svgEl(tag, attrs, txt) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (txt !== undefined) e.textContent = txt;
    return e;
  }
  function nice(v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  // chart draws one series of the samples: x is time, y the value.
  function chart(id, samples, value, digits) {
    var svg = $(id), W = 600, H = 170, L = 44, R = 8, T = 8, B = 22;
    svg.replaceChildren();
    var pts = samples.map(function (s) { return { t: s.t, v: value(s) }; });
    var top = nice(Math.max.apply(null, [0].concat(pts.map(function (p) { return p.v; }))));
    var t1 = pts.length ? pts[pts.length - 1].t : Date.now(), t0 = pts.length ? Math.min(pts[0].t, t1 - 60000) : t1 - 60000;
    function x(t) { return L + (W - L - R) * (t - t0) / Math.max(t1 - t0, 1); }
    function y(v) { return T + (H - T - B) * (1 - v / top); }
    [0, 0.5, 1].forEach(function (f) {
      svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), "class": "grid" }));
      svg.appendChild(svgEl("text", { x: L - 6, y: y(top * f) + 3, "text-anchor": "end" }, (top * f).toFixed(f === 0.5 && top < 2 ? 1 : digits)));
    });
    var mins = Math.round((t1 - t0) / 60000);
    svg.appendChild(svgEl("text", { x: L, y: H - 6 }, "−" + mins + " min"));
    svg.appendChild(svgEl("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
    var line = svgEl("polyline", { "class": "series", points: pts.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.v).toFixed(1); }).join(" ") });
    line.setAttribute("data-points", String(pts.length));
    svg.appendChild(line);
  }
  function render(d) {
    text("ca-name", d.ca.name);
    text("ca-subject", d.ca.subject + " · active " + (d.ca.active || "none"));
    text("issued", num(d.certs.total));
    text("valid", num(d.certs.valid));
    text("revoked", num(d.certs.revoked));
    var q = d.queue;
    text("pending", q ? num(q.pending) : "–");
    text("inflight", q ? num(q.in_flight) : "–");
    text("rate", q ? q.rate.toFixed(1) : "–");
    text("dead", q ? num(q.dead_letters) : "–");
    var samples = d.samples || [];
    chart("chart-depth", samples, function (s) { return s.pending + s.in_flight; }, 0);
    chart("chart-rate", samples, function (s) { return s.rate; }, 0);
    rows("versions", d.ca.versions, [
      function (v) { return el("td", v.name + (v.name === d.ca.active ? " ★" : "")); },
      function (v) { return el("td", v.status); },
      function (v) { return el("td", (v.algorithms || []).join(" + "), "mono"); },
      function (v) { return el("td", v.mode || ""); },
      function (v) { return el("td", (v.storage || []).join(", ")); },
      function (v) { return el("td", when(v.created)); },
      function (v) { return el("td", when(v.not_after)); }
    ], "no version", 7);
    rows("latest", d.certs.latest, [
      function (c) { return el("td", c.serial.slice(0, 16) + (c.serial.length > 16 ? "…" : ""), "mono"); },
      function (c) { return el("td", c.subject); },
      function (c) { return el("td", (c.names || []).join(", ")); },
      function (c) { return el("td", c.profile); },
      function (c) { return el("td", c.algorithm, "mono"); },
      function (c) { return el("td", when(c.issued)); },
      function (c) { return el("td", c.status, "st-" + c.status); }
    ], "no certificate issued yet", 7);
    rows("revocations", d.certs.revocations, [
      function (c) { return el("td", c.serial.slice(0, 16) + (c.serial.length > 16 ? "…" : ""), "mono"); },
      function (c) { return el("td", c.subject); },
      function (c) { return el("td", when(c.revoked)); },
      function (c) { return el("td", c.reason); }
    ], "no revocation", 4);
    text("updated-text", "updated " + when(d.time) + (d.queue_error ? " · queue unavailable" : ""));
    document.body.classList.toggle("stale", !!d.queue_error);
  }
  var data = JSON.parse($("qpki-data").textContent);
  render(data);
  document.body.setAttribute("data-refreshes", "0");
  setInterval(function () {
    fetch("status.json", { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (d) {
      render(d);
      document.body.setAttribute("data-refreshes", String(Number(document.body.getAttribute("data-refreshes")) + 1));
    }).catch(function () {
      document.body.classList.add("stale");
      text("updated-text", "cannot reach the server");
    });
  }, Math.max(1000, Math.min(data.sample_every * 1000, 5000)));
})();
</script>
</body>
</html>
`
