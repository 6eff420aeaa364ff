package client

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
	"unsafe"
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
	slots := make([]userSlot, size)
	adviseHugePages(slots)
	return &userTable{
		slots: slots,
		mask:  size - 1,
		shift: uint8(64 - bits.TrailingZeros64(size)),
	}
}

func (u *userTable) home(id int64) uint64 {
	return (uint64(id) * fibonacci) >> (u.shift & 63) // & 63: no check for shifts past 63
}

// homeSlot is &u.slots[u.home(id)] without the bounds check, which the compiler cannot
// prove needless: home is below len(slots) by construction (a 64-bit hash shifted right by
// 64 - log2(len)). The request path's lookup reads two of these per token.
func (u *userTable) homeSlot(id int64) *userSlot {
	return (*userSlot)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(u.slots)), u.home(id)*uint64(unsafe.Sizeof(userSlot{}))))
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
	_ = u.each(func(id, nb int64) error {
		if nb >= cutoff {
			n.put(id, nb)
		}
		return nil
	})
}

// each calls f with every entry (key, watermark) in slot order, and stops at its first
// error.
func (u *userTable) each(f func(key, nb int64) error) error {
	for i := range u.slots {
		s := &u.slots[i]
		if key := s.key.Load(); key != 0 {
			if err := f(key, s.nb.Load()); err != nil {
				return err
			}
		}
	}
	return nil
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

// appIndex is an app table laid out for the request path: an open-addressing array of
// (id, watermark) hashed from a few words of the id (see home), a few instructions with no
// call where a Go map hashes the whole string through a function call. A lookup runs while
// the user's and the session's slots are on their way from memory, and a shorter one
// leaves the processor room to fetch the next ones. It is built with each new
// app map and never changed; the watermarks it points to are the map's.
type appIndex struct {
	slots []appSlot
	shift uint8
	mask  uint64
}

type appSlot struct {
	id string // "" while empty
	nb *atomic.Int64
}

func newAppIndex(a appTable) *appIndex {
	size := uint64(1) << bits.Len64(max(uint64(len(a))*2, 4)-1) // at most half full
	x := &appIndex{slots: make([]appSlot, size), shift: uint8(64 - bits.TrailingZeros64(size)), mask: size - 1}
	for id, v := range a {
		for i := x.home(id); ; i = (i + 1) & x.mask {
			if x.slots[i].id == "" {
				x.slots[i] = appSlot{id: id, nb: v}
				break
			}
		}
	}
	return x
}

// home hashes the id's length and its first and last 8 bytes (all of it up to 16 bytes;
// below 8, its first, middle and last byte): a few loads and no loop, so that it is inlined
// into the request path's lookup. Ids alike in those bytes share a home and are told apart
// by the comparison.
func (x *appIndex) home(id string) uint64 {
	b := unsafe.Slice(unsafe.StringData(id), len(id)) // read only
	n := len(b)
	var h uint64
	if n >= 8 {
		h = binary.LittleEndian.Uint64(b) ^ binary.LittleEndian.Uint64(b[n-8:])*fibonacci
	} else if n > 0 {
		h = uint64(b[0])<<16 | uint64(b[n/2])<<8 | uint64(b[n-1])
	}
	return (h ^ uint64(n)) * fibonacci >> (x.shift & 63)
}

// get returns the watermark of app id, or 0. It allocates nothing and takes no lock.
// (Table.lookup has the same steps written out, so that the home slot's check is inlined.)
func (x *appIndex) get(id string) int64 {
	if id == "" {
		return 0 // "" marks an empty slot
	}
	i := x.home(id)
	if s := &x.slots[i]; s.id == id {
		return s.nb.Load()
	} else if s.id == "" {
		return 0
	}
	return x.probe(id, i)
}

// probe returns the watermark of app id, looking from the slot after i.
//
//go:noinline
func (x *appIndex) probe(id string, i uint64) int64 {
	for i = (i + 1) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		switch s.id {
		case id:
			return s.nb.Load()
		case "":
			return 0
		}
	}
}
