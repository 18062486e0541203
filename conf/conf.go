// Package conf owns the configuration schema of PromptMQ: the Go types the other packages read, the
// built-in defaults (which alone make a working broker), TOML loading with BurntSushi/toml, overrides
// from command-line flags, and validation that reports every problem at once by its key path.
//
// The schema is one table (Keys) from which everything else is derived: decoding, validation ranges,
// the command-line flag names, the effective-configuration TOML and the reference in README.md. A key
// added to Config without a row in that table fails TestSchemaCoversConfig, and a row without
// documentation fails TestReadmeReference.
package conf

import "time"

// Config is the whole configuration of one broker process. The zero value is not useful; start from
// Default or Load.
type Config struct {
	Log     Log
	Server  Server
	MQTT    MQTT
	Storage Storage
	Metrics Metrics
	Auth    Auth
	TLS     TLS
	Cluster Cluster
}

// Log is the [log] section.
type Log struct {
	Level  string // trace, debug, info, warn, error
	Format string // json, text
}

// Server is the [server] section: listeners and socket settings.
type Server struct {
	Bind, WSBind, WSPath, TLSBind, WSSBind string
	ReadTimeout, WriteTimeout              time.Duration
	// ConnectTimeout is the time allowed between TCP accept and a complete CONNECT packet.
	ConnectTimeout          time.Duration
	ReadBuffer, WriteBuffer int
}

// MQTT is the [mqtt] section: protocol limits and the features the broker announces in CONNACK.
type MQTT struct {
	MaxQoS            int
	MaxConnections    int   // 0 = unlimited
	MaxInflight       int   // the broker's Receive Maximum
	MaxQueuedMessages int   // per session; 0 = unlimited
	MaxQueuedBytes    int64 // per session; 0 = unlimited
	MaxMemory         int64 // broker-wide bound on queued data; 0 = unlimited
	QueueQoS0         bool  // whether QoS 0 messages are queued for offline sessions
	MaxPacketSize     int   // 0 = the protocol maximum
	// KeepAlive is the largest keep-alive (seconds) a client may ask; a larger request is answered
	// with Server Keep Alive. 0 = no limit.
	KeepAlive               int
	MaxTopicAlias           int
	RetainAvailable         bool
	WildcardAvailable       bool
	SharedSubAvailable      bool
	SubscriptionIDAvailable bool
	MaxMessageExpiry        time.Duration // 0 = no limit
	MaxSessionExpiry        time.Duration // 0 = no limit
	SysInterval             time.Duration // $SYS publishing period; 0 disables
}

// Storage is the [storage] section with its [storage.sqlite] and [storage.cleanup] subsections.
type Storage struct {
	DataDir       string // "" = in memory only, nothing survives a restart
	BatchSize     int    // most operations the writer commits in one transaction
	BatchInterval time.Duration
	SQLite        SQLite
	Cleanup       Cleanup
}

// SQLite holds the seven PRAGMAs set when the database is opened.
type SQLite struct {
	CacheSize   int // positive = pages, negative = KiB
	TempStore   string
	MmapSize    int64
	BusyTimeout int // milliseconds
	Synchronous string
	JournalMode string
	ForeignKeys bool
}

// Cleanup is the [storage.cleanup] section: the loop that deletes old messages and expired sessions.
type Cleanup struct {
	MaxMessageAge, CheckInterval time.Duration
	BatchSize                    int
}

// Metrics is the [metrics] section: the HTTP side server with /metrics, /health and /debug/pprof/.
type Metrics struct {
	Enabled    bool
	Bind, Path string
}

// Auth is the [auth] section.
type Auth struct {
	AllowAnonymous        bool
	PasswordFile, ACLFile string
	// SubscribeRefusal is "not-authorized" (0x87) or "unspecified-error" (0x80).
	SubscribeRefusal string
}

// TLS is the [tls] section, used by the tls-bind and wss-bind listeners.
type TLS struct {
	CertFile, KeyFile, ClientCAFile string
	RequireClientCert               bool
	MinVersion                      string // "1.2" or "1.3"
	// UseIdentityAsUsername takes the username from a verified client certificate's Common Name.
	UseIdentityAsUsername bool
}

// Cluster is the [cluster] section: several nodes acting as one broker over NATS (package cluster).
type Cluster struct {
	Enabled bool
	// NodeID names this node among its peers; empty means generated once and kept in the data
	// directory (file node-id).
	NodeID string
	// Bind is the embedded NATS server's cluster route listener.
	Bind string
	// Peers are the route addresses (host:port) of other nodes, comma-separated.
	Peers string
	// NATSURL, when set, joins an existing NATS cluster instead of embedding a server.
	NATSURL string
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// Default returns the built-in configuration: a broker on 0.0.0.0:1883 with durable state in ./data
// (synchronous NORMAL + WAL: an acknowledged message survives a killed process) and metrics on :9090.
func Default() Config {
	return Config{
		Log: Log{Level: "info", Format: "text"},
		Server: Server{
			Bind:           "0.0.0.0:1883",
			WSPath:         "/mqtt",
			ReadTimeout:    0, // keep-alive governs idle clients
			WriteTimeout:   10 * time.Second,
			ConnectTimeout: 10 * time.Second,
			ReadBuffer:     4 * kib,
			WriteBuffer:    4 * kib,
		},
		MQTT: MQTT{
			MaxQoS:                  2,
			MaxConnections:          100000,
			MaxInflight:             1024,
			MaxQueuedMessages:       1000,
			MaxQueuedBytes:          16 * mib,
			MaxMemory:               1 * gib,
			MaxPacketSize:           1 * mib,
			KeepAlive:               65535,
			MaxTopicAlias:           1024,
			RetainAvailable:         true,
			WildcardAvailable:       true,
			SharedSubAvailable:      true,
			SubscriptionIDAvailable: true,
			SysInterval:             10 * time.Second,
		},
		Storage: Storage{
			DataDir:       "./data",
			BatchSize:     1000,
			BatchInterval: 2 * time.Millisecond,
			SQLite: SQLite{
				CacheSize:   -65536,
				TempStore:   "MEMORY",
				MmapSize:    256 * mib,
				BusyTimeout: 5000,
				Synchronous: "NORMAL",
				JournalMode: "WAL",
				ForeignKeys: true,
			},
			Cleanup: Cleanup{
				MaxMessageAge: 168 * time.Hour,
				CheckInterval: 5 * time.Minute,
				BatchSize:     1000,
			},
		},
		Metrics: Metrics{Enabled: true, Bind: "0.0.0.0:9090", Path: "/metrics"},
		Auth:    Auth{AllowAnonymous: true, SubscribeRefusal: "not-authorized"},
		TLS:     TLS{MinVersion: "1.2"},
		Cluster: Cluster{Bind: "0.0.0.0:7946"},
	}
}
