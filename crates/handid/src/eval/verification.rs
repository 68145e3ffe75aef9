//! Verification (one-to-one) figures from the retrieval scores, for forensic reporting.
//!
//! Every query-gallery pair is one comparison: **genuine** when both have the same identity,
//! **impostor** otherwise. Queries are not compared with queries, nor gallery items with gallery
//! items. The decision rule is *declare a match when `score >= threshold`*.
//!
//! Terms follow ISO/IEC 19795-1. The rates here are comparison-level rates, that is the
//! false match rate (FMR) and the false non-match rate (FNMR); without failures to acquire they
//! equal the transaction-level false accept and false reject rates, and the figures use the
//! common names:
//!
//! - `far` = FMR(t) = (impostor comparisons with `score >= t`) / (impostor comparisons);
//! - `frr` = FNMR(t) = (genuine comparisons with `score < t`) / (genuine comparisons);
//! - `tar` = 1 - FNMR(t), the true accept (true match) rate.
//!
//! The ROC is evaluated at every distinct observed score (plus one threshold above all scores,
//! where nothing is accepted) and thinned for output (see [`VerificationOptions`]); the EER and
//! the TAR at a FAR are computed on the full-resolution curve.
//!
//! - **EER**: FAR and FRR are step functions of the threshold. Between the last operating point
//!   with `FAR < FRR` and the first with `FAR >= FRR`, both rates are interpolated linearly and
//!   the EER is the common value where they cross (the threshold is interpolated the same way).
//!   Perfectly separable scores give EER 0.
//! - **TAR at FAR `f`**: the most permissive observed threshold whose FAR does not exceed `f`
//!   (conservative, no interpolation). With `N` impostor comparisons the achievable FARs are
//!   multiples of `1/N`; the operating point is the one with at most `floor(f N)` impostors
//!   accepted, and its actual FAR is reported next to the target. When `f N < 1` only FAR 0 is
//!   admissible: the figure is then flagged [`TarAtFar::limited_by_sample_size`], since the
//!   sample cannot resolve the requested FAR.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{EvalError, Result};
use super::metrics::{Similarity, check_len};
use super::output::{write_json, write_png};
use super::plot::{Canvas, colour, nice_ticks, tick_label};

/// Genuine and impostor comparison scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreSets {
    /// Scores of same-identity query-gallery pairs.
    pub genuine: Vec<f32>,
    /// Scores of different-identity query-gallery pairs.
    pub impostor: Vec<f32>,
}

impl ScoreSets {
    /// Splits every query-gallery score into genuine (equal `u64` identities) and impostor.
    pub fn from_similarity(similarity: &Similarity, query_ids: &[u64], gallery_ids: &[u64]) -> Result<Self> {
        check_len("query_ids", "query", similarity.n_query(), query_ids.len())?;
        check_len("gallery_ids", "gallery", similarity.n_gallery(), gallery_ids.len())?;
        let mut sets = Self::default();
        sets.impostor.reserve(similarity.data().len());
        for (q, &qid) in query_ids.iter().enumerate() {
            for (&s, &gid) in similarity.row(q).iter().zip(gallery_ids) {
                if gid == qid {
                    sets.genuine.push(s);
                } else {
                    sets.impostor.push(s);
                }
            }
        }
        Ok(sets)
    }

    /// Adds the comparisons of `other` (for pooling several runs or subsets).
    pub fn append(&mut self, other: &ScoreSets) {
        self.genuine.extend_from_slice(&other.genuine);
        self.impostor.extend_from_slice(&other.impostor);
    }
}

/// Settings of [`VerificationReport::compute`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationOptions {
    /// FAR values at which the TAR is reported, each in `(0, 1]`. Default `[1e-2, 1e-3]`.
    pub far_targets: Vec<f64>,
    /// Number of equal-width bins of the score histograms. Default 50.
    pub histogram_bins: usize,
    /// ROC thinning: a point is kept when its TAR differs from the last kept point's by at least
    /// this much... Default `1e-3`.
    pub roc_tar_step: f64,
    /// ...or its `log10(FAR)` by at least this much. Default `0.01` (100 points per decade).
    /// The first and last points are always kept; both steps 0 keep every point.
    pub roc_log_far_step: f64,
}

