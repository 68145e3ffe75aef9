//! PolyU hand dorsal dataset (HD): folders `1-501` (502 identities) and `502-712` (213 extra
//! subjects), image files `<ID>_<k>.jpg`.
//!
//! Protocol (docs/METHOD.md section 4), following the paper: the identities of `1-501`, sorted
//! numerically, are split in halves, the first training, the second test (251 / 251 on the real
//! data). The authors' script uses `int(ID) <= 447` for training instead;
//! [`PolyuHd::split_counts`] reports what each rule gives. Every image of `502-712` is appended
//! to every gallery as a distractor, labelled `502-712/<ID>` so it never matches a query
//! (labelled `1-501/<ID>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::DataError;
use super::manifest::{DatasetKind, SplitManifest};
use super::split::{Entry, Identity, IdentityImages, SubsetPlan, draw_subset, protocol_rng};
use super::{has_image_extension, utf8_file_name};

/// The folder of the identities that are split into training and test.
pub const HD_MAIN_FOLDER: &str = "1-501";
/// The folder of the extra subjects, used as gallery distractors.
pub const HD_DISTRACTOR_FOLDER: &str = "502-712";
/// The name of HD's single subset in a manifest.
pub const HD_SUBSET: &str = "hd";
/// The authors' script trains on `int(ID) <=` this value (the paper: the first half).
pub const AUTHORS_TRAIN_THRESHOLD: u64 = 447;

/// Published counts for the real data: identities in `1-501`, training and test identities,
/// gallery images per run (distractors included) and query images per run.
pub const PUBLISHED_HD_COUNTS: ProtocolCounts = ProtocolCounts {
    train_identities: 251,
    train_images: None,
    test_identities: 251,
    gallery_images: 1593,
    query_images: 1992,
};
/// Identities of `1-501` on the real data.
pub const PUBLISHED_HD_IDENTITIES: usize = 502;

/// Counts of one way of splitting HD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolCounts {
    /// Training identities.
    pub train_identities: usize,
    /// Their images, validation images included (`None` where unknown, as in the published counts).
    pub train_images: Option<usize>,
    /// Test identities.
    pub test_identities: usize,
    /// Gallery images per run: one per test identity plus all distractors.
    pub gallery_images: usize,
    /// Query images per run.
    pub query_images: usize,
}

/// What the paper's split and the authors' threshold give on this copy of HD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HdSplitCounts {
    /// Identities in `1-501`.
    pub identities: usize,
    /// Subjects in `502-712`.
    pub distractor_identities: usize,
    /// Images in `502-712`.
    pub distractor_images: usize,
    /// First half training, second half test (the paper; what [`PolyuHd::split`] does).
    pub paper: ProtocolCounts,
    /// `int(ID) <= 447` training (the authors' script).
    pub authors: ProtocolCounts,
}

/// One HD identity: numeric id and images.
#[derive(Clone, Debug)]
struct HdIdentity {
    number: u64,
    images: IdentityImages,
}

/// PolyU HD, read and checked.
#[derive(Clone, Debug)]
pub struct PolyuHd {
    root: PathBuf,
    main: Vec<HdIdentity>,
    distractors: Vec<HdIdentity>,
}

/// Lists `root/<folder>`: image files `<ID>_<k>.<ext>` grouped by numeric ID, sorted.
fn read_folder(root: &Path, folder: &str) -> Result<Vec<HdIdentity>, DataError> {
    let dir = root.join(folder);
    if !dir.is_dir() {
        return Err(DataError::MissingPath {
            path: dir,
            what: if folder == HD_MAIN_FOLDER { "HD folder 1-501" } else { "HD folder 502-712" },
        });
    }
    let listing = std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, "list", e))?;
    let mut by_id: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for item in listing {
        let item = item.map_err(|e| DataError::io(&dir, "list", e))?;
        let path = item.path();
        let name = utf8_file_name(&path)?;
        if name.starts_with('.') || !path.is_file() || !has_image_extension(&name) {
            continue;
        }
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(stem, _)| stem);
        let number = match stem.split_once('_') {
            Some((id, k)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !k.is_empty() => {
                id.parse::<u64>().map_err(|_| DataError::layout(&path, "the ID in the file name is too large"))?
            }
            _ => return Err(DataError::layout(&path, "file name is not of the form <ID>_<k>.<ext>, e.g. 17_3.jpg")),
        };
        by_id.entry(number).or_default().push(format!("{folder}/{name}"));
    }
    if by_id.is_empty() {
        return Err(DataError::NoImages { path: dir });
    }
    Ok(by_id
        .into_iter()
        .map(|(number, mut images)| {
            images.sort();
            let identity = Identity::new(folder, number.to_string());
            HdIdentity { number, images: IdentityImages { identity, images, origin: dir.clone() } }
        })
        .collect())
}

