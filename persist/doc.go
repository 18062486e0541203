// Package persist owns PromptMQ's durable state in one SQLite file (zombiezen.com/go/sqlite): the
// schema and its migrations (versioned by PRAGMA user_version), the single writer goroutine that
// commits operations in groups, recovery of retained messages, sessions, subscriptions, queued
// deliveries and inbound QoS 2 identifiers at start, the cleanup loop, and the lock that keeps a
// second broker off the same data directory.
//
// The package knows nothing of the engine or of sessions: it stores plain records (Message, Session,
// Subscription, Delivery) that the engine converts to and from its own types. Every write is an
// operation submitted to the Store with a completion callback; the callback runs, on the store's
// completer goroutine and in commit order, once the operation has committed (err == nil) or
// failed. A callback must not block, nor submit another operation: the writer may be waiting
// for the completer. The engine acknowledges a
// QoS 1/2 PUBLISH only from such a callback, which is the broker's durability promise: synchronous
// NORMAL with WAL survives a killed process, synchronous FULL a power loss.
//
// Queued deliveries live in rows, or, when a session receives several in one commit, in one
// segment row per session and commit (segments.go), with acknowledgements and QoS 2 progress of
// its entries as small mark rows beside it: a durable QoS 1 message then costs a share of one
// b-tree insert instead of one insert of its own.
//
// With an empty data directory the Store is memory-only: nothing is written, every callback fires
// at once with nil, and Durable reports false so the engine can skip building operations at all.
package persist
