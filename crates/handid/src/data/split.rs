//! Identity labels, split entries and the seeded split protocol shared by every dataset.
//!
//! The protocol (docs/METHOD.md sections 3 and 4), for one subset:
//! - every training identity gives one randomly drawn image to the validation set, the rest of
//!   its images to the training set;
//! - in each of the Monte Carlo runs, every test identity gives one randomly drawn image to the
//!   gallery and the rest of its images to the queries; distractors (identities that never
//!   match a query) are appended to every gallery.
//!
//! Draws use ChaCha8 seeded with [`protocol_rng`] and an unbiased integer draw written here
//! ([`draw_below`]), so a seed gives the same split on every platform and with every version of
//! `rand`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::DataError;

/// Images a training identity needs: one validation image and at least one training image.
pub const MIN_TRAIN_IMAGES: usize = 2;
/// Images a test identity needs: one gallery image per run and at least one query.
pub const MIN_TEST_IMAGES: usize = 2;
/// Monte Carlo query/gallery runs of the published protocol.
pub const DEFAULT_RUNS: usize = 10;

/// An identity label. Two images show the same identity exactly when both the group and the id
/// are equal.
///
/// The group keeps identities of different subsets apart: in 11k Hands it is the aspect
/// (`dorsal_right/0000002` and `dorsal_left/0000002` never match, which is what the combined
/// gallery needs), in PolyU HD the folder (`1-501/17`, distractors `502-712/600`), for a
/// folder-per-identity dataset `folders`. Written as `group/id`; the group contains no `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The subset or folder the identity belongs to (no `/`).
    pub group: String,
    /// The identity within its group.
    pub id: String,
}

impl Identity {
    /// An identity from its group and id.
    pub fn new(group: impl Into<String>, id: impl Into<String>) -> Self {
        Identity { group: group.into(), id: id.into() }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.id)
    }
}

impl FromStr for Identity {
    type Err = String;

    /// Parses `group/id` (split at the first `/`; both parts non-empty).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((group, id)) if !group.is_empty() && !id.is_empty() => Ok(Identity::new(group, id)),
            _ => Err(format!("identity {s:?} is not of the form group/id")),
        }
    }
}

impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One image of a split: its path relative to the dataset root (`/`-separated) and its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the dataset root, components separated by `/`.
    pub path: String,
    /// The identity shown.
    pub identity: Identity,
}

impl Entry {
    /// An entry from a relative path and an identity.
    pub fn new(path: impl Into<String>, identity: Identity) -> Self {
        Entry { path: path.into(), identity }
    }

    /// The image's path under `root`.
    pub fn full_path(&self, root: &Path) -> PathBuf {
        let mut full = root.to_path_buf();
        full.extend(self.path.split('/'));
        full
    }
}

/// All images of one identity, the input of [`draw_subset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityImages {
    /// The identity.
    pub identity: Identity,
    /// Its images, relative to the dataset root (`/`-separated).
    pub images: Vec<String>,
    /// The file or folder the identity was read from (named in error messages).
    pub origin: PathBuf,
}

/// The query/gallery split of one Monte Carlo run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSplit {
    /// One image per test identity of this subset, then the distractors (if the dataset has any).
    pub gallery: Vec<Entry>,
    /// 11k Hands only: the galleries of all four subsets in this run, concatenated (empty
    /// otherwise). The published 11k numbers match queries against this gallery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub combined_gallery: Vec<Entry>,
    /// All images of the test identities that are not in the gallery.
    pub query: Vec<Entry>,
}

impl RunSplit {
    /// The gallery the published numbers use: the combined gallery where there is one (11k),
    /// the gallery otherwise.
    pub fn evaluation_gallery(&self) -> &[Entry] {
        if self.combined_gallery.is_empty() { &self.gallery } else { &self.combined_gallery }
    }

