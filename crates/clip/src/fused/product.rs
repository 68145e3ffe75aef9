//! The one wrapper around `gemm::gemm` for the fused kernels: matrices as (pointer, row stride,
//! column stride), and a product on all threads that gives each thread one piece of its own.
//!
//! Why not gemm's own threading (`Parallelism::Rayon`): on the shapes of these models and two
//! threads it cuts a product into many pieces with a synchronisation between them, and ran at
//! 0.5 to 0.9 times the speed of two halves on one thread each on the ModifiedResNet's 3x3
//! convolutions of one image, and at 0.75 to 1.1 times on the ViT's and the text encoder's
//! linears (`scripts/bench/gemm-threads`, docs/BENCHMARKS.md).

use std::ops::Range;

use rayon::prelude::*;

/// A matrix for gemm: (first element, row stride, column stride), in elements.
pub(super) type Matrix<P> = (P, isize, isize);

/// How a product is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Threads {
    /// On the calling thread (the caller runs tasks in parallel).
    One,
    /// Split along the larger of `m` and `n` into one piece per thread of the rayon pool.
    All,
}

/// `dst = factor lhs rhs`, or `dst += factor lhs rhs` when `accumulate`, for `lhs` `m x k` and
/// `rhs` `k x n` (`[m, n, k]`).
///
/// # Safety
/// Every element the strides reach must be inside its allocation, and `dst`'s must not be read
/// or written by anyone else meanwhile.
pub(super) unsafe fn gemm_f32(
    dims: [usize; 3],
    dst: Matrix<*mut f32>,
    lhs: Matrix<*const f32>,
    rhs: Matrix<*const f32>,
    factor: f32,
    accumulate: bool,
    threads: Threads,
) {
    let write = if accumulate { Write::Accumulate } else { Write::Overwrite };
    // SAFETY: the caller's.
    unsafe { gemm_f32_then(dims, dst, lhs, rhs, factor, write, threads, &|_| {}) }
}

/// What a product does with its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Write {
    /// `dst = product`.
    Overwrite,
    /// `dst += product`.
    Accumulate,
    /// `dst = product` into memory that may be uninitialised: each piece is written by gemm
    /// without being read, or where gemm's path for its shape might read it
    /// ([`writes_every_element`]), gets zeros first, on its own thread (so that no element is
    /// ever read before it is written, and no thread clears the whole output alone beforehand).
    Uninitialised,
}

/// The part of `dst` that one piece of a product wrote: its rows and its columns.
pub(super) type Piece = (Range<usize>, Range<usize>);

/// [`gemm_f32`] with `write`, then `then(piece)` for every piece of `dst` on the thread that just computed it
/// (the whole of `dst` when the product is not split), while that piece is still in its cache:
/// where a bias and an activation go, instead of another pass over `dst` on all threads.
///
/// # Safety
/// As [`gemm_f32`]; `then` may write the piece it is given, and nothing else. With
/// [`Write::Uninitialised`], `dst` may be uninitialised memory, and every element of it is
/// initialised when this returns.
#[allow(clippy::too_many_arguments)] // gemm's own argument list, plus what runs after it
pub(super) unsafe fn gemm_f32_then(
    [m, n, k]: [usize; 3],
    dst: Matrix<*mut f32>,
    lhs: Matrix<*const f32>,
    rhs: Matrix<*const f32>,
    factor: f32,
    write: Write,
    threads: Threads,
    then: &(dyn Fn(Piece) + Sync),
) {
    let accumulate = write == Write::Accumulate;
    let fresh = write == Write::Uninitialised;
    let pieces = match threads {
        Threads::One => 1,
        Threads::All => rayon::current_num_threads(),
    };
    if pieces <= 1 || m * n * k < 1 << 18 {
        // SAFETY: the caller's.
        unsafe {
            if fresh && !writes_every_element([m, n, k]) {
                zero(dst, (0..m, 0..n));
            }
            gemm_one([m, n, k], dst, lhs, rhs, factor, accumulate)
        };
        then((0..m, 0..n));
        return;
    }
    // Along m, whole panels of gemm's 64-row (AVX-512) kernel; along n, of 16 columns.
    let (len, align) = if m >= n { (m, 64) } else { (n, 16) };
    let step = len.div_ceil(pieces).div_ceil(align) * align;
    let (dst, lhs, rhs) = (Shared(dst), Shared(lhs), Shared(rhs));
    (0..len.div_ceil(step)).into_par_iter().for_each(|piece| {
        let (start, size) = (piece * step, step.min(len - piece * step));
        let (d, l, r) = (dst.get(), lhs.get(), rhs.get());
        // SAFETY: each piece reads the caller's matrices inside their bounds and writes its own
        // rows (or columns) of `dst`, which no other piece touches.
        unsafe {
            let piece = if m >= n { (start..start + size, 0..n) } else { (0..m, start..start + size) };
            if fresh && !writes_every_element([piece.0.len(), piece.1.len(), k]) {
                zero(d, piece.clone());
            }
            if m >= n {
                let d = (d.0.offset(start as isize * d.1), d.1, d.2);
                let l = (l.0.offset(start as isize * l.1), l.1, l.2);
                gemm_one([size, n, k], d, l, r, factor, accumulate);
            } else {
                let d = (d.0.offset(start as isize * d.2), d.1, d.2);
                let r = (r.0.offset(start as isize * r.2), r.1, r.2);
                gemm_one([m, size, k], d, l, r, factor, accumulate);
            }
            then(piece);
        }
    });
}

