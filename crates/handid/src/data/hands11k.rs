//! 11k Hands (Afifi 2019): 190 subjects, 11,076 images, metadata in `HandInfo.csv`.
//!
//! Layout under the dataset root: `HandInfo.csv` and the images, in a folder `Hands/` (the
//! archive's layout) or, when there is no such folder, next to the CSV.
//!
//! Protocol (docs/METHOD.md section 4): rows with `accessories == 0` are kept and split by
//! `aspectOfHand` into four subsets; in each, identities with `int(id) <=` the subset's
//! threshold are training identities, the others test identities. Identities are labelled
//! `<subset>/<id>` (e.g. `dorsal_right/0000002`), so the same person's other hand or side never
//! matches: the combined gallery of a run (all four subsets' galleries) relies on this.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::DataError;
use super::manifest::{DatasetKind, SplitManifest};
use super::split::{Identity, IdentityImages, SubsetPlan, draw_subset, protocol_rng, set_combined_galleries};

/// The metadata file's name.
pub const HAND_INFO_FILE: &str = "HandInfo.csv";
/// The image folder's name.
pub const HANDS_FOLDER: &str = "Hands";
/// The columns `HandInfo.csv` must have.
pub const HAND_INFO_COLUMNS: [&str; 9] =
    ["id", "age", "gender", "skinColor", "accessories", "nailPolish", "aspectOfHand", "imageName", "irregularities"];
/// Gallery images per run of the combined gallery on the real data (71 + 73 + 71 + 75).
pub const PUBLISHED_COMBINED_GALLERY: usize = 290;

/// One of the four subsets of 11k Hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aspect {
    /// Back of the right hand.
    DorsalRight,
    /// Back of the left hand.
    DorsalLeft,
    /// Palm of the right hand.
    PalmarRight,
    /// Palm of the left hand.
    PalmarLeft,
}

/// Split counts published for one 11k subset (docs/METHOD.md section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedCounts {
    /// Training identities.
    pub train_identities: usize,
    /// Test identities (= gallery images per run).
    pub test_identities: usize,
    /// Query images per run.
    pub query_images: usize,
}

impl Aspect {
    /// The four subsets in manifest order.
    pub const ALL: [Aspect; 4] = [Aspect::DorsalRight, Aspect::DorsalLeft, Aspect::PalmarRight, Aspect::PalmarLeft];

    /// The subset name: `dorsal_right`, `dorsal_left`, `palmar_right`, `palmar_left`.
    pub fn name(self) -> &'static str {
        match self {
            Aspect::DorsalRight => "dorsal_right",
            Aspect::DorsalLeft => "dorsal_left",
            Aspect::PalmarRight => "palmar_right",
            Aspect::PalmarLeft => "palmar_left",
        }
    }

    /// The `aspectOfHand` value in the CSV: `dorsal right`, ...
    pub fn csv_name(self) -> &'static str {
        match self {
            Aspect::DorsalRight => "dorsal right",
            Aspect::DorsalLeft => "dorsal left",
            Aspect::PalmarRight => "palmar right",
            Aspect::PalmarLeft => "palmar left",
        }
    }

    /// The aspect of an `aspectOfHand` value (ASCII case ignored).
    pub fn from_csv_name(value: &str) -> Option<Aspect> {
        Aspect::ALL.into_iter().find(|a| a.csv_name().eq_ignore_ascii_case(value.trim()))
    }

    /// Identities with `int(id) <=` this value are training identities.
    pub fn train_threshold(self) -> u32 {
        match self {
            Aspect::DorsalRight => 1050,
            Aspect::DorsalLeft => 1037,
            Aspect::PalmarRight => 1051,
            Aspect::PalmarLeft => 1042,
        }
    }

    /// The counts published for this subset.
    pub fn published_counts(self) -> PublishedCounts {
        let (train_identities, test_identities, query_images) = match self {
            Aspect::DorsalRight => (72, 71, 971),
            Aspect::DorsalLeft => (73, 73, 988),
            Aspect::PalmarRight => (72, 71, 917),
            Aspect::PalmarLeft => (76, 75, 948),
        };
        PublishedCounts { train_identities, test_identities, query_images }
    }
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of `HandInfo.csv`, fields trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandInfoRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// Subject id as written (7 digits).
    pub id: String,
    /// The id's numeric value (`int(id)`).
    pub id_number: u32,
    /// Age, as written.
    pub age: String,
    /// Gender, as written.
    pub gender: String,
    /// Skin colour, as written.
    pub skin_color: String,
    /// Accessories flag (0: none).
    pub accessories: u32,
    /// Nail polish flag, as written.
    pub nail_polish: String,
    /// Hand aspect.
    pub aspect: Aspect,
    /// Image file name.
    pub image_name: String,
    /// Irregularities flag, as written.
    pub irregularities: String,
}