impl PolyuHd {
    /// Lists `root/1-501` and `root/502-712`.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot { path: root.to_path_buf() });
        }
        let main = read_folder(root, HD_MAIN_FOLDER)?;
        let distractors = read_folder(root, HD_DISTRACTOR_FOLDER)?;
        Ok(PolyuHd { root: root.to_path_buf(), main, distractors })
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The identities of `1-501` in numeric order.
    pub fn identities(&self) -> impl Iterator<Item = &IdentityImages> {
        self.main.iter().map(|i| &i.images)
    }

    /// All images of `502-712`, as distractor entries.
    pub fn distractors(&self) -> Vec<Entry> {
        self.distractors
            .iter()
            .flat_map(|d| d.images.images.iter().map(|p| Entry::new(p.clone(), d.images.identity.clone())))
            .collect()
    }

    /// The paper's plan: first half of the numerically sorted identities training (the
    /// smaller half for an odd count), second half test, all of `502-712` distractors.
    pub fn plan(&self) -> SubsetPlan {
        let n_train = self.main.len() / 2;
        SubsetPlan {
            name: HD_SUBSET.to_string(),
            train: self.main[..n_train].iter().map(|i| i.images.clone()).collect(),
            test: self.main[n_train..].iter().map(|i| i.images.clone()).collect(),
            distractors: self.distractors(),
        }
    }

    fn counts_for(&self, is_train: impl Fn(usize, &HdIdentity) -> bool) -> ProtocolCounts {
        let distractor_images: usize = self.distractors.iter().map(|d| d.images.images.len()).sum();
        let (mut train_identities, mut train_images, mut test_identities, mut test_images) = (0, 0, 0, 0);
        for (rank, identity) in self.main.iter().enumerate() {
            let n = identity.images.images.len();
            if is_train(rank, identity) {
                train_identities += 1;
                train_images += n;
            } else {
                test_identities += 1;
                test_images += n;
            }
        }
        ProtocolCounts {
            train_identities,
            train_images: Some(train_images),
            test_identities,
            gallery_images: test_identities + distractor_images,
            query_images: test_images - test_identities,
        }
    }

    /// The counts of the paper's split and of the authors' threshold `int(ID) <= 447`.
    pub fn split_counts(&self) -> HdSplitCounts {
        let n_train = self.main.len() / 2;
        HdSplitCounts {
            identities: self.main.len(),
            distractor_identities: self.distractors.len(),
            distractor_images: self.distractors.iter().map(|d| d.images.images.len()).sum(),
            paper: self.counts_for(|rank, _| rank < n_train),
            authors: self.counts_for(|_, identity| identity.number <= AUTHORS_TRAIN_THRESHOLD),
        }
    }

    /// Checks the paper split's counts against those published for the real data
    /// ([`PUBLISHED_HD_COUNTS`]). The error lists every count that differs.
    pub fn check_published_counts(&self) -> Result<(), DataError> {
        let counts = self.split_counts();
        let expected = PUBLISHED_HD_COUNTS;
        let mut discrepancies = Vec::new();
        let mut compare = |what: &str, found: usize, published: usize| {
            if found != published {
                discrepancies.push(format!("{found} {what} (published {published})"));
            }
        };
        compare("identities in 1-501", counts.identities, PUBLISHED_HD_IDENTITIES);
        compare("training identities", counts.paper.train_identities, expected.train_identities);
        compare("test identities", counts.paper.test_identities, expected.test_identities);
        compare("gallery images", counts.paper.gallery_images, expected.gallery_images);
        compare("query images", counts.paper.query_images, expected.query_images);
        if discrepancies.is_empty() {
            Ok(())
        } else {
            Err(DataError::PublishedCounts { path: self.root.clone(), discrepancies })
        }
    }

    /// Draws the split of the paper's plan: validation images and `runs` query/gallery runs.
    pub fn split(&self, seed: u64, runs: usize) -> Result<SplitManifest, DataError> {
        if runs == 0 {
            return Err(DataError::InvalidOption("the number of Monte Carlo runs must be at least 1".into()));
        }
        if self.main.len() < 2 {
            return Err(DataError::layout(
                self.root.join(HD_MAIN_FOLDER),
                format!("{} identity found; training and test need at least one each", self.main.len()),
            ));
        }
        let subset = draw_subset(&self.plan(), runs, &mut protocol_rng(seed, 0))?;
        Ok(SplitManifest::new(DatasetKind::PolyuHd, seed, None, vec![subset]))
    }
}

/// Look-alike HD data for tests.
#[cfg(test)]
pub(crate) mod lookalike {
    use super::*;
    use crate::data::testutil::touch;

