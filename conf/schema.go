package conf

import (
	"math"
	"strings"
)

// Kind is how a key's value is written in TOML and on the command line.
type Kind uint8

const (
	KindString   Kind = iota
	KindInt           // a TOML integer
	KindBool          // true or false
	KindDuration      // a string such as "30s", "5m", "168h"
	KindBytes         // an integer number of bytes or a string with a unit: "64MiB", "1GB"
)

// Key is one row of the schema: a configuration key with its documentation and the rules its value
// must obey. Validation, the flag names, the TOML output and the README reference all read these rows,
// so a rule written here is enforced and documented in one place.
type Key struct {
	Path    string   // dotted TOML path: "storage.sqlite.cache-size"
	Kind    Kind     //
	Doc     string   // one sentence for the reference and the flag's usage
	Allowed []string // enumerated values in their canonical spelling (matched case-insensitively)
	// Min and Max bound integers, byte sizes (in bytes) and durations (in nanoseconds), inclusive.
	// Max == 0 means the key has no range.
	Min, Max int64
	// Zero says what 0 (or the empty string) means for a key that accepts it outside its range
	// ("unlimited", "listener off"). Empty when 0 has no special meaning.
	Zero string
	Addr bool // the value is host:port
	// Form describes a string value that is not a path, for the reference ("a NATS URL").
	Form    string
	URLPath bool // the value is an HTTP path starting with /
	field   func(*Config) any
}

// Section returns the TOML table holding the key: "storage.sqlite" for "storage.sqlite.cache-size".
func (k Key) Section() string { return k.Path[:strings.LastIndexByte(k.Path, '.')] }

// Name returns the key's name within its section: "cache-size".
func (k Key) Name() string { return k.Path[strings.LastIndexByte(k.Path, '.')+1:] }

// Flag returns the command-line flag that overrides the key, without dashes. Keys of [server],
// [mqtt] and [storage] are named alone (--bind, --max-inflight, --data-dir) because they are the ones
// people set most; other sections prefix their name (--log-level, --metrics-bind), and the storage
// subsections use their own name as prefix (--sqlite-cache-size, --cleanup-batch-size).
func (k Key) Flag() string {
	path := k.Path
	for _, bare := range []string{"server.", "mqtt.", "storage."} {
		path = strings.TrimPrefix(path, bare)
	}
	return strings.ReplaceAll(path, ".", "-")
}

const (
	unbounded = math.MaxInt64
	// maxExpiry is the largest expiry interval MQTT can carry: a four-byte count of seconds.
	maxExpiry = math.MaxUint32 * int64(1e9)
)

