//! End to end: generated embeddings -> comparisons -> calibration -> report files ->
//! casework evidence, and the bad inputs of the likelihood-ratio module.

mod common;

use clip_handid::handid::eval::FeatureMatrix;
use clip_handid::handid::lr::{
    Calibration, CalibrationOptions, CalibratorKind, LrError, PairOptions, Provenance, Supports, calibrate,
    write_calibration_outputs,
};

/// `identities` identities with `per_identity` images each: a random centre per identity plus
/// noise, in 16 dimensions.
fn embeddings(identities: usize, per_identity: usize, noise: f32, seed: u64) -> (FeatureMatrix, Vec<u64>) {
    let mut rng = common::Rng(seed | 1);
    let dim = 16;
    let (mut data, mut ids) = (Vec::new(), Vec::new());
    for id in 0..identities {
        let centre: Vec<f32> = (0..dim).map(|_| rng.next()).collect();
        for _ in 0..per_identity {
            data.extend(centre.iter().map(|c| c + noise * rng.next()));
            ids.push(id as u64);
        }
    }
    (FeatureMatrix::new(data, dim).unwrap(), ids)
}

fn provenance() -> Provenance {
    Provenance {
        model: "model.safetensors".into(),
        model_sha256: "ab".repeat(32),
        data: "generated".into(),
        data_hashes: vec![],
        produced_by: None,
    }
}

#[test]
fn calibrate_report_and_compare() {
    let dir = common::TempDir::new("lr-calibrate");
    let (m, ids) = embeddings(40, 4, 1.2, 11);
    for kind in [CalibratorKind::Logistic, CalibratorKind::Pav] {
        let options = CalibrationOptions { calibrator: kind, ..Default::default() };
        let (calibration, report) = calibrate(&m, &ids, &options, provenance()).unwrap();
        assert_eq!(report.folds.len(), 5);
        assert_eq!(report.folds.iter().map(|f| f.identities).sum::<usize>(), 40);
        let tested: usize = report.folds.iter().map(|f| f.test_same_source + f.test_different_source).sum();
        assert_eq!(tested, report.llrs.len());
        // Every same-source pair lies within one fold, so all of them are validated.
        assert_eq!(report.metrics.same_source, 40 * 6);
        let out = dir.0.join(format!("{kind:?}"));
        let files = write_calibration_outputs(&out, &calibration, &report).unwrap();
        for p in [&files.calibration, &files.validation, &files.tippett, &files.ece, &files.pav, &files.histograms] {
            assert!(p.exists(), "{}", p.display());
        }
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 6, "no temporary files are left");
        let loaded = Calibration::load(&files.calibration, &"AB".repeat(32)).unwrap();
        let v = loaded.validity.as_ref().unwrap();
        assert!(v.cllr < 1.0 && v.cllr_min <= v.cllr + 1e-12, "{v:?}");
        assert_eq!(loaded.counts.images, 160);
        assert_eq!(loaded.counts.same_source, 40 * 6);
        // Same-identity pair: LR > 1; different identities: LR < 1.
        let score = |a: usize, b: usize| {
            let (x, y) = (m.row(a), m.row(b));
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let n = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            (dot / (n(x) * n(y))) as f64
        };
        let same = loaded.evidence(score(0, 1)).unwrap();
        let different = loaded.evidence(score(0, 8)).unwrap();
        assert!(same.lr > 1.0 && same.verbal.supports == Supports::SameSource, "{same:?}");
        assert!(different.lr < 1.0 && different.verbal.supports == Supports::DifferentSource, "{different:?}");
        assert!(same.llr <= loaded.bounds.upper && different.llr >= loaded.bounds.lower);
        if std::env::var_os("HANDID_KEEP_TEST_OUTPUT").is_some() {
            let keep = std::env::temp_dir().join(format!("handid-lr-report-{kind:?}"));
            let _ = std::fs::remove_dir_all(&keep);
            std::fs::rename(&out, &keep).unwrap();
        }
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    // One image per identity: no same-source pairs.
    let (m, ids) = embeddings(10, 1, 0.1, 3);
    let err = calibrate(&m, &ids, &CalibrationOptions::default(), provenance()).unwrap_err();
    assert!(matches!(err, LrError::TooFewPairs { same_source: 0, .. }), "{err}");
    // Non-finite embedding values.
    let (m, ids) = embeddings(6, 3, 0.1, 5);
    let mut data = m.data().to_vec();
    data[20] = f32::INFINITY;
    let bad = FeatureMatrix::new(data, m.dim()).unwrap();
    let err = calibrate(&bad, &ids, &CalibrationOptions::default(), provenance()).unwrap_err();
    assert!(matches!(err, LrError::NotFinite { .. }), "{err}");
    // Well separated identities: logistic regression has no finite optimum; PAV works.
    let (m, ids) = embeddings(12, 3, 0.01, 9);
    let err = calibrate(&m, &ids, &CalibrationOptions::default(), provenance()).unwrap_err();
    assert!(matches!(err, LrError::Separated { .. }), "{err}");
    let options = CalibrationOptions { calibrator: CalibratorKind::Pav, ..Default::default() };
    let (calibration, _) = calibrate(&m, &ids, &options, provenance()).unwrap();
    assert!(calibration.bounds.upper > 0.0 && calibration.bounds.upper.is_finite());
    // A calibration made with another model.
    let dir = common::TempDir::new("lr-bad");
    let path = dir.0.join("calibration.json");
    calibration.save(&path).unwrap();
    let err = Calibration::load(&path, &"cd".repeat(32)).unwrap_err();
    assert!(
        matches!(err, LrError::ModelMismatch { .. }) && err.to_string().contains(&*path.to_string_lossy()),
        "{err}"
    );
    // Too many folds for the identities.
    let (m, ids) = embeddings(3, 3, 0.5, 13);
    let options = CalibrationOptions { folds: 5, pairs: PairOptions::default(), ..Default::default() };
    assert!(matches!(calibrate(&m, &ids, &options, provenance()), Err(LrError::InvalidOption(_))));
}

/// A realistic size (2000 images of 500 identities, 512 dimensions, 200 000 different-source
/// pairs): run with `cargo test --test lr_calibrate -- --ignored` to see the time it takes.
#[test]
#[ignore]
fn calibrate_a_realistic_size() {
    let mut rng = common::Rng(77);
    let dim = 512;
    let (mut data, mut ids) = (Vec::new(), Vec::new());
    for id in 0..500u64 {
        let centre: Vec<f32> = (0..dim).map(|_| rng.next()).collect();
        for _ in 0..4 {
            data.extend(centre.iter().map(|c| c + 1.5 * rng.next()));
            ids.push(id);
        }
    }
    let m = FeatureMatrix::new(data, dim).unwrap();
    let start = std::time::Instant::now();
    let (calibration, report) = calibrate(&m, &ids, &CalibrationOptions::default(), provenance()).unwrap();
    let fitted = start.elapsed();
    let dir = common::TempDir::new("lr-large");
    write_calibration_outputs(&dir.0, &calibration, &report).unwrap();
    println!(
        "{} + {} pairs: calibrated and validated in {fitted:?}, written in {:?}; cllr {:.3}",
        calibration.counts.same_source,
        calibration.counts.different_source,
        start.elapsed() - fitted,
        report.metrics.cllr
    );
}
