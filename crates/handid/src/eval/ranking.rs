//! Ranked candidate lists per query (CSV, JSON) and PNG contact sheets for casework.
//!
//! Ranks here are **1-based** (rank 1 is the most similar gallery item), as an analyst reads
//! them; the order is that of the metrics (similarity descending, ties by gallery index).

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::path::Path;

use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{EvalError, Result};
use super::metrics::{Similarity, check_len, evaluate_queries, identity_labels};
use super::output::{write_atomic, write_json, write_png};
use super::plot::{Canvas, colour};

/// One gallery candidate of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 1-based rank.
    pub rank: usize,
    /// 0-based gallery column in the similarity matrix.
    pub gallery_index: usize,
    /// The gallery image's path, as given.
    pub gallery_path: String,
    /// The gallery item's identity, as its `Display` writes it.
    pub identity: String,
    /// Similarity to the query.
    pub score: f32,
    /// Whether the candidate has the query's identity.
    pub is_match: bool,
}

/// The top candidates of one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRanking {
    /// 0-based query row in the similarity matrix.
    pub query_index: usize,
    /// The query image's path, as given.
    pub query_path: String,
    /// The query's identity, as its `Display` writes it.
    pub query_identity: String,
    /// Number of true matches in the whole gallery.
    pub n_matches: usize,
    /// 1-based rank of the first true match in the whole ranking (it may lie beyond the listed
    /// candidates); `None` when the gallery has no true match.
    pub first_match_rank: Option<usize>,
    /// The top candidates, best first.
    pub candidates: Vec<Candidate>,
}

/// Ranked candidate lists of every query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedLists {
    /// The number of candidates requested per query (fewer when the gallery is smaller).
    pub top_k: usize,
    /// One entry per query, in query order.
    pub queries: Vec<QueryRanking>,
}

/// One CSV line.
#[derive(Serialize)]
struct CsvRow<'a> {
    query_index: usize,
    query_path: &'a str,
    query_identity: &'a str,
    rank: usize,
    gallery_index: usize,
    gallery_path: &'a str,
    identity: &'a str,
    score: f32,
    is_match: bool,
}

impl RankedLists {
    /// The `top_k` best candidates of every query.
    ///
    /// `query_ids`/`query_paths` describe the rows of `similarity`, `gallery_ids`/`gallery_paths`
    /// its columns. Identities may be of any type with equality (`u64` labels, `data::Identity`,
    /// strings); a candidate is a true match when its identity equals the query's, and the
    /// outputs show identities as their `Display` writes them.
    pub fn compute<I, S>(
        similarity: &Similarity,
        query_ids: &[I],
        gallery_ids: &[I],
        query_paths: &[S],
        gallery_paths: &[S],
        top_k: usize,
    ) -> Result<Self>
    where
        I: Hash + Eq + Display + Sync,
        S: AsRef<str> + Sync,
    {
        check_len("query_ids", "query", similarity.n_query(), query_ids.len())?;
        check_len("gallery_ids", "gallery", similarity.n_gallery(), gallery_ids.len())?;
        check_len("query_paths", "query", similarity.n_query(), query_paths.len())?;
        check_len("gallery_paths", "gallery", similarity.n_gallery(), gallery_paths.len())?;
        let (query_labels, gallery_labels) = identity_labels(query_ids, gallery_ids);
        let outcomes = evaluate_queries(similarity, &query_labels, &gallery_labels)?;
        let gallery_names: Vec<String> = gallery_ids.iter().map(ToString::to_string).collect();
        let queries = (0..similarity.n_query())
            .into_par_iter()
            .map(|q| {
                let label = query_labels[q];
                let candidates = similarity
                    .top_k(q, top_k)
                    .into_iter()
                    .enumerate()
                    .map(|(r, g)| Candidate {
                        rank: r + 1,
                        gallery_index: g,
                        gallery_path: gallery_paths[g].as_ref().to_string(),
                        identity: gallery_names[g].clone(),
                        score: similarity.get(q, g),
                        is_match: gallery_labels[g] == label,
                    })
                    .collect();
                QueryRanking {
                    query_index: q,
                    query_path: query_paths[q].as_ref().to_string(),
                    query_identity: query_ids[q].to_string(),
                    n_matches: outcomes[q].n_matches,
                    first_match_rank: outcomes[q].first_match_rank.map(|r| r + 1),
                    candidates,
                }
            })
            .collect();
        Ok(Self { top_k, queries })
    }

