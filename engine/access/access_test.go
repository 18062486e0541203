package access

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Written by Debian's mosquitto_passwd 2.0 (`-c -b pw alice secret`, `-H sha512 -b pw bob hunter2`).
const mosquittoFile = `alice:$7$101$k82383jJzn31BaZ2$n4px2a/G+LvZJIOCigDVc3PCibaE6bkkNaB2wkRlyR+ronH8jUSyO7VbGPFolXc1olEM0g0W/MjZdQBICt8u2g==
bob:$6$BsAvzVhRwszDMin7$fFCfSEuIrKLlBbp8LjcZP5jHVAkLFZ+JrnCYFNloKmpl6ATYTGg5U9mME1gEjcwgIYZdZeBFSPxMcRljRKBnkw==
`

func TestPasswordsMosquittoVectors(t *testing.T) {
	p, err := ParsePasswords(strings.NewReader("# comment\n\n" + mosquittoFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, password string
		want           bool
	}{
		{"alice", "secret", true},
		{"alice", "Secret", false},
		{"alice", "", false},
		{"bob", "hunter2", true},
		{"bob", "hunter3", false},
		{"carol", "secret", false},
		{"", "", false},
	} {
		if got := p.Check(tc.user, []byte(tc.password)); got != tc.want {
			t.Errorf("Check(%q, %q) = %v, want %v", tc.user, tc.password, got, tc.want)
		}
	}
	if p.Len() != 2 {
		t.Errorf("Len = %d", p.Len())
	}
}

func TestPasswordsBadLines(t *testing.T) {
	for _, line := range []string{
		"alice",
		":$7$101$AAAA$AAAA",
		"alice:plaintext",
		"alice:$5$abc$def",
		"alice:$7$x$AAAA$AAAA",
		"alice:$7$0$AAAA$AAAA",
		"alice:$7$101$!!$AAAA",
		"alice:$6$AAAA$AAAA",
		"alice:$6$AAAA$!!",
	} {
		if _, err := ParsePasswords(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("%q: parsed, want an error", line)
		}
	}
}

// TestMosquittoPasswdFile authenticates against a file the real mosquitto_passwd writes.
func TestMosquittoPasswdFile(t *testing.T) {
	tool, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_passwd is missing (Debian package mosquitto; .ci/run installs it)")
		}
		t.Skip("mosquitto_passwd is missing: install Debian's mosquitto package")
	}
	path := filepath.Join(t.TempDir(), "pw")
	run := func(args ...string) {
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %v: %v\n%s", args, err, out)
		}
	}
	run("-c", "-b", path, "dave", "pbkdf2-pass")
	run("-H", "sha512", "-b", path, "erin", "sha-pass")
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("dave", []byte("pbkdf2-pass")) || !p.Check("erin", []byte("sha-pass")) {
		t.Error("a mosquitto_passwd entry does not authenticate")
	}
	if p.Check("dave", []byte("sha-pass")) {
		t.Error("wrong password accepted")
	}
	// And the other way: an entry we write works for Mosquitto's own tooling to keep.
	hash, err := HashPassword([]byte("ours"), bytes.NewReader(bytes.Repeat([]byte{7}, saltBytes)))
	if err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "frank", hash, false); err != nil {
		t.Fatal(err)
	}
	run("-b", path, "gina", "theirs") // mosquitto_passwd rewrites the file including our line
	p, err = LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("frank", []byte("ours")) || !p.Check("gina", []byte("theirs")) || !p.Check("dave", []byte("pbkdf2-pass")) {
		t.Error("entries lost after mosquitto_passwd rewrote a file holding ours")
	}
}

func TestSetPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := SetPassword(path, "a", "$x", false); err == nil {
		t.Fatal("updating a missing file succeeded without -c")
	}
	hash := func(pw string) string {
		h, err := HashPassword([]byte(pw), bytes.NewReader(bytes.Repeat([]byte{1}, saltBytes)))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, step := range []struct {
		user, password string
		create         bool
	}{
		{"alice", "one", true},
		{"bob", "two", false},
		{"alice", "three", false}, // replaces, keeps bob
	} {
		if err := SetPassword(path, step.user, hash(step.password), step.create); err != nil {
			t.Fatal(err)
		}
	}
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 2 || !p.Check("alice", []byte("three")) || p.Check("alice", []byte("one")) || !p.Check("bob", []byte("two")) {
		t.Errorf("file after updates: %d users", p.Len())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := SetPassword(path, "bad:name", hash("x"), false); err == nil {
		t.Error("user name with ':' accepted")
	}
}

const aclText = `# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write sensors/+/temp
topic read sensors/#
topic deny sensors/private/#

user bob
topic bob/inbox
topic read $SYS/#

pattern readwrite clients/%c/#
pattern read users/%u/+/status
pattern write inbox/%u-%c
`

func TestACL(t *testing.T) {
	a, err := ParseACL(strings.NewReader(aclText))
	if err != nil {
		t.Fatal(err)
	}
	anon := Identity{ClientID: "anon1"}
	alice := Identity{ClientID: "c1", Username: "alice"}
	bob := Identity{ClientID: "c2", Username: "bob"}
	evil := Identity{ClientID: "#", Username: "+"}
	const (
		pub = iota
		read
		sub
	)
	for _, tc := range []struct {
		name  string
		id    Identity
		op    int
		topic string
		want  bool
	}{
		{"anonymous reads public", anon, read, "public/news", true},
		{"anonymous may not write public", anon, pub, "public/news", false},
		{"deny beats a wider grant", anon, read, "public/secret", false},
		{"anonymous rules are not alice's", alice, read, "public/news", false},
		{"user readwrite", alice, pub, "alice/x/y", true},
		{"user readwrite read", alice, read, "alice", true},
		{"+ in an ACL filter", alice, pub, "sensors/kitchen/temp", true},
		{"+ is one level only", alice, pub, "sensors/kitchen/a/temp", false},
		{"write-only is not read", alice, read, "bob/inbox", false},
		{"read-only is not write", alice, pub, "sensors/kitchen/humidity", false},
		{"deny subtree on read", alice, read, "sensors/private/x", false},
		{"deny subtree on write", alice, pub, "sensors/private/temp", false},
		{"default access is readwrite", bob, pub, "bob/inbox", true},
		{"other user's rules do not apply", bob, pub, "alice/x", false},
		{"# does not match $ topics", alice, read, "$SYS/broker", false},
		{"explicit $SYS rule", bob, read, "$SYS/broker/load", true},
		{"pattern %c", alice, pub, "clients/c1/state", true},
		{"pattern %c other client", alice, pub, "clients/c2/state", false},
		{"pattern %c anonymous", anon, read, "clients/anon1", true},
		{"pattern %u", bob, read, "users/bob/x/status", true},
		{"pattern %u wrong user", bob, read, "users/alice/x/status", false},
		{"pattern %u without user", anon, read, "users//x/status", false},
		{"pattern %u-%c in one level", alice, pub, "inbox/alice-c1", true},
		{"pattern %u-%c mismatch", alice, pub, "inbox/alice-c2", false},
		{"wildcard client id never widens a pattern", evil, pub, "clients/#", false},
		{"nothing matches: refused", bob, read, "weather", false},

		{"subscribe inside a grant", alice, sub, "alice/+", true},
		{"subscribe wider than the ACL is allowed", alice, sub, "sensors/#", true},
		{"subscribe # overlaps alice/#", alice, sub, "#", true},
		{"subscribe covered by deny", alice, sub, "sensors/private/+", false},
		{"subscribe to write-only topic", alice, sub, "bob/inbox", false},
		{"subscribe with no overlapping read", alice, sub, "weather/#", false},
		{"subscribe parent of a # grant", alice, sub, "alice", true},
		{"subscribe + against pattern", bob, sub, "users/+/a/status", true},
		{"subscribe # does not reach $SYS", bob, sub, "#", true},
		{"subscribe $SYS with a $SYS rule", bob, sub, "$SYS/#", true},
		{"subscribe $SYS without one", alice, sub, "$SYS/#", false},
		{"anonymous subscribe to a denied leaf", anon, sub, "public/secret", false},
		{"anonymous subscribe public/+ (secret filtered at delivery)", anon, sub, "public/+", true},
	} {
		var got bool
		switch tc.op {
		case pub:
			got = a.CanPublish(tc.id, tc.topic)
		case read:
			got = a.CanRead(tc.id, tc.topic)
		case sub:
			got = a.CanSubscribe(tc.id, tc.topic)
		}
		if got != tc.want {
			t.Errorf("%s: %+v %q = %v, want %v", tc.name, tc.id, tc.topic, got, tc.want)
		}
	}
}

func TestACLParseErrors(t *testing.T) {
	for _, text := range []string{
		"topics read a",
		"user",
		"topic read",
		"topic read a/#/b",
		"pattern write a+",
	} {
		if _, err := ParseACL(strings.NewReader(text)); err == nil {
			t.Errorf("%q parsed, want an error", text)
		}
	}
}

func TestFilterRelations(t *testing.T) {
	var id Identity
	for _, tc := range []struct {
		rule, filter           string
		intersects, ruleCovers bool
	}{
		{"a/b", "a/b", true, true},
		{"a/+", "a/b", true, true},
		{"a/b", "a/+", true, false},
		{"a/#", "a", true, true},
		{"a", "a/#", true, false},
		{"a/+", "a/#", true, false},
		{"#", "x/y", true, true},
		{"#", "$x/y", false, false},
		{"+/y", "$x/y", false, false},
		{"$x/#", "#", false, false},
		{"a/b", "a/c", false, false},
		{"a/b/c", "a/b", false, false},
		{"a/b", "a/b/c", false, false},
		{"+/+", "a/#", true, false},
	} {
		if got := intersects(tc.rule, tc.filter, false, id); got != tc.intersects {
			t.Errorf("intersects(%q, %q) = %v", tc.rule, tc.filter, got)
		}
		if got := covers(tc.rule, tc.filter, false, id); got != tc.ruleCovers {
			t.Errorf("covers(%q, %q) = %v", tc.rule, tc.filter, got)
		}
	}
}

func TestPolicy(t *testing.T) {
	pw, err := ParsePasswords(strings.NewReader(mosquittoFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		p        Policy
		user     string
		hasUser  bool
		password string
		trusted  bool
		want     Verdict
	}{
		{"anonymous allowed", Policy{AllowAnonymous: true, Passwords: pw}, "", false, "", false, Allowed},
		{"anonymous refused", Policy{Passwords: pw}, "", false, "", false, NotAuthorized},
		{"good password", Policy{Passwords: pw}, "alice", true, "secret", false, Allowed},
		{"bad password", Policy{Passwords: pw}, "alice", true, "nope", false, BadCredentials},
		{"unknown user", Policy{Passwords: pw}, "zed", true, "secret", false, BadCredentials},
		{"no password file", Policy{}, "anyone", true, "", false, Allowed},
		{"certificate identity", Policy{Passwords: pw}, "device-7", true, "", true, Allowed},
	} {
		if got := tc.p.Authenticate(tc.user, tc.hasUser, []byte(tc.password), tc.trusted); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	var open Policy
	if !open.CanPublish(Identity{}, "x") || !open.CanRead(Identity{}, "x") || !open.CanSubscribe(Identity{}, "#") {
		t.Error("a policy without an ACL refused something")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	pwPath, aclPath := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	os.WriteFile(pwPath, []byte(mosquittoFile), 0o600)
	os.WriteFile(aclPath, []byte(aclText), 0o600)
	p, err := Load(false, pwPath, aclPath)
	if err != nil || p.Passwords == nil || p.ACL == nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(false, filepath.Join(dir, "missing"), ""); err == nil {
		t.Error("missing password file loaded")
	}
	os.WriteFile(aclPath, []byte("bogus line\n"), 0o600)
	if _, err := Load(false, "", aclPath); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad ACL: %v", err)
	}
}

func BenchmarkCanRead(b *testing.B) {
	a, err := ParseACL(strings.NewReader(aclText))
	if err != nil {
		b.Fatal(err)
	}
	id := Identity{ClientID: "c1", Username: "alice"}
	b.ReportAllocs()
	for b.Loop() {
		if !a.CanRead(id, "sensors/kitchen/temp") {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCanReadPattern(b *testing.B) {
	a, err := ParseACL(strings.NewReader(aclText))
	if err != nil {
		b.Fatal(err)
	}
	id := Identity{ClientID: "c1", Username: "bob"}
	b.ReportAllocs()
	for b.Loop() {
		if !a.CanRead(id, "users/bob/x/status") {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckPBKDF2(b *testing.B) {
	p, err := ParsePasswords(strings.NewReader(mosquittoFile))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Check("alice", []byte("secret"))
	}
}