/// Reads and checks `HandInfo.csv`: all columns present, every row complete with a numeric id,
/// an integer accessories flag, a known aspect and a plain file name, no image listed twice.
pub fn read_hand_info(path: &Path) -> Result<Vec<HandInfoRow>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingPath { path: path.to_path_buf(), what: HAND_INFO_FILE },
        _ => DataError::io(path, "read", e),
    })?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(file);
    let bad_row = |line: u64, message: String| DataError::BadRow { path: path.to_path_buf(), line, message };
    let csv_error = |e: csv::Error| match e.position() {
        Some(p) => bad_row(p.line(), e.to_string()),
        None => match e.into_kind() {
            csv::ErrorKind::Io(io) => DataError::io(path, "read", io),
            kind => bad_row(1, format!("{kind:?}")),
        },
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let missing: Vec<String> =
        HAND_INFO_COLUMNS.iter().filter(|c| !header.iter().any(|h| h == *c)).map(|c| c.to_string()).collect();
    if !missing.is_empty() {
        return Err(DataError::MissingColumns { path: path.to_path_buf(), missing, found: header });
    }
    let col: Vec<usize> =
        HAND_INFO_COLUMNS.iter().map(|c| header.iter().position(|h| h == *c).unwrap_or_default()).collect();

    let mut rows = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let field = |k: usize| match record.get(col[k]) {
            Some(v) => Ok(v.trim().to_string()),
            None => Err(bad_row(
                line,
                format!(
                    "the row has {} fields, the header {}; column {} is missing",
                    record.len(),
                    header.len(),
                    HAND_INFO_COLUMNS[k]
                ),
            )),
        };
        let (id, age, gender, skin_color, accessories) = (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
        let (nail_polish, aspect, image_name, irregularities) = (field(5)?, field(6)?, field(7)?, field(8)?);
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_row(line, format!("id {id:?} is not a number")));
        }
        let id_number = id.parse::<u32>().map_err(|_| bad_row(line, format!("id {id:?} is too large")))?;
        let accessories = accessories
            .parse::<u32>()
            .map_err(|_| bad_row(line, format!("accessories {accessories:?} is not 0 or 1")))?;
        let aspect = Aspect::from_csv_name(&aspect).ok_or_else(|| DataError::UnknownAspect {
            path: path.to_path_buf(),
            line,
            value: aspect.clone(),
        })?;
        if image_name.is_empty() || image_name.contains(['/', '\\']) || image_name == "." || image_name == ".." {
            return Err(bad_row(line, format!("imageName {image_name:?} is not a plain file name")));
        }
        if let Some(&first) = first_line.get(&image_name) {
            return Err(DataError::DuplicateImage {
                path: path.to_path_buf(),
                name: image_name,
                line,
                first_line: first,
            });
        }
        first_line.insert(image_name.clone(), line);
        rows.push(HandInfoRow {
            line,
            id,
            id_number,
            age,
            gender,
            skin_color,
            accessories,
            nail_polish,
            aspect,
            image_name,
            irregularities,
        });
    }
    Ok(rows)
}

