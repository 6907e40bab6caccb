package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/qpki/qpki/pkg/hsm"
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
	conf := filepath.Join(t.TempDir(), "nats.conf")
	os.WriteFile(conf, []byte(str(get(objs["ConfigMap/nats-config"], "data", "nats.conf"))), 0o644)
	t.Setenv("SERVER_NAME", "nats-0")
	opts := loadNATS(t, conf)
	for i, u := range opts.Routes {
		if want := "nats-" + string(rune('0'+i)) + ".nats.qpki.svc.cluster.local:6222"; u.Host != want {
			t.Errorf("route %d: %s, want %s", i, u.Host, want)
		}
	}
}

// loadNATS loads a NATS config with a fresh nkey in QPKI_NATS_NKEY and
// checks the cluster settings qpki relies on.
func loadNATS(t *testing.T, path string) *natsserver.Options {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	t.Setenv("QPKI_NATS_NKEY", pub)
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !opts.JetStream || opts.Cluster.Name != "qpki" || len(opts.Routes) != 3 || opts.Cluster.Port != 6222 || opts.Port != 4222 {
		t.Errorf("%s: jetstream %v, cluster %q, %d routes, ports %d/%d", path, opts.JetStream, opts.Cluster.Name, len(opts.Routes), opts.Port, opts.Cluster.Port)
	}
	if len(opts.Nkeys) != 1 || opts.Nkeys[0].Nkey != pub || len(opts.Users) != 0 {
		t.Errorf("%s: clients must sign in with the nkey from QPKI_NATS_NKEY", path)
	}
	if opts.MaxPayload < 1<<20 {
		t.Errorf("%s: max_payload %d is below qpki's 1 MiB messages", path, opts.MaxPayload)
	}
	return opts
}

func TestNATSClusterConfig(t *testing.T) {
	names := map[string]bool{}
	for _, n := range []string{"1", "2", "3"} {
		opts := loadNATS(t, "nats/nats-"+n+".conf")
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
	if str(get(doc, "secrets", "nats_nkey", "file")) != "./nats.nk" {
		t.Error("the nkey seed should be a compose secret")
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
		if name == "qpki-serve" {
			checkServeConfig(t, args["config"])
		}
	}
}

// checkServeConfig decodes systemd/serve.yaml, which serve.service names
// as /etc/qpki/<file>, as qpki serve --config does.
func checkServeConfig(t *testing.T, installed string) {
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
