package deployments

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/goccy/go-yaml"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The agent's default addresses, as the snippets use them.
const (
	agentAddr     = "127.0.0.1:8181" // REVOCAST_AGENT_ADDR
	agentGRPCAddr = "127.0.0.1:9191" // REVOCAST_AGENT_GRPC_ADDR (off unless set)
)

// identityHeaders are the headers the agent sets on an allowed request.
var identityHeaders = []string{"x-revocast-user", "x-revocast-app", "x-revocast-claims"}

// proxyFiles are the files under proxies/ and the test that reads each; a new file needs a test.
var proxyFiles = map[string]string{
	"proxies/nginx/revocast.conf":       "TestNginxSnippet",
	"proxies/Caddyfile":                 "TestCaddyfile",
	"proxies/traefik.yaml":              "TestTraefik",
	"proxies/envoy/envoy-http.yaml":     "TestEnvoy",
	"proxies/envoy/envoy-grpc.yaml":     "TestEnvoy",
	"proxies/istio/revocast-agent.yaml": "TestIstio",
}

func TestProxyFilesAreTested(t *testing.T) {
	err := filepath.WalkDir("proxies", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if _, ok := proxyFiles[filepath.ToSlash(path)]; !ok {
			t.Errorf("%s is read by no test: add it to proxyFiles and check it", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path := range proxyFiles {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("proxyFiles: %v", err)
		}
	}
}

// requireTool returns the path of a proxy binary, or skips the test when it is not
// installed, unless REVOCAST_REQUIRE_EXAMPLE_TOOLS=1 asks for every tool.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("REVOCAST_REQUIRE_EXAMPLE_TOOLS") == "1" {
			t.Fatalf("%s is not installed and REVOCAST_REQUIRE_EXAMPLE_TOOLS=1", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNginxSnippet(t *testing.T) {
	const path = "proxies/nginx/revocast.conf"
	conf := string(readFile(t, path))
	for _, want := range []string{
		"server " + agentAddr + ";",
		"auth_request /_revocast_auth;",
		"proxy_pass http://revocast_agent/auth;",
		"internal;",
		"proxy_pass_request_body off;",
		"add_header WWW-Authenticate $revocast_challenge always;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	// Each identity header is taken from the agent's answer and replaces the client's.
	for _, h := range identityHeaders {
		v := "$revocast_" + strings.TrimPrefix(h, "x-revocast-")
		if !strings.Contains(conf, "auth_request_set "+v+" ") || !regexp.MustCompile(`(?i)proxy_set_header\s+`+h+`\s+\`+v+`;`).MatchString(conf) {
			t.Errorf("%s: %s is not set from the agent's answer with proxy_set_header", path, h)
		}
	}

	nginx := requireTool(t, "nginx")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "revocast.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The snippet goes into conf.d/ of a stock nginx.conf; this one keeps every path in dir.
	main := `worker_processes 1;
pid ` + dir + `/nginx.pid;
error_log ` + dir + `/error.log;
events {}
http {
    access_log off;
    client_body_temp_path ` + dir + `/body;
    proxy_temp_path ` + dir + `/proxy;
    fastcgi_temp_path ` + dir + `/fastcgi;
    uwsgi_temp_path ` + dir + `/uwsgi;
    scgi_temp_path ` + dir + `/scgi;
    include ` + dir + `/revocast.conf;
}
`
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

func TestCaddyfile(t *testing.T) {
	const path = "proxies/Caddyfile"
	src := readFile(t, path)
	caddy := requireTool(t, "caddy")
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(copyPath, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddy, "adapt", "--config", copyPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, stderr.Bytes())
	}
	// The adapted JSON handlers, in order: the client's X-Revocast-* deleted, then the
	// forward_auth proxy to the agent's /auth, then the app.
	var handlers []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["handler"]; ok {
				handlers = append(handlers, v)
			}
			for _, k := range []string{"apps", "http", "servers", "srv0", "routes", "handle"} {
				if c, ok := v[k]; ok {
					walk(c)
				}
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("caddy adapt output: %v", err)
	}
	walk(cfg)
	var order []string
	for _, h := range handlers {
		b, _ := json.Marshal(h)
		s := string(b)
		switch {
		case strings.Contains(s, `"delete":["X-Revocast-*"]`) && h["handler"] == "headers":
			order = append(order, "delete")
		case h["handler"] == "reverse_proxy" && strings.Contains(s, `"dial":"`+agentAddr+`"`) && strings.Contains(s, `"uri":"/auth"`):
			order = append(order, "agent")
		case h["handler"] == "reverse_proxy":
			order = append(order, "app")
		}
	}
	if want := []string{"delete", "agent", "app"}; !slices.Equal(order, want) {
		t.Errorf("adapted handlers %v, want %v:\n%s", order, want, out)
	}
}

func TestTraefik(t *testing.T) {
	var cfg struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth struct {
					Address                  string   `yaml:"address"`
					AuthRequestHeaders       []string `yaml:"authRequestHeaders"`
					AuthResponseHeaders      []string `yaml:"authResponseHeaders"`
					AuthResponseHeadersRegex string   `yaml:"authResponseHeadersRegex"`
					TrustForwardHeader       bool     `yaml:"trustForwardHeader"`
				} `yaml:"forwardAuth"`
			} `yaml:"middlewares"`
			Routers map[string]struct {
				Middlewares []string `yaml:"middlewares"`
				Service     string   `yaml:"service"`
			} `yaml:"routers"`
			Services map[string]struct {
				LoadBalancer struct {
					Servers []struct {
						URL string `yaml:"url"`
					} `yaml:"servers"`
				} `yaml:"loadBalancer"`
			} `yaml:"services"`
		} `yaml:"http"`
	}
	readYAML(t, "proxies/traefik.yaml", &cfg)
	fa := cfg.HTTP.Middlewares["revocast"].ForwardAuth
	if fa.Address != "http://"+agentAddr+"/auth" {
		t.Errorf("forwardAuth address %q, want the agent's /auth", fa.Address)
	}
	if !slices.Contains(fa.AuthRequestHeaders, "Authorization") {
		t.Errorf("authRequestHeaders %v do not pass Authorization", fa.AuthRequestHeaders)
	}
	// Traefik deletes every request header the regex matches before copying the agent's:
	// it must match every X-Revocast-* name, as Traefik canonicalizes it, and nothing else.
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	if err != nil || fa.AuthResponseHeadersRegex == "" {
		t.Fatalf("authResponseHeadersRegex %q: %v", fa.AuthResponseHeadersRegex, err)
	}
	for _, h := range append(slices.Clone(identityHeaders), "x-revocast-role") {
		for _, name := range []string{h, canonical(h)} {
			if !re.MatchString(name) {
				t.Errorf("authResponseHeadersRegex does not match %s: a client-sent one would pass", name)
			}
		}
	}
	for _, h := range []string{"Authorization", "X-Request-Id", "Set-Cookie"} {
		if re.MatchString(h) {
			t.Errorf("authResponseHeadersRegex matches %s", h)
		}
	}
	if fa.TrustForwardHeader {
		t.Errorf("trustForwardHeader is on")
	}
	if len(cfg.HTTP.Routers) == 0 {
		t.Fatal("no router")
	}
	for name, r := range cfg.HTTP.Routers {
		if !slices.Contains(r.Middlewares, "revocast") {
			t.Errorf("router %s does not use the revocast middleware", name)
		}
		if _, ok := cfg.HTTP.Services[r.Service]; !ok {
			t.Errorf("router %s: no service %q", name, r.Service)
		}
	}
}

func canonical(h string) string {
	parts := strings.Split(h, "-")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "-")
}

// envoyBootstrap reads an Envoy YAML file into the real bootstrap proto and runs its
// validation rules, as Envoy would before starting.
func envoyBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	j, err := yaml.YAMLToJSON(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &b
}

func unmarshalAny(t *testing.T, a *anypb.Any, m proto.Message) {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("typed_config %s: %v", a.GetTypeUrl(), err)
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("typed_config %s: %v", a.GetTypeUrl(), err)
		}
	}
}

func TestEnvoy(t *testing.T) {
	for _, variant := range []string{"http", "grpc"} {
		t.Run(variant, func(t *testing.T) {
			b := envoyBootstrap(t, "proxies/envoy/envoy-"+variant+".yaml")
			clusters := map[string]*clusterv3.Cluster{}
			for _, c := range b.GetStaticResources().GetClusters() {
				clusters[c.GetName()] = c
			}
			ls := b.GetStaticResources().GetListeners()
			if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
				t.Fatalf("want one listener with one filter chain and one network filter")
			}
			var hcm hcmv3.HttpConnectionManager
			unmarshalAny(t, ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), &hcm)
			var names []string
			var authz extauthzv3.ExtAuthz
			var mutation headermutationv3.HeaderMutation
			for _, f := range hcm.GetHttpFilters() {
				names = append(names, f.GetName())
				switch f.GetName() {
				case "envoy.filters.http.ext_authz":
					unmarshalAny(t, f.GetTypedConfig(), &authz)
				case "envoy.filters.http.header_mutation":
					unmarshalAny(t, f.GetTypedConfig(), &mutation)
				case "envoy.filters.http.router":
					unmarshalAny(t, f.GetTypedConfig(), &routerv3.Router{})
				}
			}
			if want := []string{"envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}; !slices.Equal(names, want) {
				t.Fatalf("http filters %v, want %v", names, want)
			}
			var removed []string
			for _, m := range mutation.GetMutations().GetRequestMutations() {
				removed = append(removed, m.GetRemove())
			}
			if !slices.Equal(removed, identityHeaders) {
				t.Errorf("header_mutation removes %v before ext_authz, want %v", removed, identityHeaders)
			}
			if authz.GetTransportApiVersion().String() != "V3" || authz.GetFailureModeAllow() {
				t.Errorf("ext_authz transport_api_version %s, failure_mode_allow %v: want V3 and false",
					authz.GetTransportApiVersion(), authz.GetFailureModeAllow())
			}
			if authz.GetStatusOnError().GetCode() != typev3.StatusCode_ServiceUnavailable {
				t.Errorf("status_on_error %v, want 503", authz.GetStatusOnError())
			}
			switch variant {
			case "http":
				hs := authz.GetHttpService()
				if hs == nil || hs.GetPathPrefix() != "/auth" {
					t.Fatalf("http_service %v, want path_prefix /auth", hs)
				}
				wantPort(t, clusters[hs.GetServerUri().GetCluster()], agentAddr)
				var up []string
				for _, p := range hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
					up = append(up, p.GetExact())
				}
				if !slices.Equal(up, identityHeaders) {
					t.Errorf("allowed_upstream_headers %v, want %v", up, identityHeaders)
				}
				var client []string
				for _, p := range hs.GetAuthorizationResponse().GetAllowedClientHeaders().GetPatterns() {
					client = append(client, p.GetExact())
				}
				for _, h := range []string{"www-authenticate", "retry-after"} {
					if !slices.Contains(client, h) {
						t.Errorf("allowed_client_headers %v lack %s", client, h)
					}
				}
			case "grpc":
				gs := authz.GetGrpcService()
				if gs == nil || gs.GetEnvoyGrpc() == nil {
					t.Fatalf("grpc_service %v, want envoy_grpc", gs)
				}
				c := clusters[gs.GetEnvoyGrpc().GetClusterName()]
				wantPort(t, c, agentGRPCAddr)
				var opts upstreamhttpv3.HttpProtocolOptions
				a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
				if !ok {
					t.Fatalf("cluster %s has no HTTP/2 protocol options: gRPC needs them", c.GetName())
				}
				unmarshalAny(t, a, &opts)
				if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
					t.Errorf("cluster %s does not speak HTTP/2", c.GetName())
				}
			}
		})
	}
}

// wantPort checks that a static cluster sends to addr.
func wantPort(t *testing.T, c *clusterv3.Cluster, addr string) {
	t.Helper()
	if c == nil {
		t.Fatalf("no such cluster")
	}
	host, port, _ := net.SplitHostPort(addr)
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("cluster %s: want one endpoint", c.GetName())
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != host || strconv.Itoa(int(sa.GetPortValue())) != port {
		t.Errorf("cluster %s sends to %s:%d, want %s", c.GetName(), sa.GetAddress(), sa.GetPortValue(), addr)
	}
}

// istioDocs are the objects of the Istio file, in the fields the test reads.
type istioDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		MeshConfig struct {
			ExtensionProviders []struct {
				Name              string `yaml:"name"`
				EnvoyExtAuthzGrpc *struct {
					Service       string `yaml:"service"`
					Port          int    `yaml:"port"`
					Timeout       string `yaml:"timeout"`
					FailOpen      bool   `yaml:"failOpen"`
					StatusOnError string `yaml:"statusOnError"`
				} `yaml:"envoyExtAuthzGrpc"`
			} `yaml:"extensionProviders"`
		} `yaml:"meshConfig"`
		// ServiceEntry
		Hosts     []string `yaml:"hosts"`
		Endpoints []struct {
			Address string `yaml:"address"`
		} `yaml:"endpoints"`
		Ports []struct {
			Number   int    `yaml:"number"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
		Resolution string `yaml:"resolution"`
		// AuthorizationPolicy
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Action   string `yaml:"action"`
		Provider struct {
			Name string `yaml:"name"`
		} `yaml:"provider"`
		Rules []map[string]any `yaml:"rules"`
	} `yaml:"spec"`
}

func readDocs[T any](t *testing.T, path string) []T {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []T
	for {
		var d T
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

func TestIstio(t *testing.T) {
	kinds := map[string]istioDoc{}
	for _, d := range readDocs[istioDoc](t, "proxies/istio/revocast-agent.yaml") {
		kinds[d.Kind] = d
	}
	op, se, pol := kinds["IstioOperator"], kinds["ServiceEntry"], kinds["AuthorizationPolicy"]
	if len(op.Spec.MeshConfig.ExtensionProviders) != 1 || op.Spec.MeshConfig.ExtensionProviders[0].EnvoyExtAuthzGrpc == nil {
		t.Fatalf("IstioOperator: want one envoyExtAuthzGrpc extension provider")
	}
	p := op.Spec.MeshConfig.ExtensionProviders[0]
	g := p.EnvoyExtAuthzGrpc
	_, port, _ := net.SplitHostPort(agentGRPCAddr)
	if strconv.Itoa(g.Port) != port || g.FailOpen || g.StatusOnError != "503" {
		t.Errorf("provider %+v: want port %s, failOpen false, statusOnError 503", g, port)
	}
	if !slices.Contains(se.Spec.Hosts, g.Service) || len(se.Spec.Endpoints) != 1 || se.Spec.Endpoints[0].Address != "127.0.0.1" ||
		len(se.Spec.Ports) != 1 || se.Spec.Ports[0].Number != g.Port || se.Spec.Ports[0].Protocol != "GRPC" || se.Spec.Resolution != "STATIC" {
		t.Errorf("ServiceEntry %+v does not name the agent's loopback gRPC port as %s", se.Spec, g.Service)
	}
	if pol.Spec.Action != "CUSTOM" || pol.Spec.Provider.Name != p.Name || len(pol.Spec.Rules) == 0 {
		t.Errorf("AuthorizationPolicy action %q provider %q rules %v: want CUSTOM with provider %s", pol.Spec.Action, pol.Spec.Provider.Name, pol.Spec.Rules, p.Name)
	}
	if se.Metadata.Namespace != pol.Metadata.Namespace {
		t.Errorf("ServiceEntry in %q, policy in %q", se.Metadata.Namespace, pol.Metadata.Namespace)
	}
	// The policy selects the sample app of the sidecar manifest.
	app := sidecarDeployment(t)
	for k, v := range pol.Spec.Selector.MatchLabels {
		if app.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("AuthorizationPolicy selector %s=%s does not match the sample app %v", k, v, app.Spec.Template.Metadata.Labels)
		}
	}
}

// agentEnv is what revocast-agent reads: the variables the issue names, and once the agent
// exists, those its main.go reads.
func agentEnv(t *testing.T) (names map[string]bool, fromSource bool) {
	t.Helper()
	if _, err := os.Stat("../services/revocast-agent/main.go"); err == nil {
		return envNames(t, "revocast-agent"), true
	}
	return map[string]bool{"REVOCAST_AGENT_ADDR": true, "REVOCAST_AGENT_GRPC_ADDR": true, "NATS_URL": true, "NATS_CREDS": true}, false
}

func sidecarDeployment(t *testing.T) k8sObject {
	t.Helper()
	for _, o := range readDocs[k8sObject](t, "k8s/agent-sidecar.yaml") {
		if o.Kind == "Deployment" {
			return o
		}
	}
	t.Fatal("k8s/agent-sidecar.yaml: no Deployment")
	return k8sObject{}
}

func TestAgentSidecar(t *testing.T) {
	d := sidecarDeployment(t)
	env, fromSource := agentEnv(t)
	ports := map[string]int{} // container port name -> number, across the pod
	var agentPort, grpcPort, nginxMount string
	var sawAgent bool
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if c.Name == "nginx" {
			for _, m := range c.VolumeMounts {
				nginxMount = m.MountPath
			}
		}
		if c.Name != "revocast-agent" {
			continue
		}
		sawAgent = true
		vars := map[string]bool{}
		for _, e := range c.Env {
			vars[e.Name] = true
			if !env[e.Name] {
				t.Errorf("env %s: revocast-agent does not read it (from its source: %v)", e.Name, fromSource)
			}
			switch e.Name {
			case "REVOCAST_AGENT_ADDR":
				agentPort = port(t, e.Value)
			case "REVOCAST_AGENT_GRPC_ADDR":
				grpcPort = port(t, e.Value)
				if host, _, _ := net.SplitHostPort(e.Value); host != "127.0.0.1" {
					t.Errorf("REVOCAST_AGENT_GRPC_ADDR %q: the mesh sidecar reaches it on loopback", e.Value)
				}
			case "NATS_URL", "NATS_CREDS":
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.Value != "" {
					t.Errorf("%s must come from a Secret (it carries the resource user's password)", e.Name)
				}
			}
		}
		if !vars["NATS_URL"] || agentPort == "" {
			t.Fatalf("agent env %v lacks NATS_URL or REVOCAST_AGENT_ADDR", vars)
		}
		if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("agent probes: readiness %q liveness %q", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
		}
		if strconv.Itoa(ports[c.ReadinessProbe.HTTPGet.Port]) != agentPort {
			t.Errorf("agent readiness probe port %q is not REVOCAST_AGENT_ADDR's port %s", c.ReadinessProbe.HTTPGet.Port, agentPort)
		}
	}
	if !sawAgent {
		t.Fatal("no revocast-agent container")
	}
	if _, p, _ := net.SplitHostPort(agentAddr); agentPort != p {
		t.Errorf("the agent listens on port %s; the proxy snippets ask %s", agentPort, agentAddr)
	}
	if _, p, _ := net.SplitHostPort(agentGRPCAddr); grpcPort != p {
		t.Errorf("the agent's gRPC port %s; the Istio provider asks %s", grpcPort, agentGRPCAddr)
	}
	if nginxMount != "/etc/nginx/conf.d" {
		t.Errorf("nginx mounts its configuration at %q, want conf.d (the snippet holds http-level blocks)", nginxMount)
	}
	conf := string(readFile(t, "proxies/nginx/revocast.conf"))
	if m := regexp.MustCompile(`listen (\d+);`).FindStringSubmatch(conf); m == nil || strconv.Itoa(ports["http"]) != m[1] {
		t.Errorf("nginx container port http = %d, the snippet listens on %v", ports["http"], m)
	}
	// The Service reaches nginx only: the agent and the app are never reachable from outside.
	for _, o := range readDocs[k8sObject](t, "k8s/agent-sidecar.yaml") {
		if o.Kind != "Service" {
			continue
		}
		if len(o.Spec.Ports) != 1 || o.Spec.Ports[0].TargetPort != "http" {
			t.Errorf("Service ports %+v, want only nginx's http port", o.Spec.Ports)
		}
	}
	for k, v := range serviceSelector(t, readFile(t, "k8s/agent-sidecar.yaml")) {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pods %v", k, v, d.Spec.Template.Metadata.Labels)
		}
	}
}
