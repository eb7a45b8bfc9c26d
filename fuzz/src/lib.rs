//! What every fuzz target shares: a global allocator that counts the bytes live and aborts
//! (so libFuzzer saves the input as a crash) when a call allocates more than its input's size
//! times a small factor, plus a floor. libFuzzer's own `-malloc_limit_mb` needs a sanitizer's
//! malloc hooks; this check works with `--sanitizer none` too, and counts every allocation
//! live at once, not only the largest single one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Live bytes above which the allocator aborts (usize::MAX: no check, outside a call).
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static REPORTED: AtomicBool = AtomicBool::new(false);

pub struct Counting;

#[global_allocator]
static ALLOC: Counting = Counting;

impl Counting {
    fn grew(&self, by: usize) {
        let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(live, Ordering::Relaxed);
        let limit = LIMIT.load(Ordering::Relaxed);
        if live > limit && !REPORTED.swap(true, Ordering::Relaxed) {
            // eprintln! of integers does not allocate (stderr is unbuffered).
            eprintln!(
                "==logdense-fuzz== {live} bytes live exceed the limit of {limit} for this input; aborting"
            );
            std::process::abort();
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                self.grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Allowed growth of live bytes during one call: `factor` times the input, plus `floor`.
pub fn check<R>(data: &[u8], factor: usize, floor: usize, run: impl FnOnce(&[u8]) -> R) {
    let base = LIVE.load(Ordering::Relaxed);
    let allowed = data.len().saturating_mul(factor).saturating_add(floor);
    LIMIT.store(base.saturating_add(allowed), Ordering::Relaxed);
    let result = run(data);
    drop(result);
    LIMIT.store(usize::MAX, Ordering::Relaxed);
}

/// Floor of every target: 1 MiB (error messages, small vectors, serde's and toml's tables).
pub const FLOOR: usize = 1 << 20;

/// Floor of the config targets: a config of a few bytes can describe a large network, and
/// validating it builds that network's graph, which `NetSpec`'s caps bound (20,000 layers,
/// 5 million connections: about 40 MiB of input sets). 64 MiB lets every network the caps
/// allow be checked and still catches an allocation past them (the 720 MB that
/// `blocks = [30000000]` took before the caps).
pub const CONFIG_FLOOR: usize = 64 << 20;
