package deploy_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

var qpkiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qpki-deploy-")
	if err != nil {
		panic(err)
	}
	qpkiBin = filepath.Join(dir, "qpki")
	if out, err := exec.Command("go", "build", "-o", qpkiBin, "../cmd/qpki").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// flagsOf lists the flags `qpki <sub> --help` shows.
func flagsOf(t *testing.T, sub string) map[string]bool {
	t.Helper()
	out, err := exec.Command(qpkiBin, sub, "--help").Output()
	if err != nil {
		t.Fatalf("qpki %s --help: %v", sub, err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["help"] || len(flags) < 5 {
		t.Fatalf("could not read the flags of qpki %s:\n%s", sub, out)
	}
	return flags
}

// checkArgs checks a qpki command line (subcommand first) against the
// subcommand's flags and returns the flags' values.
func checkArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("%s: no qpki command", where)
	}
	flags := flagsOf(t, args[0])
	vals := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: unexpected argument %q", where, a)
			continue
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			i++
			val = args[i]
		}
		if !flags[name] {
			t.Errorf("%s: qpki %s has no flag --%s", where, args[0], name)
		}
		vals[name] = val
	}
	return vals
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// get walks a decoded YAML tree: keys for maps, ints for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string { s, _ := v.(string); return s }

func strs(t *testing.T, v any) []string {
	t.Helper()
	l, _ := v.([]any)
	out := make([]string, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("not a string: %v", x)
		}
		out[i] = s
	}
	return out
}

func TestEveryYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			if len(yamlDocs(t, path)) == 0 {
				t.Errorf("%s: no document", path)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("only %d YAML files found", n)
	}
}

// k8sObjects reads the manifests kustomization.yaml lists, by kind/name.
func k8sObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	kust := yamlDocs(t, "k8s/kustomization.yaml")[0]
	objs := map[string]map[string]any{}
	files := strs(t, kust["resources"])
	all, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range all {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(files, b) {
			t.Errorf("%s is not listed in kustomization.yaml", f)
		}
	}
	for _, f := range files {
		for _, doc := range yamlDocs(t, filepath.Join("k8s", f)) {
			kind, name := str(doc["kind"]), str(get(doc, "metadata", "name"))
			if str(doc["apiVersion"]) == "" || kind == "" || name == "" {
				t.Errorf("%s: a document without apiVersion, kind or name", f)
			}
			if kind != "Namespace" && str(get(doc, "metadata", "namespace")) != "qpki" {
				t.Errorf("%s: %s/%s is not in namespace qpki", f, kind, name)
			}
			objs[kind+"/"+name] = doc
		}
	}
	return objs
}

// probe returns a container's probe as path, port and scheme.
func probe(c any, which string) (path, port, scheme string) {
	g := get(c, which, "httpGet")
	return str(get(g, "path")), str(get(g, "port")), str(get(g, "scheme"))
}

func containerPorts(c any) map[string]int {
	ports := map[string]int{}
	l, _ := get(c, "ports").([]any)
	for _, p := range l {
		n, _ := get(p, "containerPort").(int)
		ports[str(get(p, "name"))] = n
	}
	return ports
}

// checkPodVolumes checks that every mount names a volume of the pod.
func checkPodVolumes(t *testing.T, name string, spec any) {
	t.Helper()
	vols := map[string]bool{}
	l, _ := get(spec, "volumes").([]any)
	for _, v := range l {
		vols[str(get(v, "name"))] = true
	}
	for _, list := range []string{"containers", "initContainers"} {
		cs, _ := get(spec, list).([]any)
		for _, c := range cs {
			ms, _ := get(c, "volumeMounts").([]any)
			for _, m := range ms {
				if !vols[str(get(m, "name"))] {
					t.Errorf("%s: mount of unknown volume %q", name, str(get(m, "name")))
				}
			}
			if get(c, "securityContext", "allowPrivilegeEscalation") != false || get(c, "securityContext", "readOnlyRootFilesystem") != true {
				t.Errorf("%s: container %s is not locked down", name, str(get(c, "name")))
			}
		}
	}
	if get(spec, "securityContext", "runAsNonRoot") != true {
		t.Errorf("%s: pods may run as root", name)
	}
}