/// Whether `gemm::gemm` overwriting an `[m, n, k]` product (`read_dst` false) writes every
/// element of `dst` without reading it, so that uninitialised memory needs no zeros first: its
/// blocked kernel path, whose first depth block stores `beta * sum` (gemm-common 0.19
/// `microkernel!`, `alpha_status == 0`). Not its other paths, which may compute `alpha * dst`:
/// `k <= 2` (`gevv`), a single row or column (`gemv`), at most 256 elements (the horizontal
/// kernel). Zeroing a fresh output was 2 to 3 % of a ViT-B/16 batch (`perf`).
fn writes_every_element([m, n, k]: [usize; 3]) -> bool {
    k > 2 && m > 1 && n > 1 && m * n > 256
}

/// Writes zeros to the elements `piece` of `dst`.
///
/// # Safety
/// They must be inside `dst`'s allocation, and no one else's meanwhile.
unsafe fn zero((dst, rs, cs): Matrix<*mut f32>, (rows, cols): Piece) {
    for r in rows {
        // SAFETY: the caller's.
        unsafe {
            let row = dst.offset(r as isize * rs);
            if cs == 1 {
                std::ptr::write_bytes(row.add(cols.start), 0, cols.len());
            } else {
                for c in cols.clone() {
                    row.offset(c as isize * cs).write(0.0);
                }
            }
        }
    }
}

/// [`gemm_f32`] on the calling thread.
///
/// # Safety
/// As [`gemm_f32`].
unsafe fn gemm_one(
    [m, n, k]: [usize; 3],
    (dst, dst_rs, dst_cs): Matrix<*mut f32>,
    (lhs, lhs_rs, lhs_cs): Matrix<*const f32>,
    (rhs, rhs_rs, rhs_cs): Matrix<*const f32>,
    factor: f32,
    accumulate: bool,
) {
    // SAFETY: the caller's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            factor,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// A matrix the pieces of one product share (each writes only its own part of `dst`).
#[derive(Clone, Copy)]
struct Shared<P>(Matrix<P>);
// SAFETY: see `gemm_f32`: the pieces write disjoint parts, and read-only matrices are shared.
unsafe impl<P> Send for Shared<P> {}
unsafe impl<P> Sync for Shared<P> {}

impl<P: Copy> Shared<P> {
    fn get(self) -> Matrix<P> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by definition, in f64.
    fn naive(a: &[f32], b: &[f32], [m, n, k]: [usize; 3]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn split_products_match_the_definition_on_any_pool() {
        // Shapes taller than wide, wider than tall, not multiples of the alignment, and one
        // below the size that is split at all; accumulation and a factor.
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
            pool.install(|| {
                // And each of gemm's other paths (`writes_every_element`): depth 2, one row, one
                // column, 16 x 16; the destination of `Write::Uninitialised` starts as NaN.
                let shapes = [
                    [200, 37, 50],
                    [37, 300, 41],
                    [131, 129, 33],
                    [5, 7, 3],
                    [40, 30, 2],
                    [1, 300, 20],
                    [300, 1, 20],
                    [16, 16, 9],
                ];
                for dims @ [m, n, k] in shapes {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
                    let want = naive(&a, &b, dims);
                    let mut c = vec![1.0f32; m * n];
                    let (lhs, rhs) = ((a.as_ptr(), k as isize, 1), (b.as_ptr(), n as isize, 1));
                    // SAFETY: the matrices are the vectors' row-major layouts.
                    unsafe { gemm_f32(dims, (c.as_mut_ptr(), n as isize, 1), lhs, rhs, 2.0, true, Threads::All) };
                    for (got, want) in c.iter().zip(&want) {
                        assert_eq!(*got, 1.0 + 2.0 * want, "{dims:?} on {threads} threads");
                    }
                    // Each piece is handed to `then` once, after it is written: doubling every
                    // piece doubles the whole product exactly once.
                    let mut d = vec![f32::NAN; m * n];
                    let dst = crate::fused::SharedMut(d.as_mut_ptr());
                    let twice = |(rows, cols): Piece| {
                        for r in rows {
                            for c in cols.clone() {
                                // SAFETY: inside `d`, and this piece's alone.
                                unsafe { *dst.get().add(r * n + c) *= 2.0 };
                            }
                        }
                    };
                    let out = (d.as_mut_ptr(), n as isize, 1);
                    unsafe { gemm_f32_then(dims, out, lhs, rhs, 1.0, Write::Uninitialised, Threads::All, &twice) };
                    for (got, want) in d.iter().zip(&want) {
                        assert_eq!(*got, 2.0 * want, "{dims:?} with `then` on {threads} threads");
                    }
                    // Transposed destination (column-major), overwritten.
                    let mut t = vec![9.0f32; m * n];
                    unsafe { gemm_f32(dims, (t.as_mut_ptr(), 1, m as isize), lhs, rhs, 1.0, false, Threads::All) };
                    for i in 0..m {
                        for j in 0..n {
                            assert_eq!(t[j * m + i], want[i * n + j], "{dims:?} transposed on {threads} threads");
                        }
                    }
                }
            });
        }
    }
}