/// Counts of one subset, from the CSV alone (they do not depend on the seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hands11kCounts {
    /// The subset.
    pub aspect: Aspect,
    /// Training identities.
    pub train_identities: usize,
    /// Their images (validation images included).
    pub train_images: usize,
    /// Test identities (= gallery images per run).
    pub test_identities: usize,
    /// Their images.
    pub test_images: usize,
    /// Query images per run (test images minus one per test identity).
    pub query_images: usize,
}

/// 11k Hands, read and checked: every kept row's image exists.
#[derive(Clone, Debug)]
pub struct Hands11k {
    root: PathBuf,
    csv: PathBuf,
    prefix: String,
    rows: Vec<HandInfoRow>,
}

impl Hands11k {
    /// Reads `root/HandInfo.csv` and checks that the images of all rows without accessories
    /// exist (in `root/Hands/`, or in `root` when there is no `Hands` folder).
    pub fn open(root: &Path) -> Result<Self, DataError> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot { path: root.to_path_buf() });
        }
        let csv = root.join(HAND_INFO_FILE);
        if !csv.is_file() {
            return Err(DataError::MissingPath { path: csv, what: HAND_INFO_FILE });
        }
        let rows = read_hand_info(&csv)?;
        let hands = root.join(HANDS_FOLDER);
        let (images_dir, prefix) =
            if hands.is_dir() { (hands, format!("{HANDS_FOLDER}/")) } else { (root.to_path_buf(), String::new()) };
        let mut kept = rows.iter().filter(|r| r.accessories == 0).peekable();
        if prefix.is_empty()
            && let Some(first) = kept.peek()
            && !images_dir.join(&first.image_name).is_file()
        {
            return Err(DataError::MissingPath { path: root.join(HANDS_FOLDER), what: "11k image folder" });
        }
        for row in kept {
            let image = images_dir.join(&row.image_name);
            if !image.is_file() {
                return Err(DataError::MissingImage { path: csv, line: row.line, image });
            }
        }
        Ok(Hands11k { root: root.to_path_buf(), csv, prefix, rows })
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata file.
    pub fn csv_path(&self) -> &Path {
        &self.csv
    }

    /// All rows of the CSV (accessories included).
    pub fn rows(&self) -> &[HandInfoRow] {
        &self.rows
    }

    /// The training and test identities of a subset (rows with accessories dropped), images
    /// relative to the root.
    pub fn plan(&self, aspect: Aspect) -> SubsetPlan {
        let mut by_id: BTreeMap<(u32, &str), Vec<String>> = BTreeMap::new();
        for row in self.rows.iter().filter(|r| r.accessories == 0 && r.aspect == aspect) {
            by_id
                .entry((row.id_number, row.id.as_str()))
                .or_default()
                .push(format!("{}{}", self.prefix, row.image_name));
        }
        let mut plan = SubsetPlan { name: aspect.name().to_string(), ..Default::default() };
        for ((number, id), images) in by_id {
            let item = IdentityImages { identity: Identity::new(aspect.name(), id), images, origin: self.csv.clone() };
            if number <= aspect.train_threshold() { plan.train.push(item) } else { plan.test.push(item) }
        }
        plan
    }

    /// The counts of every subset.
    pub fn counts(&self) -> Vec<Hands11kCounts> {
        Aspect::ALL
            .into_iter()
            .map(|aspect| {
                let plan = self.plan(aspect);
                let images = |list: &[IdentityImages]| list.iter().map(|i| i.images.len()).sum::<usize>();
                let test_images = images(&plan.test);
                Hands11kCounts {
                    aspect,
                    train_identities: plan.train.len(),
                    train_images: images(&plan.train),
                    test_identities: plan.test.len(),
                    test_images,
                    query_images: test_images - plan.test.len(),
                }
            })
            .collect()
    }

    /// Checks the counts against those published for the real data (docs/METHOD.md section 4):
    /// training / test identities and queries per subset, and the combined gallery. The error
    /// lists every count that differs.
    pub fn check_published_counts(&self) -> Result<(), DataError> {
        let mut discrepancies = Vec::new();
        let counts = self.counts();
        for c in &counts {
            let published = c.aspect.published_counts();
            let mut compare = |what: &str, found: usize, expected: usize| {
                if found != expected {
                    discrepancies.push(format!("{}: {found} {what} (published {expected})", c.aspect));
                }
            };
            compare("training identities", c.train_identities, published.train_identities);
            compare("test identities", c.test_identities, published.test_identities);
            compare("query images", c.query_images, published.query_images);
        }
        let combined: usize = counts.iter().map(|c| c.test_identities).sum();
        if combined != PUBLISHED_COMBINED_GALLERY {
            discrepancies.push(format!("combined gallery: {combined} images (published {PUBLISHED_COMBINED_GALLERY})"));
        }
        if discrepancies.is_empty() {
            Ok(())
        } else {
            Err(DataError::PublishedCounts { path: self.csv.clone(), discrepancies })
        }
    }

    /// Draws the split: for each subset (on its own generator stream, the subset's index) the
    /// validation images and `runs` query/gallery runs; then the combined galleries.
    pub fn split(&self, seed: u64, runs: usize) -> Result<SplitManifest, DataError> {
        if runs == 0 {
            return Err(DataError::InvalidOption("the number of Monte Carlo runs must be at least 1".into()));
        }
        let mut subsets = Vec::with_capacity(Aspect::ALL.len());
        for (stream, aspect) in Aspect::ALL.into_iter().enumerate() {
            let plan = self.plan(aspect);
            for (list, role) in [(&plan.train, "training"), (&plan.test, "test")] {
                if list.is_empty() {
                    return Err(DataError::layout(
                        &self.csv,
                        format!(
                            "subset {aspect} has no {role} identities without accessories (training: int(id) <= {})",
                            aspect.train_threshold()
                        ),
                    ));
                }
            }
            subsets.push(draw_subset(&plan, runs, &mut protocol_rng(seed, stream as u64))?);
        }
        set_combined_galleries(&mut subsets)?;
        Ok(SplitManifest::new(DatasetKind::Hands11k, seed, None, subsets))
    }
}

