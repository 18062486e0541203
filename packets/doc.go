// Package packets owns the MQTT wire format for protocol levels 3 (MQTT 3.1),
// 4 (MQTT 3.1.1) and 5 (MQTT 5.0): the fixed header, variable byte integers,
// every control packet and property, reason codes, the well-formedness rules
// of the specifications, and a Reader that frames packets from a byte stream.
//
// Decoding fills a caller-owned, reused struct whose byte-slice fields alias
// the input (no copy, no allocation); the input must therefore stay untouched
// while the struct is in use. Encoding appends to a caller's buffer in the
// style of strconv.Append*, so a writer can coalesce many packets into one
// buffer and one syscall. Every decode error is a *Error carrying the MQTT
// reason code the engine should answer with.
//
// The package does no I/O beyond the io.Reader handed to NewReader, never
// logs and holds no global mutable state.
package packets