// keys is the schema in the order of the reference and of the TOML output. It is built by a function
// rather than held in a package variable so that no caller can mutate a shared table.
func keys() []Key {
	return []Key{
		{Path: "log.level", Kind: KindString, Allowed: []string{"trace", "debug", "info", "warn", "error"},
			Doc: "Least severe level written to the log.", field: func(c *Config) any { return &c.Log.Level }},
		{Path: "log.format", Kind: KindString, Allowed: []string{"json", "text"},
			Doc: "Log line format: json for machines, text (logfmt) for people.", field: func(c *Config) any { return &c.Log.Format }},

		{Path: "server.bind", Kind: KindString, Addr: true,
			Doc: "Address of the MQTT over TCP listener.", field: func(c *Config) any { return &c.Server.Bind }},
		{Path: "server.ws-bind", Kind: KindString, Addr: true, Zero: "no WebSocket listener",
			Doc: "Address of the MQTT over WebSocket listener.", field: func(c *Config) any { return &c.Server.WSBind }},
		{Path: "server.ws-path", Kind: KindString, URLPath: true,
			Doc: "HTTP path the WebSocket listeners upgrade on.", field: func(c *Config) any { return &c.Server.WSPath }},
		{Path: "server.tls-bind", Kind: KindString, Addr: true, Zero: "no TLS listener",
			Doc: "Address of the MQTT over TLS listener; needs tls.cert-file and tls.key-file.", field: func(c *Config) any { return &c.Server.TLSBind }},
		{Path: "server.wss-bind", Kind: KindString, Addr: true, Zero: "no secure WebSocket listener",
			Doc: "Address of the MQTT over secure WebSocket listener; needs tls.cert-file and tls.key-file.", field: func(c *Config) any { return &c.Server.WSSBind }},
		{Path: "server.read-timeout", Kind: KindDuration, Max: unbounded, Zero: "no timeout, keep-alive governs",
			Doc: "Longest wait for the next byte from a connected client.", field: func(c *Config) any { return &c.Server.ReadTimeout }},
		{Path: "server.write-timeout", Kind: KindDuration, Max: unbounded, Zero: "no timeout",
			Doc: "Longest a write to a client may block before the client is disconnected.", field: func(c *Config) any { return &c.Server.WriteTimeout }},
		{Path: "server.read-buffer", Kind: KindBytes, Min: 64, Max: 64 * mib,
			Doc: "Bytes read per syscall from a connection (taken from a pool while bytes move).", field: func(c *Config) any { return &c.Server.ReadBuffer }},
		{Path: "server.write-buffer", Kind: KindBytes, Min: 64, Max: 64 * mib,
			Doc: "Initial size of the buffer ready packets are encoded into before one write.", field: func(c *Config) any { return &c.Server.WriteBuffer }},
		{Path: "server.connect-timeout", Kind: KindDuration, Max: unbounded, Zero: "no timeout",
			Doc: "Time allowed between TCP accept and a complete CONNECT packet.", field: func(c *Config) any { return &c.Server.ConnectTimeout }},

		{Path: "mqtt.max-qos", Kind: KindInt, Min: 0, Max: 2,
			Doc: "Highest QoS the broker grants (Maximum QoS in CONNACK).", field: func(c *Config) any { return &c.MQTT.MaxQoS }},
		{Path: "mqtt.max-connections", Kind: KindInt, Min: 0, Max: unbounded, Zero: "unlimited",
			Doc: "Most concurrent client connections; more are refused.", field: func(c *Config) any { return &c.MQTT.MaxConnections }},
		{Path: "mqtt.max-inflight", Kind: KindInt, Min: 1, Max: 65535,
			Doc: "The broker's Receive Maximum: unacknowledged QoS 1/2 messages per direction and client.", field: func(c *Config) any { return &c.MQTT.MaxInflight }},
		{Path: "mqtt.max-queued-messages", Kind: KindInt, Min: 0, Max: unbounded, Zero: "unlimited",
			Doc: "Most messages queued per session (offline, or its inflight window full).", field: func(c *Config) any { return &c.MQTT.MaxQueuedMessages }},
		{Path: "mqtt.max-queued-bytes", Kind: KindBytes, Min: 0, Max: unbounded, Zero: "unlimited",
			Doc: "Most payload bytes queued per session.", field: func(c *Config) any { return &c.MQTT.MaxQueuedBytes }},
		{Path: "mqtt.max-memory", Kind: KindBytes, Min: 0, Max: unbounded, Zero: "unlimited",
			Doc: "Broker-wide bound on queued message data; past it QoS 0 is dropped and QoS 1/2 waits in the store.", field: func(c *Config) any { return &c.MQTT.MaxMemory }},
		{Path: "mqtt.queue-qos0", Kind: KindBool,
			Doc: "Whether QoS 0 messages are queued for offline persistent sessions.", field: func(c *Config) any { return &c.MQTT.QueueQoS0 }},
		{Path: "mqtt.max-packet-size", Kind: KindBytes, Min: 16, Max: 268435460, Zero: "the protocol maximum, 268435460",
			Doc: "Largest packet accepted (Maximum Packet Size in CONNACK).", field: func(c *Config) any { return &c.MQTT.MaxPacketSize }},
		{Path: "mqtt.keep-alive", Kind: KindInt, Min: 0, Max: 65535, Zero: "no limit",
			Doc: "Largest keep-alive in seconds a client may ask; a larger request is answered with Server Keep Alive.", field: func(c *Config) any { return &c.MQTT.KeepAlive }},
		{Path: "mqtt.max-topic-alias", Kind: KindInt, Min: 0, Max: 65535, Zero: "topic aliases refused",
			Doc: "Topic Alias Maximum the broker accepts from each client.", field: func(c *Config) any { return &c.MQTT.MaxTopicAlias }},
		{Path: "mqtt.retain-available", Kind: KindBool,
			Doc: "Whether retained messages are supported.", field: func(c *Config) any { return &c.MQTT.RetainAvailable }},
		{Path: "mqtt.wildcard-available", Kind: KindBool,
			Doc: "Whether subscriptions may use the + and # wildcards.", field: func(c *Config) any { return &c.MQTT.WildcardAvailable }},
		{Path: "mqtt.shared-sub-available", Kind: KindBool,
			Doc: "Whether $share/ subscriptions are supported.", field: func(c *Config) any { return &c.MQTT.SharedSubAvailable }},
		{Path: "mqtt.subscription-id-available", Kind: KindBool,
			Doc: "Whether subscription identifiers are supported.", field: func(c *Config) any { return &c.MQTT.SubscriptionIDAvailable }},
		{Path: "mqtt.max-message-expiry", Kind: KindDuration, Max: maxExpiry, Zero: "no limit",
			Doc: "Cap on a message's expiry interval; messages without one get this.", field: func(c *Config) any { return &c.MQTT.MaxMessageExpiry }},
		{Path: "mqtt.max-session-expiry", Kind: KindDuration, Max: maxExpiry, Zero: "no limit",
			Doc: "Cap on the session expiry interval a client may ask.", field: func(c *Config) any { return &c.MQTT.MaxSessionExpiry }},
		{Path: "mqtt.sys-interval", Kind: KindDuration, Max: unbounded, Zero: "no $SYS topics",
			Doc: "Period of the $SYS/ statistics publications.", field: func(c *Config) any { return &c.MQTT.SysInterval }},

		{Path: "storage.data-dir", Kind: KindString, Zero: "in memory only, nothing survives a restart",
			Doc: "Directory of the SQLite database holding retained messages, sessions and queued messages.", field: func(c *Config) any { return &c.Storage.DataDir }},
		{Path: "storage.batch-size", Kind: KindInt, Min: 1, Max: unbounded,
			Doc: "Most operations the writer commits in one transaction (group commit).", field: func(c *Config) any { return &c.Storage.BatchSize }},
		{Path: "storage.batch-interval", Kind: KindDuration, Max: unbounded, Zero: "commit as soon as the writer is free",
			Doc: "Longest the writer waits to fill a batch before a commit that fsyncs (synchronous FULL, or no WAL); WAL with NORMAL never waits.", field: func(c *Config) any { return &c.Storage.BatchInterval }},

		{Path: "storage.sqlite.cache-size", Kind: KindInt,
			Doc: "PRAGMA cache_size: positive = pages, negative = KiB.", field: func(c *Config) any { return &c.Storage.SQLite.CacheSize }},
		{Path: "storage.sqlite.temp-store", Kind: KindString, Allowed: []string{"DEFAULT", "FILE", "MEMORY"},
			Doc: "PRAGMA temp_store: where temporary tables and indices live.", field: func(c *Config) any { return &c.Storage.SQLite.TempStore }},
		{Path: "storage.sqlite.mmap-size", Kind: KindBytes, Min: 0, Max: unbounded, Zero: "no memory mapping",
			Doc: "PRAGMA mmap_size: bytes of the database file read through memory mapping.", field: func(c *Config) any { return &c.Storage.SQLite.MmapSize }},
		{Path: "storage.sqlite.busy-timeout", Kind: KindInt, Min: 0, Max: math.MaxInt32, Zero: "fail at once when locked",
			Doc: "PRAGMA busy_timeout in milliseconds.", field: func(c *Config) any { return &c.Storage.SQLite.BusyTimeout }},
		{Path: "storage.sqlite.synchronous", Kind: KindString, Allowed: []string{"OFF", "NORMAL", "FULL", "EXTRA"},
			Doc: "PRAGMA synchronous: NORMAL (with WAL) survives a killed process, FULL also power loss.", field: func(c *Config) any { return &c.Storage.SQLite.Synchronous }},
		{Path: "storage.sqlite.journal-mode", Kind: KindString, Allowed: []string{"DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF"},
			Doc: "PRAGMA journal_mode.", field: func(c *Config) any { return &c.Storage.SQLite.JournalMode }},
		{Path: "storage.sqlite.foreign-keys", Kind: KindBool,
			Doc: "PRAGMA foreign_keys.", field: func(c *Config) any { return &c.Storage.SQLite.ForeignKeys }},

		{Path: "storage.cleanup.max-message-age", Kind: KindDuration, Max: unbounded, Zero: "messages never expire by age",
			Doc: "Stored messages older than this are deleted.", field: func(c *Config) any { return &c.Storage.Cleanup.MaxMessageAge }},
		{Path: "storage.cleanup.check-interval", Kind: KindDuration, Max: unbounded, Zero: "no cleanup loop",
			Doc: "Period of the cleanup loop.", field: func(c *Config) any { return &c.Storage.Cleanup.CheckInterval }},
		{Path: "storage.cleanup.batch-size", Kind: KindInt, Min: 1, Max: unbounded,
			Doc: "Most rows one cleanup transaction deletes.", field: func(c *Config) any { return &c.Storage.Cleanup.BatchSize }},

		{Path: "metrics.enabled", Kind: KindBool,
			Doc: "Whether the HTTP side server (/metrics, /health, /debug/pprof/) runs.", field: func(c *Config) any { return &c.Metrics.Enabled }},
		{Path: "metrics.bind", Kind: KindString, Addr: true,
			Doc: "Address of the HTTP side server.", field: func(c *Config) any { return &c.Metrics.Bind }},
		{Path: "metrics.path", Kind: KindString, URLPath: true,
			Doc: "HTTP path of the Prometheus text exposition.", field: func(c *Config) any { return &c.Metrics.Path }},

		{Path: "auth.allow-anonymous", Kind: KindBool,
			Doc: "Whether clients without a username are accepted.", field: func(c *Config) any { return &c.Auth.AllowAnonymous }},
		{Path: "auth.password-file", Kind: KindString, Zero: "no password check",
			Doc: "File of username:password-hash lines (Mosquitto 2.x format); read at start and on SIGHUP.", field: func(c *Config) any { return &c.Auth.PasswordFile }},
		{Path: "auth.acl-file", Kind: KindString, Zero: "every client may publish and subscribe to everything",
			Doc: "File of topic access rules (Mosquitto syntax); read at start and on SIGHUP.", field: func(c *Config) any { return &c.Auth.ACLFile }},
		{Path: "auth.subscribe-refusal", Kind: KindString, Allowed: []string{"not-authorized", "unspecified-error"},
			Doc: "Reason code a 5.0 SUBACK gives a filter the ACL refuses: 0x87 or 0x80 (what the Paho test suite expects).", field: func(c *Config) any { return &c.Auth.SubscribeRefusal }},

		{Path: "tls.cert-file", Kind: KindString, Zero: "none",
			Doc: "PEM certificate chain of the TLS listeners.", field: func(c *Config) any { return &c.TLS.CertFile }},
		{Path: "tls.key-file", Kind: KindString, Zero: "none",
			Doc: "PEM private key of the TLS listeners.", field: func(c *Config) any { return &c.TLS.KeyFile }},
		{Path: "tls.client-ca-file", Kind: KindString, Zero: "client certificates are not verified",
			Doc: "PEM CA bundle that client certificates are verified against.", field: func(c *Config) any { return &c.TLS.ClientCAFile }},
		{Path: "tls.require-client-cert", Kind: KindBool,
			Doc: "Whether TLS clients must present a certificate; needs tls.client-ca-file.", field: func(c *Config) any { return &c.TLS.RequireClientCert }},
		{Path: "tls.min-version", Kind: KindString, Allowed: []string{"1.2", "1.3"},
			Doc: "Oldest TLS version accepted.", field: func(c *Config) any { return &c.TLS.MinVersion }},
		{Path: "tls.use-identity-as-username", Kind: KindBool,
			Doc: "Whether the Common Name of a verified client certificate is the username, with no password check; needs tls.client-ca-file.", field: func(c *Config) any { return &c.TLS.UseIdentityAsUsername }},

		{Path: "cluster.enabled", Kind: KindBool,
			Doc: "Whether this node joins others as one broker over NATS; false runs no NATS code at all.", field: func(c *Config) any { return &c.Cluster.Enabled }},
		{Path: "cluster.node-id", Kind: KindString, Form: "letters, digits, `-` and `_`", Zero: "generated once and kept in the file node-id of storage.data-dir",
			Doc: "Name of this node among its peers (letters, digits, - and _).", field: func(c *Config) any { return &c.Cluster.NodeID }},
		{Path: "cluster.bind", Kind: KindString, Addr: true,
			Doc: "Address of the embedded NATS server's cluster route listener.", field: func(c *Config) any { return &c.Cluster.Bind }},
		{Path: "cluster.peers", Kind: KindString, Form: "host:port, ...", Zero: "no peers: other nodes connect to this one",
			Doc: "Route addresses (host:port) of other nodes, comma-separated, or a TOML array of strings.", field: func(c *Config) any { return &c.Cluster.Peers }},
		{Path: "cluster.nats-url", Kind: KindString, Form: "a NATS URL such as `nats://10.0.0.5:4222`", Zero: "embed a NATS server in this node",
			Doc: "URL of an existing NATS cluster to use instead of the embedded server (bind and peers are then unused).", field: func(c *Config) any { return &c.Cluster.NATSURL }},
	}
}

// Keys returns the schema: every configuration key in reference order. The slice is a fresh copy.
func Keys() []Key { return keys() }

// lookup finds a key by its dotted path.
func lookup(path string) (Key, bool) {
	for _, k := range keys() {
		if k.Path == path {
			return k, true
		}
	}
	return Key{}, false
}

// sections lists the TOML tables of the schema in order, parents before children.
func sections() []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range keys() {
		if s := k.Section(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
