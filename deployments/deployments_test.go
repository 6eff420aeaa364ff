// Package deployments holds no code: it tests that the deployment files in this directory
// parse with the tools that will read them and say what the rest of the repository expects.
// The NATS configurations are loaded with nats-server's own parser and booted as a real
// 3-node cluster on loopback.
package deployments

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revocast/revocast/events"
	"github.com/revocast/revocast/events/eventstest"
)

// natsConfigs are the node files of the cluster, in order.
var natsConfigs = []string{"nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"}

// passwords sets the environment the NATS configurations read their passwords from.
func passwords(t *testing.T) map[string]string {
	t.Helper()
	pw := map[string]string{
		"broadcaster": "test-broadcaster-pw",
		"resource":    "test-resource-pw",
		"auditor":     "test-auditor-pw",
		"system":      "test-system-pw",
	}
	t.Setenv("REVOCAST_BROADCASTER_PASSWORD", pw["broadcaster"])
	t.Setenv("REVOCAST_RESOURCE_PASSWORD", pw["resource"])
	t.Setenv("REVOCAST_AUDITOR_PASSWORD", pw["auditor"])
	t.Setenv("NATS_SYSTEM_PASSWORD", pw["system"])
	return pw
}

func TestNATSConfigsParse(t *testing.T) {
	passwords(t)
	names := map[string]bool{}
	for _, path := range natsConfigs {
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o.ServerName == "" || names[o.ServerName] {
			t.Errorf("%s: server_name %q is empty or not unique", path, o.ServerName)
		}
		names[o.ServerName] = true
		if o.Cluster.Name != "revocast" || o.Cluster.Port != 6222 || o.Port != 4222 || o.HTTPPort != 8222 {
			t.Errorf("%s: cluster %q port %d, client port %d, monitor port %d", path, o.Cluster.Name, o.Cluster.Port, o.Port, o.HTTPPort)
		}
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want %v", path, routes, want)
		}
		if !o.JetStream || !o.SyncAlways || o.StoreDir != "/data/jetstream" {
			t.Errorf("%s: jetstream %v, sync always %v, store %q", path, o.JetStream, o.SyncAlways, o.StoreDir)
		}
		if o.LameDuckDuration != 30*time.Second {
			t.Errorf("%s: lame_duck_duration %s, want 30s", path, o.LameDuckDuration)
		}
		if o.SystemAccount != "SYS" {
			t.Errorf("%s: system_account %q", path, o.SystemAccount)
		}
		users := map[string]string{}
		for _, u := range o.Users {
			users[u.Username] = u.Account.Name
			if u.Password == "" || strings.HasPrefix(u.Password, "$") {
				t.Errorf("%s: user %s password not taken from the environment: %q", path, u.Username, u.Password)
			}
		}
		want := map[string]string{"broadcaster": "REVOCAST", "resource": "REVOCAST", "auditor": "REVOCAST", "system": "SYS"}
		if !mapsEqual(users, want) {
			t.Errorf("%s: users %v, want %v", path, users, want)
		}
	}

	t.Run("ErrMissingPassword", func(t *testing.T) {
		os.Unsetenv("REVOCAST_RESOURCE_PASSWORD") // restored by t.Setenv's cleanup
		if _, err := server.ProcessConfigFile(natsConfigs[0]); err == nil {
			t.Fatal("configuration loaded without REVOCAST_RESOURCE_PASSWORD")
		}
	})
	t.Run("BcryptHashFromEnvironment", func(t *testing.T) {
		const hash = "$2a$11$qbtrnb0mSG2eV55xoyPqHOZx/lLBlryHRhU3LK2oOPFRwGF/5rtGK"
		t.Setenv("REVOCAST_RESOURCE_PASSWORD", `"`+hash+`"`)
		o, err := server.ProcessConfigFile(natsConfigs[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range o.Users {
			if u.Username == "resource" && u.Password != hash {
				t.Fatalf("password = %q, want the hash", u.Password)
			}
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestNATSConfigsBoot starts the three node files as a cluster and checks that each role
// connects with its password and nothing else does.
func TestNATSConfigsBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	pw := passwords(t)
	c := eventstest.RunCluster(t, eventstest.WithConfigFiles(natsConfigs...))
	for i, n := range c.Nodes {
		if want := natsConfigs[i][len("nats/") : len(natsConfigs[i])-len(".conf")]; n.Name() != want {
			t.Errorf("node %d is named %q, want %q", i, n.Name(), want)
		}
	}
	for _, user := range []string{"broadcaster", "resource", "auditor"} {
		nc, err := nats.Connect(c.Nodes[0].UserURL(user, pw[user]))
		if err != nil {
			t.Fatalf("%s cannot connect: %v", user, err)
		}
		if nc.ConnectedClusterName() != "revocast" {
			t.Errorf("%s: cluster name %q", user, nc.ConnectedClusterName())
		}
		nc.Close()
	}
	if nc, err := nats.Connect(c.Nodes[1].UserURL("resource", "wrong")); err == nil {
		nc.Close()
		t.Fatal("a wrong password was accepted")
	}
	if nc, err := nats.Connect(c.Nodes[1].URL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was accepted")
	}

	// The broadcaster creates a replicated stream; the resource user can read it but not
	// publish to it. (services/revocastd tests every role against revocastd's own setup.)
	// The broadcaster receives replies on its own inbox prefix, as revocastd does.
	bc, err := nats.Connect(c.UserURLs("broadcaster", pw["broadcaster"]), nats.CustomInboxPrefix("_INBOX_revocast"))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	js, err := jetstream.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamName,
		Subjects: []string{events.StreamSubjects}, Storage: jetstream.FileStorage, Replicas: 3,
		DenyDelete: true, DenyPurge: true})
	if err != nil {
		t.Fatalf("broadcaster creates the stream: %v", err)
	}
	ev, _ := events.NewUserReset(7, time.Now(), "deployments-test")
	eventstest.Publish(t, js, ev)
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream info %+v, %v: want 3 replicas", info, err)
	}

	errs := make(chan error, 10)
	rc, err := nats.Connect(c.Nodes[2].UserURL("resource", pw["resource"]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Publish(ev.Subject(), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("publish error %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the resource user published a revocation without a permissions violation")
	}
	rjs, err := jetstream.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	rst, err := rjs.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("resource user: stream info: %v", err)
	}
	m, err := rst.GetLastMsgForSubject(ctx, ev.Subject())
	if err != nil {
		t.Fatalf("resource user: read the last event: %v", err)
	}
	if got, err := events.Decode(m.Data); err != nil || got.ID != ev.ID {
		t.Fatalf("resource user read %v, %v; want event %s", got, err, ev.ID)
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("stream has %d messages, want 1", info.State.Msgs)
	}
}

// permissions is the shape of a user's permissions in the Helm values.
type permissions struct {
	Publish struct {
		Allow []string `yaml:"allow"`
		Deny  []string `yaml:"deny"`
	} `yaml:"publish"`
	Subscribe struct {
		Allow []string `yaml:"allow"`
	} `yaml:"subscribe"`
}

type helmValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `yaml:"enabled"`
			Replicas int  `yaml:"replicas"`
		} `yaml:"cluster"`
		JetStream struct {
			Enabled   bool `yaml:"enabled"`
			FileStore struct {
				Enabled bool `yaml:"enabled"`
				PVC     struct {
					Enabled bool   `yaml:"enabled"`
					Size    string `yaml:"size"`
				} `yaml:"pvc"`
			} `yaml:"fileStore"`
			Merge map[string]any `yaml:"merge"`
		} `yaml:"jetstream"`
		Merge struct {
			SystemAccount       string `yaml:"system_account"`
			LameDuckDuration    string `yaml:"lame_duck_duration"`
			LameDuckGracePeriod string `yaml:"lame_duck_grace_period"`
			PidFile             string `yaml:"pid_file"`
			Accounts            map[string]struct {
				JetStream string `yaml:"jetstream"`
				Users     []struct {
					User        string      `yaml:"user"`
					Password    string      `yaml:"password"`
					Permissions permissions `yaml:"permissions"`
				} `yaml:"users"`
			} `yaml:"accounts"`
		} `yaml:"merge"`
	} `yaml:"config"`
	Container struct {
		Merge struct {
			Lifecycle struct {
				PreStop struct {
					Exec struct {
						Command []string `yaml:"command"`
					} `yaml:"exec"`
				} `yaml:"preStop"`
			} `yaml:"lifecycle"`
		} `yaml:"merge"`
		Env map[string]struct {
			ValueFrom struct {
				SecretKeyRef struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
	} `yaml:"container"`
	PodTemplate struct {
		Merge struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
			} `yaml:"spec"`
		} `yaml:"merge"`
	} `yaml:"podTemplate"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestHelmValues checks the chart values describe the same cluster, accounts and
// permissions as the configuration files the cluster tests boot.
func TestHelmValues(t *testing.T) {
	passwords(t)
	var v helmValues
	readYAML(t, "k8s/nats-values.yaml", &v)
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster enabled %v replicas %d, want a 3-node cluster", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled || c.JetStream.FileStore.PVC.Size == "" {
		t.Errorf("jetstream %+v: want JetStream with a file store on a PVC", c.JetStream)
	}
	if c.JetStream.Merge["sync_interval"] != "always" {
		t.Errorf("jetstream sync_interval %v, want always (as the node files)", c.JetStream.Merge["sync_interval"])
	}
	o, err := server.ProcessConfigFile(natsConfigs[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Merge.SystemAccount != o.SystemAccount {
		t.Errorf("system_account %q, node files say %q", c.Merge.SystemAccount, o.SystemAccount)
	}
	envVar := regexp.MustCompile(`^<< \$([A-Z_]+) >>$`)
	seen := 0
	for _, u := range o.Users {
		acc, ok := c.Merge.Accounts[u.Account.Name]
		if !ok {
			t.Errorf("account %s missing from the Helm values", u.Account.Name)
			continue
		}
		for _, hu := range acc.Users {
			if hu.User != u.Username {
				continue
			}
			seen++
			m := envVar.FindStringSubmatch(hu.Password)
			if m == nil || v.Container.Env[m[1]].ValueFrom.SecretKeyRef.Name == "" {
				t.Errorf("user %s: password %q must be an environment reference set from a Secret", hu.User, hu.Password)
			}
			var want permissions
			if p := u.Permissions; p != nil {
				if p.Publish != nil {
					want.Publish.Allow, want.Publish.Deny = p.Publish.Allow, p.Publish.Deny
				}
				if p.Subscribe != nil {
					want.Subscribe.Allow = p.Subscribe.Allow
				}
			}
			got := hu.Permissions
			if !slices.Equal(got.Publish.Allow, want.Publish.Allow) || !slices.Equal(got.Publish.Deny, want.Publish.Deny) ||
				!slices.Equal(got.Subscribe.Allow, want.Subscribe.Allow) {
				t.Errorf("user %s: Helm permissions differ from accounts.conf:\n got %+v\nwant %+v", u.Username, got, want)
			}
		}
	}
	if seen != len(o.Users) {
		t.Errorf("Helm values have %d of the %d users of accounts.conf", seen, len(o.Users))
	}
	if acc := c.Merge.Accounts["REVOCAST"]; acc.JetStream != "enabled" {
		t.Errorf("account REVOCAST jetstream %q, want enabled", acc.JetStream)
	}

	// Kubernetes stops a pod with SIGTERM, on which nats-server exits at once: the preStop
	// hook must put the node in lame duck mode, and the pod must get the time to finish it.
	if d, err := time.ParseDuration(c.Merge.LameDuckDuration); err != nil || d != o.LameDuckDuration {
		t.Errorf("lame_duck_duration %q, node files say %s", c.Merge.LameDuckDuration, o.LameDuckDuration)
	}
	if g, err := time.ParseDuration(c.Merge.LameDuckGracePeriod); err != nil || g != o.LameDuckGracePeriod {
		t.Errorf("lame_duck_grace_period %q, node files say %s", c.Merge.LameDuckGracePeriod, o.LameDuckGracePeriod)
	}
	cmd := v.Container.Merge.Lifecycle.PreStop.Exec.Command
	if c.Merge.PidFile == "" || !slices.Equal(cmd, []string{"nats-server", "--signal", "ldm=" + c.Merge.PidFile}) {
		t.Errorf("preStop %q with pid_file %q, want nats-server --signal ldm=<pid_file>", cmd, c.Merge.PidFile)
	}
	if grace := time.Duration(v.PodTemplate.Merge.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= lameDuck(t) {
		t.Errorf("terminationGracePeriodSeconds %s, want longer than lame duck mode (%s)", grace, lameDuck(t))
	}
}

// revocastdEnv returns the environment variables revocastd reads, from its source.
func revocastdEnv(t *testing.T) map[string]bool {
	t.Helper()
	names := envNames(t, "revocastd")
	for _, want := range []string{"REVOCAST_HTTP_ADDR", "NATS_URL", "NATS_CREDS", "REVOCAST_REPLICAS"} {
		if !names[want] {
			t.Fatalf("revocastd no longer reads %s; update this test and the deployment files", want)
		}
	}
	return names
}

// envNames lists the environment variables a program under services/ reads.
func envNames(t *testing.T, program string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("../services/" + program + "/main.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`"((?:REVOCAST|RESOURCED|NATS)_[A-Z_]+)"`).FindAllSubmatch(src, -1) {
		names[string(m[1])] = true
	}
	return names
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

type composeFile struct {
	Services map[string]struct {
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Build   struct {
			Context    string            `yaml:"context"`
			Dockerfile string            `yaml:"dockerfile"`
			Args       map[string]string `yaml:"args"`
		} `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]any    `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		StopSignal      string `yaml:"stop_signal"`
		StopGracePeriod string `yaml:"stop_grace_period"`
	} `yaml:"services"`
}

// lameDuck is how long a node of the node files takes to leave in lame duck mode: the grace
// period before it moves clients, then the duration over which it moves them.
func lameDuck(t *testing.T) time.Duration {
	t.Helper()
	o, err := server.ProcessConfigFile(natsConfigs[0])
	if err != nil {
		t.Fatal(err)
	}
	if o.LameDuckDuration == 0 {
		t.Fatalf("%s: no lame_duck_duration", natsConfigs[0])
	}
	return o.LameDuckGracePeriod + o.LameDuckDuration
}

func TestCompose(t *testing.T) {
	passwords(t)
	var f composeFile
	readYAML(t, "compose/compose.yaml", &f)
	env := revocastdEnv(t)
	for _, conf := range natsConfigs {
		name := strings.TrimSuffix(filepath.Base(conf), ".conf")
		s, ok := f.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		if !strings.HasPrefix(s.Image, "nats:") {
			t.Errorf("%s: image %q, want the official nats image", name, s.Image)
		}
		if !slices.Contains(s.Volumes, "../nats/"+filepath.Base(conf)+":/etc/nats/nats.conf:ro") ||
			!slices.Contains(s.Volumes, "../nats/accounts.conf:/etc/nats/accounts.conf:ro") {
			t.Errorf("%s: volumes %v do not mount %s and accounts.conf", name, s.Volumes, conf)
		}
		for _, v := range []string{"REVOCAST_BROADCASTER_PASSWORD", "REVOCAST_RESOURCE_PASSWORD", "REVOCAST_AUDITOR_PASSWORD", "NATS_SYSTEM_PASSWORD"} {
			if s.Environment[v] == "" {
				t.Errorf("%s: %s not passed to nats-server", name, v)
			}
		}
		if len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s: no health check (revocastd waits for healthy nodes)", name)
		}
		// nats-server exits at once on SIGTERM (compose's default); SIGUSR2 is lame duck.
		if s.StopSignal != "SIGUSR2" {
			t.Errorf("%s: stop_signal %q, want SIGUSR2 (lame duck mode; SIGTERM stops nats-server at once)", name, s.StopSignal)
		}
		if grace, err := time.ParseDuration(s.StopGracePeriod); err != nil || grace <= lameDuck(t) {
			t.Errorf("%s: stop_grace_period %q (%v), want longer than lame duck mode (%s)", name, s.StopGracePeriod, err, lameDuck(t))
		}
	}
	for _, name := range []string{"revocastd-1", "revocastd-2", "resourced"} {
		s, ok := f.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		if s.Build.Dockerfile != "deployments/docker/Dockerfile" || s.Build.Context != "../.." {
			t.Errorf("%s: build %+v, want the repository root and deployments/docker/Dockerfile", name, s.Build)
		}
		if _, err := os.Stat(filepath.Join("compose", s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		pkg := s.Build.Args["PACKAGE"]
		if _, err := os.Stat(filepath.Join("compose", s.Build.Context, pkg, "main.go")); err != nil {
			t.Errorf("%s: PACKAGE %q: %v", name, pkg, err)
		}
		reads, addrVar := env, "REVOCAST_HTTP_ADDR"
		if name == "resourced" {
			reads, addrVar = envNames(t, "resourced"), "RESOURCED_HTTP_ADDR"
		}
		for k := range s.Environment {
			if !reads[k] {
				t.Errorf("%s: %s does not read %s", name, pkg, k)
			}
		}
		// The published port reaches the address the service listens on.
		listen := port(t, s.Environment[addrVar])
		if len(s.Ports) != 1 || !strings.HasSuffix(s.Ports[0], ":"+listen) {
			t.Errorf("%s: ports %v do not reach %s port %s", name, s.Ports, addrVar, listen)
		}
		urls := strings.Split(s.Environment["NATS_URL"], ",")
		user := "broadcaster"
		if name == "resourced" {
			user = "resource"
		}
		if len(urls) != 3 {
			t.Errorf("%s: NATS_URL lists %d nodes, want all 3", name, len(urls))
		}
		for i, u := range urls {
			want := "nats://" + user + ":${REVOCAST_" + strings.ToUpper(user) + "_PASSWORD}@nats-" + string(rune('1'+i)) + ":4222"
			if u != want {
				t.Errorf("%s: NATS_URL[%d] = %q, want %q", name, i, u, want)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM golang:1.26 AS build", "ARG PACKAGE=./services/revocastd", `go build`, `"$PACKAGE"`, "ENTRYPOINT"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if _, err := os.Stat("../services/revocast/main.go"); err != nil {
		t.Errorf("the CLI package the Dockerfile documents: %v", err)
	}
}

// k8sObject is what the tests read of a Kubernetes object (Deployment, Service, PDB).
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas     int `yaml:"replicas"`
		MinAvailable int `yaml:"minAvailable"`
		Selector     struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []struct {
					Name  string `yaml:"name"`
					Image string `yaml:"image"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					Env []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom *struct {
							SecretKeyRef struct {
								Name string `yaml:"name"`
								Key  string `yaml:"key"`
							} `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
					ReadinessProbe probe `yaml:"readinessProbe"`
					LivenessProbe  probe `yaml:"livenessProbe"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

func TestK8sManifests(t *testing.T) {
	b, err := os.ReadFile("k8s/revocastd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		objs[o.Kind] = o
	}
	env := revocastdEnv(t)
	d, ok := objs["Deployment"]
	if !ok || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("no Deployment with one container in %v", objs)
	}
	if d.Spec.Replicas < 2 {
		t.Errorf("Deployment replicas %d, want at least 2", d.Spec.Replicas)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	if ctr.ReadinessProbe.HTTPGet.Path != "/readyz" || ctr.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %q liveness %q, want /readyz and /healthz", ctr.ReadinessProbe.HTTPGet.Path, ctr.LivenessProbe.HTTPGet.Path)
	}
	vars := map[string]bool{}
	var listen string
	for _, e := range ctr.Env {
		vars[e.Name] = true
		if !env[e.Name] {
			t.Errorf("env %s: revocastd does not read it", e.Name)
		}
		switch e.Name {
		case "REVOCAST_HTTP_ADDR":
			listen = port(t, e.Value)
		case "NATS_URL":
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.Value != "" {
				t.Errorf("NATS_URL must come from a Secret (it carries the password)")
			}
		}
	}
	if !vars["NATS_URL"] || listen == "" {
		t.Fatalf("Deployment env %v lacks NATS_URL or REVOCAST_HTTP_ADDR", vars)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "http" || listen != strconv.Itoa(ctr.Ports[0].ContainerPort) {
		t.Errorf("container ports %+v, want http on REVOCAST_HTTP_ADDR's port %s", ctr.Ports, listen)
	}
	if ctr.ReadinessProbe.HTTPGet.Port != "http" || ctr.LivenessProbe.HTTPGet.Port != "http" {
		t.Errorf("probes do not use the http port")
	}
	labels := d.Spec.Template.Metadata.Labels
	for _, kind := range []string{"Service", "PodDisruptionBudget"} {
		o, ok := objs[kind]
		if !ok {
			t.Errorf("no %s", kind)
			continue
		}
		sel := o.Spec.Selector.MatchLabels
		if kind == "Service" {
			// A Service's selector is a plain map; read it again in that shape.
			sel = serviceSelector(t, b)
		}
		if len(sel) == 0 {
			t.Errorf("%s has no selector", kind)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selector %s=%s does not match the pods %v", kind, k, v, labels)
			}
		}
	}
	if s := objs["Service"]; len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort != "http" {
		t.Errorf("Service ports %+v, want one targeting http", s.Spec.Ports)
	}
	if p := objs["PodDisruptionBudget"]; p.Spec.MinAvailable < 1 || p.Spec.MinAvailable >= d.Spec.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %d with %d replicas", p.Spec.MinAvailable, d.Spec.Replicas)
	}
}

func serviceSelector(t *testing.T, b []byte) map[string]string {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Selector map[string]any `yaml:"selector"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("no Service: %v", err)
		}
		if o.Kind == "Service" {
			sel := map[string]string{}
			for k, v := range o.Spec.Selector {
				s, _ := v.(string)
				sel[k] = s
			}
			return sel
		}
	}
}
