//! The validation report's figures, drawn with the crate's raster canvas
//! (`eval::plot`): Tippett plot, ECE plot, PAV plot and log10 LR histograms per hypothesis.

use image::{Rgb, RgbImage};

use super::pav::pav_llrs;
use super::validation::ValidationReport;
use crate::eval::plot::{Canvas, colour, nice_ticks, tick_label};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 560;

/// A plot area: pixel rectangle and data ranges.
struct Frame {
    x0: i64,
    x1: i64,
    y0: i64,
    y1: i64,
    xlo: f64,
    xhi: f64,
    ylo: f64,
    yhi: f64,
}

/// A legend line: colour, label, dashed.
type Entry = (Rgb<u8>, String, bool);

impl Frame {
    fn new(xlo: f64, xhi: f64, ylo: f64, yhi: f64) -> Self {
        let (xlo, xhi) = if xhi > xlo { (xlo, xhi) } else { (xlo - 0.5, xhi + 0.5) };
        let (ylo, yhi) = if yhi > ylo { (ylo, yhi) } else { (ylo - 0.5, yhi + 0.5) };
        Self { x0: 90, x1: WIDTH as i64 - 30, y0: 60, y1: HEIGHT as i64 - 70, xlo, xhi, ylo, yhi }
    }

    fn sx(&self, v: f64) -> f64 {
        self.x0 as f64 + (v - self.xlo) / (self.xhi - self.xlo) * (self.x1 - self.x0) as f64
    }

    fn sy(&self, v: f64) -> f64 {
        self.y1 as f64 - (v - self.ylo) / (self.yhi - self.ylo) * (self.y1 - self.y0) as f64
    }

    /// Grid, ticks, tick labels, title and axis labels.
    fn axes(&self, canvas: &mut Canvas, title: &str, xlabel: &str, ylabel: &str) {
        let (yticks, ydec) = nice_ticks(self.ylo, self.yhi, 6);
        for &t in &yticks {
            canvas.line(self.x0 as f64, self.sy(t), self.x1 as f64, self.sy(t), 1, colour::GRID);
            canvas.text_right(self.x0 - 8, self.sy(t) as i64 - 3, &tick_label(t, ydec), 1, colour::BLACK);
        }
        let (xticks, xdec) = nice_ticks(self.xlo, self.xhi, 8);
        for &t in &xticks {
            canvas.line(self.sx(t), self.y0 as f64, self.sx(t), self.y1 as f64, 1, colour::GRID);
            canvas.line(self.sx(t), self.y1 as f64, self.sx(t), (self.y1 + 5) as f64, 1, colour::BLACK);
            canvas.text_centered(self.sx(t) as i64, self.y1 + 10, &tick_label(t, xdec), 1, colour::BLACK);
        }
        canvas.text_centered((self.x0 + self.x1) / 2, 18, title, 2, colour::BLACK);
        canvas.text_centered((self.x0 + self.x1) / 2, self.y1 + 34, xlabel, 1, colour::BLACK);
        canvas.text(10, self.y0 - 18, ylabel, 1, colour::BLACK);
    }

    /// The frame lines, drawn last so that curves do not cover them.
    fn border(&self, canvas: &mut Canvas) {
        canvas.frame(self.x0, self.y0, self.x1 + 1, self.y1 + 1, 1, colour::GREY);
        canvas.fill_rect(self.x0 - 1, self.y0, self.x0 + 1, self.y1 + 2, colour::BLACK);
        canvas.fill_rect(self.x0 - 1, self.y1, self.x1 + 1, self.y1 + 2, colour::BLACK);
    }

    /// A polyline through data points, clipped to the frame vertically.
    fn polyline(&self, canvas: &mut Canvas, points: &[(f64, f64)], thickness: i64, c: Rgb<u8>, dash: f64) {
        let clip = |y: f64| y.clamp(self.y0 as f64, self.y1 as f64);
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            canvas.dashed_line(self.sx(a.0), clip(self.sy(a.1)), self.sx(b.0), clip(self.sy(b.1)), thickness, c, dash);
        }
    }

    /// A legend box in the top-left (`left = true`) or top-right corner of the frame.
    fn legend(&self, canvas: &mut Canvas, entries: &[Entry], left: bool) {
        let widest = entries.iter().map(|(_, l, _)| Canvas::text_width(l, 1)).max().unwrap_or(0);
        let (w, h) = (widest + 44, 14 * entries.len() as i64 + 10);
        let bx = if left { self.x0 + 8 } else { self.x1 - 8 - w };
        let by = self.y0 + 8;
        canvas.fill_rect(bx, by, bx + w, by + h, colour::WHITE);
        canvas.frame(bx, by, bx + w, by + h, 1, colour::GREY);
        for (i, (c, label, dashed)) in entries.iter().enumerate() {
            let y = by + 8 + 14 * i as i64;
            let dash = if *dashed { 4.0 } else { 0.0 };
            canvas.dashed_line((bx + 6) as f64, (y + 3) as f64, (bx + 30) as f64, (y + 3) as f64, 2, *c, dash);
            canvas.text(bx + 36, y, label, 1, colour::BLACK);
        }
    }
}