    /// Integer labels of the queries and of the [`evaluation gallery`](Self::evaluation_gallery):
    /// equal integers exactly where the identities are equal (numbered in identity order).
    pub fn integer_labels(&self) -> (Vec<usize>, Vec<usize>) {
        let gallery = self.evaluation_gallery();
        let ids: BTreeSet<&Identity> = self.query.iter().chain(gallery).map(|e| &e.identity).collect();
        let index: BTreeMap<&Identity, usize> = ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
        let labels = |entries: &[Entry]| entries.iter().map(|e| index[&e.identity]).collect::<Vec<_>>();
        (labels(&self.query), labels(gallery))
    }
}

/// The split of one subset (an 11k aspect, PolyU HD, a folder dataset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsetSplit {
    /// Subset name, e.g. `dorsal_right`, `hd`, `folders`.
    pub name: String,
    /// Training images (the validation images excluded).
    pub train: Vec<Entry>,
    /// One image per training identity.
    pub val: Vec<Entry>,
    /// The Monte Carlo query/gallery runs.
    pub runs: Vec<RunSplit>,
}

/// Class indices for training a classifier on one subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainClasses {
    /// The classes: the distinct identities of the training and validation entries, sorted.
    pub identities: Vec<Identity>,
    /// Class index of each training entry, in order.
    pub train: Vec<usize>,
    /// Class index of each validation entry, in order.
    pub val: Vec<usize>,
}

/// Counts of one subset's split (the runs all have the same sizes; run 0 is counted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubsetSummary {
    /// Subset name.
    pub name: String,
    /// Distinct training identities.
    pub train_identities: usize,
    /// Training images (validation images excluded).
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Distinct test identities (those with queries).
    pub test_identities: usize,
    /// Gallery images per run, distractors included.
    pub gallery_images: usize,
    /// Gallery images that are distractors (match no query).
    pub distractor_images: usize,
    /// Combined-gallery images per run (0 where there is none).
    pub combined_gallery_images: usize,
    /// Query images per run.
    pub query_images: usize,
    /// Monte Carlo runs.
    pub runs: usize,
}

impl SubsetSplit {
    /// Class indices of the training and validation entries.
    pub fn train_classes(&self) -> TrainClasses {
        let ids: BTreeSet<&Identity> = self.train.iter().chain(&self.val).map(|e| &e.identity).collect();
        let identities: Vec<Identity> = ids.into_iter().cloned().collect();
        let index: BTreeMap<&Identity, usize> = identities.iter().enumerate().map(|(i, id)| (id, i)).collect();
        let labels = |entries: &[Entry]| entries.iter().map(|e| index[&e.identity]).collect::<Vec<_>>();
        let train = labels(&self.train);
        let val = labels(&self.val);
        TrainClasses { identities, train, val }
    }

    /// The counts of this split.
    pub fn summary(&self) -> SubsetSummary {
        let distinct = |entries: &[Entry]| entries.iter().map(|e| &e.identity).collect::<BTreeSet<_>>().len();
        let (test_identities, gallery_images, distractor_images, combined_gallery_images, query_images) =
            match self.runs.first() {
                Some(run) => {
                    let query_ids: BTreeSet<&Identity> = run.query.iter().map(|e| &e.identity).collect();
                    let distractors = run.gallery.iter().filter(|e| !query_ids.contains(&e.identity)).count();
                    (query_ids.len(), run.gallery.len(), distractors, run.combined_gallery.len(), run.query.len())
                }
                None => (0, 0, 0, 0, 0),
            };
        SubsetSummary {
            name: self.name.clone(),
            train_identities: distinct(&self.train),
            train_images: self.train.len(),
            val_images: self.val.len(),
            test_identities,
            gallery_images,
            distractor_images,
            combined_gallery_images,
            query_images,
            runs: self.runs.len(),
        }
    }
}

/// The random number generator of one protocol stream: ChaCha8 seeded from `seed` (through
/// `SeedableRng::seed_from_u64`, whose expansion is fixed) on stream `stream`. Datasets give
/// each subset and each purpose its own stream, so that adding a subset changes no other draw.
pub fn protocol_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A uniform integer in `0..n` (`n > 0`; returns 0 for `n == 0`), by Lemire's widening
/// multiplication with rejection: unbiased and defined by this code alone.
pub fn draw_below(rng: &mut impl RngCore, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as usize;
        }
    }
}

