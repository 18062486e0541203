// Package deploy holds no Go code: its tests check the deployment files beside them (the systemd
// unit, the default configuration that `make install` lays out, the Dockerfile and the compose
// file) against the Makefile, the configuration schema and the binary they describe, so a file
// that drifts from the product fails `go test ./...` rather than a user's installation.
package deploy

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/x0a1b/promptmq/conf"
)

// repoRoot is where make runs: the Makefile's paths are relative to it.
const repoRoot = ".."

// needProgram skips a test when a program is missing, naming the Debian package that provides it,
// and fails instead under CI=true, where .ci/run installs it.
func needProgram(t *testing.T, program, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (Debian package %s); .ci/run installs it", program, debianPackage)
	}
	t.Skipf("%s is missing: install the Debian package %s", program, debianPackage)
	return ""
}

func runMake(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitDirectives reads a systemd unit as directive -> values (a directive may repeat).
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a directive: %q", path, line)
		}
		d[k] = append(d[k], v)
	}
	return d
}

func port(t *testing.T, hostPort string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The unit the issue asks for: hardened, notify-typed, reloadable, with room for max-connections.
func TestUnitDirectives(t *testing.T) {
	d := unitDirectives(t, "promptmqd.service")
	want := map[string]string{
		"Type":            "notify",
		"ExecStart":       "/usr/local/bin/promptmqd -c /etc/promptmq/promptmq.toml",
		"ExecReload":      "/bin/kill -HUP $MAINPID",
		"Restart":         "on-failure",
		"DynamicUser":     "yes",
		"StateDirectory":  "promptmq",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"WatchdogSec":     "30s",
		"NotifyAccess":    "main",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	defaults := conf.Default()
	limit, err := strconv.Atoi(d["LimitNOFILE"][0])
	if err != nil || limit <= defaults.MQTT.MaxConnections {
		t.Errorf("LimitNOFILE=%v must exceed mqtt.max-connections %d (one descriptor per client)", d["LimitNOFILE"], defaults.MQTT.MaxConnections)
	}
	// CAP_NET_BIND_SERVICE only if a default port needs it.
	privileged := port(t, defaults.Server.Bind) < 1024 || port(t, defaults.Metrics.Bind) < 1024
	for _, v := range d["AmbientCapabilities"] {
		if strings.Contains(v, "CAP_NET_BIND_SERVICE") && !privileged {
			t.Errorf("AmbientCapabilities=%s with no port below 1024", v)
		}
	}
	// The data directory of the installed configuration is the unit's StateDirectory.
	cfg, err := conf.Load("promptmq.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.DataDir != "/var/lib/"+d["StateDirectory"][0] {
		t.Errorf("promptmq.toml storage.data-dir %q is not the unit's StateDirectory /var/lib/%s", cfg.Storage.DataDir, d["StateDirectory"][0])
	}
}

// systemd-analyze verify is clean on the unit `make install` writes. The unit in the repository
// names /usr/local/bin/promptmqd, which verify requires to exist, so the install goes under a
// temporary PREFIX and the unit names the binary there (as a packager's PREFIX would).
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := needProgram(t, "systemd-analyze", "systemd")
	root := t.TempDir()
	runMake(t, nil, "install", "BIN="+filepath.Join(root, "build", "promptmqd"),
		"PREFIX="+filepath.Join(root, "usr"), "SYSCONFDIR="+filepath.Join(root, "etc"))
	unit := filepath.Join(root, "etc", "systemd", "system", "promptmqd.service")
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
	d := unitDirectives(t, unit)
	if want := filepath.Join(root, "usr", "bin", "promptmqd") + " -c " + filepath.Join(root, "etc", "promptmq", "promptmq.toml"); d["ExecStart"][0] != want {
		t.Errorf("installed ExecStart=%s, want %s", d["ExecStart"][0], want)
	}
}

// make install DESTDIR=... lays out the binary, the unit and the configuration; a second install
// keeps an edited configuration; make uninstall removes the first two and keeps the third.
func TestMakeInstall(t *testing.T) {
	destdir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "promptmqd")
	install := []string{"install", "DESTDIR=" + destdir, "BIN=" + bin}
	runMake(t, nil, install...)
	files := map[string]os.FileMode{
		"usr/local/bin/promptmqd":              0o755,
		"etc/systemd/system/promptmqd.service": 0o644,
		"etc/promptmq/promptmq.toml":           0o644,
	}
	for name, mode := range files {
		info, err := os.Stat(filepath.Join(destdir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(destdir, "etc/systemd/system/promptmqd.service"))
	original, _ := os.ReadFile("promptmqd.service")
	if string(unit) != string(original) {
		t.Error("with the default PREFIX and SYSCONFDIR the installed unit differs from deploy/promptmqd.service")
	}
	out, err := exec.Command(filepath.Join(destdir, "usr/local/bin/promptmqd"), "check-config", "-c",
		filepath.Join(destdir, "etc/promptmq/promptmq.toml")).CombinedOutput()
	if err != nil {
		t.Fatalf("the installed binary refuses the installed configuration: %v\n%s", err, out)
	}

	config := filepath.Join(destdir, "etc/promptmq/promptmq.toml")
	edited := "# edited by the operator\n[server]\nbind = \"127.0.0.1:1884\"\n"
	if err := os.WriteFile(config, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	if out := runMake(t, nil, install...); !strings.Contains(out, "keeping "+config) {
		t.Errorf("second install did not say it keeps the configuration:\n%s", out)
	}
	if got, _ := os.ReadFile(config); string(got) != edited {
		t.Fatalf("second install replaced the edited configuration with:\n%s", got)
	}

	runMake(t, nil, "uninstall", "DESTDIR="+destdir)
	for _, gone := range []string{"usr/local/bin/promptmqd", "etc/systemd/system/promptmqd.service"} {
		if _, err := os.Stat(filepath.Join(destdir, gone)); !os.IsNotExist(err) {
			t.Errorf("after uninstall %s: %v", gone, err)
		}
	}
	if got, _ := os.ReadFile(config); string(got) != edited {
		t.Error("uninstall removed the configuration")
	}
}

// instruction is one Dockerfile statement, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func dockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var pending strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(pending.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		pending.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func all(ins []instruction, cmd string) []string {
	var out []string
	for _, in := range ins {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// No container engine runs here, so the Dockerfile is checked statement by statement: its build
// step is run as written (through the Makefile's build target) and must give a static binary
// stamped like `make build`; what it copies is what it runs; the ports it exposes are the
// configuration's defaults and the flags of its CMD, which the binary accepts; the health check
// asks /health on the metrics port; the user is not root.
func TestDockerfile(t *testing.T) {
	ins := dockerfile(t)
	froms := all(ins, "FROM")
	if len(froms) != 2 {
		t.Fatalf("FROM statements %q: want a build stage and a runtime stage", froms)
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !strings.HasPrefix(froms[0], "golang:"+string(goVersion[1])+"-") || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("build stage %q is not golang:%s-... AS build (go.mod)", froms[0], goVersion[1])
	}

	// The build statement, run here as the image would run it.
	var build string
	for _, r := range all(ins, "RUN") {
		if strings.Contains(r, "make build") {
			build = r
		}
	}
	m := regexp.MustCompile(`^CGO_ENABLED=0 GOFLAGS=(\S+) make build BIN=(\S+) VERSION=\$\{VERSION\} COMMIT=\$\{COMMIT\}$`).FindStringSubmatch(build)
	if m == nil {
		t.Fatalf("build statement %q: want CGO_ENABLED=0 GOFLAGS=... make build BIN=... VERSION=${VERSION} COMMIT=${COMMIT}", build)
	}
	for _, arg := range []string{"VERSION", "COMMIT"} {
		if !slices.ContainsFunc(all(ins, "ARG"), func(a string) bool { return strings.HasPrefix(a, arg+"=") || a == arg }) {
			t.Errorf("no ARG %s for the build statement", arg)
		}
	}
	builtIn := m[2]
	bin := filepath.Join(t.TempDir(), "promptmqd")
	runMake(t, []string{"CGO_ENABLED=0", "GOFLAGS=" + m[1]}, "build", "BIN="+bin, "VERSION=v9.9.9-docker", "COMMIT=d0cce12")
	info, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, info)
	}
	for _, setting := range []string{"CGO_ENABLED=0", "-trimpath=true"} {
		if !strings.Contains(string(info), setting) {
			t.Errorf("the image's build statement gives a binary without %s:\n%s", setting, info)
		}
	}
	// -trimpath keeps -ldflags out of the build information; the binary says what it was stamped with.
	if version, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(version), "promptmqd v9.9.9-docker\ncommit d0cce12\n") {
		t.Errorf("promptmqd version from the image's build statement: %v\n%s", err, version)
	}
	// The Makefile's own build stamps the same two variables, so both binaries say the same.
	makeFlags := runMake(t, nil, "-n", "build", "BIN=x", "VERSION=v", "COMMIT=c")
	if !strings.Contains(makeFlags, "-ldflags '-X main.version=v -X main.commit=c'") || !strings.Contains(makeFlags, "./cmd/promptmqd") {
		t.Errorf("make -n build prints %q: the Dockerfile relies on its -ldflags", makeFlags)
	}

	// What is built is what is copied and run.
	copies := all(ins, "COPY")
	installed := "/usr/local/bin/promptmqd"
	if !slices.Contains(copies, "--from=build "+builtIn+" "+installed) {
		t.Errorf("COPY statements %q do not copy %s to %s", copies, builtIn, installed)
	}
	var entry, cmdArgs []string
	for _, pair := range []struct {
		dst  *[]string
		stmt string
	}{{&entry, "ENTRYPOINT"}, {&cmdArgs, "CMD"}} {
		stmts := all(ins, pair.stmt)
		if len(stmts) != 1 || json.Unmarshal([]byte(stmts[0]), pair.dst) != nil {
			t.Fatalf("%s %q: want one statement in JSON (exec) form", pair.stmt, stmts)
		}
	}
	if len(entry) != 1 || entry[0] != installed {
		t.Errorf("ENTRYPOINT %q, want [%q]", entry, installed)
	}
	out, err := exec.Command(bin, append([]string{"check-config"}, cmdArgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promptmqd check-config %s: %v\n%s", strings.Join(cmdArgs, " "), err, out)
	}
	effective, err := conf.Load("")
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]string{}
	for i := 0; i+1 < len(cmdArgs); i += 2 {
		flags[cmdArgs[i]] = cmdArgs[i+1]
	}
	for flag, key := range map[string]string{"--bind": "server.bind", "--ws-bind": "server.ws-bind", "--metrics-bind": "metrics.bind", "--data-dir": "storage.data-dir"} {
		if v, ok := flags[flag]; ok {
			if err := effective.Set(key, v); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Ports: every listener the CMD opens is exposed, and TLS's conventional 8883 beside them.
	var exposed []int
	for _, e := range all(ins, "EXPOSE") {
		for _, p := range strings.Fields(e) {
			n, err := strconv.Atoi(p)
			if err != nil {
				t.Fatalf("EXPOSE %q", e)
			}
			exposed = append(exposed, n)
		}
	}
	slices.Sort(exposed)
	listening := []int{port(t, effective.Server.Bind), port(t, effective.Server.WSBind), 8883, port(t, effective.Metrics.Bind)}
	slices.Sort(listening)
	if !slices.Equal(exposed, listening) || !slices.Equal(exposed, []int{1883, 8080, 8883, 9090}) {
		t.Errorf("EXPOSE %v; the CMD listens on %v (with TLS on 8883); the issue asks 1883 8080 8883 9090", exposed, listening)
	}

	if vols := all(ins, "VOLUME"); len(vols) != 1 || vols[0] != effective.Storage.DataDir || vols[0] != "/data" {
		t.Errorf("VOLUME %q, data-dir %q: want both /data", vols, effective.Storage.DataDir)
	}
	health := all(ins, "HEALTHCHECK")
	wantURL := "http://127.0.0.1:" + strconv.Itoa(port(t, effective.Metrics.Bind)) + "/health"
	if len(health) != 1 || !strings.Contains(health[0], " CMD ") || !strings.Contains(health[0], wantURL) {
		t.Errorf("HEALTHCHECK %q does not ask %s", health, wantURL)
	}
	users := all(ins, "USER")
	if len(users) != 1 || strings.HasPrefix(users[0], "root") || strings.HasPrefix(users[0], "0") {
		t.Errorf("USER %q: the broker must not run as root", users)
	}
}

// The compose file publishes only ports the image exposes and mounts the data volume at /data.
func TestCompose(t *testing.T) {
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{`"1883:1883"`, `"9090:9090"`, "promptmq-data:/data", "dockerfile: deploy/Dockerfile", "./prometheus.yml:/etc/prometheus/prometheus.yml:ro"} {
		if !strings.Contains(text, want) {
			t.Errorf("docker-compose.yml lacks %s", want)
		}
	}
	if _, err := os.Stat("prometheus.yml"); err != nil {
		t.Errorf("docker-compose.yml mounts deploy/prometheus.yml: %v", err)
	}
}
