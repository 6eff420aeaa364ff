package client

import (
	"syscall"
	"unsafe"
)

// hugePageSize is the size of a transparent huge page on the platforms Linux runs on.
const hugePageSize = 2 << 20

// adviseHugePages asks Linux to back the slots of a large table with transparent huge
// pages (where THP is "always" or "madvise"). A lookup in a table of a million entries
// misses the cache anyway; with 4 KiB pages it misses the TLB too, and the page walk costs
// as much again. Only the whole 2 MiB pages inside the slice are advised, so no memory
// outside it is touched; a kernel that refuses the advice changes nothing.
func adviseHugePages(slots []userSlot) {
	size := uintptr(len(slots)) * unsafe.Sizeof(userSlot{})
	if size < 2*hugePageSize {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(slots))), size)
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	from := (start+hugePageSize-1)&^(hugePageSize-1) - start
	to := (start+size)&^(hugePageSize-1) - start
	if to <= from {
		return
	}
	_ = syscall.Madvise(b[from:to], syscall.MADV_HUGEPAGE)
}
