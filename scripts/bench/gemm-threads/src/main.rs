//! GFLOP/s of `gemm::gemm` on the encoders' product shapes (`y[m, n] = a[m, k] b[k, n]`, all
//! row-major, f32) with gemm's own threading (`Parallelism::Rayon`) and split into one piece per
//! thread along the larger of `m` and `n`, each piece on one thread (`Parallelism::None`), as
//! `clip_burn::fused::product` does. Median of 15 after 3 warm-up runs; `RAYON_NUM_THREADS` sets
//! the threads. Interleaved per shape so that both see the same machine load.

use std::time::Instant;

#[derive(Clone, Copy)]
struct Shared(*mut f32);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// `c = a b` with the given threading: `split` = one piece per thread.
fn product(a: &[f32], b: &[f32], c: &mut [f32], [m, n, k]: [usize; 3], split: bool) {
    let (ldc, ldb) = (n as isize, n as isize);
    if !split {
        unsafe {
            gemm::gemm(m, n, k, c.as_mut_ptr(), 1, ldc, false, a.as_ptr(), 1, k as isize, b.as_ptr(), 1, ldb, 0.0, 1.0, false, false, false, gemm::Parallelism::Rayon(0));
        }
        return;
    }
    let pieces = rayon::current_num_threads();
    let (len, align) = if m >= n { (m, 64) } else { (n, 16) };
    let step = len.div_ceil(pieces).div_ceil(align) * align;
    let dst = Shared(c.as_mut_ptr());
    rayon::scope(|s| {
        for piece in 0..len.div_ceil(step) {
            let (start, size) = (piece * step, step.min(len - piece * step));
            s.spawn(move |_| unsafe {
                let dst = dst;
                if m >= n {
                    gemm::gemm(size, n, k, dst.0.add(start * n), 1, ldc, false, a.as_ptr().add(start * k), 1, k as isize, b.as_ptr(), 1, ldb, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
                } else {
                    gemm::gemm(m, size, k, dst.0.add(start), 1, ldc, false, a.as_ptr(), 1, k as isize, b.as_ptr().add(start), 1, ldb, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
                }
            });
        }
    });
}

fn gflops(dims @ [m, n, k]: [usize; 3], split: bool) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; m * n];
    for _ in 0..3 {
        product(&a, &b, &mut c, dims, split);
    }
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            product(&a, &b, &mut c, dims, split);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    2.0 * (m * n * k) as f64 / times[times.len() / 2] / 1e9
}

fn main() {
    println!("threads: {}", rayon::current_num_threads());
    println!("{:<34} {:>14} {:>10} {:>6}", "shape [m, n, k]", "gemm threads", "split", "ratio");
    let shapes: [(&str, [usize; 3]); 12] = [
        ("rn50 layer1 3x3, one image", [64, 3136, 576]),
        ("rn50 layer2 3x3, one image", [128, 784, 1152]),
        ("rn50 layer3 3x3, one image", [256, 196, 2304]),
        ("rn50 layer4 3x3, one image", [512, 49, 4608]),
        ("rn50 stem 3x3 32->64, one image", [64, 12544, 288]),
        ("rn50 layer1 1x1 64->256", [256, 3136, 64]),
        ("rn50 layer3 1x1 1024->256", [256, 196, 1024]),
        ("vit-b-16 mlp in, one image", [197, 3072, 768]),
        ("vit-b-16 mlp out, one image", [197, 768, 3072]),
        ("vit-b-16 mlp in, eight images", [1576, 3072, 768]),
        ("text qkv, eight prompts", [616, 1536, 512]),
        ("text mlp out, eight prompts", [616, 512, 2048]),
    ];
    for (name, dims) in shapes {
        let (ours, theirs) = (gflops(dims, true), gflops(dims, false));
        println!("{:<34} {:>10.0} GF/s {:>5.0} GF/s {:>6.2}  {dims:?}", name, theirs, ours, ours / theirs);
    }
}
