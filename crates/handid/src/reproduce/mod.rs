//! Reproducing the paper's Table I (docs/METHOD.md sections 3 to 5): the scenarios, backbones and
//! dataset columns, the published numbers ([`published`], [`TABLE_I`]), the table with ours
//! beside them ([`Table`]) and the pipeline that fills it ([`reproduce`]).
//!
//! For every chosen scenario, backbone and dataset the pipeline draws and saves the seeded split
//! manifest, trains one model per subset where the scenario trains (11k Hands: one per aspect,
//! as the published thresholds and validation sets are per aspect; HD: one), evaluates it with
//! the protocol (11k: the subset's queries against the combined gallery of the four aspects;
//! HD: against the gallery with the `502-712` distractors) and writes the per-run metrics.
//!
//! ```
//! use handid::reproduce::{Backbone, CellScores, Column, Scenario, Table};
//! let mut table = Table::new(&[Scenario::ZeroShot], &[Backbone::Rn50], &[Column::Hd]);
//! let scores = CellScores { rank1: 0.8, map_interpolated: 0.82, map_standard: 0.81 };
//! table.insert(Scenario::ZeroShot, Backbone::Rn50, Column::Hd, scores);
//! assert!(table.render().contains("| CLIP-ZS RN50 | 80.00 / 82.00 (81.55 / 83.83) |"));
//! ```

mod pipeline;
mod published;
mod table;

pub use pipeline::{
    CellRecord, CellSettings, ReproduceError, ReproduceOptions, ReproduceReport, WeightsSpec, reproduce,
    reproduce_observed,
};
pub use published::{Published, PublishedRow, TABLE_I, published};
pub use table::{CellScores, Table};

use std::fmt;
use std::str::FromStr;

use clip_burn::{ClipConfig, VisionConfig};
use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::data::hands11k::Aspect;
use crate::data::polyu_hd::HD_SUBSET;
use crate::train;

/// A row group of Table I: how the CLIP image encoder is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// CLIP-ZS: no training; CLIP's own preprocessing and architecture, the image embedding.
    ZeroShot,
    /// CLIP-FT: the re-ID backbone, BN necks and classifiers trained with the ID losses only.
    FineTune,
    /// CLIP-HandID: ID losses plus the image-text contrastive losses through the inversion network.
    #[serde(rename = "clip-handid")]
    ClipHandId,
}

impl Scenario {
    /// The scenarios in the paper's row order.
    pub const ALL: [Scenario; 3] = [Scenario::ZeroShot, Scenario::FineTune, Scenario::ClipHandId];

    /// The command-line name: `zero-shot`, `fine-tune`, `clip-handid`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ZeroShot => "zero-shot",
            Scenario::FineTune => "fine-tune",
            Scenario::ClipHandId => "clip-handid",
        }
    }

    /// The label in the paper's table: `CLIP-ZS`, `CLIP-FT`, `CLIP-HandID`.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::ZeroShot => "CLIP-ZS",
            Scenario::FineTune => "CLIP-FT",
            Scenario::ClipHandId => "CLIP-HandID",
        }
    }

    /// What is trained, or `None` for zero-shot.
    pub fn training(self) -> Option<train::Scenario> {
        match self {
            Scenario::ZeroShot => None,
            Scenario::FineTune => Some(train::Scenario::FineTune),
            Scenario::ClipHandId => Some(train::Scenario::ClipHandId),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown scenario `{s}`; expected zero-shot, fine-tune or clip-handid"))
    }
}

/// A CLIP backbone of Table I.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// ViT-B/16.
    #[serde(rename = "vit-b-16")]
    VitB16,
    /// ResNet-50 (ModifiedResNet).
    Rn50,
}

impl Backbone {
    /// The backbones in the paper's row order.
    pub const ALL: [Backbone; 2] = [Backbone::VitB16, Backbone::Rn50];