func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t)

	serve := objs["Deployment/qpki-serve"]
	if serve == nil {
		t.Fatal("no Deployment qpki-serve")
	}
	spec := get(serve, "spec", "template", "spec")
	checkPodVolumes(t, "qpki-serve", spec)
	c := get(spec, "containers", 0)
	args := checkArgs(t, "k8s qpki-serve", strs(t, get(c, "args")))
	if args["workers"] != "0" || !strings.Contains(args["listen"], ":8443") {
		t.Errorf("serve args %v", args)
	}
	ports := containerPorts(c)
	// Probes and scrapes go to the ops port, which the Service does not
	// expose (the status page lists subjects and serials).
	if !strings.HasSuffix(args["ops-listen"], ":9464") || ports["ops"] != 9464 {
		t.Errorf("serve ops listener %q, ports %v", args["ops-listen"], ports)
	}
	for probeName, want := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		path, port, scheme := probe(c, probeName)
		if path != want || scheme == "HTTPS" || ports[port] != 9464 {
			t.Errorf("qpki-serve %s: %s on %s (%s), want %s over HTTP on the ops port 9464", probeName, path, port, scheme, want)
		}
	}
	if p := str(get(serve, "spec", "template", "metadata", "annotations", "prometheus.io/port")); p != "9464" {
		t.Errorf("qpki-serve is scraped on port %q, want the ops port 9464", p)
	}
	svc := objs["Service/qpki"]
	svcPorts, _ := get(svc, "spec", "ports").([]any)
	for _, p := range svcPorts {
		if tp := get(p, "targetPort"); tp == "ops" || tp == 9464 {
			t.Errorf("Service qpki exposes the ops port: %v", p)
		}
	}
	if get(serve, "spec", "replicas") != 1 || get(serve, "spec", "strategy", "type") != "Recreate" {
		t.Error("qpki-serve must be one replica, replaced not rolled (one writer of the store)")
	}

	worker := objs["Deployment/qpki-worker"]
	if worker == nil {
		t.Fatal("no Deployment qpki-worker")
	}
	spec = get(worker, "spec", "template", "spec")
	checkPodVolumes(t, "qpki-worker", spec)
	c = get(spec, "containers", 0)
	args = checkArgs(t, "k8s qpki-worker", strs(t, get(c, "args")))
	ports = containerPorts(c)
	if !strings.HasSuffix(args["ops-listen"], ":9464") || ports["ops"] != 9464 {
		t.Errorf("worker ops listener %q, port %v", args["ops-listen"], ports)
	}
	for probeName, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if path, port, _ := probe(c, probeName); path != want || port != "ops" {
			t.Errorf("qpki-worker %s: %s on %s", probeName, path, port)
		}
	}
	// The PIN comes from a Secret, into the variable the HSM config names.
	hsmCM := objs["ConfigMap/qpki-hsm"]
	cfg, err := hsm.ParseConfig([]byte(str(get(hsmCM, "data", "hsm.yaml"))))
	if err != nil {
		t.Fatalf("ConfigMap qpki-hsm: %v", err)
	}
	if !strings.HasPrefix(args["hsm-config"], "/etc/qpki/hsm/") {
		t.Errorf("worker --hsm-config %q is not the ConfigMap's mount", args["hsm-config"])
	}
	var pinFromSecret bool
	envs, _ := get(c, "env").([]any)
	for _, e := range envs {
		if str(get(e, "name")) == cfg.PKCS11.PINEnv {
			pinFromSecret = get(e, "value") == nil && str(get(e, "valueFrom", "secretKeyRef", "name")) != ""
		}
	}
	if !pinFromSecret {
		t.Errorf("the worker's %s does not come from a Secret", cfg.PKCS11.PINEnv)
	}

	nats := objs["StatefulSet/nats"]
	if get(nats, "spec", "replicas") != 3 || str(get(nats, "spec", "serviceName")) != "nats" {
		t.Errorf("nats StatefulSet: replicas %v, service %v", get(nats, "spec", "replicas"), get(nats, "spec", "serviceName"))
	}
	// The ConfigMap's files, loaded as the pods load them (the route TLS
	// Secret mounted at /etc/nats/tls).
	cm := objs["ConfigMap/nats-config"]
	users, err := os.ReadFile("nats/users.conf")
	if err != nil {
		t.Fatal(err)
	}
	if str(get(cm, "data", "users.conf")) != string(users) {
		t.Error("ConfigMap nats-config's users.conf is not nats/users.conf")
	}
	confDir := t.TempDir()
	for _, f := range []string{"nats.conf", "users.conf"} {
		os.WriteFile(filepath.Join(confDir, f), []byte(str(get(cm, "data", f))), 0o644)
	}
	t.Setenv("SERVER_NAME", "nats-0")
	opts := loadNATS(t, confDir, "nats.conf", map[string]string{"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"})
	for i, u := range opts.Routes {
		if want := "nats-" + string(rune('0'+i)) + ".nats.qpki.svc.cluster.local:6222"; u.Host != want {
			t.Errorf("route %d: %s, want %s", i, u.Host, want)
		}
	}
	// Monitoring listens on the pod network (the kubelet probes it), so
	// the NetworkPolicy must close it, and the routes, to everyone else.
	checkNetworkPolicies(t, objs, opts)

	// One credential per role: serve's seed is not in the workers' pods.
	serveNKey, workerNKey := secretOf(t, "qpki-serve", serve, "nats-nkey"), secretOf(t, "qpki-worker", worker, "nats-nkey")
	if serveNKey == "" || serveNKey == workerNKey {
		t.Errorf("serve and the workers share the NATS credential Secret %q", serveNKey)
	}
	var natsEnv []string
	envs, _ = get(nats, "spec", "template", "spec", "containers", 0, "env").([]any)
	for _, e := range envs {
		if n := str(get(e, "name")); strings.HasSuffix(n, "_NKEY") {
			natsEnv = append(natsEnv, n+"="+str(get(e, "valueFrom", "secretKeyRef", "key")))
		}
	}
	if !slices.Equal(natsEnv, []string{"QPKI_NATS_SERVE_NKEY=serve.pub", "QPKI_NATS_WORKER_NKEY=worker.pub"}) {
		t.Errorf("nats public keys from %v", natsEnv)
	}
}

