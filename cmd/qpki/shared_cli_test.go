package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/qpki/qpki/internal/natstest"
)

// TestESTUsersAndACMEKeysOnJetStream changes the EST users and the EAB
// keys that serve --store jetstream front-ends share, in a real
// embedded NATS server, with the file form's commands.
func TestESTUsersAndACMEKeysOnJetStream(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	data := t.TempDir()
	on := []string{"--store", "jetstream", "--nats-url", url, "--ca", "issuing"}

	// Half a set of flags is refused with one clear line.
	fails(t, "", "--store jetstream needs --nats-url", "est", "user", "list", "--store", "jetstream", "--ca", "issuing")
	fails(t, "", "--store jetstream needs --ca", "acme", "eab", "list", "--store", "jetstream", "--nats-url", url)
	fails(t, "", "go with --store jetstream", "acme", "eab", "list", "--nats-url", url)
	fails(t, "", "--store: want jetstream", "est", "user", "list", "--store", "etcd")

	if r := runStdin(t, "s3cret\n", append([]string{"est", "user", "add", "fleet-1"}, on...)...); r.code != 0 || !strings.Contains(r.stdout, "added EST user fleet-1") {
		t.Fatalf("add: %+v", r)
	}
	if r := runStdin(t, "n3w\n", append([]string{"est", "user", "add", "fleet-1"}, on...)...); r.code != 0 || !strings.Contains(r.stdout, "changed the password") {
		t.Fatalf("re-add: %+v", r)
	}
	if out := ok(t, "", append([]string{"est", "user", "list"}, on...)...); !strings.Contains(out, "fleet-1") {
		t.Fatalf("list: %s", out)
	}
	// The data dir's file is another store.
	if out := ok(t, "", "est", "user", "list", "--data-dir", data); strings.Contains(out, "fleet-1") {
		t.Fatalf("the shared user shows in the data dir: %s", out)
	}
	ok(t, "", append([]string{"est", "user", "remove", "fleet-1"}, on...)...)
	fails(t, "", `no EST user "fleet-1"`, append([]string{"est", "user", "remove", "fleet-1"}, on...)...)

	var k struct{ KID, HMAC string }
	if err := json.Unmarshal([]byte(ok(t, "", append([]string{"acme", "eab", "add", "--kid", "team-a", "--json"}, on...)...)), &k); err != nil || k.KID != "team-a" || k.HMAC == "" {
		t.Fatalf("eab add: %v %+v", err, k)
	}
	fails(t, "", "already exists", append([]string{"acme", "eab", "add", "--kid", "team-a"}, on...)...)
	if out := ok(t, "", append([]string{"acme", "eab", "list"}, on...)...); !strings.Contains(out, "team-a") || strings.Contains(out, k.HMAC) {
		t.Fatalf("eab list: %s", out)
	}
	ok(t, "", append([]string{"acme", "eab", "remove", "team-a"}, on...)...)
	fails(t, "", "unknown external account key", append([]string{"acme", "eab", "remove", "team-a"}, on...)...)
}
