package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// statusJSON is the part of GET /status.json the tests read.
type statusJSON struct {
	CA struct {
		Name     string `json:"name"`
		Subject  string `json:"subject"`
		Active   string `json:"active"`
		Versions []struct {
			Name       string   `json:"name"`
			Algorithms []string `json:"algorithms"`
			Storage    []string `json:"storage"`
		} `json:"versions"`
	} `json:"ca"`
	Queue *struct {
		Pending uint64  `json:"pending"`
		Rate    float64 `json:"rate"`
	} `json:"queue"`
	Samples []struct {
		T    int64   `json:"t"`
		Rate float64 `json:"rate"`
	} `json:"samples"`
	Certs struct {
		Total       int `json:"total"`
		Revoked     int `json:"revoked"`
		Latest      []struct{ Serial, Subject, Status string }
		Revocations []struct{ Serial, Reason string }
	} `json:"certs"`
}

func (o *observed) status(t *testing.T) statusJSON {
	t.Helper()
	resp, body := o.opsGet(t, "/status.json")
	if resp.StatusCode != 200 {
		t.Fatalf("/status.json: %s", resp.Status)
	}
	var st statusJSON
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStatusJSON checks the figures the page is drawn from against the
// CA and its store.
func TestStatusJSON(t *testing.T) {
	o := startObserved(t)
	for i := range 3 {
		o.issue(t, fmt.Sprintf("s%d.example.com", i), "")
	}
	cert, _ := o.issue(t, "revoked.example.com", "")
	if _, err := o.s.Core.CA.Revoke(cert.SerialNumber.Text(16), 4, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // past the store scan's cache
	st := o.status(t)
	certs, err := mustStore(t, o).List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Certs.Total != len(certs) || st.Certs.Total < 5 || st.Certs.Revoked != 1 {
		t.Errorf("certs total %d revoked %d, store has %d", st.Certs.Total, st.Certs.Revoked, len(certs))
	}
	if len(st.Certs.Latest) == 0 || st.Certs.Latest[0].Serial != certs[len(certs)-1].Serial || st.Certs.Latest[0].Status != "revoked" {
		t.Errorf("latest certificates %+v", st.Certs.Latest)
	}
	if len(st.Certs.Revocations) != 1 || st.Certs.Revocations[0].Serial != cert.SerialNumber.Text(16) || st.Certs.Revocations[0].Reason != "superseded" {
		t.Errorf("revocations %+v", st.Certs.Revocations)
	}
	meta := o.s.Core.CA.Meta
	if st.CA.Name != o.s.Core.CA.Name() || st.CA.Active != meta.Active || st.CA.Subject != meta.Subject.CommonName {
		t.Errorf("CA %+v", st.CA)
	}
	if len(st.CA.Versions) != 1 || strings.Join(st.CA.Versions[0].Algorithms, ",") != strings.Join(meta.Versions[meta.Active].Algos, ",") ||
		st.CA.Versions[0].Storage[0] != "software" {
		t.Errorf("versions %+v", st.CA.Versions)
	}
	if st.Queue == nil || len(st.Samples) < 2 {
		t.Fatalf("queue %+v, %d samples", st.Queue, len(st.Samples))
	}
	var rated bool
	for i, s := range st.Samples {
		if i > 0 && s.T <= st.Samples[i-1].T {
			t.Fatalf("samples out of order: %+v", st.Samples)
		}
		rated = rated || s.Rate > 0
	}
	if !rated {
		t.Error("no sample saw a signing rate while certificates were issued")
	}
}

func mustStore(t *testing.T, o *observed) store.Store {
	st, err := o.s.Core.CA.Store()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// chromium finds a headless browser; under CI its absence fails the test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (Debian package chromium)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// TestStatusPageInChromium loads /status in headless Chromium and checks
// the DOM after its script ran: the CA's name, the issued count, the
// latest certificates and revocations, both charts with points, and at
// least one refresh from /status.json.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	o := startObserved(t)
	var serials []string
	for i := range 4 {
		cert, _ := o.issue(t, fmt.Sprintf("page%d.example.com", i), "")
		serials = append(serials, cert.SerialNumber.Text(16))
	}
	if _, err := o.s.Core.CA.Revoke(serials[1], 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Let a few samples come in, and the store scan's cache expire.
	time.Sleep(2100 * time.Millisecond)
	resp, _ := o.opsGet(t, "/status")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	total := len(must(mustStore(t, o).List(store.Filter{})))

	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	shot := filepath.Join(tmp, "status.png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--no-first-run",
		"--user-data-dir=" + filepath.Join(tmp, "profile"), "--ignore-certificate-errors",
		"--virtual-time-budget=4000", "--window-size=1280,1400"}
	cmd := exec.CommandContext(ctx, bin, append(args, "--dump-dom", o.ops+"/status")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	page := string(dom)
	find := func(re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("the rendered page lacks %s:\n%s", re, page)
		}
		return m
	}
	find(`<span id="ca-name">` + regexp.QuoteMeta(o.s.Core.CA.Name()) + `</span>`)
	find(`<span class="sub" id="ca-subject">Observed Root · active v1</span>`)
	if got := find(`<b id="issued">([0-9,]+)</b>`)[1]; strings.ReplaceAll(got, ",", "") != strconv.Itoa(total) {
		t.Errorf("issued %s on the page, %d in the store", got, total)
	}
	find(`<b id="revoked">1</b>`)
	find(`<tbody id="latest"><tr><td class="mono">` + serials[3][:16])
	find(`<tbody id="revocations"><tr><td class="mono">` + serials[1][:16] + `[^<]*</td><td>[^<]*</td><td>[^<]+</td><td>keyCompromise</td>`)
	meta := o.s.Core.CA.Meta
	find(`<td class="mono">` + regexp.QuoteMeta(strings.Join(meta.Versions[meta.Active].Algos, " + ")) + `</td>`)
	for _, id := range []string{"chart-depth", "chart-rate"} {
		m := find(`<svg id="` + id + `"[^>]*>.*?<polyline class="series" points="([^"]*)" data-points="(\d+)"`)
		if n, _ := strconv.Atoi(m[2]); n < 2 || len(strings.Fields(m[1])) != n {
			t.Errorf("%s: %s points %q", id, m[2], m[1])
		}
	}
	// The page refreshed itself from /status.json at least once.
	if n, _ := strconv.Atoi(find(`data-refreshes="(\d+)"`)[1]); n < 1 {
		t.Errorf("the page never refreshed")
	}

	// A screenshot, for a person to look at: QPKI_STATUS_SCREENSHOT_DIR
	// keeps it.
	cmd = exec.CommandContext(ctx, bin, append(args, "--screenshot="+shot, o.ops+"/status")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium screenshot: %v\n%s", err, out)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot: %v", err)
	}
	if dir := os.Getenv("QPKI_STATUS_SCREENSHOT_DIR"); dir != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(filepath.Join(dir, "status.png"), data, 0o644)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
