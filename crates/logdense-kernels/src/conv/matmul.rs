//! The `gemm` product on strided matrix views, bounds-checked: the f32 path where the direct
//! kernels do not run.

use gemm::{gemm, Parallelism};

/// A strided matrix view: the slice it starts at, its row stride and its column stride.
type View<'a, T> = (T, usize, usize);

/// The one past the last element a `rows x cols` matrix with strides `(rs, cs)` addresses
/// (0 when it is empty).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, each matrix given as a slice it starts at
/// with its (row stride, column stride), on the calling thread.
///
/// Panics if a matrix reaches past the end of its slice.
///
/// # Safety
///
/// Safe to call. Inside, `gemm::gemm` is called on raw pointers; its contract is that each of
/// the three pointers addresses a valid strided matrix of the given shape for the duration of
/// the call and that `dst` does not overlap `lhs` or `rhs`. The asserts check that every
/// addressed element lies inside its slice, and `dst` is a `&mut` borrow, which cannot alias
/// the shared borrows `lhs` and `rhs`.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: View<&mut [f32]>,
    accumulate: bool,
    lhs: View<&[f32]>,
    rhs: View<&[f32]>,
) {
    assert!(
        extent(m, n, dst.1, dst.2) <= dst.0.len(),
        "matmul: dst out of bounds"
    );
    assert!(
        extent(m, k, lhs.1, lhs.2) <= lhs.0.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        extent(k, n, rhs.1, rhs.2) <= rhs.0.len(),
        "matmul: rhs out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every addressed element inside its slice, and the borrows
    // keep `dst` apart from `lhs` and `rhs` (see the doc comment).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.0.as_mut_ptr(),
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}
