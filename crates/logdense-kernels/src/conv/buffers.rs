//! Output buffers and the parallel loop over tiles: rows that parallel tiles write disjointly,
//! buffers allocated unwritten, and the split of the tiles into one share per thread.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::*;

/// An output buffer that parallel tiles write into, each tile its own rows: a `&mut [T]`
/// split at run time instead of at compile time.
pub(super) struct DisjointRows<'a, T = f32> {
    ptr: *mut T,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: `DisjointRows` is a `&mut [T]` that threads share; the only access is through
// `DisjointRows::row`, whose contract makes concurrent accesses disjoint.
unsafe impl<T: Send> Send for DisjointRows<'_, T> {}
unsafe impl<T: Send> Sync for DisjointRows<'_, T> {}

impl<'a, T> DisjointRows<'a, T> {
    pub(super) fn new(buffer: &'a mut [T]) -> Self {
        DisjointRows {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: std::marker::PhantomData,
        }
    }

    /// The elements `start..start + len` of the buffer, for writing.
    ///
    /// Panics if the range reaches past the end of the buffer.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no other call may hand out a range overlapping it (from
    /// any thread). The kernels uphold this by giving every output row (image, channel, y) to
    /// exactly one tile and dropping each slice before the next is taken.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn row(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "row out of bounds");
        // SAFETY: in bounds (checked), the buffer is mutably borrowed for 'a, and the caller
        // guarantees that no overlapping slice is alive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// The input gradients' buffers, not yet written: the ReLU backward writes every element
/// (each input row belongs to exactly one tile, and the tiles cover every row), so zeroing
/// them first would only cost a pass over the largest buffers of the step.
pub(super) fn unwritten_input_gradients(geo: &Geometry) -> Vec<Vec<MaybeUninit<f32>>> {
    geo.channels
        .iter()
        .map(|&c| unwritten(geo.batch * c * geo.pixels()))
        .collect()
}

/// A buffer of `len` values, allocated and not written.
pub(super) fn unwritten(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation, and the capacity is `len`.
    unsafe { v.set_len(len) };
    v
}

/// The input gradients once every element is written.
///
/// # Safety
///
/// Every element of every buffer must have been written.
pub(super) unsafe fn written(buffers: Vec<Vec<MaybeUninit<f32>>>) -> Vec<Vec<f32>> {
    buffers
        .into_iter()
        // SAFETY: the caller guarantees every element is written.
        .map(|v| unsafe { assume_written(v) })
        .collect()
}

/// A buffer once every element is written.
///
/// # Safety
///
/// Every element must have been written.
pub(super) unsafe fn assume_written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: MaybeUninit<f32> has f32's layout, the allocation is handed over whole
    // (pointer, length, capacity), and the caller guarantees every element is written.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// `dst = src`, writing an output row (one `memcpy`).
pub(super) fn write_row(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    dst.write_copy_of_slice(src);
}

/// Splits the tiles into one contiguous share per thread and runs `each` on every tile of a
/// share with that share's state, returning each share's state.
pub(super) fn for_tiles<S: Send>(
    bands: &Bands,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut S, &Tile) + Sync,
) -> Vec<S> {
    for_tiles_with(bands, || (), init, |_, state, tile| each(state, tile))
}

/// [`for_tiles`] with a second, thread-bound state per share (`local`, made and dropped on the
/// thread that runs the share: AMX tiles), which is not returned.
pub(super) fn for_tiles_with<L, S: Send>(
    bands: &Bands,
    local: impl Fn() -> L + Sync,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut L, &mut S, &Tile) + Sync,
) -> Vec<S> {
    let tiles = bands.tiles.len();
    let shares = rayon::current_num_threads().clamp(1, tiles.max(1));
    (0..shares)
        .into_par_iter()
        .map(|s| {
            let mut thread_state = local();
            let mut state = init();
            for tile in &bands.tiles[(s * tiles / shares)..((s + 1) * tiles / shares)] {
                each(&mut thread_state, &mut state, tile);
            }
            state
        })
        .collect()
}