    /// Writes one CSV line per (query, candidate), atomically. Columns: `query_index,
    /// query_path, query_identity, rank, gallery_index, gallery_path, identity, score,
    /// is_match`.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let encode = |e: csv::Error| EvalError::Encode { path: path.to_path_buf(), reason: e.to_string() };
        let mut writer = csv::Writer::from_writer(Vec::new());
        for q in &self.queries {
            for c in &q.candidates {
                writer
                    .serialize(CsvRow {
                        query_index: q.query_index,
                        query_path: &q.query_path,
                        query_identity: &q.query_identity,
                        rank: c.rank,
                        gallery_index: c.gallery_index,
                        gallery_path: &c.gallery_path,
                        identity: &c.identity,
                        score: c.score,
                        is_match: c.is_match,
                    })
                    .map_err(encode)?;
            }
        }
        if self.queries.iter().all(|q| q.candidates.is_empty()) {
            writer
                .write_record([
                    "query_index",
                    "query_path",
                    "query_identity",
                    "rank",
                    "gallery_index",
                    "gallery_path",
                    "identity",
                    "score",
                    "is_match",
                ])
                .map_err(encode)?;
        }
        let bytes = writer.into_inner().map_err(|e| encode(e.into_error().into()))?;
        write_atomic(path, &bytes)
    }

    /// Writes the lists as pretty JSON, atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// Layout of a contact sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactSheetOptions {
    /// Candidates shown per query (at most those in the lists). Default 10.
    pub top_k: usize,
    /// Thumbnail box width in pixels; images keep their aspect ratio inside it. Default 160.
    pub thumb_width: u32,
    /// Thumbnail box height in pixels. Default 160.
    pub thumb_height: u32,
    /// Width of the coloured frames in pixels. Default 4.
    pub frame: u32,
}

impl Default for ContactSheetOptions {
    fn default() -> Self {
        Self { top_k: 10, thumb_width: 160, thumb_height: 160, frame: 4 }
    }
}

/// Decodes an image file with the workspace's one decoder
/// ([`clip_burn::preprocess::load_rgb`]: format from the content, pixel limits, EXIF orientation),
/// naming the file on any failure.
fn load_image(path: &Path) -> Result<image::DynamicImage> {
    Ok(image::DynamicImage::ImageRgb8(clip_burn::preprocess::load_rgb(path)?))
}

/// Loads and shrinks an image to fit `w x h`, keeping its aspect ratio.
fn thumbnail(path: &Path, w: u32, h: u32) -> Result<RgbImage> {
    let img = load_image(path)?;
    Ok(img.resize(w, h, image::imageops::FilterType::Triangle).to_rgb8())
}