/// Shuffles `items` in place (Fisher-Yates with [`draw_below`]).
pub fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = draw_below(rng, i + 1);
        items.swap(i, j);
    }
}

/// What [`draw_subset`] splits.
#[derive(Clone, Debug, Default)]
pub struct SubsetPlan {
    /// Subset name.
    pub name: String,
    /// Training identities.
    pub train: Vec<IdentityImages>,
    /// Test identities.
    pub test: Vec<IdentityImages>,
    /// Images appended to every gallery; their identities must not be test identities.
    pub distractors: Vec<Entry>,
}

fn sorted_identities(list: &[IdentityImages]) -> Vec<IdentityImages> {
    let mut list = list.to_vec();
    for item in &mut list {
        item.images.sort();
    }
    list.sort_by(|a, b| a.identity.cmp(&b.identity));
    list
}

fn check_plan(plan: &SubsetPlan, train: &[IdentityImages], test: &[IdentityImages]) -> Result<(), DataError> {
    let mut seen = BTreeSet::new();
    for item in train.iter().chain(test) {
        if !seen.insert(&item.identity) {
            return Err(DataError::InvalidOption(format!(
                "identity {} is listed twice (or as both training and test identity) in subset {}",
                item.identity, plan.name
            )));
        }
    }
    for item in train {
        if item.images.len() < MIN_TRAIN_IMAGES {
            return Err(DataError::TooFewImages {
                path: item.origin.clone(),
                identity: item.identity.to_string(),
                role: "training",
                count: item.images.len(),
                needed: MIN_TRAIN_IMAGES,
                why: "one validation image and at least one training image",
            });
        }
    }
    for item in test {
        if item.images.len() < MIN_TEST_IMAGES {
            return Err(DataError::TooFewImages {
                path: item.origin.clone(),
                identity: item.identity.to_string(),
                role: "test",
                count: item.images.len(),
                needed: MIN_TEST_IMAGES,
                why: "one gallery image and at least one query per run",
            });
        }
    }
    if let Some(d) = plan.distractors.iter().find(|d| seen.contains(&d.identity)) {
        return Err(DataError::InvalidOption(format!(
            "distractor {} of subset {} has identity {}, which is a training or test identity",
            d.path, plan.name, d.identity
        )));
    }
    Ok(())
}

/// Draws the validation images and the `runs` query/gallery splits of one subset.
///
/// Identities are processed in identity order and their images in path order, so the result
/// depends only on the plan's content and the generator. Draw order: one validation draw per
/// training identity, then for each run one gallery draw per test identity.
pub fn draw_subset(plan: &SubsetPlan, runs: usize, rng: &mut impl RngCore) -> Result<SubsetSplit, DataError> {
    if runs == 0 && !plan.test.is_empty() {
        return Err(DataError::InvalidOption(format!(
            "subset {} has test identities but 0 Monte Carlo runs were asked for",
            plan.name
        )));
    }
    let train_ids = sorted_identities(&plan.train);
    let test_ids = sorted_identities(&plan.test);
    check_plan(plan, &train_ids, &test_ids)?;

    let mut train = Vec::new();
    let mut val = Vec::new();
    for item in &train_ids {
        let pick = draw_below(rng, item.images.len());
        for (k, path) in item.images.iter().enumerate() {
            let entry = Entry::new(path.clone(), item.identity.clone());
            if k == pick { val.push(entry) } else { train.push(entry) }
        }
    }

    let mut distractors = plan.distractors.clone();
    distractors.sort_by(|a, b| (&a.identity, &a.path).cmp(&(&b.identity, &b.path)));
    let mut run_splits = Vec::new();
    if !test_ids.is_empty() {
        for _ in 0..runs {
            let mut gallery = Vec::with_capacity(test_ids.len() + distractors.len());
            let mut query = Vec::new();
            for item in &test_ids {
                let pick = draw_below(rng, item.images.len());
                for (k, path) in item.images.iter().enumerate() {
                    let entry = Entry::new(path.clone(), item.identity.clone());
                    if k == pick { gallery.push(entry) } else { query.push(entry) }
                }
            }
            gallery.extend(distractors.iter().cloned());
            run_splits.push(RunSplit { gallery, combined_gallery: Vec::new(), query });
        }
    }
    Ok(SubsetSplit { name: plan.name.clone(), train, val, runs: run_splits })
}

