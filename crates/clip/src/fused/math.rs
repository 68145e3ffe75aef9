//! Element-wise `exp`, softmax and QuickGELU loops that the compiler vectorises.
//!
//! `f32::exp` is a call into the C library per element, which no loop around it can vectorise;
//! it was 5 % of a ViT-B/16 batch (softmax and QuickGELU). [`exp`] is the classic Cephes
//! `expf` (range reduction by `ln 2` in two parts, a degree-6 polynomial, then `2^n` built in
//! the exponent bits), written without branches so that a loop over it compiles to SIMD.
//! Its error is within 2 ulp of the correctly rounded `exp` on the range that matters here
//! (tested against `f64::exp` below). Each loop is compiled three times: for the baseline target,
//! with AVX2 + FMA and with AVX-512 (16 lanes: twice the `exp`s per instruction), chosen at run
//! time.

/// Partial maxima and sums kept side by side in the row loops: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// `log2(e)`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in a part exact in f32 and the remainder (Cody-Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Inputs are clamped here: below, `exp` underflows to (almost) zero; above, it overflows.
const EXP_MIN: f32 = -87.336_55;
const EXP_MAX: f32 = 88.376_26;
/// Adding and subtracting `1.5 * 2^23` rounds an f32 of magnitude below `2^22` to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` for finite `x`; saturates at the ends of f32's range instead of returning 0 or infinity
/// (`e^-87.3` is about `1.2e-38`), which softmax and sigmoid do not notice.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC; // round(x / ln 2), in [-126, 127]
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes `expf` polynomial for e^r - 1 - r on |r| <= ln2 / 2.
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p * r * r + r + 1.0;
    // `2^n` from the integer in `t`'s low mantissa bits (`t` = 1.5 * 2^23 + n): an integer
    // subtraction, where `n as i32` (a saturating conversion) would not vectorise.
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    y * scale
}

/// Declares `$name(args)` that runs `$body` compiled with AVX-512 where the CPU has it, else with
/// AVX2 + FMA where it has those, and for the baseline target otherwise.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

multiversion! {
    /// Softmax of `row` in place, over its first `valid` entries; the rest are set to 0 (the
    /// causal mask). `valid` must be at least 1.
    pub fn softmax_in_place(row: &mut [f32], valid: usize) {
        let (head, tail) = row.split_at_mut(valid);
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = head.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane = lane.max(v);
            }
        }
        let max = chunks.remainder().iter().fold(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), |m, &v| m.max(v));
        let mut sums = [0.0f32; LANES];
        let mut chunks = head.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (sum, v) in sums.iter_mut().zip(chunk.iter_mut()) {
                *v = exp(*v - max);
                *sum += *v;
            }
        }
        let mut sum: f32 = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            sum += *v;
        }
        let sum = sums.iter().sum::<f32>() + sum;
        let inv = 1.0 / sum;
        for v in head.iter_mut() {
            *v *= inv;
        }
        tail.fill(0.0);
    }
}

multiversion! {
    /// `y = x + bias` then `y * sigmoid(1.702 y)` in place, for every row of `rows` (row length
    /// `bias.len()`).
    pub fn bias_quick_gelu_in_place(rows: &mut [f32], bias: &[f32]) {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                let y = *v + b;
                *v = y / (1.0 + exp(-1.702 * y));
            }
        }
    }
}