fn split(report: &ValidationReport) -> (Vec<f64>, Vec<f64>) {
    let pick =
        |same: bool| report.llrs.iter().zip(&report.labels).filter(|(_, l)| **l == same).map(|(v, _)| *v).collect();
    (pick(true), pick(false))
}

fn llr_range(llrs: &[f64]) -> (f64, f64) {
    let finite = llrs.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo.is_finite() { ((lo - 0.5).floor().min(-1.0), (hi + 0.5).ceil().max(1.0)) } else { (-1.0, 1.0) }
}

/// Tippett plot: the proportion of validated log10 LRs above each value, per hypothesis.
pub(crate) fn tippett(report: &ValidationReport) -> RgbImage {
    let mut canvas = Canvas::new(WIDTH, HEIGHT, colour::WHITE);
    let (hp, hd) = split(report);
    let (lo, hi) = llr_range(&report.llrs);
    let frame = Frame::new(lo, hi, 0.0, 1.0);
    frame.axes(&mut canvas, "TIPPETT PLOT", "LOG10 LR (VALIDATED, BOUNDED)", "PROPORTION OF LRS > X");
    canvas.dashed_line(frame.sx(0.0), frame.y0 as f64, frame.sx(0.0), frame.y1 as f64, 1, colour::GREY, 4.0);
    for (values, c) in [(&hp, colour::GREEN), (&hd, colour::RED)] {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        // Step curve: P(llr > x) falls by 1/n at each value.
        let mut points = vec![(lo, 1.0)];
        for (i, &v) in sorted.iter().enumerate() {
            let v = v.clamp(lo, hi);
            points.push((v, 1.0 - i as f64 / n));
            points.push((v, 1.0 - (i + 1) as f64 / n));
        }
        points.push((hi, 0.0));
        frame.polyline(&mut canvas, &points, 2, c, 0.0);
    }
    frame.border(&mut canvas);
    let m = &report.metrics;
    frame.legend(
        &mut canvas,
        &[
            (colour::GREEN, format!("SAME PERSON (HP), N={}", hp.len()), false),
            (colour::RED, format!("DIFFERENT PEOPLE (HD), N={}", hd.len()), false),
            (colour::GREY, "LR = 1".into(), true),
            (colour::WHITE, format!("HP WITH LR<1: {:.2}%", 100.0 * m.misleading_same_source.rate), false),
            (colour::WHITE, format!("HD WITH LR>1: {:.2}%", 100.0 * m.misleading_different_source.rate), false),
        ],
        false,
    );
    canvas.image
}

/// ECE plot (Ramos et al. 2013): the system, after PAV, and the neutral reference.
pub(crate) fn ece(report: &ValidationReport) -> RgbImage {
    let mut canvas = Canvas::new(WIDTH, HEIGHT, colour::WHITE);
    let e = &report.ece;
    let neutral_max = e.neutral.iter().copied().fold(0.0, f64::max);
    let system_max = e.system.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let top = (system_max.max(neutral_max) * 1.1).min(3.0 * neutral_max).max(0.1);
    let (lo, hi) = (e.prior_log10_odds[0], e.prior_log10_odds[e.prior_log10_odds.len() - 1]);
    let frame = Frame::new(lo, hi, 0.0, top);
    frame.axes(&mut canvas, "EMPIRICAL CROSS-ENTROPY", "PRIOR LOG10 ODDS (SAME PERSON)", "ECE (BITS)");
    let curve = |v: &[f64]| e.prior_log10_odds.iter().copied().zip(v.iter().copied()).collect::<Vec<_>>();
    frame.polyline(&mut canvas, &curve(&e.neutral), 2, colour::GREY, 5.0);
    frame.polyline(&mut canvas, &curve(&e.pav), 2, colour::GREEN, 5.0);
    frame.polyline(&mut canvas, &curve(&e.system), 2, colour::BLUE, 0.0);
    frame.border(&mut canvas);
    let m = &report.metrics;
    frame.legend(
        &mut canvas,
        &[
            (colour::BLUE, format!("LR SYSTEM (CLLR {:.3})", m.cllr), false),
            (colour::GREEN, format!("AFTER PAV (CLLR_MIN {:.3})", m.cllr_min), true),
            (colour::GREY, "NEUTRAL (LR = 1)".into(), true),
        ],
        false,
    );
    canvas.image
}

