//! A minimal raster canvas for the report figures: filled rectangles, thick and dashed lines,
//! markers and text in a small embedded 5x7 bitmap font (digits, capital letters, a little
//! punctuation; lower case is drawn as upper case).

use image::{Rgb, RgbImage};

/// Colours shared by the figures.
pub(crate) mod colour {
    use image::Rgb;
    /// Page background.
    pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
    /// Axes and text.
    pub const BLACK: Rgb<u8> = Rgb([20, 20, 20]);
    /// Grid lines.
    pub const GRID: Rgb<u8> = Rgb([225, 225, 225]);
    /// Secondary text.
    pub const GREY: Rgb<u8> = Rgb([110, 110, 110]);
    /// Genuine scores, true matches.
    pub const GREEN: Rgb<u8> = Rgb([20, 150, 60]);
    /// Impostor scores, false candidates.
    pub const RED: Rgb<u8> = Rgb([210, 40, 40]);
    /// Curves.
    pub const BLUE: Rgb<u8> = Rgb([30, 90, 200]);
    /// Highlighted operating points.
    pub const ORANGE: Rgb<u8> = Rgb([235, 130, 0]);
}

/// Glyph width and height of the bitmap font, in font pixels.
const GLYPH_W: i64 = 5;
const GLYPH_H: i64 = 7;