// secretOf returns the Secret mounted where a Deployment's flag (a file
// path) points.
func secretOf(t *testing.T, name string, deploy map[string]any, flag string) string {
	t.Helper()
	spec := get(deploy, "spec", "template", "spec")
	c := get(spec, "containers", 0)
	path := checkArgs(t, name, strs(t, get(c, "args")))[flag]
	ms, _ := get(c, "volumeMounts").([]any)
	for _, m := range ms {
		if dir := str(get(m, "mountPath")); dir != "" && strings.HasPrefix(path, dir+"/") {
			vs, _ := get(spec, "volumes").([]any)
			for _, v := range vs {
				if str(get(v, "name")) == str(get(m, "name")) {
					return str(get(v, "secret", "secretName"))
				}
			}
		}
	}
	t.Errorf("%s: --%s %q is not on a mounted Secret", name, flag, path)
	return ""
}

// checkNetworkPolicies: a default-deny policy for the namespace, and the
// nats pods' ports open only to their clients: 4222 to the qpki pods,
// 6222 to the nats pods, 8222 (monitoring) to selected pods, never to all.
func checkNetworkPolicies(t *testing.T, objs map[string]map[string]any, opts *natsserver.Options) {
	t.Helper()
	deny := objs["NetworkPolicy/default-deny-ingress"]
	if sel, _ := get(deny, "spec", "podSelector").(map[string]any); deny == nil || len(sel) != 0 || get(deny, "spec", "ingress") != nil {
		t.Error("no default-deny ingress NetworkPolicy for the namespace")
	}
	np := objs["NetworkPolicy/nats"]
	if str(get(np, "spec", "podSelector", "matchLabels", "app.kubernetes.io/name")) != "nats" {
		t.Fatal("no NetworkPolicy for the nats pods")
	}
	from := map[int][]any{}
	rules, _ := get(np, "spec", "ingress").([]any)
	for _, r := range rules {
		peers, _ := get(r, "from").([]any)
		ports, _ := get(r, "ports").([]any)
		if len(peers) == 0 || len(ports) == 0 {
			t.Errorf("NetworkPolicy nats: a rule open to every peer or port: %v", r)
		}
		for _, p := range ports {
			n, _ := get(p, "port").(int)
			from[n] = append(from[n], peers...)
		}
	}
	for _, port := range []int{opts.Port, opts.Cluster.Port, opts.HTTPPort} {
		if len(from[port]) == 0 {
			t.Errorf("NetworkPolicy nats: port %d not restricted to named peers", port)
		}
		for _, p := range from[port] {
			if get(p, "ipBlock") != nil || get(p, "podSelector") == nil {
				t.Errorf("NetworkPolicy nats: port %d open to %v", port, p)
			}
		}
	}
	for _, p := range from[opts.Cluster.Port] {
		if str(get(p, "podSelector", "matchLabels", "app.kubernetes.io/name")) != "nats" || get(p, "namespaceSelector") != nil {
			t.Errorf("NetworkPolicy nats: routes open to %v, want the nats pods only", p)
		}
	}
}

