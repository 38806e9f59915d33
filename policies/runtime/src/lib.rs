//! What the standard library would provide a policy plugin on a WASI target, without
//! importing anything: an allocator over the instance's own linear memory, the canonical
//! ABI's `cabi_realloc` and a panic handler that traps. Every Rust plugin links it, whichever
//! contract version it is built against (`wasmpay-policy` for the current one, `policy-pass`
//! for 0.1.0); it is empty on any other target, where plugins are unit-tested.
//!
//! A plugin instance lives as long as the transfers instance it is composed into — one
//! request for a WASIp2 build, up to `--max-instance-reuse-count` requests (128 with
//! wasmpay's flags) for the WASIp3 one — so the allocator only bumps: freed memory comes
//! back when the instance is dropped, and what a plugin allocates grows with the requests
//! its instance serves.
//!
//! # Memory
//!
//! Spin instantiates every plugin with the component it is composed into, and resets each
//! instance's linear memory when the instance ends: a plugin's memory is paid for page by
//! page.
//! A plugin's `build.rs` asks for a 16 KiB stack (`cargo::rustc-link-arg-cdylib=-zstack-size=16384`)
//! instead of the linker's 1 MiB, which a rule that parses a setting and compares two
//! decimals never comes near; the stack comes first, so an overflow traps instead of
//! overwriting data. Stack, data and a posting's allocations then fit in the one 64 KiB
//! page the module declares, and the allocator never grows memory for them. Measured under
//! Spin with three plugins: 17 pages each cost 23 % of `POST /transfers` throughput, 2
//! pages (a 64 KiB stack) 0.28 ms of Spin's CPU per request, 1 page 0.09 ms.

#![cfg(target_arch = "wasm32")]
#![no_std]

extern crate alloc;

use core::{
    alloc::{GlobalAlloc, Layout},
    arch::wasm32,
    cell::UnsafeCell,
};

const PAGE_BYTES: usize = 65_536;

struct BumpAllocator {
    /// Next free byte and end of the memory this allocator grew, as addresses.
    span: UnsafeCell<(usize, usize)>,
}

// A plugin instance is single-threaded.
unsafe impl Sync for BumpAllocator {}

unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded; no reference to `span` outlives this call.
        let (next, end) = unsafe { &mut *self.span.get() };
        if *end == 0 {
            // The first allocation: the page the module declares has room above the stack
            // and the data, which a posting's strings fit in. Growing memory would cost
            // the runtime an `mprotect` to open the pages and another to close them again
            // when the memory slot is reused: six a request for three plugins, measured.
            *next = &raw const __heap_base as usize;
            *end = wasm32::memory_size(0) * PAGE_BYTES;
        }
        let start = next.next_multiple_of(layout.align());
        let Some(stop) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if stop > *end {
            let pages = layout.size().div_ceil(PAGE_BYTES) + 1;
            let previous_pages = wasm32::memory_grow(0, pages);
            if previous_pages == usize::MAX {
                return core::ptr::null_mut();
            }
            // Memory grown by someone else in between is skipped, never reused.
            if previous_pages * PAGE_BYTES != *end {
                *next = previous_pages * PAGE_BYTES;
            }
            *end = (previous_pages + pages) * PAGE_BYTES;
            // SAFETY: the span now has room for the layout.
            return unsafe { self.alloc(layout) };
        }
        *next = stop;
        start as *mut u8
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

unsafe extern "C" {
    /// The first byte above the stack and the data, placed by the linker.
    static __heap_base: u8;
}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator {
    span: UnsafeCell::new((0, 0)),
};

/// The canonical ABI asks the component for memory to lower strings and lists into.
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    // SAFETY: the canonical ABI passes a valid alignment and, when `old` is not null, the
    // block it got from an earlier call.
    unsafe {
        let new = alloc::alloc::alloc(Layout::from_size_align_unchecked(new_len, align));
        if !old.is_null() && !new.is_null() {
            core::ptr::copy_nonoverlapping(old, new, old_len.min(new_len));
        }
        new
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    wasm32::unreachable()
}

// `memcmp` and friends, which `core` calls and the wasm32-wasip2 target expects from its C
// library. wasi-libc's string functions import nothing; the linker keeps only those used.
#[link(name = "c")]
unsafe extern "C" {}
