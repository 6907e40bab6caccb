package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every serve flag can be set in --config, under its own name or with
// underscores; the command line wins; 0 and false are values too.
func TestServeConfigFile(t *testing.T) {
	d := t.TempDir()
	path := filepath.Join(d, "qpki.yaml")
	os.WriteFile(path, []byte(`# a front-end only
ca_dir: /var/lib/qpki/ca
workers: 0
rate: 250
publish_crl: false
acme-http-port: 5002
acme_rate_exempt: [10.0.0.0/8, 192.0.2.7]
acme_validation_allow: [10.20.0.0/16, "fd00::/8"]
est-channel-binding: true
log_format: json
listen: 0.0.0.0:9443
ops_listen: 10.0.0.5:9464
trusted_proxies: [10.0.0.0/24, "2001:db8::/32"]
`), 0o644)
	cmd := newServeCmd()
	if err := cmd.ParseFlags([]string{"--listen", "127.0.0.1:8443", "--config", path}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cmd, path); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"ca-dir": "/var/lib/qpki/ca", "workers": "0", "rate": "250", "crl-publish": "false",
		"acme-http-port": "5002", "acme-rate-exempt": "[10.0.0.0/8,192.0.2.7]", "est-channel-binding": "true",
		"acme-validation-allow": "[10.20.0.0/16,fd00::/8]",
		"ops-listen":            "10.0.0.5:9464", "trusted-proxies": "[10.0.0.0/24,2001:db8::/32]",
		"log-format": "json", "listen": "127.0.0.1:8443", // the command line wins
	} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}

	for body, want := range map[string]string{
		"no_such_setting: 1\n":  `unknown setting "no_such_setting"`,
		"workers: many\n":       "workers",
		"listen: [a, b]\n":      "takes one value",
		"config: other.yaml\n":  "unknown setting",
		"- a list\n":            "mapping",
		"acme_profiles: {a: 1}": "a value or a list",
	} {
		os.WriteFile(path, []byte(body), 0o644)
		err := applyConfigFile(newServeCmd(), path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", body, err, want)
		}
	}
}
