package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/packets"
)

// Written by Debian's mosquitto_passwd 2.0: alice/secret ($7$ PBKDF2) and bob/hunter2 ($6$).
const testPasswords = `alice:$7$101$k82383jJzn31BaZ2$n4px2a/G+LvZJIOCigDVc3PCibaE6bkkNaB2wkRlyR+ronH8jUSyO7VbGPFolXc1olEM0g0W/MjZdQBICt8u2g==
bob:$6$BsAvzVhRwszDMin7$fFCfSEuIrKLlBbp8LjcZP5jHVAkLFZ+JrnCYFNloKmpl6ATYTGg5U9mME1gEjcwgIYZdZeBFSPxMcRljRKBnkw==
`

func writeFile(t testing.TB, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func withPasswords(path string, anonymous bool) func(*conf.Config) {
	return func(c *conf.Config) {
		c.Auth.PasswordFile = path
		c.Auth.AllowAnonymous = anonymous
	}
}

func TestConnectCredentials(t *testing.T) {
	b, addr := testBroker(t, withPasswords(writeFile(t, "pw", testPasswords), false))
	failures := 0
	for _, tc := range []struct {
		name     string
		version  byte
		user     string
		password string
		anon     bool
		want     packets.ReasonCode // 3.x codes come back mapped to their 5.0 names
	}{
		{"5.0 pbkdf2 entry", packets.V5, "alice", "secret", false, packets.Success},
		{"5.0 sha512 entry", packets.V5, "bob", "hunter2", false, packets.Success},
		{"5.0 wrong password", packets.V5, "alice", "hunter2", false, packets.BadUserNameOrPassword},
		{"5.0 unknown user", packets.V5, "mallory", "secret", false, packets.BadUserNameOrPassword},
		{"5.0 anonymous refused", packets.V5, "", "", true, packets.NotAuthorized},
		{"3.1.1 good", packets.V311, "alice", "secret", false, packets.Success},
		{"3.1.1 wrong password: return code 4", packets.V311, "bob", "nope", false, packets.BadUserNameOrPassword},
		{"3.1.1 anonymous: return code 5", packets.V311, "", "", true, packets.NotAuthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr, tc.version)
			p := &packets.Connect{Version: tc.version, CleanStart: true, KeepAlive: 30, ClientID: []byte("cred-" + tc.name[:3])}
			if !tc.anon {
				p.UsernameFlag, p.Username = true, []byte(tc.user)
				p.PasswordFlag, p.Password = true, []byte(tc.password)
			}
			ca := c.connect(p)
			if ca.Reason != tc.want {
				t.Fatalf("CONNACK %v, want %v", ca.Reason, tc.want)
			}
			if tc.want != packets.Success {
				failures++
				c.expectClosed()
			}
		})
	}
	if got := b.Stats().AuthFailures.Load(); got != uint64(failures) {
		t.Errorf("AuthFailures = %d, want %d", got, failures)
	}
}

// TestMosquittoPasswdAuthenticates: a file written by the real mosquitto_passwd works as is.
func TestMosquittoPasswdAuthenticates(t *testing.T) {
	tool := needTool(t, "mosquitto_passwd", "mosquitto")
	path := filepath.Join(t.TempDir(), "pw")
	if out, err := exec.Command(tool, "-c", "-b", path, "carol", "c4rol-pass").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	_, addr := testBroker(t, withPasswords(path, false))
	login := func(password string) packets.ReasonCode {
		c := dialRaw(t, addr, packets.V5)
		return c.connect(&packets.Connect{CleanStart: true, ClientID: []byte("carol"),
			UsernameFlag: true, Username: []byte("carol"), PasswordFlag: true, Password: []byte(password)}).Reason
	}
	if got := login("c4rol-pass"); got != packets.Success {
		t.Errorf("right password: CONNACK %v", got)
	}
	if got := login("wrong"); got != packets.BadUserNameOrPassword {
		t.Errorf("wrong password: CONNACK %v, want 0x86", got)
	}
}

