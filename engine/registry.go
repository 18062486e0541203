package engine

import (
	"sync"
	"sync/atomic"
)

// registry maps a session key to its entry without a lock on the read side, because every
// delivery of every PUBLISH looks one up.
//
// A key is a slot index (low 32 bits) and a generation (high 32 bits). A slot is reused
// after its session ends, with a new generation, so a Match result naming an ended session
// resolves to nothing rather than to the slot's next owner. Slots live in fixed chunks that
// are never moved, so readers need no lock; a sync.Map was rejected because boxing a uint64
// key allocates on every lookup.
type registry struct {
	chunks [registryChunks]atomic.Pointer[[registryChunkSize]atomic.Pointer[entry]]

	mu         sync.Mutex // guards the allocation fields below
	free       []uint32
	next       uint32
	generation uint32
}

const (
	registryChunkBits = 10
	registryChunkSize = 1 << registryChunkBits
	registryChunks    = 1 << 14 // 16 M sessions
)

func (r *registry) add(e *entry) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var slot uint32
	if n := len(r.free); n > 0 {
		slot = r.free[n-1]
		r.free = r.free[:n-1]
	} else {
		slot = r.next
		r.next++
	}
	r.generation++
	key := uint64(r.generation)<<32 | uint64(slot)
	chunk := r.chunks[slot>>registryChunkBits].Load()
	if chunk == nil {
		chunk = new([registryChunkSize]atomic.Pointer[entry])
		r.chunks[slot>>registryChunkBits].Store(chunk)
	}
	e.key = key
	chunk[slot&(registryChunkSize-1)].Store(e)
	return key
}

func (r *registry) get(key uint64) *entry {
	slot := uint32(key)
	if slot>>registryChunkBits >= registryChunks {
		return nil
	}
	chunk := r.chunks[slot>>registryChunkBits].Load()
	if chunk == nil {
		return nil
	}
	e := chunk[slot&(registryChunkSize-1)].Load()
	if e == nil || e.key != key {
		return nil
	}
	return e
}

func (r *registry) remove(key uint64) {
	slot := uint32(key)
	chunk := r.chunks[slot>>registryChunkBits].Load()
	if chunk == nil {
		return
	}
	p := &chunk[slot&(registryChunkSize-1)]
	if e := p.Load(); e != nil && e.key == key {
		p.Store(nil)
		r.mu.Lock()
		r.free = append(r.free, slot)
		r.mu.Unlock()
	}
}
