package access

// Verdict is the outcome of authenticating a CONNECT.
type Verdict uint8

const (
	Allowed Verdict = iota
	// BadCredentials: a user name the password file does not know, or a wrong password
	// (5.0 CONNACK 0x86, 3.1.1 return code 4).
	BadCredentials
	// NotAuthorized: no user name where one is required (5.0 CONNACK 0x87, 3.1.1 return code 5).
	NotAuthorized
)

// Policy is the whole access configuration of a broker at one moment. It is immutable; a
// reload builds a new Policy and the broker swaps a pointer.
type Policy struct {
	AllowAnonymous bool
	// Passwords is nil when no password file is configured: any user name is accepted.
	Passwords *Passwords
	// ACL is nil when no ACL file is configured: everything is allowed.
	ACL *ACL
}

// Load reads the configured files; an empty path means that file is not used.
func Load(allowAnonymous bool, passwordFile, aclFile string) (*Policy, error) {
	p := &Policy{AllowAnonymous: allowAnonymous}
	var err error
	if passwordFile != "" {
		if p.Passwords, err = LoadPasswords(passwordFile); err != nil {
			return nil, err
		}
	}
	if aclFile != "" {
		if p.ACL, err = LoadACL(aclFile); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Authenticate decides a CONNECT. hasUsername is the CONNECT's User Name Flag; trusted is
// set when the user name came from a verified client certificate, which stands in for the
// password.
func (p *Policy) Authenticate(username string, hasUsername bool, password []byte, trusted bool) Verdict {
	if !hasUsername {
		if p.AllowAnonymous {
			return Allowed
		}
		return NotAuthorized
	}
	if trusted || p.Passwords == nil {
		return Allowed
	}
	if !p.Passwords.Check(username, password) {
		return BadCredentials
	}
	return Allowed
}

// CanPublish, CanRead and CanSubscribe answer for the ACL, allowing everything without one.

func (p *Policy) CanPublish(id Identity, topic string) bool {
	return p.ACL == nil || p.ACL.CanPublish(id, topic)
}

func (p *Policy) CanRead(id Identity, topic string) bool {
	return p.ACL == nil || p.ACL.CanRead(id, topic)
}

func (p *Policy) CanSubscribe(id Identity, filter string) bool {
	return p.ACL == nil || p.ACL.CanSubscribe(id, filter)
}