// needTool finds a program a test drives, skipping (or, in CI, failing) when the Debian
// package that provides it is not installed.
func needTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing: install the Debian package %s (.ci/run does)", name, debianPackage)
	}
	t.Skipf("%s is missing: install the Debian package %s", name, debianPackage)
	return ""
}

const testACL = `# anonymous clients
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/private/#
topic write commands/+
pattern readwrite clients/%c/#
`

func withACL(path string) func(*conf.Config) {
	return func(c *conf.Config) {
		c.Auth.PasswordFile = ""
		c.Auth.ACLFile = path
	}
}

func loginAs(user string) func(*packets.Connect) {
	return func(p *packets.Connect) {
		if user != "" {
			p.UsernameFlag, p.Username = true, []byte(user)
		}
	}
}

func TestACLSubscribeAndPublish(t *testing.T) {
	b, addr := testBroker(t, withACL(writeFile(t, "acl", testACL)))
	alice := dialRaw(t, addr, packets.V5)
	alice.mustConnect("a1", loginAs("alice"))
	got := alice.subscribe(1, 0, sub("sensors/#", 1), sub("sensors/private/#", 1), sub("commands/x", 1), sub("clients/a1/+", 1), sub("clients/other/+", 1), sub("$share/g/sensors/+", 0))
	want := []packets.ReasonCode{1, packets.NotAuthorized, packets.NotAuthorized, 1, packets.NotAuthorized, 0}
	if len(got) != len(want) {
		t.Fatalf("SUBACK %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("filter %d: SUBACK %v, want %v", i, got[i], want[i])
		}
	}

	old := dialRaw(t, addr, packets.V311)
	old.mustConnect("a2", loginAs("alice"))
	if got := old.subscribe(1, 0, sub("public/x", 1), sub("sensors/+", 1)); got[0] != packets.UnspecifiedError || got[1] != 1 {
		t.Errorf("3.1.1 SUBACK %v, want [0x80 1]", got)
	}

	// 5.0: PUBACK / PUBREC 0x87 and nothing delivered; 3.1.1: acknowledged, nothing delivered.
	if r := alice.pub("public/x", 1, 10, "no"); r != packets.NotAuthorized {
		t.Errorf("5.0 QoS 1 denied publish: PUBACK %v, want 0x87", r)
	}
	if r := alice.pub("sensors/private/t", 2, 11, "no"); r != packets.NotAuthorized {
		t.Errorf("5.0 QoS 2 denied publish: PUBREC %v, want 0x87", r)
	}
	if r := old.pub("public/x", 1, 12, "no"); r != packets.Success {
		t.Errorf("3.1.1 denied publish: PUBACK %v, want a plain acknowledgement", r)
	}
	old.pub("sensors/private/y", 0, 0, "no")
	if r := old.pub("sensors/ok", 1, 13, "marker"); r != packets.Success {
		t.Fatalf("allowed publish: %v", r)
	}
	// Both subscribers see the marker first: nothing refused got through before it.
	if m := alice.receive(); m.Topic != "sensors/ok" {
		t.Errorf("alice received %q before the marker", m.Topic)
	}
	if m := old.receive(); m.Topic != "sensors/ok" {
		t.Errorf("3.1.1 client received %q before the marker", m.Topic)
	}
	if b.Stats().ACLDenied.Load() == 0 {
		t.Error("ACLDenied not counted")
	}
}

