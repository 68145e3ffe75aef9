//! Writing a calibration and its validation report to a folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::calibration::Calibration;
use super::error::{LrError, Result};
use super::plots;
use super::validation::ValidationReport;
use crate::eval::EvalError;
use crate::eval::output::{encode_json, encode_png};

/// The files [`write_calibration_outputs`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalibrationOutputs {
    /// `calibration.json`: the calibration for casework.
    pub calibration: PathBuf,
    /// `validation.json`: the validation report's figures.
    pub validation: PathBuf,
    /// `tippett.png`.
    pub tippett: PathBuf,
    /// `ece.png`.
    pub ece: PathBuf,
    /// `pav.png`.
    pub pav: PathBuf,
    /// `llr_histograms.png`.
    pub histograms: PathBuf,
}

impl ValidationReport {
    /// The report as pretty JSON (infinite values never occur: the LRs are bounded).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(encode_json(Path::new("validation.json"), self)?)
    }

    /// The four figures: Tippett, ECE, PAV and histograms, in that order.
    pub fn render(&self) -> [image::RgbImage; 4] {
        [plots::tippett(self), plots::ece(self), plots::pav(self), plots::histograms(self, 40)]
    }
}

/// Writes `dir/calibration.json`, `dir/validation.json` and the figures `tippett.png`,
/// `ece.png`, `pav.png` and `llr_histograms.png`. Everything is encoded before anything is
/// written, an earlier `calibration.json` in `dir` is removed first, every file is written
/// atomically, and `calibration.json` comes last: a folder with a `calibration.json` holds the
/// complete report of that calibration beside it, even when writing fails part way.
pub fn write_calibration_outputs(
    dir: &Path,
    calibration: &Calibration,
    report: &ValidationReport,
) -> Result<CalibrationOutputs> {
    let outputs = CalibrationOutputs {
        calibration: dir.join("calibration.json"),
        validation: dir.join("validation.json"),
        tippett: dir.join("tippett.png"),
        ece: dir.join("ece.png"),
        pav: dir.join("pav.png"),
        histograms: dir.join("llr_histograms.png"),
    };
    let [tippett, ece, pav, histograms] = report.render();
    let files = [
        (&outputs.validation, report.to_json()?),
        (&outputs.tippett, encode_png(&outputs.tippett, &tippett)?),
        (&outputs.ece, encode_png(&outputs.ece, &ece)?),
        (&outputs.pav, encode_png(&outputs.pav, &pav)?),
        (&outputs.histograms, encode_png(&outputs.histograms, &histograms)?),
        (&outputs.calibration, calibration.to_json()?),
    ];
    match std::fs::remove_file(&outputs.calibration) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LrError::Eval(EvalError::Write { path: outputs.calibration.clone(), source: e }));
        }
        _ => {}
    }
    for (path, bytes) in &files {
        crate::eval::write_atomic(path, bytes)?;
    }
    Ok(outputs)
}