impl Default for VerificationOptions {
    fn default() -> Self {
        Self { far_targets: vec![1e-2, 1e-3], histogram_bins: 50, roc_tar_step: 1e-3, roc_log_far_step: 0.01 }
    }
}

/// Summary statistics of a score set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreStats {
    /// Number of comparisons.
    pub count: usize,
    /// Lowest score.
    pub min: f64,
    /// Highest score.
    pub max: f64,
    /// Mean score.
    pub mean: f64,
    /// Population standard deviation (divisor `count`) of the scores.
    pub std: f64,
}

impl ScoreStats {
    fn of(scores: &[f32]) -> Self {
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
        let var = scores.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
        let (min, max) =
            scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| (lo.min(s as f64), hi.max(s as f64)));
        Self { count: scores.len(), min, max, mean, std: var.sqrt() }
    }
}

/// One ROC operating point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Decision threshold: a comparison is a match when `score >= threshold`.
    pub threshold: f64,
    /// False accept rate (FMR) at the threshold.
    pub far: f64,
    /// True accept rate, `1 - frr`.
    pub tar: f64,
    /// False reject rate (FNMR) at the threshold.
    pub frr: f64,
}

/// The equal error rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eer {
    /// The rate where FAR = FRR (linear interpolation between the two bracketing points).
    pub rate: f64,
    /// The threshold there (interpolated the same way).
    pub threshold: f64,
}

/// The TAR at one FAR target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TarAtFar {
    /// The requested FAR.
    pub far_target: f64,
    /// The most permissive observed threshold whose FAR does not exceed the target.
    pub threshold: f64,
    /// The FAR actually achieved at that threshold (`<= far_target`).
    pub far: f64,
    /// The TAR at that threshold.
    pub tar: f64,
    /// The FRR (FNMR) at that threshold.
    pub frr: f64,
    /// `true` when `far_target x impostor comparisons < 1`: the sample cannot resolve the target
    /// and the figure is the TAR at FAR 0.
    pub limited_by_sample_size: bool,
}

/// Genuine and impostor score histograms on shared equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// Bin edges, `bins + 1` values from the lowest to the highest score (the last bin includes
    /// its upper edge).
    pub edges: Vec<f64>,
    /// Genuine comparisons per bin.
    pub genuine: Vec<u64>,
    /// Impostor comparisons per bin.
    pub impostor: Vec<u64>,
}

/// Verification figures of one score set: data for JSON, and a PNG figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// The definitions used, in words (decision rule, FAR, FRR, TAR, EER, TAR at FAR).
    pub definitions: BTreeMap<String, String>,
    /// Genuine score statistics.
    pub genuine: ScoreStats,
    /// Impostor score statistics.
    pub impostor: ScoreStats,
    /// Equal error rate.
    pub eer: Eer,
    /// TAR at each requested FAR, in the order requested.
    pub tar_at_far: Vec<TarAtFar>,
    /// The ROC, thresholds decreasing (FAR and TAR increasing), thinned as the options say;
    /// from (FAR 0, TAR 0) to (FAR 1, TAR 1).
    pub roc: Vec<RocPoint>,
    /// Score histograms.
    pub histogram: ScoreHistogram,
}