/// PAV plot: each validated log10 LR against its PAV-calibrated value, with the diagonal.
pub(crate) fn pav(report: &ValidationReport) -> RgbImage {
    let mut canvas = Canvas::new(WIDTH, HEIGHT, colour::WHITE);
    let after = pav_llrs(&report.llrs, &report.labels).unwrap_or_else(|_| report.llrs.clone());
    let (lo, hi) = llr_range(&report.llrs);
    let (plo, phi) = llr_range(&after);
    let (ylo, yhi) = (lo.min(plo).max(lo - 3.0), hi.max(phi).min(hi + 3.0));
    let frame = Frame::new(lo, hi, ylo, yhi);
    frame.axes(&mut canvas, "PAV PLOT", "LOG10 LR BEFORE PAV (VALIDATED)", "LOG10 LR AFTER PAV");
    let diagonal = [(lo.max(ylo), lo.max(ylo)), (hi.min(yhi), hi.min(yhi))];
    frame.polyline(&mut canvas, &diagonal, 1, colour::GREY, 5.0);
    let mut points: Vec<(f64, f64)> =
        report.llrs.iter().copied().zip(after.iter().map(|v| v.clamp(ylo, yhi))).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup();
    frame.polyline(&mut canvas, &points, 2, colour::BLUE, 0.0);
    for &(x, y) in points.iter().step_by((points.len() / 400).max(1)) {
        canvas.marker(frame.sx(x), frame.sy(y), 2, colour::BLUE);
    }
    if after.iter().any(|v| v.is_infinite()) {
        canvas.text(frame.x0 + 6, frame.y1 - 14, "INFINITE PAV VALUES ARE DRAWN AT THE EDGES", 1, colour::GREY);
    }
    frame.border(&mut canvas);
    let dev = report.metrics.devpav.map_or("NONE".to_string(), |d| format!("{d:.3}"));
    frame.legend(
        &mut canvas,
        &[
            (colour::BLUE, "PAV TRANSFORM".into(), false),
            (colour::GREY, "DIAGONAL (PERFECT CALIBRATION)".into(), true),
            (colour::WHITE, format!("DEVPAV {dev}"), false),
        ],
        true,
    );
    canvas.image
}

/// Histograms of the validated log10 LRs per hypothesis (fraction of each per bin).
pub(crate) fn histograms(report: &ValidationReport, bins: usize) -> RgbImage {
    let mut canvas = Canvas::new(WIDTH, HEIGHT, colour::WHITE);
    let (hp, hd) = split(report);
    let (lo, hi) = llr_range(&report.llrs);
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let fractions = |v: &[f64]| {
        let mut counts = vec![0usize; bins];
        for &x in v {
            counts[(((x.clamp(lo, hi) - lo) / width) as usize).min(bins - 1)] += 1;
        }
        counts.iter().map(|&c| c as f64 / v.len().max(1) as f64).collect::<Vec<_>>()
    };
    let (fp, fd) = (fractions(&hp), fractions(&hd));
    let top = fp.iter().chain(&fd).copied().fold(0.0, f64::max).max(1e-9) * 1.15;
    let frame = Frame::new(lo, hi, 0.0, top);
    frame.axes(&mut canvas, "LOG10 LR PER HYPOTHESIS", "LOG10 LR (VALIDATED, BOUNDED)", "FRACTION PER BIN");
    for (values, c) in [(&fd, colour::RED), (&fp, colour::GREEN)] {
        for (b, &v) in values.iter().enumerate() {
            let (a, z) =
                (frame.sx(lo + b as f64 * width).round() as i64, frame.sx(lo + (b + 1) as f64 * width).round() as i64);
            canvas.fill_rect_alpha(a, frame.sy(v).round() as i64, z, frame.y1, c, 0.3);
        }
    }
    for (values, c) in [(&fd, colour::RED), (&fp, colour::GREEN)] {
        let mut points = vec![(lo, 0.0)];
        for (b, &v) in values.iter().enumerate() {
            points.push((lo + b as f64 * width, v));
            points.push((lo + (b + 1) as f64 * width, v));
        }
        points.push((hi, 0.0));
        frame.polyline(&mut canvas, &points, 2, c, 0.0);
    }
    canvas.dashed_line(frame.sx(0.0), frame.y0 as f64, frame.sx(0.0), frame.y1 as f64, 1, colour::GREY, 4.0);
    frame.border(&mut canvas);
    frame.legend(
        &mut canvas,
        &[
            (colour::GREEN, format!("SAME PERSON (HP), N={}", hp.len()), false),
            (colour::RED, format!("DIFFERENT PEOPLE (HD), N={}", hd.len()), false),
            (colour::GREY, "LR = 1".into(), true),
        ],
        true,
    );
    canvas.image
}
