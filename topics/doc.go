// Package topics owns the MQTT topic rules and the two indexes built on them: the
// subscription Router (a sharded trie with wildcards, $share groups, subscription
// options and identifiers) and the Retained message index.
//
// It does no I/O and never logs: every function returns values and errors, so the
// whole package is tested without sockets. The hot paths (ValidateName, Router.Match)
// allocate nothing once their caller-owned scratch (Matches) has warmed up.
package topics
