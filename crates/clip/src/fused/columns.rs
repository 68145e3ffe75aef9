//! The columns matrix of a convolution (`im2col`) and its transpose (`col2im`): row
//! `(c, i, j)` of one image's columns holds, for every output pixel, the input value that kernel
//! tap `(i, j)` of channel `c` multiplies (zero in the padding).

use rayon::prelude::*;

use super::conv::Geometry;

/// The range of output positions `o` whose input position `o stride + offset - pad` lies inside
/// `0..len`, with `outputs` positions in all.
fn valid_outputs(outputs: usize, len: usize, stride: usize, offset: usize, pad: usize) -> std::ops::Range<usize> {
    // o stride + offset >= pad  <=>  o >= ceil((pad - offset) / stride)
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    // o stride + offset - pad < len  <=>  o stride < len + pad - offset
    let hi = (len + pad).checked_sub(offset).map_or(0, |limit| limit.div_ceil(stride)).min(outputs);
    lo.min(hi)..hi
}

/// Row `row` of one image's columns matrix from its input `image` `[c_in, h, w]`, for the output
/// rows `band` (`out` is `band.len() ow` long).
fn im2col_row(image: &[f32], g: &Geometry, row: usize, band: std::ops::Range<usize>, out: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let (c, i, j) = (row / (kh * kw), row / kw % kh, row % kw);
    let plane = &image[c * g.h * g.w..][..g.h * g.w];
    let [sy, sx] = g.stride;
    let rows = valid_outputs(g.oh, g.h, sy, i, g.pad[0]);
    let cols = valid_outputs(g.ow, g.w, sx, j, g.pad[1]);
    for (oy, line) in band.zip(out.chunks_exact_mut(g.ow)) {
        if !rows.contains(&oy) || cols.is_empty() {
            line.fill(0.0);
            continue;
        }
        let src = &plane[(oy * sy + i - g.pad[0]) * g.w..][..g.w];
        line[..cols.start].fill(0.0);
        line[cols.end..].fill(0.0);
        let first = cols.start * sx + j - g.pad[1];
        if sx == 1 {
            line[cols.clone()].copy_from_slice(&src[first..first + cols.len()]);
        } else {
            for (dst, &v) in line[cols.clone()].iter_mut().zip(src[first..].iter().step_by(sx)) {
                *dst = v;
            }
        }
    }
}

/// Adds row `row` of one image's columns gradient back into the input gradient plane of its
/// channel, `plane` `[h, w]` (the transpose of [`im2col_row`]).
fn col2im_row(d_col: &[f32], g: &Geometry, row: usize, plane: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let (i, j) = (row / kw % kh, row % kw);
    let [sy, sx] = g.stride;
    let rows = valid_outputs(g.oh, g.h, sy, i, g.pad[0]);
    let cols = valid_outputs(g.ow, g.w, sx, j, g.pad[1]);
    if cols.is_empty() {
        return;
    }
    for oy in rows {
        let line = &d_col[oy * g.ow..][..g.ow];
        let dst = &mut plane[(oy * sy + i - g.pad[0]) * g.w..][..g.w];
        let first = cols.start * sx + j - g.pad[1];
        if sx == 1 {
            for (d, &v) in dst[first..first + cols.len()].iter_mut().zip(&line[cols.clone()]) {
                *d += v;
            }
        } else {
            for (d, &v) in dst[first..].iter_mut().step_by(sx).zip(&line[cols.clone()]) {
                *d += v;
            }
        }
    }
}

/// One image's columns matrix `[c_in kh kw, band.len() ow]` for the output rows `band` into
/// `col`, the rows in parallel when `parallel`.
pub(super) fn im2col(image: &[f32], g: &Geometry, band: std::ops::Range<usize>, col: &mut [f32], parallel: bool) {
    let n = band.len() * g.ow;
    if parallel {
        col.par_chunks_mut(n).enumerate().for_each(|(row, out)| im2col_row(image, g, row, band.clone(), out));
    } else {
        col.chunks_exact_mut(n).enumerate().for_each(|(row, out)| im2col_row(image, g, row, band.clone(), out));
    }
}

/// One image's input gradient `[c_in, h, w]` (overwritten) from its columns gradient, the
/// channels in parallel when `parallel`.
pub(super) fn col2im(d_col: &[f32], g: &Geometry, d_image: &mut [f32], parallel: bool) {
    let per_channel = g.kernel[0] * g.kernel[1];
    let n = g.pixels();
    let channel = |(c, plane): (usize, &mut [f32])| {
        plane.fill(0.0);
        for row in c * per_channel..(c + 1) * per_channel {
            col2im_row(&d_col[row * n..][..n], g, row, plane);
        }
    };
    if parallel {
        d_image.par_chunks_mut(g.h * g.w).enumerate().for_each(channel);
    } else {
        d_image.chunks_exact_mut(g.h * g.w).enumerate().for_each(channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_outputs_are_those_inside_the_input() {
        for (outputs, len, stride, offset, pad) in [(9, 9, 1, 0, 1), (6, 11, 2, 2, 1), (5, 9, 2, 0, 2), (4, 3, 1, 2, 0)]
        {
            let range = valid_outputs(outputs, len, stride, offset, pad);
            for o in 0..outputs {
                let at = (o * stride + offset) as isize - pad as isize;
                assert_eq!(
                    range.contains(&o),
                    (0..len as isize).contains(&at),
                    "{outputs} {len} {stride} {offset} {pad}: {o}"
                );
            }
        }
    }
}
