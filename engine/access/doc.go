// Package access owns who may connect and what they may touch: the password file in
// Mosquitto 2.x format ($7$ PBKDF2-SHA512 and $6$ salted SHA-512 hashes, so a file written by
// mosquitto_passwd works unchanged) and the ACL file in Mosquitto's syntax (topic, user and
// pattern lines with %c and %u). Files are parsed into immutable values; reloading builds new
// values and the engine swaps a pointer, so a check never takes a lock.
//
// The package does no network I/O and never logs: it returns values and errors.
package access