/// Look-alike 11k data for tests.
#[cfg(test)]
pub(crate) mod lookalike {
    use super::*;
    use crate::data::testutil::touch;

    /// Writes `root/HandInfo.csv` and empty images under `root/Hands/` giving the published
    /// counts: per aspect, training ids just below the threshold with 3 images, test ids just
    /// above it whose images sum to the published queries; plus rows with accessories.
    pub(crate) fn write(root: &Path) {
        let mut csv =
            String::from("id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,imageName,irregularities\n");
        let mut image = 0u32;
        let mut row = |csv: &mut String, id: &str, acc: u32, aspect: Aspect| {
            let name = format!("Hand_{image:07}.jpg");
            image += 1;
            csv.push_str(&format!("{id},25,male,fair,{acc},0,{},{name},0\n", aspect.csv_name()));
            if acc == 0 {
                touch(&root.join(HANDS_FOLDER).join(&name));
            }
        };
        for aspect in Aspect::ALL {
            let p = aspect.published_counts();
            let t = aspect.train_threshold();
            for k in 0..p.train_identities as u32 {
                let number = t - k;
                // One id is written with a trailing space, as in the real file.
                let id = if number == 1000 { format!("{number:07} ") } else { format!("{number:07}") };
                for _ in 0..3 {
                    row(&mut csv, &id, 0, aspect);
                }
                row(&mut csv, &id, 1, aspect);
            }
            let n = p.test_identities;
            for k in 0..n {
                let id = format!("{:07}", t + 1 + k as u32);
                let queries = p.query_images / n + usize::from(k < p.query_images % n);
                for _ in 0..queries + 1 {
                    row(&mut csv, &id, 0, aspect);
                }
            }
            // A subject seen only with accessories does not count.
            row(&mut csv, "0009999", 1, aspect);
        }
        touch(&root.join(HAND_INFO_FILE));
        std::fs::write(root.join(HAND_INFO_FILE), csv).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    const HEADER: &str = "id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,imageName,irregularities\n";

    fn write_csv(dir: &TempDir, body: &str) -> PathBuf {
        let path = dir.path().join(HAND_INFO_FILE);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn lookalike_gives_published_counts() {
        let dir = TempDir::new("11k-counts");
        lookalike::write(dir.path());
        let data = Hands11k::open(dir.path()).unwrap();
        data.check_published_counts().unwrap();
        let manifest = data.split(42, 10).unwrap();
        let names: Vec<_> = manifest.subsets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["dorsal_right", "dorsal_left", "palmar_right", "palmar_left"]);
        for (subset, aspect) in manifest.subsets.iter().zip(Aspect::ALL) {
            let s = subset.summary();
            let p = aspect.published_counts();
            assert_eq!(
                (s.train_identities, s.test_identities, s.query_images),
                (p.train_identities, p.test_identities, p.query_images)
            );
            assert_eq!(s.val_images, p.train_identities);
            assert_eq!(s.combined_gallery_images, PUBLISHED_COMBINED_GALLERY);
            assert!(subset.train[0].path.starts_with("Hands/Hand_"));
        }
        // The id written with a trailing space is trimmed.
        assert!(manifest.subsets[0].train.iter().any(|e| e.identity.id == "0001000"));
    }

    #[test]
    fn counts_differ_from_published() {
        let dir = TempDir::new("11k-off");
        lookalike::write(dir.path());
        let csv = dir.path().join(HAND_INFO_FILE);
        let text = std::fs::read_to_string(&csv).unwrap();
        // Turn one dorsal-right training subject into a test subject.
        let text = text.replace("0001050,", "0005000,");
        std::fs::write(&csv, text).unwrap();
        let err = Hands11k::open(dir.path()).unwrap().check_published_counts().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("HandInfo.csv") && msg.contains("dorsal_right: 71 training identities (published 72)"),
            "{msg}"
        );
        assert!(msg.contains("dorsal_right: 72 test identities (published 71)"), "{msg}");
    }