// TestACLWiderSubscription: a subscription wider than the ACL receives neither retained nor
// live messages outside it.
func TestACLWiderSubscription(t *testing.T) {
	_, addr := testBroker(t, withACL(writeFile(t, "acl", testACL+"user writer\ntopic write #\n")))
	w := dialRaw(t, addr, packets.V5)
	w.mustConnect("w", loginAs("writer"))
	for _, topic := range []string{"sensors/private/a", "sensors/open/a", "elsewhere/a"} {
		w.publish(&packets.Publish{Topic: []byte(topic), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("retained " + topic)})
	}
	alice := dialRaw(t, addr, packets.V5)
	alice.mustConnect("a1", loginAs("alice"))
	if got := alice.subscribe(1, 0, sub("#", 1)); got[0] != 1 {
		t.Fatalf("SUBACK %v: # overlaps alice's grants and is allowed", got)
	}
	// Retained: only the one inside the ACL.
	if m := alice.receive(); m.Topic != "sensors/open/a" || !m.Retain {
		t.Errorf("retained %q (retain %v), want sensors/open/a", m.Topic, m.Retain)
	}
	// Live: the ones outside are not delivered; the marker after them proves it.
	for _, topic := range []string{"sensors/private/b", "elsewhere/b", "public/b"} {
		w.pub(topic, 1, 2, "live")
	}
	w.pub("sensors/open/b", 1, 3, "marker")
	if m := alice.receive(); m.Topic != "sensors/open/b" {
		t.Errorf("live %q delivered, want only sensors/open/b", m.Topic)
	}
}

func TestWillTopicNeedsWrite(t *testing.T) {
	_, addr := testBroker(t, withACL(writeFile(t, "acl", testACL)))
	c := dialRaw(t, addr, packets.V5)
	ca := c.connect(&packets.Connect{CleanStart: true, ClientID: []byte("w"), UsernameFlag: true, Username: []byte("alice"),
		WillFlag: true, WillTopic: []byte("public/will"), WillPayload: []byte("x")})
	if ca.Reason != packets.NotAuthorized {
		t.Errorf("will on a topic alice may not write: CONNACK %v, want 0x87", ca.Reason)
	}
}

func TestSubscribeRefusalCode(t *testing.T) {
	_, addr := testBroker(t, func(c *conf.Config) {
		withACL(writeFile(t, "acl", "topic deny test/nosubscribe\ntopic readwrite #\n"))(c)
		c.Auth.SubscribeRefusal = "unspecified-error"
	})
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("p", nil)
	if got := c.subscribe(1, 0, sub("test/nosubscribe", 2), sub("test/#", 2)); got[0] != packets.UnspecifiedError || got[1] != 2 {
		t.Errorf("SUBACK %v, want [0x80 2]", got)
	}
}

// TestReload: a changed ACL applies to a client that stays connected; a broken file is
// refused and the old rules stay.
func TestReload(t *testing.T) {
	path := writeFile(t, "acl", "topic readwrite a/#\n")
	var cfg conf.Config
	b, addr := testBroker(t, func(c *conf.Config) { withACL(path)(c); cfg = *c })
	c := dialRaw(t, addr, packets.V5)
	c.mustConnect("r", nil)
	if r := c.pub("b/x", 1, 1, "x"); r != packets.NotAuthorized {
		t.Fatalf("before reload: %v", r)
	}
	os.WriteFile(path, []byte("topic readwrite b/#\n"), 0o600)
	if err := b.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if r := c.pub("b/x", 1, 2, "x"); r != packets.Success {
		t.Errorf("after reload b/x: %v", r)
	}
	if r := c.pub("a/x", 1, 3, "x"); r != packets.NotAuthorized {
		t.Errorf("after reload a/x: %v", r)
	}
	os.WriteFile(path, []byte("bogus\n"), 0o600)
	if err := b.Reload(cfg); err == nil {
		t.Error("a broken ACL file reloaded")
	}
	if r := c.pub("b/y", 1, 4, "x"); r != packets.Success {
		t.Errorf("after a failed reload the old rules should hold: %v", r)
	}
	c.ping() // still connected
}

func TestNewRefusesBadFiles(t *testing.T) {
	cfg := conf.Default()
	cfg.Storage.DataDir = ""
	cfg.Auth.ACLFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(Options{Config: cfg}); err == nil {
		t.Error("New accepted a missing ACL file")
	}
}