/// Gives every subset, in each run, the concatenation of all subsets' galleries of that run as
/// its combined gallery. The subsets must have the same number of runs.
pub fn set_combined_galleries(subsets: &mut [SubsetSplit]) -> Result<(), DataError> {
    let runs = subsets.first().map_or(0, |s| s.runs.len());
    if let Some(s) = subsets.iter().find(|s| s.runs.len() != runs) {
        return Err(DataError::InvalidOption(format!(
            "subset {} has {} runs, the first subset {runs}; a combined gallery needs equal run counts",
            s.name,
            s.runs.len()
        )));
    }
    for r in 0..runs {
        let combined: Vec<Entry> = subsets.iter().flat_map(|s| s.runs[r].gallery.iter().cloned()).collect();
        for subset in subsets.iter_mut() {
            subset.runs[r].combined_gallery = combined.clone();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(group: &str, id: usize, n: usize) -> IdentityImages {
        IdentityImages {
            identity: Identity::new(group, format!("{id:03}")),
            images: (0..n).map(|k| format!("{group}/{id:03}_{k}.jpg")).collect(),
            origin: PathBuf::from("origin"),
        }
    }

    #[test]
    fn identity_text_round_trip() {
        let id = Identity::new("dorsal_right", "0000002");
        assert_eq!(id.to_string(), "dorsal_right/0000002");
        assert_eq!("dorsal_right/0000002".parse::<Identity>().unwrap(), id);
        assert_eq!("a/b/c".parse::<Identity>().unwrap(), Identity::new("a", "b/c"));
        assert!("nogroup".parse::<Identity>().is_err());
        assert!("/x".parse::<Identity>().is_err());
        assert!("x/".parse::<Identity>().is_err());
        let json = serde_json::to_string(&Entry::new("a/b.jpg", id.clone())).unwrap();
        assert_eq!(json, r#"{"path":"a/b.jpg","identity":"dorsal_right/0000002"}"#);
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap().identity, id);
        assert!(serde_json::from_str::<Entry>(r#"{"path":"a","identity":"bad"}"#).is_err());
    }

    #[test]
    fn draw_below_is_in_range_and_roughly_uniform() {
        let mut rng = protocol_rng(7, 0);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[draw_below(&mut rng, 7)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(draw_below(&mut rng, 1), 0);
        assert_eq!(draw_below(&mut rng, 0), 0);
    }

    #[test]
    fn draws_are_pinned() {
        // ChaCha8 from `seed_from_u64` on a stream, and the draw above: these values must never
        // change, or every published split manifest would be drawn differently.
        let mut rng = protocol_rng(42, 0);
        let draws: Vec<usize> = (0..8).map(|_| draw_below(&mut rng, 10)).collect();
        assert_eq!(draws, [6, 9, 4, 6, 2, 1, 3, 8]);
        let mut rng = protocol_rng(42, 3);
        let draws: Vec<usize> = (0..8).map(|_| draw_below(&mut rng, 1000)).collect();
        assert_eq!(draws, [361, 592, 730, 499, 200, 802, 31, 395]);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = protocol_rng(1, 0);
        let mut v: Vec<usize> = (0..50).collect();
        shuffle(&mut rng, &mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn protocol_counts_and_disjointness() {
        let plan = SubsetPlan {
            name: "s".into(),
            train: (0..5).map(|i| ident("s", i, 3 + i)).collect(),
            test: (5..9).map(|i| ident("s", i, 2 + i)).collect(),
            distractors: vec![
                Entry::new("d/1.jpg", Identity::new("d", "1")),
                Entry::new("d/2.jpg", Identity::new("d", "2")),
            ],
        };
        let split = draw_subset(&plan, 4, &mut protocol_rng(3, 0)).unwrap();
        assert_eq!(split.val.len(), 5);
        assert_eq!(split.train.len(), (0..5).map(|i| 2 + i).sum::<usize>());
        assert_eq!(split.runs.len(), 4);
        for run in &split.runs {
            assert_eq!(run.gallery.len(), 4 + 2);
            assert_eq!(run.query.len(), (5..9).map(|i| 1 + i).sum::<usize>());
            let mut per_id = BTreeMap::new();
            for e in &run.gallery[..4] {
                *per_id.entry(&e.identity).or_insert(0) += 1;
            }
            assert!(per_id.values().all(|&c| c == 1) && per_id.len() == 4);
            assert_eq!(run.evaluation_gallery(), &run.gallery[..]);
            let (q, g) = run.integer_labels();
            assert_eq!(q.len(), run.query.len());
            assert!(g[4..].iter().all(|l| !q.contains(l)), "distractors never match");
        }
        let classes = split.train_classes();
        assert_eq!(classes.identities.len(), 5);
        assert_eq!(classes.val, vec![0, 1, 2, 3, 4]);
        let summary = split.summary();
        assert_eq!((summary.train_identities, summary.test_identities, summary.distractor_images), (5, 4, 2));
        assert_eq!(split, draw_subset(&plan, 4, &mut protocol_rng(3, 0)).unwrap());
        assert_ne!(split, draw_subset(&plan, 4, &mut protocol_rng(4, 0)).unwrap());
    }

    #[test]
    fn too_few_images_and_bad_plans() {
        let plan = SubsetPlan { name: "s".into(), train: vec![ident("s", 1, 1)], ..Default::default() };
        let err = draw_subset(&plan, 1, &mut protocol_rng(0, 0)).unwrap_err();
        assert!(matches!(err, DataError::TooFewImages { role: "training", count: 1, .. }), "{err}");
        let plan = SubsetPlan { name: "s".into(), test: vec![ident("s", 1, 1)], ..Default::default() };
        let err = draw_subset(&plan, 1, &mut protocol_rng(0, 0)).unwrap_err();
        assert!(matches!(err, DataError::TooFewImages { role: "test", .. }), "{err}");
        let plan = SubsetPlan {
            name: "s".into(),
            train: vec![ident("s", 1, 2)],
            test: vec![ident("s", 1, 2)],
            ..Default::default()
        };
        assert!(matches!(draw_subset(&plan, 1, &mut protocol_rng(0, 0)), Err(DataError::InvalidOption(_))));
        let plan = SubsetPlan { name: "s".into(), test: vec![ident("s", 1, 2)], ..Default::default() };
        assert!(matches!(draw_subset(&plan, 0, &mut protocol_rng(0, 0)), Err(DataError::InvalidOption(_))));
        let plan = SubsetPlan {
            name: "s".into(),
            test: vec![ident("s", 1, 2)],
            distractors: vec![Entry::new("x.jpg", Identity::new("s", "001"))],
            ..Default::default()
        };
        assert!(matches!(draw_subset(&plan, 1, &mut protocol_rng(0, 0)), Err(DataError::InvalidOption(_))));
    }

    #[test]
    fn combined_galleries_concatenate_runs() {
        let a = SubsetPlan { name: "a".into(), test: (0..3).map(|i| ident("a", i, 3)).collect(), ..Default::default() };
        let b = SubsetPlan { name: "b".into(), test: (0..2).map(|i| ident("b", i, 3)).collect(), ..Default::default() };
        let mut subsets = vec![
            draw_subset(&a, 2, &mut protocol_rng(0, 0)).unwrap(),
            draw_subset(&b, 2, &mut protocol_rng(0, 1)).unwrap(),
        ];
        set_combined_galleries(&mut subsets).unwrap();
        for s in &subsets {
            for run in &s.runs {
                assert_eq!(run.combined_gallery.len(), 5);
                assert_eq!(run.evaluation_gallery().len(), 5);
            }
        }
        let (q, g) = subsets[0].runs[0].integer_labels();
        let matching: usize = g.iter().filter(|l| q.contains(l)).count();
        assert_eq!(matching, 3, "only subset a's gallery images match a's queries");
        let mut uneven = subsets.clone();
        uneven[1].runs.pop();
        assert!(set_combined_galleries(&mut uneven).is_err());
    }
}