multiversion! {
    /// `x + bias` in place, for every row of `rows` (row length `bias.len()`).
    pub fn bias_add_in_place(rows: &mut [f32], bias: &[f32]) {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

multiversion! {
    /// `a = a + b` element by element.
    pub fn add_in_place(a: &mut [f32], b: &[f32]) {
        for (a, &b) in a.iter_mut().zip(b) {
            *a += b;
        }
    }
}

multiversion! {
    /// `v * scale + shift`, then `max(0, .)` when `relu`, in place.
    pub fn affine_in_place(values: &mut [f32], scale: f32, shift: f32, relu: bool) {
        if relu {
            for v in values.iter_mut() {
                *v = (*v * scale + shift).max(0.0);
            }
        } else {
            for v in values.iter_mut() {
                *v = *v * scale + shift;
            }
        }
    }
}

multiversion! {
    /// `v * scale + shift + r` for the matching `r` of `residual`, then `max(0, .)` when `relu`,
    /// in place: the same operations, in the same order, as [`affine_in_place`] without ReLU
    /// followed by [`add_relu_in_place`].
    pub fn affine_add_in_place(values: &mut [f32], scale: f32, shift: f32, residual: &[f32], relu: bool) {
        if relu {
            for (v, &r) in values.iter_mut().zip(residual) {
                *v = (*v * scale + shift + r).max(0.0);
            }
        } else {
            for (v, &r) in values.iter_mut().zip(residual) {
                *v = *v * scale + shift + r;
            }
        }
    }
}

multiversion! {
    /// `a = max(0, a + b)` element by element.
    pub fn add_relu_in_place(a: &mut [f32], b: &[f32]) {
        for (a, &b) in a.iter_mut().zip(b) {
            *a = (*a + b).max(0.0);
        }
    }
}

multiversion! {
    /// `v * sigmoid(1.702 v)` in place (QuickGELU without a bias).
    pub fn quick_gelu_in_place(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = *v / (1.0 + exp(-1.702 * *v));
        }
    }
}

multiversion! {
    /// QuickGELU's backward pass in place: `g = g (s + 1.702 y s (1 - s))`, `s = sigmoid(1.702 y)`,
    /// for the incoming gradient `g` and the activation's input `y`.
    pub fn quick_gelu_backward_in_place(g: &mut [f32], y: &[f32]) {
        for (g, &y) in g.iter_mut().zip(y) {
            let s = 1.0 / (1.0 + exp(-1.702 * y));
            *g *= s + 1.702 * y * s * (1.0 - s);
        }
    }
}

multiversion! {
    /// Softmax's backward pass for one row in place: `d = p (d - sum(p d))`, for the gradient `d`
    /// of the probabilities `p`, which becomes the gradient of the scores.
    pub fn softmax_backward_in_place(d: &mut [f32], p: &[f32]) {
        let mut lanes = [0.0f32; LANES];
        let (dc, pc) = (d.chunks_exact(LANES), p.chunks_exact(LANES));
        let (dr, pr) = (dc.remainder(), pc.remainder());
        for (dc, pc) in dc.zip(pc) {
            for ((lane, &d), &p) in lanes.iter_mut().zip(dc).zip(pc) {
                *lane += d * p;
            }
        }
        let dot = lanes.iter().sum::<f32>() + dr.iter().zip(pr).map(|(d, p)| d * p).sum::<f32>();
        for (d, &p) in d.iter_mut().zip(p) {
            *d = p * (*d - dot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `a` and the f32 nearest `b`.
    fn ulps(a: f32, b: f64) -> u32 {
        let b = b as f32;
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_correctly_rounded_value() {
        let mut worst = (0, 0.0f32);
        // Ten million points from -87 to 88 (every argument softmax and sigmoid can pass on
        // after the clamp).
        let n = 10_000_000;
        for i in 0..=n {
            let x = -87.0 + 175.0 * (i as f64 / n as f64);
            let x = x as f32;
            let u = ulps(exp(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2, "exp({}) is {} ulp off", worst.1, worst.0);
    }

    #[test]
    fn exp_saturates_instead_of_returning_inf_or_nan() {
        assert!(exp(-1e4) >= 0.0 && exp(-1e4) < 1e-37);
        assert!(exp(1e4).is_finite() && exp(1e4) > 1e38);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn softmax_matches_the_f64_formula_and_zeroes_the_masked_tail() {
        let mut row: Vec<f32> = (0..21).map(|i| ((i * 37) % 11) as f32 * 0.7 - 3.0).collect();
        let input = row.clone();
        softmax_in_place(&mut row, 13);
        let max = input[..13].iter().cloned().fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
        let sum: f64 = input[..13].iter().map(|&v| (v as f64 - max).exp()).sum();
        for (i, (&got, &x)) in row.iter().zip(&input).enumerate() {
            let want = if i < 13 { (x as f64 - max).exp() / sum } else { 0.0 };
            // f32: exp within 2 ulp, the sum of 13 terms, one product: 1e-6 relative bounds it.
            assert!((got as f64 - want).abs() <= 1e-6 * want, "{i}: {got} vs {want}");
        }
    }

    #[test]
    fn quick_gelu_matches_the_f64_formula() {
        let bias = [0.5f32, -1.0, 2.0];
        let mut rows: Vec<f32> = (0..30).map(|i| (i as f32 - 15.0) * 0.9).collect();
        let input = rows.clone();
        bias_quick_gelu_in_place(&mut rows, &bias);
        for (i, (&got, &x)) in rows.iter().zip(&input).enumerate() {
            let y = x as f64 + bias[i % 3] as f64;
            let want = y / (1.0 + (-1.702 * y).exp());
            assert!((got as f64 - want).abs() <= 1e-6 * want.abs() + 1e-30, "{i}: {got} vs {want}");
        }
    }
}