/// Draws a contact sheet: one row per query, the query image (blue frame) followed by its top
/// candidates, true matches framed green and other candidates red, each labelled with its rank,
/// score and identity.
///
/// Image paths are resolved against `image_root` (absolute paths are used as they are). Images
/// are decoded in parallel; a missing or undecodable image is an error naming the file.
pub fn contact_sheet(queries: &[&QueryRanking], image_root: &Path, options: &ContactSheetOptions) -> Result<RgbImage> {
    if options.thumb_width == 0 || options.thumb_height == 0 {
        return Err(EvalError::InvalidOption("contact sheet thumbnails must be at least 1 x 1".into()));
    }
    if queries.is_empty() {
        return Err(EvalError::InvalidOption("a contact sheet needs at least one query".into()));
    }
    let shown = |q: &QueryRanking| q.candidates.len().min(options.top_k);
    let mut paths: Vec<&str> = Vec::new();
    for q in queries {
        paths.push(&q.query_path);
        paths.extend(q.candidates[..shown(q)].iter().map(|c| c.gallery_path.as_str()));
    }
    paths.sort_unstable();
    paths.dedup();
    let (tw, th) = (options.thumb_width, options.thumb_height);
    let thumbs: HashMap<&str, RgbImage> =
        paths.par_iter().map(|&p| thumbnail(&image_root.join(p), tw, th).map(|t| (p, t))).collect::<Result<_>>()?;

    let (f, pad, gap, sep) = (options.frame as i64, 10i64, 8i64, 28i64);
    let (cell_w, cell_h) = (tw as i64 + 2 * f, th as i64 + 2 * f);
    let label_h = 2 * Canvas::text_height(1) + 10;
    let row_h = cell_h + label_h + gap;
    let max_shown = queries.iter().map(|q| shown(q)).max().unwrap_or(0) as i64;
    let width = 2 * pad + cell_w + sep + max_shown * cell_w + (max_shown - 1).max(0) * gap;
    let height = 2 * pad + queries.len() as i64 * row_h - gap;
    let mut canvas = Canvas::new(width as u32, height as u32, colour::WHITE);
    // Fit a label into a cell by cutting it (the font is 6 pixels per character).
    let fit = |s: String| -> String {
        let max = (cell_w / 6).max(1) as usize;
        if s.chars().count() <= max { s } else { s.chars().take(max).collect() }
    };
    for (row, q) in queries.iter().enumerate() {
        let y = pad + row as i64 * row_h;
        let cell = |canvas: &mut Canvas, x: i64, path: &str, c: image::Rgb<u8>, lines: [String; 2]| {
            canvas.fill_rect(x, y, x + cell_w, y + cell_h, image::Rgb([235, 235, 235]));
            let t = &thumbs[path];
            let (ox, oy) = ((tw - t.width()) as i64 / 2, (th - t.height()) as i64 / 2);
            canvas.blit(t, x + f + ox, y + f + oy);
            canvas.frame(x, y, x + cell_w, y + cell_h, f, c);
            for (i, line) in lines.into_iter().enumerate() {
                canvas.text(
                    x + 1,
                    y + cell_h + 4 + i as i64 * (Canvas::text_height(1) + 3),
                    &fit(line),
                    1,
                    colour::BLACK,
                );
            }
        };
        let first = match q.first_match_rank {
            Some(r) => format!("MATCH AT {r}"),
            None => "NO MATCH".into(),
        };
        cell(&mut canvas, pad, &q.query_path, colour::BLUE, [format!("QUERY ID {}", q.query_identity), first]);
        for (i, c) in q.candidates[..shown(q)].iter().enumerate() {
            let x = pad + cell_w + sep + i as i64 * (cell_w + gap);
            let frame = if c.is_match { colour::GREEN } else { colour::RED };
            cell(
                &mut canvas,
                x,
                &c.gallery_path,
                frame,
                [format!("#{} {:.3}", c.rank, c.score), format!("ID {}", c.identity)],
            );
        }
    }
    Ok(canvas.image)
}