// natsTLS writes a route CA and a certificate for the routes into dir,
// under the names a config expects (role → file name).
func natsTLS(t *testing.T, dir string, names map[string]string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "route CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"}, DNSNames: []string{"nats-1", "nats-2", "nats-3"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	files := map[string][]byte{
		"cert": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"ca":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
	for name, role := range names {
		if err := os.WriteFile(filepath.Join(dir, name), files[role], 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// loadNATS loads the NATS config file in dir as a server would, with a
// fresh nkey per role in the environment and route TLS files in place of
// /etc/nats/tls, and checks what qpki relies on: the cluster, one user per
// role with exactly that role's permissions (queue.Role), routes with
// verified TLS.
func loadNATS(t *testing.T, dir, file string, tlsNames map[string]string) *natsserver.Options {
	t.Helper()
	tlsDir := t.TempDir()
	natsTLS(t, tlsDir, tlsNames)
	// The config names /etc/nats/tls: a copy names tlsDir instead.
	work := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/etc/nats/tls/"), []byte(tlsDir+"/"))
		os.WriteFile(filepath.Join(work, e.Name()), data, 0o644)
	}
	path := filepath.Join(work, file)
	keys := map[queue.Role]string{}
	for role, env := range map[queue.Role]string{queue.RoleFrontend: "QPKI_NATS_SERVE_NKEY", queue.RoleWorker: "QPKI_NATS_WORKER_NKEY"} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		keys[role], _ = kp.PublicKey()
		t.Setenv(env, keys[role])
	}
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if !opts.JetStream || opts.Cluster.Name != "qpki" || len(opts.Routes) != 3 || opts.Cluster.Port != 6222 || opts.Port != 4222 {
		t.Errorf("%s: jetstream %v, cluster %q, %d routes, ports %d/%d", file, opts.JetStream, opts.Cluster.Name, len(opts.Routes), opts.Port, opts.Cluster.Port)
	}
	// One nkey per role, each with its role's permissions and no more.
	if len(opts.Nkeys) != 2 || len(opts.Users) != 0 || opts.NoAuthUser != "" {
		t.Errorf("%s: %d nkey users, %d other users: want the front-end's and the worker's nkeys only", file, len(opts.Nkeys), len(opts.Users))
	}
	for _, u := range opts.Nkeys {
		var role queue.Role
		for r, k := range keys {
			if u.Nkey == k {
				role = r
			}
		}
		if role == "" {
			t.Errorf("%s: nkey user %s is neither QPKI_NATS_SERVE_NKEY nor QPKI_NATS_WORKER_NKEY", file, u.Nkey)
			continue
		}
		checkPermissions(t, file+": "+string(role), u.Permissions, role.Permissions())
	}
	// Routes: TLS, and only peers with a certificate of the route CA.
	if tc := opts.Cluster.TLSConfig; tc == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("%s: cluster routes without verified TLS: anyone reaching %d joins the cluster", file, opts.Cluster.Port)
	}
	if opts.MaxPayload < 1<<20 {
		t.Errorf("%s: max_payload %d is below qpki's 1 MiB messages", file, opts.MaxPayload)
	}
	return opts
}

// checkPermissions compares a NATS user's permissions with a role's.
func checkPermissions(t *testing.T, who string, got *natsserver.Permissions, want queue.Permissions) {
	t.Helper()
	if got == nil || got.Publish == nil || got.Subscribe == nil {
		t.Errorf("%s: no publish or subscribe permissions: the user may do anything", who)
		return
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"publish allow", got.Publish.Allow, want.PublishAllow},
		{"publish deny", got.Publish.Deny, want.PublishDeny},
		{"subscribe allow", got.Subscribe.Allow, want.SubscribeAllow},
		{"subscribe deny", got.Subscribe.Deny, nil},
	} {
		g, w := slices.Sorted(slices.Values(c.got)), slices.Sorted(slices.Values(c.want))
		if !slices.Equal(g, w) {
			t.Errorf("%s: %s %v, want %v (queue.Role.Permissions)", who, c.what, g, w)
		}
	}
}