fn definitions() -> BTreeMap<String, String> {
    [
        ("decision_rule", "a comparison (query, gallery item) is declared a match when score >= threshold"),
        ("far", "FMR (ISO/IEC 19795-1): impostor comparisons with score >= threshold / impostor comparisons"),
        ("frr", "FNMR (ISO/IEC 19795-1): genuine comparisons with score < threshold / genuine comparisons"),
        ("tar", "1 - FNMR"),
        ("eer", "where FAR = FRR, linearly interpolated between the bracketing operating points"),
        (
            "tar_at_far",
            "TAR at the most permissive observed threshold with FAR <= target (no interpolation); \
             limited_by_sample_size when target x impostor comparisons < 1",
        ),
        ("comparisons", "every query against every gallery item; genuine when the identities are equal"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl VerificationReport {
    /// Computes the figures. Fails when either score set is empty, a score is not finite, or an
    /// option is out of range.
    pub fn compute(scores: &ScoreSets, options: &VerificationOptions) -> Result<Self> {
        for (name, set) in [("genuine", &scores.genuine), ("impostor", &scores.impostor)] {
            if set.is_empty() {
                return Err(EvalError::Scores(format!("no {name} comparisons")));
            }
            if let Some(s) = set.iter().find(|s| !s.is_finite()) {
                return Err(EvalError::Scores(format!("{name} score {s} is not finite")));
            }
        }
        if let Some(f) = options.far_targets.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return Err(EvalError::InvalidOption(format!("FAR target {f} is not in (0, 1]")));
        }
        if options.histogram_bins == 0 {
            return Err(EvalError::InvalidOption("histogram_bins must be at least 1".into()));
        }
        if !(options.roc_tar_step >= 0.0 && options.roc_log_far_step >= 0.0) {
            return Err(EvalError::InvalidOption("ROC thinning steps must be >= 0".into()));
        }
        let descending = |v: &[f32]| {
            let mut v = v.to_vec();
            v.sort_unstable_by(|a, b| b.total_cmp(a));
            v
        };
        let (genuine, impostor) = rayon::join(|| descending(&scores.genuine), || descending(&scores.impostor));
        let (roc, eer) = roc_and_eer(&genuine, &impostor, options);
        let tar_at_far = options.far_targets.iter().map(|&f| tar_at_far(&genuine, &impostor, f)).collect();
        Ok(Self {
            definitions: definitions(),
            genuine: ScoreStats::of(&genuine),
            impostor: ScoreStats::of(&impostor),
            eer,
            tar_at_far,
            roc,
            histogram: histogram(&genuine, &impostor, options.histogram_bins),
        })
    }

    /// Writes the report as pretty JSON, atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }

    /// Draws the figure: genuine and impostor score histograms (left) and the ROC on a
    /// logarithmic FAR axis (right), with the EER and TAR-at-FAR operating points marked.
    pub fn render(&self) -> image::RgbImage {
        let mut canvas = Canvas::new(1200, 500, colour::WHITE);
        self.draw_histograms(&mut canvas, 0);
        self.draw_roc(&mut canvas, 600);
        canvas.image
    }

    /// Renders the figure and writes it as PNG, atomically.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        write_png(path, &self.render())
    }

    fn draw_histograms(&self, canvas: &mut Canvas, left: i64) {
        let (x0, x1, y0, y1) = (left + 80, left + 570, 60i64, 420i64);
        let h = &self.histogram;
        let (lo, hi) = (h.edges[0], h.edges[h.edges.len() - 1]);
        let fractions = |counts: &[u64]| {
            let total = counts.iter().sum::<u64>().max(1) as f64;
            counts.iter().map(|&c| c as f64 / total).collect::<Vec<_>>()
        };
        let (gen_f, imp_f) = (fractions(&h.genuine), fractions(&h.impostor));
        let top = gen_f.iter().chain(&imp_f).fold(0.0f64, |m, &v| m.max(v)).max(1e-9) * 1.25;
        let sx = |v: f64| x0 as f64 + (v - lo) / (hi - lo) * (x1 - x0) as f64;
        let sy = |v: f64| y1 as f64 - v / top * (y1 - y0) as f64;
        let (yticks, ydec) = nice_ticks(0.0, top, 5);
        for &t in &yticks {
            canvas.line(x0 as f64, sy(t), x1 as f64, sy(t), 1, colour::GRID);
            canvas.text_right(x0 - 8, sy(t) as i64 - 3, &tick_label(t, ydec), 1, colour::BLACK);
        }
        let (xticks, xdec) = nice_ticks(lo, hi, 6);
        for &t in &xticks {
            canvas.line(sx(t), y1 as f64, sx(t), (y1 + 5) as f64, 1, colour::BLACK);
            canvas.text_centered(sx(t) as i64, y1 + 10, &tick_label(t, xdec), 1, colour::BLACK);
        }
        for (values, c) in [(&imp_f, colour::RED), (&gen_f, colour::GREEN)] {
            for (b, &v) in values.iter().enumerate() {
                let (a, z) = (sx(h.edges[b]).round() as i64, sx(h.edges[b + 1]).round() as i64);
                canvas.fill_rect_alpha(a, sy(v).round() as i64, z, y1, c, 0.3);
            }
        }
        for (values, c) in [(&imp_f, colour::RED), (&gen_f, colour::GREEN)] {
            let mut prev_y = y1 as f64;
            for (b, &v) in values.iter().enumerate() {
                let (a, z, y) = (sx(h.edges[b]), sx(h.edges[b + 1]), sy(v));
                canvas.line(a, prev_y, a, y, 2, c);
                canvas.line(a, y, z, y, 2, c);
                prev_y = y;
            }
            canvas.line(x1 as f64, prev_y, x1 as f64, y1 as f64, 2, c);
        }
        let t = sx(self.eer.threshold.clamp(lo, hi));
        canvas.dashed_line(t, y0 as f64, t, y1 as f64, 1, colour::ORANGE, 4.0);
        canvas.text(t as i64 + 4, y0 + 4, "EER", 1, colour::ORANGE);
        axes(canvas, x0, x1, y0, y1);
        canvas.text_centered((x0 + x1) / 2, 20, "SCORE DISTRIBUTIONS", 2, colour::BLACK);
        canvas.text_centered((x0 + x1) / 2, y1 + 32, "SCORE (MATCH WHEN SCORE >= THRESHOLD)", 1, colour::BLACK);
        canvas.text(left + 10, y0 - 16, "FRACTION PER BIN", 1, colour::BLACK);
        let legend = [
            (colour::GREEN, format!("GENUINE  N={}", self.genuine.count)),
            (colour::RED, format!("IMPOSTOR N={}", self.impostor.count)),
        ];
        let widest = legend.iter().map(|(_, l)| Canvas::text_width(l, 1)).max().unwrap_or(0);
        canvas.fill_rect(x1 - widest - 30, y0 + 2, x1 - 2, y0 + 14 * legend.len() as i64 + 8, colour::WHITE);
        canvas.frame(x1 - widest - 30, y0 + 2, x1 - 2, y0 + 14 * legend.len() as i64 + 8, 1, colour::GRID);
        for (i, (c, label)) in legend.iter().enumerate() {
            let y = y0 + 8 + 14 * i as i64;
            let w = Canvas::text_width(label, 1);
            canvas.fill_rect(x1 - w - 24, y, x1 - w - 14, y + 8, *c);
            canvas.text(x1 - w - 8, y + 1, label, 1, colour::BLACK);
        }
    }

    fn draw_roc(&self, canvas: &mut Canvas, left: i64) {
        let (x0, x1, y0, y1) = (left + 70, left + 570, 60i64, 420i64);
        let n_impostor = self.impostor.count.max(1) as f64;
        let smallest_target = self.tar_at_far.iter().map(|t| t.far_target).fold(1.0f64, f64::min);
        let lo_decade = (1.0 / n_impostor).min(smallest_target).min(0.1).log10().floor().max(-12.0);
        let sx = |far: f64| {
            let v = if far > 0.0 { far.log10().max(lo_decade) } else { lo_decade };
            x0 as f64 + (v - lo_decade) / -lo_decade * (x1 - x0) as f64
        };
        let sy = |tar: f64| y1 as f64 - tar * (y1 - y0) as f64;
        for k in 0..=10 {
            let t = k as f64 / 10.0;
            canvas.line(x0 as f64, sy(t), x1 as f64, sy(t), 1, colour::GRID);
            canvas.text_right(x0 - 8, sy(t) as i64 - 3, &tick_label(t, 1), 1, colour::BLACK);
        }
        let decades = -lo_decade as i64;
        for d in 0..=decades {
            let e = lo_decade as i64 + d;
            let x = sx(10f64.powi(e as i32));
            canvas.line(x, y0 as f64, x, y1 as f64, 1, colour::GRID);
            canvas.line(x, y1 as f64, x, (y1 + 6) as f64, 1, colour::BLACK);
            let label = if e == 0 { "1".to_string() } else { format!("1E{e}") };
            canvas.text_centered(x as i64, y1 + 10, &label, 1, colour::BLACK);
            if e < 0 {
                for m in 2..10 {
                    let x = sx(m as f64 * 10f64.powi(e as i32));
                    canvas.line(x, y1 as f64, x, (y1 + 3) as f64, 1, colour::BLACK);
                }
            }
        }
        // Chance level (TAR = FAR), dashed.
        let steps = 200;
        for i in 0..steps {
            let (a, b) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
            let fa = 10f64.powf(lo_decade * (1.0 - a));
            let fb = 10f64.powf(lo_decade * (1.0 - b));
            if i % 2 == 0 {
                canvas.line(sx(fa), sy(fa), sx(fb), sy(fb), 1, colour::GREY);
            }
        }
        for t in &self.tar_at_far {
            canvas.dashed_line(sx(t.far_target), y0 as f64, sx(t.far_target), y1 as f64, 1, colour::ORANGE, 4.0);
        }
        for w in self.roc.windows(2) {
            // Step curve: the TAR holds until the FAR moves.
            canvas.line(sx(w[0].far), sy(w[0].tar), sx(w[1].far), sy(w[1].tar), 2, colour::BLUE);
        }
        for t in &self.tar_at_far {
            canvas.marker(sx(t.far), sy(t.tar), 6, colour::ORANGE);
        }
        canvas.marker(sx(self.eer.rate), sy(1.0 - self.eer.rate), 6, colour::RED);
        axes(canvas, x0, x1, y0, y1);
        canvas.text_centered((x0 + x1) / 2, 20, "ROC", 2, colour::BLACK);
        canvas.text_centered((x0 + x1) / 2, y1 + 32, "FAR = FMR (LOG SCALE)", 1, colour::BLACK);
        canvas.text(left + 10, y0 - 16, "TAR = 1 - FNMR", 1, colour::BLACK);
        let mut lines = vec![(colour::RED, format!("EER {:.2}%", self.eer.rate * 100.0))];
        for t in &self.tar_at_far {
            let flag = if t.limited_by_sample_size { " (FAR 0)" } else { "" };
            lines.push((colour::ORANGE, format!("TAR {:.2}% AT FAR {:E}{flag}", t.tar * 100.0, t.far_target)));
        }
        let widest = lines.iter().map(|(_, l)| Canvas::text_width(l, 1)).max().unwrap_or(0);
        let box_top = y1 - 22 - 14 * (lines.len() as i64 - 1);
        canvas.fill_rect(x1 - widest - 30, box_top, x1 - 2, y1 - 2, colour::WHITE);
        canvas.frame(x1 - widest - 30, box_top, x1 - 2, y1 - 2, 1, colour::GRID);
        for (i, (c, label)) in lines.iter().enumerate() {
            let y = y1 - 16 - 14 * (lines.len() - 1 - i) as i64;
            let w = Canvas::text_width(label, 1);
            canvas.fill_rect(x1 - w - 24, y, x1 - w - 14, y + 8, *c);
            canvas.text(x1 - w - 8, y + 1, label, 1, colour::BLACK);
        }
    }
}

/// The plot frame: left and bottom axes with a light box.
fn axes(canvas: &mut Canvas, x0: i64, x1: i64, y0: i64, y1: i64) {
    canvas.frame(x0, y0, x1 + 1, y1 + 1, 1, colour::GREY);
    canvas.fill_rect(x0 - 1, y0, x0 + 1, y1 + 2, colour::BLACK);
    canvas.fill_rect(x0 - 1, y1, x1 + 1, y1 + 2, colour::BLACK);
}

/// The full-resolution ROC walk over descending score lists: the thinned curve and the EER.
fn roc_and_eer(genuine: &[f32], impostor: &[f32], options: &VerificationOptions) -> (Vec<RocPoint>, Eer) {
    let (ng, ni) = (genuine.len(), impostor.len());
    let floor = 0.5 / ni as f64;
    let log_far = |far: f64| far.max(floor).log10();
    let top = genuine[0].max(impostor[0]);
    let start = RocPoint { threshold: top.next_up() as f64, far: 0.0, tar: 0.0, frr: 1.0 };
    let mut roc = vec![start];
    let (mut kept, mut prev) = (start, start);
    let mut eer = None;
    let (mut a, mut b) = (0usize, 0usize);
    while a < ng || b < ni {
        let t = match (genuine.get(a), impostor.get(b)) {
            (Some(&x), Some(&y)) => x.max(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!(),
        };
        while a < ng && genuine[a] >= t {
            a += 1;
        }
        while b < ni && impostor[b] >= t {
            b += 1;
        }
        let p = RocPoint {
            threshold: t as f64,
            far: b as f64 / ni as f64,
            tar: a as f64 / ng as f64,
            frr: (ng - a) as f64 / ng as f64,
        };
        if eer.is_none() && p.far >= p.frr {
            // prev has FAR < FRR (the start point has FAR 0, FRR 1).
            let (d_prev, d) = (prev.far - prev.frr, p.far - p.frr);
            let alpha = d_prev / (d_prev - d);
            eer = Some(Eer {
                rate: prev.far + alpha * (p.far - prev.far),
                threshold: prev.threshold + alpha * (p.threshold - prev.threshold),
            });
        }
        let last = a == ng && b == ni;
        if last
            || (p.tar - kept.tar).abs() >= options.roc_tar_step
            || (log_far(p.far) - log_far(kept.far)).abs() >= options.roc_log_far_step
        {
            roc.push(p);
            kept = p;
        }
        prev = p;
    }
    // The walk ends at FAR 1, FRR 0, so the crossing is always found.
    (roc, eer.unwrap_or(Eer { rate: 0.0, threshold: top as f64 }))
}

/// TAR at the most permissive observed threshold with FAR <= `target` (descending lists).
fn tar_at_far(genuine: &[f32], impostor: &[f32], target: f64) -> TarAtFar {
    let (ng, ni) = (genuine.len() as f64, impostor.len() as f64);
    // Number of impostors that may be accepted (guarding against 0.29 * 100 = 28.999...).
    let allowed = (target * ni * (1.0 + 1e-12)).floor() as usize;
    let limited_by_sample_size = allowed == 0;
    if allowed >= impostor.len() {
        let threshold = genuine[genuine.len() - 1].min(impostor[impostor.len() - 1]) as f64;
        return TarAtFar { far_target: target, threshold, far: 1.0, tar: 1.0, frr: 0.0, limited_by_sample_size };
    }
    // The (allowed + 1)-th highest impostor score must be rejected: the threshold is the lowest
    // observed score above it.
    let boundary = impostor[allowed];
    let gen_above = genuine.partition_point(|&s| s > boundary);
    let imp_above = impostor.partition_point(|&s| s > boundary);
    let candidates = [gen_above.checked_sub(1).map(|i| genuine[i]), imp_above.checked_sub(1).map(|i| impostor[i])];
    let threshold = candidates.into_iter().flatten().reduce(f32::min).unwrap_or(boundary.next_up());
    TarAtFar {
        far_target: target,
        threshold: threshold as f64,
        far: imp_above as f64 / ni,
        tar: gen_above as f64 / ng,
        frr: (genuine.len() - gen_above) as f64 / ng,
        limited_by_sample_size,
    }
}

/// Histograms on `bins` equal-width bins spanning all scores.
fn histogram(genuine: &[f32], impostor: &[f32], bins: usize) -> ScoreHistogram {
    let lo = genuine[genuine.len() - 1].min(impostor[impostor.len() - 1]) as f64;
    let hi = genuine[0].max(impostor[0]) as f64;
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
    let width = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| if i == bins { hi } else { lo + i as f64 * width }).collect();
    let count = |scores: &[f32]| {
        let mut counts = vec![0u64; bins];
        for &s in scores {
            let i = (((s as f64 - lo) / width) as usize).min(bins - 1);
            counts[i] += 1;
        }
        counts
    };
    ScoreHistogram { edges, genuine: count(genuine), impostor: count(impostor) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn report(genuine: &[f32], impostor: &[f32]) -> VerificationReport {
        let sets = ScoreSets { genuine: genuine.to_vec(), impostor: impostor.to_vec() };
        VerificationReport::compute(&sets, &VerificationOptions { far_targets: vec![0.25, 0.5], ..Default::default() })
            .unwrap()
    }

    #[test]
    fn separable_scores_have_zero_eer() {
        let r = report(&[0.9, 0.8, 0.7], &[0.1, 0.2, 0.3, 0.4]);
        assert_eq!(r.eer.rate, 0.0);
        // The crossing is the first threshold accepting every genuine and no impostor.
        assert!(close(r.eer.threshold, 0.7f32 as f64));
        for t in &r.tar_at_far {
            assert_eq!(t.tar, 1.0);
        }
        assert_eq!(r.roc.first().map(|p| (p.far, p.tar)), Some((0.0, 0.0)));
        assert_eq!(r.roc.last().map(|p| (p.far, p.tar)), Some((1.0, 1.0)));
    }

    #[test]
    fn toy_case_by_hand() {
        // Genuine: 0.9 0.7 0.4 0.2; impostor: 0.8 0.6 0.5 0.3.
        // Thresholds (accept >= t), FAR / FRR:
        //   t=0.9: 0/4, 3/4    t=0.8: 1/4, 3/4    t=0.7: 1/4, 2/4    t=0.6: 2/4, 2/4  <- crossing
        let r = report(&[0.9, 0.7, 0.4, 0.2], &[0.8, 0.6, 0.5, 0.3]);
        assert!(close(r.eer.rate, 0.5));
        assert!(close(r.eer.threshold, 0.6f32 as f64));
        // FAR <= 0.25: at most one impostor accepted; reject 0.6 -> threshold 0.7, TAR 2/4.
        let t = r.tar_at_far[0];
        assert!(close(t.far, 0.25) && close(t.tar, 0.5) && close(t.frr, 0.5));
        assert!(close(t.threshold, 0.7f32 as f64));
        assert!(!t.limited_by_sample_size);
        // FAR <= 0.5: reject 0.5 -> lowest observed score above it is 0.6; TAR 2/4.
        let t = r.tar_at_far[1];
        assert!(close(t.far, 0.5) && close(t.tar, 0.5) && close(t.threshold, 0.6f32 as f64));
        // Every ROC point is kept with default thinning here (8 thresholds plus the start).
        assert_eq!(r.roc.len(), 9);
        assert_eq!(r.genuine.count, 4);
        assert!(close(r.genuine.mean, (0.9f32 as f64 + 0.7f32 as f64 + 0.4f32 as f64 + 0.2f32 as f64) / 4.0));
    }

    #[test]
    fn interpolated_eer_between_points() {
        // Genuine 0.6 0.4; impostor 0.5 0.3.
        // t=0.6: FAR 0, FRR 1/2 (d = -1/2); t=0.5: FAR 1/2, FRR 1/2 (d = 0) -> EER 1/2.
        let r = report(&[0.6, 0.4], &[0.5, 0.3]);
        assert!(close(r.eer.rate, 0.5));
        // Genuine 0.6 0.45 0.4 0.1, impostor 0.5 0.3 0.2 0.0:
        // t=0.6: (0, 3/4) t=0.5: (1/4, 3/4) t=0.45: (1/4, 2/4) t=0.4: (1/4, 1/4) -> d = 0, EER 1/4.
        let r = report(&[0.6, 0.45, 0.4, 0.1], &[0.5, 0.3, 0.2, 0.0]);
        assert!(close(r.eer.rate, 0.25));
        // A true interpolation: genuine 0.9 0.1, impostor 0.5:
        // t=0.9: FAR 0, FRR 1/2 (d=-1/2); t=0.5: FAR 1, FRR 1/2 (d=1/2) -> alpha 1/2, EER 1/2.
        let r = report(&[0.9, 0.1], &[0.5]);
        assert!(close(r.eer.rate, 0.5));
        assert!(close(r.eer.threshold, (0.9f32 as f64 + 0.5f32 as f64) / 2.0));
    }

    #[test]
    fn coarse_far_is_flagged() {
        let sets = ScoreSets { genuine: vec![0.9, 0.5], impostor: vec![0.7, 0.3, 0.2] };
        let r = VerificationReport::compute(&sets, &VerificationOptions::default()).unwrap();
        for t in &r.tar_at_far {
            assert!(t.limited_by_sample_size);
            assert_eq!(t.far, 0.0);
            assert!(close(t.tar, 0.5));
            assert!(close(t.threshold, 0.9f32 as f64));
        }
    }

    #[test]
    fn scores_split_by_identity() {
        let sim = Similarity::from_rows(&[vec![0.9, 0.1, 0.8], vec![0.2, 0.7, 0.3]]).unwrap();
        let sets = ScoreSets::from_similarity(&sim, &[1, 2], &[1, 2, 1]).unwrap();
        assert_eq!(sets.genuine, vec![0.9, 0.8, 0.7]);
        assert_eq!(sets.impostor, vec![0.1, 0.2, 0.3]);
    }

    #[test]
    fn errors_and_histogram() {
        let empty = ScoreSets { genuine: vec![0.5], impostor: vec![] };
        assert!(VerificationReport::compute(&empty, &VerificationOptions::default()).is_err());
        let inf = ScoreSets { genuine: vec![f32::INFINITY], impostor: vec![0.1] };
        assert!(VerificationReport::compute(&inf, &VerificationOptions::default()).is_err());
        let bad = VerificationOptions { far_targets: vec![0.0], ..Default::default() };
        let ok = ScoreSets { genuine: vec![1.0, 0.5], impostor: vec![0.0, 0.5] };
        assert!(matches!(VerificationReport::compute(&ok, &bad), Err(EvalError::InvalidOption(_))));
        let r = report(&[1.0, 0.5], &[0.0, 0.5]);
        assert_eq!(r.histogram.edges.len(), 51);
        assert_eq!(r.histogram.genuine.iter().sum::<u64>(), 2);
        assert_eq!(r.histogram.genuine[49], 1);
        assert_eq!(r.histogram.impostor[0], 1);
        assert_eq!(r.histogram.genuine[25], 1);
    }

    #[test]
    fn writes_json_and_png() {
        let dir = std::env::temp_dir().join(format!("handid-verif-{}", std::process::id()));
        let mut state = 12345u64;
        let mut uniform = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let genuine: Vec<f32> = (0..2000).map(|_| (0.6 + 0.25 * (uniform() - 0.5)) as f32).collect();
        let impostor: Vec<f32> = (0..50000).map(|_| (0.35 + 0.4 * (uniform() - 0.5)) as f32).collect();
        let r = report(&genuine, &impostor);
        r.write_json(&dir.join("verification.json")).unwrap();
        r.write_png(&dir.join("verification.png")).unwrap();
        let back: VerificationReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join("verification.json")).unwrap()).unwrap();
        assert_eq!(back.tar_at_far.len(), r.tar_at_far.len());
        let png = image::open(dir.join("verification.png")).unwrap();
        assert_eq!((png.width(), png.height()), (1200, 500));
        // Nothing but the two outputs is left in the directory (no temporary files).
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, vec!["verification.json", "verification.png"]);
        // The thinned ROC stays monotone.
        assert!(r.roc.windows(2).all(|w| w[0].far <= w[1].far && w[0].tar <= w[1].tar));
        if std::env::var_os("HANDID_KEEP_TEST_OUTPUT").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
