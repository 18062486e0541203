package access

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Hash formats of a Mosquitto password file line "user:$ID$...".
const (
	// pbkdf2ID is "$7$ITERATIONS$SALT$HASH": PBKDF2-HMAC-SHA512, 64-byte key, base64 salt and hash.
	pbkdf2ID = "7"
	// sha512ID is "$6$SALT$HASH": SHA-512 of password followed by salt (Mosquitto 1.6 and
	// earlier; not crypt(3)'s $6$).
	sha512ID = "6"
	// DefaultIterations is what mosquitto_passwd uses for new $7$ entries.
	DefaultIterations = 101
	saltBytes         = 12
	hashBytes         = sha512.Size
	// maxIterations bounds the work a crafted file can make one CONNECT cost.
	maxIterations = 10_000_000
)

// credential is one parsed password-file entry.
type credential struct {
	iterations int // 0 for $6$
	salt, hash []byte
}

// Passwords is a parsed password file. It is immutable once built, so any number of
// goroutines may call Check while a reload builds its successor.
type Passwords struct {
	users map[string]credential
	// decoy is compared against when the user is unknown, so the time taken does not tell
	// an attacker which user names exist.
	decoy credential
}

// LoadPasswords reads a Mosquitto 2.x password file.
func LoadPasswords(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	p, err := ParsePasswords(f)
	if err != nil {
		return nil, fmt.Errorf("password file %s: %w", path, err)
	}
	return p, nil
}

// ParsePasswords parses password-file text: one "user:hash" a line, blank lines and lines
// starting with # ignored. A line with a plain-text password is refused: Mosquitto would
// need `mosquitto_passwd -U` first too.
func ParsePasswords(r io.Reader) (*Passwords, error) {
	p := &Passwords{users: make(map[string]credential)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hashed, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		cred, err := parseHash(hashed)
		if err != nil {
			return nil, fmt.Errorf("line %d (user %q): %w", n, user, err)
		}
		p.users[user] = cred
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	p.decoy = credential{iterations: DefaultIterations, salt: make([]byte, saltBytes), hash: make([]byte, hashBytes)}
	return p, nil
}

func parseHash(s string) (credential, error) {
	fields := strings.Split(s, "$")
	if len(fields) < 2 || fields[0] != "" {
		return credential{}, errors.New("not a hashed password (run `promptmqd passwd` or `mosquitto_passwd -U`)")
	}
	var c credential
	var saltText, hashText string
	switch {
	case fields[1] == pbkdf2ID && len(fields) == 5:
		it, err := strconv.Atoi(fields[2])
		if err != nil || it < 1 || it > maxIterations {
			return credential{}, fmt.Errorf("bad iteration count %q", fields[2])
		}
		c.iterations = it
		saltText, hashText = fields[3], fields[4]
	case fields[1] == sha512ID && len(fields) == 4:
		saltText, hashText = fields[2], fields[3]
	default:
		return credential{}, fmt.Errorf("unknown hash format $%s$ (want $7$ or $6$)", fields[1])
	}
	var err error
	if c.salt, err = base64.StdEncoding.DecodeString(saltText); err != nil {
		return credential{}, fmt.Errorf("salt: %w", err)
	}
	if c.hash, err = base64.StdEncoding.DecodeString(hashText); err != nil {
		return credential{}, fmt.Errorf("hash: %w", err)
	}
	if len(c.hash) != hashBytes {
		return credential{}, fmt.Errorf("hash is %d bytes, want %d", len(c.hash), hashBytes)
	}
	return c, nil
}

// Check reports whether password is user's. The comparison is constant-time and an unknown
// user costs the same work as a known one.
func (p *Passwords) Check(user string, password []byte) bool {
	c, known := p.users[user]
	if !known {
		c = p.decoy
	}
	sum := c.digest(password)
	equal := subtle.ConstantTimeCompare(sum, c.hash) == 1
	return equal && known
}

// Len returns the number of users.
func (p *Passwords) Len() int { return len(p.users) }

func (c credential) digest(password []byte) []byte {
	if c.iterations == 0 {
		h := sha512.New()
		h.Write(password)
		h.Write(c.salt)
		return h.Sum(nil)
	}
	key, err := pbkdf2.Key(sha512.New, string(password), c.salt, c.iterations, hashBytes)
	if err != nil {
		// Only in FIPS-140 only mode with a short key; an unusable entry never matches.
		return nil
	}
	return key
}

// HashPassword returns a new $7$ entry's hash for password, with a salt read from random.
func HashPassword(password []byte, random io.Reader) (string, error) {
	c := credential{iterations: DefaultIterations, salt: make([]byte, saltBytes)}
	if _, err := io.ReadFull(random, c.salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	sum := c.digest(password)
	return "$" + pbkdf2ID + "$" + strconv.Itoa(c.iterations) + "$" +
		base64.StdEncoding.EncodeToString(c.salt) + "$" + base64.StdEncoding.EncodeToString(sum), nil
}

// SetPassword writes user's entry with hash into the password file at path, replacing an
// existing entry and keeping every other line as it was. create starts a new file (and
// overwrites one), like mosquitto_passwd -c. The file is replaced atomically with mode 0600.
func SetPassword(path, user, hash string, create bool) error {
	if user == "" || strings.ContainsAny(user, ":\r\n") {
		return fmt.Errorf("user name %q: must be non-empty without ':' or line breaks", user)
	}
	var lines []string
	if !create {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("password file: %w (use -c to create it)", err)
		}
		lines = strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(data) == 0 {
			lines = nil
		}
	}
	entry := user + ":" + hash
	replaced := false
	for i, line := range lines {
		if name, _, ok := strings.Cut(line, ":"); ok && name == user && !strings.HasPrefix(line, "#") {
			lines[i] = entry
			replaced = true
		}
	}
	if !replaced {
		lines = append(lines, entry)
	}
	var buf bytes.Buffer
	for _, line := range lines {
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".passwd-*")
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("password file: %w", err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("password file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	return nil
}
