package conf

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Validate checks every key against its schema row and the rules that join several keys, and returns
// a *ValidationError listing all problems, or nil. It does not touch the file system: whether the
// files named exist is checked when the broker starts, where the error can say what it was opening.
func (c *Config) Validate() error {
	var problems []Problem
	report := func(key, format string, args ...any) {
		problems = append(problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for _, k := range keys() {
		if msg := k.check(c); msg != "" {
			report(k.Path, "%s", msg)
		}
	}
	if c.Server.TLSBind != "" || c.Server.WSSBind != "" {
		if c.TLS.CertFile == "" {
			report("tls.cert-file", "is required when server.tls-bind or server.wss-bind is set")
		}
		if c.TLS.KeyFile == "" {
			report("tls.key-file", "is required when server.tls-bind or server.wss-bind is set")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		report("tls.key-file", "tls.cert-file and tls.key-file must be set together")
	}
	if c.TLS.UseIdentityAsUsername && c.TLS.ClientCAFile == "" {
		report("tls.use-identity-as-username", "needs tls.client-ca-file: only a verified certificate may name a user")
	}
	if c.TLS.RequireClientCert && c.TLS.ClientCAFile == "" {
		report("tls.require-client-cert", "needs tls.client-ca-file to verify the certificates against")
	}
	if c.Cluster.Peers != "" {
		for _, peer := range strings.Split(c.Cluster.Peers, ",") {
			if msg := checkHostPort(strings.TrimSpace(peer)); msg != "" {
				report("cluster.peers", "%s", msg)
			}
		}
	}
	if id := c.Cluster.NodeID; id != "" && strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		report("cluster.node-id", "%q may hold only letters, digits, - and _", id)
	}
	if c.Cluster.Enabled && c.Cluster.NodeID == "" && c.Storage.DataDir == "" {
		report("cluster.node-id", "is required when storage.data-dir is empty: there is nowhere to keep a generated one")
	}
	if len(problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: problems}
}

// check returns what is wrong with the key's value in c, or "".
func (k Key) check(c *Config) string {
	if field, ok := k.field(c).(*string); ok {
		return k.checkString(*field)
	}
	n, ok := k.number(c)
	if !ok || k.Max == 0 || (n == 0 && k.Zero != "") || (n >= k.Min && n <= k.Max) {
		return ""
	}
	return fmt.Sprintf("%s is out of range; allowed: %s", k.Value(c), k.rangeText())
}

func (k Key) checkString(v string) string {
	switch {
	case v == "" && k.Zero != "":
		return ""
	case k.Allowed != nil:
		for _, a := range k.Allowed {
			if v == a {
				return ""
			}
		}
		return fmt.Sprintf("%q is not allowed; allowed values: %s", v, strings.Join(k.Allowed, ", "))
	case k.Addr:
		return checkHostPort(v)
	case k.URLPath && !strings.HasPrefix(v, "/"):
		return fmt.Sprintf("%q must start with /", v)
	}
	return ""
}

// checkHostPort accepts "host:port", ":port" and "[v6]:port" with a numeric port.
func checkHostPort(v string) string {
	if v == "" {
		return "is required; write host:port, such as 0.0.0.0:1883"
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Sprintf("%q is not host:port, such as 0.0.0.0:1883", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("%q has port %q; a port is a number from 0 to 65535", v, port)
	}
	return ""
}

// rangeText describes the values a ranged key accepts: "1..65535", "0..2", ">= 1", "0 (unlimited) or 16..268435460".
func (k Key) rangeText() string {
	format := func(n int64) string {
		switch k.Kind {
		case KindBytes:
			return formatBytes(n)
		case KindDuration:
			return formatDuration(time.Duration(n))
		}
		return strconv.FormatInt(n, 10)
	}
	var text string
	if k.Max == unbounded {
		text = ">= " + format(k.Min)
	} else {
		text = format(k.Min) + ".." + format(k.Max)
	}
	if k.Zero != "" && k.Min > 0 {
		text = "0 (" + k.Zero + ") or " + text
	}
	return text
}