/// Draws a [`contact_sheet`] and writes it as PNG, atomically.
pub fn write_contact_sheet(
    queries: &[&QueryRanking],
    image_root: &Path,
    path: &Path,
    options: &ContactSheetOptions,
) -> Result<()> {
    write_png(path, &contact_sheet(queries, image_root, options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists() -> RankedLists {
        let sim = Similarity::from_rows(&[vec![0.2, 0.9, 0.5, 0.7], vec![0.1, 0.3, 0.2, 0.05]]).unwrap();
        let gallery = ["g0.png", "g1.png", "g2.png", "g3.png"];
        RankedLists::compute(&sim, &[7u64, 9], &[7, 8, 7, 8], &["q0.png", "q1.png"], &gallery, 3).unwrap()
    }

    #[test]
    fn candidates_are_ranked() {
        let l = lists();
        let q = &l.queries[0];
        let order: Vec<usize> = q.candidates.iter().map(|c| c.gallery_index).collect();
        assert_eq!(order, vec![1, 3, 2]);
        assert_eq!(q.candidates.iter().map(|c| c.rank).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(q.candidates.iter().map(|c| c.is_match).collect::<Vec<_>>(), vec![false, false, true]);
        assert_eq!((q.n_matches, q.first_match_rank), (2, Some(3)));
        assert_eq!(q.candidates[0].gallery_path, "g1.png");
        assert_eq!(l.queries[1].first_match_rank, None);
        // Any identity type with equality and Display.
        let sim = Similarity::from_rows(&[vec![0.2, 0.9]]).unwrap();
        let ids = ["dorsal_right/0000002", "dorsal_left/0000002"];
        let l = RankedLists::compute(&sim, &ids[..1], &ids, &["q.jpg"], &["a.jpg", "b.jpg"], 5).unwrap();
        let c = &l.queries[0].candidates;
        assert_eq!((c[0].identity.as_str(), c[0].is_match), ("dorsal_left/0000002", false));
        assert_eq!((c[1].identity.as_str(), c[1].is_match), ("dorsal_right/0000002", true));
        assert_eq!(l.queries[0].first_match_rank, Some(2));
    }

    #[test]
    fn writes_csv_json_and_contact_sheet() {
        let dir = std::env::temp_dir().join(format!("handid-ranking-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let colours = [[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [90, 90, 90], [10, 150, 150]];
        for (i, name) in ["q0.png", "q1.png", "g0.png", "g1.png", "g2.png", "g3.png"].iter().enumerate() {
            let (w, h) = if i % 2 == 0 { (64, 48) } else { (30, 60) };
            RgbImage::from_pixel(w, h, image::Rgb(colours[i])).save(dir.join(name)).unwrap();
        }
        let l = lists();
        l.write_csv(&dir.join("out/ranked.csv")).unwrap();
        l.write_json(&dir.join("out/ranked.json")).unwrap();
        let csv = std::fs::read_to_string(dir.join("out/ranked.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "query_index,query_path,query_identity,rank,gallery_index,gallery_path,identity,score,is_match"
        );
        assert_eq!(lines[1], "0,q0.png,7,1,1,g1.png,8,0.9,false");
        assert_eq!(lines.len(), 1 + 6);
        let back: RankedLists =
            serde_json::from_str(&std::fs::read_to_string(dir.join("out/ranked.json")).unwrap()).unwrap();
        assert_eq!(back, l);

        let options = ContactSheetOptions { top_k: 3, thumb_width: 40, thumb_height: 40, frame: 3 };
        let refs: Vec<&QueryRanking> = l.queries.iter().collect();
        write_contact_sheet(&refs, &dir, &dir.join("out/sheet.png"), &options).unwrap();
        let sheet = image::open(dir.join("out/sheet.png")).unwrap().to_rgb8();
        // Row 0: the third candidate (g2, a true match) has a green frame, the first a red one.
        let (pad, cell, sep, gap) = (10u32, 46u32, 28u32, 8u32);
        let x_third = pad + cell + sep + 2 * (cell + gap);
        assert_eq!(*sheet.get_pixel(x_third + 1, pad + 1), colour::GREEN);
        assert_eq!(*sheet.get_pixel(pad + cell + sep + 1, pad + 1), colour::RED);
        assert_eq!(*sheet.get_pixel(pad + 1, pad + 1), colour::BLUE);
        // The query thumbnail's centre shows the query image's colour.
        assert_eq!(*sheet.get_pixel(pad + cell / 2, pad + cell / 2), image::Rgb(colours[0]));

        // A missing image is an error naming the file.
        std::fs::remove_file(dir.join("g3.png")).unwrap();
        let err = contact_sheet(&refs, &dir, &options).unwrap_err();
        assert!(err.to_string().contains("g3.png"), "{err}");
        // An undecodable one too.
        std::fs::write(dir.join("g3.png"), b"not an image").unwrap();
        let err = contact_sheet(&refs, &dir, &options).unwrap_err();
        assert!(
            matches!(&err, EvalError::Preprocess(clip_burn::preprocess::PreprocessError::NotAnImage { path, .. })
                if path.ends_with("g3.png")),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn label_lengths_are_checked() {
        let sim = Similarity::from_rows(&[vec![0.2, 0.9]]).unwrap();
        let err = RankedLists::compute(&sim, &[1u64], &[1, 2], &["q"], &["g0"], 5).unwrap_err();
        assert!(matches!(err, EvalError::LabelCount { what: "gallery_paths", .. }));
    }
}
