package persist

import (
	"os"
	"sync/atomic"
	"time"
)

// BatchObserver is told of every group commit: how many operations it held and how long the
// transaction took. It runs on the writer goroutine and must not block.
type BatchObserver func(ops int, took time.Duration)

// observing holds what telemetry reads of the writer. Counters are atomic: scrapes read them
// from other goroutines.
type observing struct {
	observer atomic.Pointer[BatchObserver]
	byKind   [opSolo + 1]atomic.Uint64
}

// OperationKinds names the operations counted by OperationCount, for metric labels.
var operationKinds = [...]struct {
	kind opKind
	name string
}{
	{opSaveRetained, "save_retained"},
	{opDeleteRetained, "delete_retained"},
	{opSaveSession, "save_session"},
	{opDeleteSession, "delete_session"},
	{opSaveSubscription, "save_subscription"},
	{opDeleteSubscription, "delete_subscription"},
	{opAddDeliveries, "add_deliveries"},
	{opUpdateDelivery, "update_delivery"},
	{opDeleteDelivery, "delete_delivery"},
	{opAddInbound, "add_inbound"},
	{opDeleteInbound, "delete_inbound"},
}

// OperationKinds lists the operation names OperationCount knows.
func OperationKinds() []string {
	names := make([]string, len(operationKinds))
	for i, k := range operationKinds {
		names[i] = k.name
	}
	return names
}

// OperationCount is how many operations of the named kind the writer has committed or
// failed since Open.
func (s *Store) OperationCount(name string) uint64 {
	for _, k := range operationKinds {
		if k.name == name {
			return s.obs.byKind[k.kind].Load()
		}
	}
	return 0
}

// SetBatchObserver installs fn (nil removes it); safe at any time.
func (s *Store) SetBatchObserver(fn BatchObserver) {
	if fn == nil {
		s.obs.observer.Store(nil)
		return
	}
	s.obs.observer.Store(&fn)
}

// observe counts a group commit's operations and reports it to the observer.
func (s *Store) observe(ops []op, took time.Duration) {
	for i := range ops {
		s.obs.byKind[ops[i].kind].Add(1)
	}
	if fn := s.obs.observer.Load(); fn != nil {
		(*fn)(len(ops), took)
	}
}

// SizeBytes is the size of the database file and its write-ahead log; 0 in memory.
func (s *Store) SizeBytes() int64 {
	if !s.durable {
		return 0
	}
	var total int64
	for _, name := range []string{s.file, s.file + "-wal"} {
		if fi, err := os.Stat(name); err == nil {
			total += fi.Size()
		}
	}
	return total
}