    #[test]
    fn csv_errors() {
        let dir = TempDir::new("11k-csv");
        let path = write_csv(&dir, "id,age,gender,accessories,imageName\n1,2,3,0,a.jpg\n");
        let err = read_hand_info(&path).unwrap_err();
        assert!(matches!(err, DataError::MissingColumns { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("skinColor, nailPolish, aspectOfHand, irregularities") && msg.contains("HandInfo.csv"),
            "{msg}"
        );

        let path =
            write_csv(&dir, &format!("{HEADER}0000001,20,male,fair,0,0,dorsal right,a.jpg,0\n0000001,20,male\n"));
        let err = read_hand_info(&path).unwrap_err();
        assert!(matches!(err, DataError::BadRow { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("line 3") && err.to_string().contains("skinColor"), "{err}");

        let path = write_csv(&dir, &format!("{HEADER}00x0001,20,male,fair,0,0,dorsal right,a.jpg,0\n"));
        assert!(matches!(read_hand_info(&path), Err(DataError::BadRow { line: 2, .. })));
        let path = write_csv(&dir, &format!("{HEADER}0000001,20,male,fair,yes,0,dorsal right,a.jpg,0\n"));
        assert!(read_hand_info(&path).unwrap_err().to_string().contains("accessories"));
        let path = write_csv(&dir, &format!("{HEADER}0000001,20,male,fair,0,0,dorsal right,../a.jpg,0\n"));
        assert!(matches!(read_hand_info(&path), Err(DataError::BadRow { .. })));
        let path = dir.path().join(HAND_INFO_FILE);
        std::fs::write(&path, [HEADER.as_bytes(), b"0000001,20,male,fa\xffir,0,0,dorsal right,a.jpg,0\n"].concat())
            .unwrap();
        let err = read_hand_info(&path).unwrap_err();
        assert!(matches!(err, DataError::BadRow { line: 2, .. }), "{err}");

        let path = write_csv(&dir, &format!("{HEADER}0000001,20,male,fair,0,0,dorsal centre,a.jpg,0\n"));
        let err = read_hand_info(&path).unwrap_err();
        assert!(matches!(err, DataError::UnknownAspect { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("dorsal centre"), "{err}");

        let path = write_csv(
            &dir,
            &format!(
                "{HEADER}0000001,20,male,fair,0,0,dorsal right,a.jpg,0\n0000002,20,male,fair,1,0,palmar left,a.jpg,0\n"
            ),
        );
        let err = read_hand_info(&path).unwrap_err();
        assert!(matches!(err, DataError::DuplicateImage { line: 3, first_line: 2, .. }), "{err}");

        // Columns in another order, a BOM, a trailing-space id and spaces around fields are fine.
        let path = write_csv(
            &dir,
            "\u{feff}imageName,id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,irregularities\n a.jpg ,0000001 ,20,male,fair,0,0,Dorsal Right,0\n",
        );
        let rows = read_hand_info(&path).unwrap();
        assert_eq!(
            (rows[0].id.as_str(), rows[0].id_number, rows[0].aspect, rows[0].image_name.as_str()),
            ("0000001", 1, Aspect::DorsalRight, "a.jpg")
        );

        let err = read_hand_info(&dir.path().join("nope.csv")).unwrap_err();
        assert!(matches!(err, DataError::MissingPath { .. }), "{err}");
    }

    #[test]
    fn open_errors() {
        let dir = TempDir::new("11k-open");
        let err = Hands11k::open(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, DataError::MissingRoot { .. }), "{err}");
        let err = Hands11k::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MissingPath { what: HAND_INFO_FILE, .. }), "{err}");

        write_csv(&dir, &format!("{HEADER}0000001,20,male,fair,0,0,dorsal right,Hand_1.jpg,0\n"));
        let err = Hands11k::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MissingPath { what: "11k image folder", .. }), "{err}");
        std::fs::create_dir(dir.path().join(HANDS_FOLDER)).unwrap();
        let err = Hands11k::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MissingImage { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("Hand_1.jpg"), "{err}");
    }

    #[test]
    fn too_few_images_and_empty_subsets() {
        let dir = TempDir::new("11k-few");
        lookalike::write(dir.path());
        let csv = dir.path().join(HAND_INFO_FILE);
        let mut text = std::fs::read_to_string(&csv).unwrap();
        // A new training subject of dorsal right with a single image.
        text.push_str("0000500,30,female,fair,0,0,dorsal right,Hand_9000001.jpg,0\n");
        std::fs::write(&csv, &text).unwrap();
        crate::data::testutil::touch(&dir.path().join(HANDS_FOLDER).join("Hand_9000001.jpg"));
        let err = Hands11k::open(dir.path()).unwrap().split(1, 10).unwrap_err();
        assert!(matches!(err, DataError::TooFewImages { count: 1, needed: 2, role: "training", .. }), "{err}");
        assert!(err.to_string().contains("dorsal_right/0000500") && err.to_string().contains("HandInfo.csv"), "{err}");

        let only_right: String = text
            .lines()
            .filter(|l| !l.contains("palmar left") && !l.contains("0000500"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&csv, only_right).unwrap();
        let err = Hands11k::open(dir.path()).unwrap().split(1, 10).unwrap_err();
        assert!(matches!(err, DataError::Layout { .. }), "{err}");
    }

    #[test]
    fn images_next_to_csv() {
        let dir = TempDir::new("11k-flat");
        let mut body = HEADER.to_string();
        for (i, id) in ["0001000", "0001000", "0001100", "0001100"].iter().enumerate() {
            for aspect in Aspect::ALL {
                let name = format!("{}_{i}.jpg", aspect.name());
                body.push_str(&format!("{id},20,male,fair,0,0,{},{name},0\n", aspect.csv_name()));
                crate::data::testutil::touch(&dir.path().join(&name));
            }
        }
        write_csv(&dir, &body);
        let manifest = Hands11k::open(dir.path()).unwrap().split(5, 2).unwrap();
        assert_eq!(manifest.subsets[0].train.len() + manifest.subsets[0].val.len(), 2);
        assert!(!manifest.subsets[0].val[0].path.contains('/'));
        assert_eq!(manifest.subsets[0].runs[0].combined_gallery.len(), 4);
    }
}