/// The bitmap font: 7 rows of 5 columns, `#` for ink.
const FONT: &[(char, [&str; 7])] = &[
    (' ', [".....", ".....", ".....", ".....", ".....", ".....", "....."]),
    ('0', [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."]),
    ('1', ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."]),
    ('2', [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"]),
    ('3', ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."]),
    ('4', ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."]),
    ('5', ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."]),
    ('6', ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."]),
    ('7', ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."]),
    ('8', [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."]),
    ('9', [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."]),
    ('A', [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"]),
    ('B', ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."]),
    ('C', [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."]),
    ('D', ["###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."]),
    ('E', ["#####", "#....", "#....", "####.", "#....", "#....", "#####"]),
    ('F', ["#####", "#....", "#....", "####.", "#....", "#....", "#...."]),
    ('G', [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"]),
    ('H', ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"]),
    ('I', [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."]),
    ('J', ["..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."]),
    ('K', ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"]),
    ('L', ["#....", "#....", "#....", "#....", "#....", "#....", "#####"]),
    ('M', ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"]),
    ('N', ["#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"]),
    ('O', [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."]),
    ('P', ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."]),
    ('Q', [".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"]),
    ('R', ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"]),
    ('S', [".####", "#....", "#....", ".###.", "....#", "....#", "####."]),
    ('T', ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."]),
    ('U', ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."]),
    ('V', ["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."]),
    ('W', ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."]),
    ('X', ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"]),
    ('Y', ["#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."]),
    ('Z', ["#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"]),
    ('.', [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."]),
    (',', [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."]),
    ('-', [".....", ".....", ".....", ".###.", ".....", ".....", "....."]),
    ('+', [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."]),
    ('=', [".....", ".....", "#####", ".....", "#####", ".....", "....."]),
    ('%', ["##..#", "##..#", "...#.", "..#..", ".#...", "#..##", "#..##"]),
    ('/', ["....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."]),
    (':', [".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."]),
    ('@', [".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".####"]),
    ('(', ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."]),
    (')', [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."]),
    ('#', [".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."]),
    ('_', [".....", ".....", ".....", ".....", ".....", ".....", "#####"]),
    ('<', ["...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."]),
    ('>', [".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."]),
    ('?', [".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."]),
];

/// The glyph of `c` (upper case for letters; `?` for characters the font lacks).
fn glyph(c: char) -> &'static [&'static str; 7] {
    let c = c.to_ascii_uppercase();
    FONT.iter().find(|(g, _)| *g == c).or_else(|| FONT.iter().find(|(g, _)| *g == '?')).map(|(_, rows)| rows).unwrap()
}

/// An RGB canvas with clipped drawing primitives; coordinates may fall outside the image.
pub(crate) struct Canvas {
    /// The pixels.
    pub image: RgbImage,
}

impl Canvas {
    /// A canvas of `width x height` filled with `background`.
    pub fn new(width: u32, height: u32, background: Rgb<u8>) -> Self {
        Self { image: RgbImage::from_pixel(width, height, background) }
    }

    /// Sets one pixel, ignoring coordinates outside the image.
    pub fn set(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        if x >= 0 && y >= 0 && x < self.image.width() as i64 && y < self.image.height() as i64 {
            self.image.put_pixel(x as u32, y as u32, c);
        }
    }

    /// Mixes `c` into one pixel with opacity `alpha` in `[0, 1]`.
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb<u8>, alpha: f64) {
        if x >= 0 && y >= 0 && x < self.image.width() as i64 && y < self.image.height() as i64 {
            let p = self.image.get_pixel_mut(x as u32, y as u32);
            for k in 0..3 {
                p.0[k] = (p.0[k] as f64 * (1.0 - alpha) + c.0[k] as f64 * alpha).round() as u8;
            }
        }
    }

    /// Fills the rectangle `[x0, x1) x [y0, y1)` (corners in any order).
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
        self.fill_rect_alpha(x0, y0, x1, y1, c, 1.0);
    }

    /// Fills `[x0, x1) x [y0, y1)` with `c` at opacity `alpha`.
    pub fn fill_rect_alpha(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>, alpha: f64) {
        let (xa, xb) = (x0.min(x1).max(0), x0.max(x1).min(self.image.width() as i64));
        let (ya, yb) = (y0.min(y1).max(0), y0.max(y1).min(self.image.height() as i64));
        for y in ya..yb {
            for x in xa..xb {
                if alpha >= 1.0 {
                    self.image.put_pixel(x as u32, y as u32, c);
                } else {
                    self.blend(x, y, c, alpha);
                }
            }
        }
    }

    /// Draws a frame of `thickness` pixels inside the rectangle `[x0, x1) x [y0, y1)`.
    pub fn frame(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, thickness: i64, c: Rgb<u8>) {
        self.fill_rect(x0, y0, x1, y0 + thickness, c);
        self.fill_rect(x0, y1 - thickness, x1, y1, c);
        self.fill_rect(x0, y0, x0 + thickness, y1, c);
        self.fill_rect(x1 - thickness, y0, x1, y1, c);
    }

    /// A straight line from `(x0, y0)` to `(x1, y1)` drawn with a square brush of
    /// `thickness` pixels.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, thickness: i64, c: Rgb<u8>) {
        self.dashed_line(x0, y0, x1, y1, thickness, c, 0.0);
    }

    /// A line drawn as dashes of `dash` pixels with equal gaps (solid when `dash <= 0`).
    #[allow(clippy::too_many_arguments)]
    pub fn dashed_line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, thickness: i64, c: Rgb<u8>, dash: f64) {
        let (dx, dy) = (x1 - x0, y1 - y0);
        let steps = dx.abs().max(dy.abs()).ceil().max(1.0);
        if !steps.is_finite() || steps > 1e6 {
            return;
        }
        let length = (dx * dx + dy * dy).sqrt();
        let half = (thickness - 1) / 2;
        for i in 0..=steps as i64 {
            let t = i as f64 / steps;
            if dash > 0.0 && ((t * length / dash) as i64) % 2 == 1 {
                continue;
            }
            let (x, y) = ((x0 + t * dx).round() as i64, (y0 + t * dy).round() as i64);
            self.fill_rect(x - half, y - half, x - half + thickness, y - half + thickness, c);
        }
    }

    /// A filled square marker of side `size` centred on `(x, y)`, outlined in black.
    pub fn marker(&mut self, x: f64, y: f64, size: i64, c: Rgb<u8>) {
        let (x, y, h) = (x.round() as i64, y.round() as i64, size / 2);
        self.fill_rect(x - h - 1, y - h - 1, x + h + 2, y + h + 2, colour::BLACK);
        self.fill_rect(x - h, y - h, x + h + 1, y + h + 1, c);
    }

    /// Width in pixels of `text` at integer `scale`.
    pub fn text_width(text: &str, scale: i64) -> i64 {
        let n = text.chars().count() as i64;
        if n == 0 { 0 } else { (n * (GLYPH_W + 1) - 1) * scale }
    }

    /// Height in pixels of a line of text at `scale`.
    pub fn text_height(scale: i64) -> i64 {
        GLYPH_H * scale
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
        for (i, ch) in text.chars().enumerate() {
            let left = x + i as i64 * (GLYPH_W + 1) * scale;
            for (row, bits) in glyph(ch).iter().enumerate() {
                for (col, bit) in bits.bytes().enumerate() {
                    if bit == b'#' {
                        let (px, py) = (left + col as i64 * scale, y + row as i64 * scale);
                        self.fill_rect(px, py, px + scale, py + scale, c);
                    }
                }
            }
        }
    }

    /// Draws `text` centred horizontally on `cx`, top at `y`.
    pub fn text_centered(&mut self, cx: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
        self.text(cx - Self::text_width(text, scale) / 2, y, text, scale, c);
    }

    /// Draws `text` right-aligned to `right`, top at `y`.
    pub fn text_right(&mut self, right: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
        self.text(right - Self::text_width(text, scale), y, text, scale, c);
    }

    /// Copies `src` with its top-left corner at `(x, y)`, clipped.
    pub fn blit(&mut self, src: &RgbImage, x: i64, y: i64) {
        for (sx, sy, p) in src.enumerate_pixels() {
            self.set(x + sx as i64, y + sy as i64, *p);
        }
    }
}

/// Short tick label of a value: up to `decimals` decimals, trailing zeros dropped.
pub(crate) fn tick_label(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" { "0".into() } else { s }
}

/// "Nice" tick positions covering `[lo, hi]`: steps of 1, 2 or 5 times a power of ten, about
/// `target` of them. Returns the ticks and the number of decimals they need.
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .min_by(|a, b| (a / raw).ln().abs().total_cmp(&(b / raw).ln().abs()))
        .unwrap_or(magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|i| i as f64 * step).collect(), decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_is_well_formed() {
        for (c, rows) in FONT {
            for row in rows {
                assert_eq!(row.len(), GLYPH_W as usize, "glyph {c:?}");
                assert!(row.bytes().all(|b| b == b'#' || b == b'.'), "glyph {c:?}");
            }
        }
        assert_eq!(glyph('a'), glyph('A'));
        assert_eq!(glyph('\u{e9}'), glyph('?'));
    }

    #[test]
    fn text_draws_ink_where_expected() {
        let mut canvas = Canvas::new(40, 20, colour::WHITE);
        canvas.text(1, 1, "1", 2, colour::BLACK);
        // The "1" glyph has ink at column 2 of row 0: pixels (1 + 4, 1) .. (1 + 6, 3).
        assert_eq!(*canvas.image.get_pixel(5, 1), colour::BLACK);
        assert_eq!(*canvas.image.get_pixel(1, 1), colour::WHITE);
        assert_eq!(Canvas::text_width("AB", 1), 11);
    }

    #[test]
    fn ticks_are_nice() {
        let (ticks, decimals) = nice_ticks(-0.13, 0.97, 5);
        assert_eq!(decimals, 1);
        let expected = [0.0, 0.2, 0.4, 0.6, 0.8];
        assert_eq!(ticks.len(), expected.len());
        assert!(ticks.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{ticks:?}");
        assert_eq!(tick_label(0.5000, 3), "0.5");
        assert_eq!(tick_label(-0.0, 1), "0");
        assert_eq!(tick_label(2.0, 0), "2");
    }
}
