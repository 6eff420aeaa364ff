package client

import (
	"math/bits"
	"sync/atomic"
)

// This file holds the watermark storage: the part of a [Table] that the request path reads.
//
// Readers never lock. Users live in an open-addressing hash table of atomic slots, published
// through an atomic.Pointer; apps live in a small copy-on-write map of atomic values. Only one
// writer at a time changes either (the follow loop, serialized by Table.writeMu), so a slot
// is claimed without compare-and-swap: the writer stores the watermark before the key, so a
// reader that sees a key always sees a watermark with it.
//
// Growth and pruning build a new slot array and publish it in one pointer store. A reader
// that still holds the old array sees the table as it was an instant earlier, which is the
// same as the event not having arrived yet.

// Watermarks are Unix nanoseconds; 0 means "no watermark".

// userSlot is 16 bytes: with at most 3/4 of the slots in use, and never less than 3/8 after a
// doubling, a table costs between 21 and 43 bytes per user.
type userSlot struct {
	key atomic.Int64 // user id, 0 while the slot is empty
	nb  atomic.Int64 // not-before watermark in Unix nanoseconds
}

// userTable is one generation of the user hash table. Its size is a power of two.
type userTable struct {
	slots []userSlot
	mask  uint64
	shift uint8 // 64 - log2(len(slots)), for Fibonacci hashing
	count int   // entries in use; read and written by the writer only
}

// fibonacci is 2^64 divided by the golden ratio. Multiplying by it spreads sequential ids
// over the whole table, and the top bits are the best mixed.
const fibonacci = 0x9E3779B97F4A7C15

// minUserSlots keeps tiny tables from doubling on every early insert.
const minUserSlots = 64

func newUserTable(capacity int) *userTable {
	// Room for capacity entries at a load factor of at most 3/4.
	n := max(uint64(capacity)*4/3+1, minUserSlots)
	return newUserTableSlots(uint64(1) << bits.Len64(n-1))
}

// newUserTableSlots returns an empty table of size slots, a power of two.
func newUserTableSlots(size uint64) *userTable {
	return &userTable{
		slots: make([]userSlot, size),
		mask:  size - 1,
		shift: uint8(64 - bits.TrailingZeros64(size)),
	}
}

func (u *userTable) home(id int64) uint64 {
	return (uint64(id) * fibonacci) >> u.shift
}

// get returns the watermark of user id, or 0. It allocates nothing and takes no lock.
func (u *userTable) get(id int64) int64 {
	for i := u.home(id); ; i = (i + 1) & u.mask {
		s := &u.slots[i]
		switch s.key.Load() {
		case id:
			return s.nb.Load()
		case 0:
			return 0
		}
	}
}

// full reports whether one more entry would push the load factor past 3/4.
func (u *userTable) full() bool {
	return (u.count+1)*4 > len(u.slots)*3
}

// grown returns u, or a copy with twice its slots when one more entry would push the load
// factor past 3/4. Doubling keeps the average cost of an insert constant, and the new table
// 3/8 full. (Sizing it by entries, 2*count+1 at a 3/4 load factor, rounds up to four times
// the slots: 3/16 full, 85 bytes per entry.)
func (u *userTable) grown() *userTable {
	if u.full() {
		n := newUserTableSlots(2 * uint64(len(u.slots)))
		u.copyInto(n, 0)
		return n
	}
	return u
}

// put raises the watermark of user id to nb (max, so replays and reordering do not matter).
// The caller is the only writer and has checked full().
func (u *userTable) put(id, nb int64) {
	for i := u.home(id); ; i = (i + 1) & u.mask {
		s := &u.slots[i]
		switch s.key.Load() {
		case id:
			if nb > s.nb.Load() {
				s.nb.Store(nb)
			}
			return
		case 0:
			s.nb.Store(nb) // before the key: see the file comment
			s.key.Store(id)
			u.count++
			return
		}
	}
}

// rebuilt copies the entries whose watermark is at least cutoff into a new table with room
// for capacity entries.
func (u *userTable) rebuilt(capacity int, cutoff int64) *userTable {
	n := newUserTable(capacity)
	u.copyInto(n, cutoff)
	return n
}

// copyInto puts the entries whose watermark is at least cutoff into n, which has room.
func (u *userTable) copyInto(n *userTable, cutoff int64) {
	for i := range u.slots {
		s := &u.slots[i]
		if id := s.key.Load(); id != 0 {
			if nb := s.nb.Load(); nb >= cutoff {
				n.put(id, nb)
			}
		}
	}
}

// appTable maps app ids to watermarks. The map itself is never changed once published: a new
// app means a new map. A later watermark for a known app is an atomic store into its value.
type appTable map[string]*atomic.Int64

func (a appTable) get(id string) int64 {
	if v, ok := a[id]; ok {
		return v.Load()
	}
	return 0
}