func TestNATSClusterConfig(t *testing.T) {
	names := map[string]bool{}
	for _, n := range []string{"1", "2", "3"} {
		opts := loadNATS(t, "nats", "nats-"+n+".conf", map[string]string{"route.crt": "cert", "route.key": "key", "route-ca.crt": "ca"})
		if opts.HTTPHost != "127.0.0.1" || opts.HTTPPort != 8222 {
			t.Errorf("nats-%s.conf: monitoring on %s:%d, want 127.0.0.1:8222 only", n, opts.HTTPHost, opts.HTTPPort)
		}
		if opts.ServerName != "nats-"+n {
			t.Errorf("nats-%s.conf names its server %q", n, opts.ServerName)
		}
		names[opts.ServerName] = true
		if opts.JetStreamMaxStore <= 0 || opts.StoreDir == "" {
			t.Errorf("nats-%s.conf: JetStream store %q, max %d", n, opts.StoreDir, opts.JetStreamMaxStore)
		}
	}
	if len(names) != 3 {
		t.Errorf("server names %v", names)
	}
}

func TestCompose(t *testing.T) {
	doc := yamlDocs(t, "compose/compose.yaml")[0]
	services, _ := doc["services"].(map[string]any)
	for _, n := range []string{"1", "2", "3"} {
		svc := services["nats-"+n]
		cmd := strs(t, get(svc, "command"))
		if len(cmd) != 2 || cmd[1] != "/etc/nats/nats-"+n+".conf" {
			t.Errorf("nats-%s command %v", n, cmd)
		}
		if _, err := os.Stat(filepath.Join("nats", "nats-"+n+".conf")); err != nil {
			t.Error(err)
		}
	}
	serve := checkArgs(t, "compose serve", strs(t, get(services["serve"], "command")))
	if serve["workers"] != "0" || strings.Count(serve["nats-url"], "nats://") != 3 {
		t.Errorf("compose serve %v", serve)
	}
	worker := checkArgs(t, "compose worker", strs(t, get(services["worker"], "command")))
	if strings.Count(worker["nats-url"], "nats://") != 3 || worker["ops-listen"] == "" {
		t.Errorf("compose worker %v", worker)
	}
	if get(services["worker"], "deploy", "replicas") != 2 {
		t.Error("compose should run two workers")
	}
	for _, probe := range []struct{ svc, path string }{{"serve", "127.0.0.1:9464/readyz"}, {"worker", "127.0.0.1:9464/readyz"}} {
		if test := strings.Join(strs(t, get(services[probe.svc], "healthcheck", "test")), " "); !strings.Contains(test, probe.path) {
			t.Errorf("compose %s healthcheck %q", probe.svc, test)
		}
	}
	// One nkey seed per role, each a compose secret of its role only.
	if str(get(doc, "secrets", "nats_serve_nkey", "file")) != "./serve.nk" || str(get(doc, "secrets", "nats_worker_nkey", "file")) != "./worker.nk" {
		t.Error("the nkey seeds should be compose secrets, one per role")
	}
	if s := strs(t, get(services["serve"], "secrets")); !slices.Equal(s, []string{"nats_serve_nkey"}) || serve["nats-nkey"] != "/run/secrets/nats_serve_nkey" {
		t.Errorf("compose serve NATS credential: secrets %v, --nats-nkey %q", s, serve["nats-nkey"])
	}
	if s := strs(t, get(services["worker"], "secrets")); !slices.Equal(s, []string{"nats_worker_nkey"}) || worker["nats-nkey"] != "/run/secrets/nats_worker_nkey" {
		t.Errorf("compose worker NATS credential: secrets %v, --nats-nkey %q", s, worker["nats-nkey"])
	}
	dockerfile, err := os.ReadFile("compose/Dockerfile")
	if err != nil || !bytes.Contains(dockerfile, []byte("./cmd/qpki")) || !bytes.Contains(dockerfile, []byte(`ENTRYPOINT ["qpki"]`)) {
		t.Errorf("compose/Dockerfile does not build qpki: %v", err)
	}
}

