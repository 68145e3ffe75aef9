//! A stride-1 convolution as `kh kw` products over shifted views of one zero-padded copy of the
//! input, instead of one product over the columns matrix (`im2col`), which holds every input
//! value `kh kw` times.
//!
//! With the input of one image zero-padded to `[c_in, hp, wp]` (`wp = ow + kw - 1`) and laid out
//! row after row, output pixel `(oy, ox)` at the "wide" position `q = oy wp + ox` reads, for the
//! kernel offset `(i, j)`, the padded value at `q + i wp + j`. So for every offset the whole
//! output is one product `Y_wide += W[:, :, i, j] P[:, i wp + j ..]` (`[c_out, c_in]` times
//! `[c_in, rows wp]`, a plain strided matrix), and the columns `ox >= ow` of each wide row, which
//! read across the row's end, are computed and dropped.
//!
//! What it trades: the columns matrix (`kh kw c_in` values per output pixel, written then read
//! by the product) for one padded copy (`c_in` per pixel), `kh kw - 1` extra passes over the
//! output block in the products, the `(kw - 1) / ow` wasted columns and one copy of the output
//! out of the wide rows. [`pays`] says where that is a gain: the ModifiedResNet's stem and its
//! 3x3 convolutions on 28 x 28 and larger maps (`docs/BENCHMARKS.md`, ninth session).

use std::ops::Range;

use super::conv::{Affine, Geometry};
use super::product::gemm_f32;

/// Whether [`band`] computes the convolution `g` instead of the columns matrix: stride 1, a
/// kernel larger than 1x1, at least 16 input channels (each product is `c_in` deep) and at most
/// one wasted column in eight (`(kw - 1) / ow`).
pub(super) fn pays(g: &Geometry) -> bool {
    g.stride == [1, 1] && g.kernel[0] * g.kernel[1] > 1 && g.c_in >= 16 && (g.kernel[1] - 1) * 8 <= g.ow
}

/// Scratch of one task: the padded input rows and the wide output block.
#[derive(Default)]
pub(super) struct Scratch {
    padded: Vec<f32>,
    wide: Vec<f32>,
}

/// Output rows `rows` of one image's stride-1 convolution: `image` `[c_in, h, w]`, `weight`
/// `[c_out, c_in, kh, kw]`, written to `out`, which is that image's output `[c_out, oh ow]`
/// (row stride `oh ow`), at its pixels `rows.start ow ..`, then `affine` per channel if given.
///
/// # Safety
/// `out` must point at an image's output `[c_out, oh ow]`, of which this call alone writes
/// the rows `rows` meanwhile.
pub(super) unsafe fn band(
    image: &[f32],
    weight: &[f32],
    g: &Geometry,
    rows: Range<usize>,
    scratch: &mut Scratch,
    out: *mut f32,
    affine: Option<Affine>,
) {
    debug_assert!(g.stride == [1, 1] && !rows.is_empty() && rows.end <= g.oh);
    let [kh, kw] = g.kernel;
    let [top, left] = g.pad;
    let wp = g.ow + kw - 1; // = left + w + right
    let band = rows.len();
    let padded_rows = band + kh - 1;
    let plane = padded_rows * wp;
    // The padded input rows `rows.start ..` of every channel, and kw - 1 zeros after the last:
    // the dropped columns of the last wide row read that far.
    let padded = &mut scratch.padded;
    padded.clear();
    padded.resize(g.c_in * plane + kw - 1, 0.0);
    for (c, dst) in padded.chunks_exact_mut(plane).enumerate() {
        let src = &image[c * g.h * g.w..][..g.h * g.w];
        for (r, line) in dst.chunks_exact_mut(wp).enumerate() {
            // Padded row `rows.start + r` is input row `rows.start + r - top`, if there is one.
            let Some(y) = (rows.start + r).checked_sub(top).filter(|&y| y < g.h) else { continue };
            line[left..left + g.w].copy_from_slice(&src[y * g.w..][..g.w]);
        }
    }
    let wide_len = band * wp;
    let wide = &mut scratch.wide;
    wide.resize(g.c_out * wide_len, 0.0);
    let taps = kh * kw;
    for i in 0..kh {
        for j in 0..kw {
            // SAFETY: W[:, :, i, j] is [c_out, c_in] at row stride c_in kh kw and column stride
            // kh kw inside `weight`; the shifted view [c_in, band wp] at row stride `plane` ends
            // at most (kh - 1) wp + kw - 1 past `c_in plane - plane + band wp`, inside `padded`;
            // `wide` [c_out, band wp] is this task's.
            unsafe {
                gemm_f32(
                    [g.c_out, wide_len, g.c_in],
                    (wide.as_mut_ptr(), wide_len as isize, 1),
                    (weight.as_ptr().add(i * kw + j), (g.c_in * taps) as isize, taps as isize),
                    (padded.as_ptr().add(i * wp + j), plane as isize, 1),
                    1.0,
                    i + j > 0,
                    super::product::Threads::One,
                );
            }
        }
    }
    // The first `ow` columns of each wide row into the output.
    let n = g.pixels();
    for (c, block) in wide.chunks_exact(wide_len).enumerate() {
        for (r, line) in block.chunks_exact(wp).enumerate() {
            // SAFETY: channel c, output row rows.start + r of this image: the caller's.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.add(c * n + (rows.start + r) * g.ow), g.ow) };
            dst.copy_from_slice(&line[..g.ow]);
            if let Some(affine) = &affine {
                affine.apply(c, c * n + (rows.start + r) * g.ow, dst);
            }
        }
    }
}
