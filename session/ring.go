package session

// ring is a growable FIFO of Outgoing values. It grows by doubling and never shrinks
// below its high-water mark while the session lives, so steady-state traffic allocates
// nothing.
type ring struct {
	buf  []Outgoing
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) *Outgoing { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring) front() *Outgoing {
	if r.n == 0 {
		return nil
	}
	return &r.buf[r.head]
}

func (r *ring) pushBack(o Outgoing) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = o
	r.n++
}

func (r *ring) popFront() (Outgoing, bool) {
	if r.n == 0 {
		return Outgoing{}, false
	}
	o := r.buf[r.head]
	r.buf[r.head] = Outgoing{} // let the message be collected
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return o, true
}

func (r *ring) grow() {
	size := len(r.buf) * 2
	if size == 0 {
		size = 8
	}
	buf := make([]Outgoing, size)
	for i := 0; i < r.n; i++ {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}