// unit is a systemd unit file: section → key → values, continuation
// lines joined.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section, pending := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := pending + strings.TrimSpace(sc.Text())
		pending = ""
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestSystemdUnits(t *testing.T) {
	hardening := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
		"CapabilityBoundingSet": "", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "User": "qpki",
	}
	nkeys := map[string]string{}
	for _, name := range []string{"qpki-serve", "qpki-worker"} {
		u := readUnit(t, "systemd/"+name+".service")
		svc := u["Service"]
		for k, want := range hardening {
			if v := svc[k]; len(v) != 1 || v[0] != want {
				t.Errorf("%s: %s=%v, want %q", name, k, v, want)
			}
		}
		if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
			t.Errorf("%s: no SystemCallFilter=@system-service", name)
		}
		for _, env := range svc["Environment"] {
			if strings.Contains(strings.ToUpper(env), "PIN") || strings.Contains(strings.ToUpper(env), "PASSPHRASE") {
				t.Errorf("%s: a secret in the unit: %s", name, env)
			}
		}
		if len(svc["EnvironmentFile"]) != 1 {
			t.Errorf("%s: the PIN should come from an EnvironmentFile", name)
		}
		exec := strings.Fields(svc["ExecStart"][0])
		if exec[0] != "/usr/local/bin/qpki" {
			t.Fatalf("%s: ExecStart %v", name, exec)
		}
		args := checkArgs(t, name+".service", exec[1:])
		nkeys[name] = args["nats-nkey"]
		if name == "qpki-serve" {
			nkeys[name] = checkServeConfig(t, args["config"]).NATSNKey
		}
	}
	// One NATS user per role: a worker machine never holds serve's seed.
	if nkeys["qpki-worker"] == "" || nkeys["qpki-serve"] == nkeys["qpki-worker"] {
		t.Errorf("serve and worker sign in to NATS with the same nkey seed %q", nkeys["qpki-serve"])
	}
}

// checkServeConfig decodes systemd/serve.yaml, which serve.service names
// as /etc/qpki/<file>, as qpki serve --config does.
func checkServeConfig(t *testing.T, installed string) server.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("systemd", filepath.Base(installed)))
	if err != nil {
		t.Fatal(err)
	}
	var cfg server.Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", installed, err)
	}
	if cfg.Workers != 0 || strings.Count(cfg.NATSURL, "nats://") != 3 || cfg.NATSNKey == "" || cfg.CADir == "" {
		t.Errorf("serve.yaml: %+v", cfg)
	}
	return cfg
}

// TestSystemdVerify runs systemd-analyze verify on the units, with
// ExecStart pointing at the qpki just built.
func TestSystemdVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the units' keys are checked by TestSystemdUnits")
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"qpki-serve.service", "qpki-worker.service"} {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		os.WriteFile(path, bytes.ReplaceAll(data, []byte("/usr/local/bin/qpki"), []byte(qpkiBin)), 0o644)
		units = append(units, path)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