    /// Writes empty images giving the published counts: ids 1..=502 in `1-501` (training ids 4
    /// images each, test ids images summing to the published queries), ids 503..=715 in
    /// `502-712` with 1342 images in all.
    pub(crate) fn write(root: &Path) {
        for id in 1..=251u32 {
            for k in 1..=4 {
                touch(&root.join(HD_MAIN_FOLDER).join(format!("{id}_{k}.jpg")));
            }
        }
        let queries = PUBLISHED_HD_COUNTS.query_images as u32;
        for (j, id) in (252..=502u32).enumerate() {
            let n = 1 + queries / 251 + u32::from((j as u32) < queries % 251);
            for k in 1..=n {
                touch(&root.join(HD_MAIN_FOLDER).join(format!("{id}_{k}.jpg")));
            }
        }
        let distractor_images = (PUBLISHED_HD_COUNTS.gallery_images - 251) as u32;
        for (j, id) in (503..=715u32).enumerate() {
            let n = distractor_images / 213 + u32::from((j as u32) < distractor_images % 213);
            for k in 1..=n {
                touch(&root.join(HD_DISTRACTOR_FOLDER).join(format!("{id}_{k}.jpg")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{TempDir, touch};

    #[test]
    fn lookalike_gives_published_counts() {
        let dir = TempDir::new("hd-counts");
        lookalike::write(dir.path());
        let hd = PolyuHd::open(dir.path()).unwrap();
        hd.check_published_counts().unwrap();
        let counts = hd.split_counts();
        assert_eq!((counts.identities, counts.distractor_identities, counts.distractor_images), (502, 213, 1342));
        assert_eq!((counts.authors.train_identities, counts.authors.test_identities), (447, 55));
        assert_eq!(counts.authors.gallery_images, 55 + 1342);
        let manifest = hd.split(42, 10).unwrap();
        let s = manifest.subsets[0].summary();
        assert_eq!((s.train_identities, s.test_identities, s.gallery_images, s.query_images), (251, 251, 1593, 1992));
        assert_eq!(s.distractor_images, 1342);
        let run = &manifest.subsets[0].runs[0];
        assert!(run.combined_gallery.is_empty());
        assert!(run.gallery[251..].iter().all(|e| e.identity.group == HD_DISTRACTOR_FOLDER));
        assert_eq!(
            manifest.subsets[0]
                .train
                .iter()
                .map(|e| &e.identity.id)
                .max_by_key(|id| id.parse::<u32>().unwrap())
                .unwrap(),
            "251"
        );
    }

    #[test]
    fn numeric_order_and_odd_counts() {
        let dir = TempDir::new("hd-small");
        for id in [2u32, 10, 9, 100, 1] {
            for k in 1..=3 {
                touch(&dir.path().join(HD_MAIN_FOLDER).join(format!("{id}_{k}.jpg")));
            }
        }
        touch(&dir.path().join(HD_MAIN_FOLDER).join("notes.txt"));
        touch(&dir.path().join(HD_DISTRACTOR_FOLDER).join("600_1.JPG"));
        let hd = PolyuHd::open(dir.path()).unwrap();
        let ids: Vec<_> = hd.identities().map(|i| i.identity.id.clone()).collect();
        assert_eq!(ids, ["1", "2", "9", "10", "100"]);
        let plan = hd.plan();
        assert_eq!((plan.train.len(), plan.test.len(), plan.distractors.len()), (2, 3, 1));
        assert_eq!(plan.distractors[0].path, "502-712/600_1.JPG");
        let counts = hd.split_counts();
        assert_eq!((counts.authors.train_identities, counts.authors.test_identities), (5, 0));
        let err = hd.check_published_counts().unwrap_err();
        assert!(err.to_string().contains("5 identities in 1-501 (published 502)"), "{err}");
    }

    #[test]
    fn layout_errors() {
        let dir = TempDir::new("hd-errors");
        assert!(matches!(PolyuHd::open(&dir.path().join("x")), Err(DataError::MissingRoot { .. })));
        let err = PolyuHd::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("1-501"), "{err}");
        std::fs::create_dir_all(dir.path().join(HD_MAIN_FOLDER)).unwrap();
        let err = PolyuHd::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::NoImages { .. }) && err.to_string().contains("1-501"), "{err}");
        touch(&dir.path().join(HD_MAIN_FOLDER).join("1_1.jpg"));
        let err = PolyuHd::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MissingPath { .. }) && err.to_string().contains("502-712"), "{err}");
        touch(&dir.path().join(HD_DISTRACTOR_FOLDER).join("abc.jpg"));
        let err = PolyuHd::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Layout { .. }) && err.to_string().contains("abc.jpg"), "{err}");
        std::fs::remove_file(dir.path().join(HD_DISTRACTOR_FOLDER).join("abc.jpg")).unwrap();
        touch(&dir.path().join(HD_DISTRACTOR_FOLDER).join("600_1.jpg"));
        touch(&dir.path().join(HD_MAIN_FOLDER).join("2_1.jpg"));
        touch(&dir.path().join(HD_MAIN_FOLDER).join("2_2.jpg"));
        // Identity 1 (training) has one image.
        let err = PolyuHd::open(dir.path()).unwrap().split(0, 10).unwrap_err();
        assert!(matches!(err, DataError::TooFewImages { .. }) && err.to_string().contains("1-501/1"), "{err}");
    }
}