    /// The command-line name: `vit-b-16`, `rn50`.
    pub fn name(self) -> &'static str {
        match self {
            Backbone::VitB16 => "vit-b-16",
            Backbone::Rn50 => "rn50",
        }
    }

    /// The label in the paper's table: `ViT-B/16`, `RN50`.
    pub fn label(self) -> &'static str {
        match self {
            Backbone::VitB16 => "ViT-B/16",
            Backbone::Rn50 => "RN50",
        }
    }

    /// The file `handid fetch` writes for this model.
    pub fn weights_file_name(self) -> &'static str {
        match self {
            Backbone::VitB16 => "ViT-B-16.safetensors",
            Backbone::Rn50 => "RN50.safetensors",
        }
    }

    /// The paper's training batch size (docs/METHOD.md section 3): 20 for ViT-B/16, 4 for RN50.
    pub fn batch_size(self) -> usize {
        match self {
            Backbone::VitB16 => 20,
            Backbone::Rn50 => 4,
        }
    }

    /// The published architecture.
    pub fn preset(self) -> ClipConfig {
        match self {
            Backbone::VitB16 => ClipConfig::vit_b_16(),
            Backbone::Rn50 => ClipConfig::rn50(),
        }
    }

    /// Whether an architecture has this backbone's kind of image encoder (ViT or ResNet).
    pub fn same_kind(self, vision: &VisionConfig) -> bool {
        matches!((self, vision), (Backbone::VitB16, VisionConfig::Vit(_)) | (Backbone::Rn50, VisionConfig::ResNet(_)))
    }
}

impl fmt::Display for Backbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backbone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Backbone::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown backbone `{s}`; expected vit-b-16 or rn50"))
    }
}

/// A column of Table I: one 11k Hands aspect or HD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    /// 11k Hands, dorsal right (D-r).
    DorsalRight,
    /// 11k Hands, dorsal left (D-l).
    DorsalLeft,
    /// 11k Hands, palmar right (P-r).
    PalmarRight,
    /// 11k Hands, palmar left (P-l).
    PalmarLeft,
    /// PolyU hand dorsal (HD).
    Hd,
}

impl Column {
    /// The columns in the paper's order.
    pub const ALL: [Column; 5] =
        [Column::DorsalRight, Column::DorsalLeft, Column::PalmarRight, Column::PalmarLeft, Column::Hd];

    /// Position in [`Column::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label in the paper's table: `D-r`, `D-l`, `P-r`, `P-l`, `HD`.
    pub fn label(self) -> &'static str {
        match self {
            Column::DorsalRight => "D-r",
            Column::DorsalLeft => "D-l",
            Column::PalmarRight => "P-r",
            Column::PalmarLeft => "P-l",
            Column::Hd => "HD",
        }
    }

    /// The subset's name in a split manifest (`dorsal_right`, ..., `hd`).
    pub fn subset(self) -> &'static str {
        match self {
            Column::DorsalRight => Aspect::DorsalRight.name(),
            Column::DorsalLeft => Aspect::DorsalLeft.name(),
            Column::PalmarRight => Aspect::PalmarRight.name(),
            Column::PalmarLeft => Aspect::PalmarLeft.name(),
            Column::Hd => HD_SUBSET,
        }
    }

    /// The dataset the column belongs to.
    pub fn dataset(self) -> DatasetKind {
        match self {
            Column::Hd => DatasetKind::PolyuHd,
            _ => DatasetKind::Hands11k,
        }
    }

    /// The columns of a dataset (none for folder datasets).
    pub fn of_dataset(dataset: DatasetKind) -> Vec<Column> {
        Column::ALL.into_iter().filter(|c| c.dataset() == dataset).collect()
    }

    /// The column of a manifest subset.
    pub fn from_subset(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.subset() == name)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.name()));
        }
        for b in Backbone::ALL {
            assert_eq!(b.name().parse::<Backbone>().unwrap(), b);
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{}\"", b.name()));
            assert!(b.same_kind(&b.preset().vision));
        }
        assert!("vit".parse::<Backbone>().unwrap_err().contains("vit-b-16 or rn50"));
        for c in Column::ALL {
            assert_eq!(Column::from_subset(c.subset()), Some(c));
            assert_eq!(Column::ALL[c.index()], c);
        }
        assert_eq!(Column::of_dataset(DatasetKind::PolyuHd), [Column::Hd]);
        assert_eq!(Column::of_dataset(DatasetKind::Hands11k).len(), 4);
    }
}
