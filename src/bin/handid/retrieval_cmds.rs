//! `handid embed`, `index build`, `index query`, `compare`, `evaluate`.

use std::path::PathBuf;

use clap::Subcommand;
use clip_handid::clip::ClipConfig;
use clip_handid::handid::eval::GalleryIndex;
use clip_handid::handid::lr::{CalibrationOptions, CalibratorKind, LrMetrics};
use clip_handid::handid::progress::Observer;
use clip_handid::handid::retrieval::{
    CalibrationData, Comparison, Differential, EvaluateOptions, RetrievalModel, build_index, calibrate_model,
    collect_images, compare_images, embed_to_file, evaluate_model, query_index_calibrated,
};
use clip_handid::terminal::Terminal;

use crate::RunArgs;

/// The model option of every retrieval command.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArg {
    /// CLIP weights (`handid fetch`) or an exported CLIP-HandID model (`handid export`); which one
    /// is read from the file.
    #[arg(long)]
    model: PathBuf,
    /// For CLIP weights whose head counts do not follow OpenAI's rule: their architecture as
    /// config.json (by default it is inferred from the tensor shapes).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Arguments of `handid embed`.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The safetensors file to write (tensor `embeddings` [N, D]).
    #[arg(long)]
    out: PathBuf,
    /// Image files, or folders searched recursively for images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// `handid index` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Embed images and save them as a gallery index (replacing it, unless --append).
    #[command(
        after_help = "Example:\n  handid index build --model my-model.safetensors --index gallery.safetensors --identity-from-folder known/"
    )]
    Build {
        #[command(flatten)]
        model: ModelArg,
        /// The index: its embeddings file (the JSON sidecar is written next to it, `.json` appended).
        #[arg(long)]
        index: PathBuf,
        /// Add to the existing index instead of replacing it (it must have been built with the same model).
        #[arg(long)]
        append: bool,
        /// Take each image's identity from the name of the folder holding it.
        #[arg(long)]
        identity_from_folder: bool,
        /// Image files, or folders searched recursively for images.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Rank the index's images for each query image; refused if the index was built with another
    /// model file (by SHA-256).
    #[command(
        after_help = "Example:\n  handid index query --model my-model.safetensors --index gallery.safetensors -k 10 --out hits.json questioned.jpg"
    )]
    Query {
        #[command(flatten)]
        model: ModelArg,
        /// The index's embeddings file.
        #[arg(long)]
        index: PathBuf,
        /// Candidates per query.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Write the ranked candidates with their provenance as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A calibration of the model (`handid calibrate`): adds each candidate's bounded log10
        /// likelihood ratio, LR and verbal strength; refused if made with another model.
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Query image files, or folders searched recursively for images.
        #[arg(required = true)]
        queries: Vec<PathBuf>,
    },
}

/// Arguments of `handid compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    model: ModelArg,
    /// A calibration of the model (`handid calibrate`): also print the bounded log10 likelihood
    /// ratio, the LR, its verbal equivalent and the calibration's validity figures; refused if
    /// made with another model.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Print the comparison (score, evidence, provenance of every input) as JSON.
    #[arg(long)]
    json: bool,
    /// The first image.
    a: PathBuf,
    /// The second image.
    b: PathBuf,
}

/// Arguments of `handid calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The calibration images: a folder per identity (`DIR/<identity>/<images>`), or with --split
    /// the dataset root the manifest's paths are relative to. Use identities the model was not
    /// trained on, in conditions like the case's.
    #[arg(long)]
    data: PathBuf,
    /// Calibrate on a split manifest's test identities (`handid splits`) instead of the whole folder.
    #[arg(long)]
    split: Option<PathBuf>,
    /// With --split: the subset (default: the manifest's first).
    #[arg(long, requires = "split")]
    subset: Option<String>,
    /// Output directory (calibration.json, validation.json, tippett/ece/pav/llr_histograms.png).
    #[arg(long)]
    out: PathBuf,
    /// Calibrator: logistic (prior-balanced logistic regression) or pav (isotonic).
    #[arg(long, default_value = "logistic", value_parser = parse_calibrator)]
    calibrator: CalibratorKind,
    /// Cross-validation folds by identity for the validation report.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed of the fold assignment and of the subsampling of comparisons.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_calibrator(value: &str) -> Result<CalibratorKind, String> {
    match value {
        "logistic" => Ok(CalibratorKind::Logistic),
        "pav" => Ok(CalibratorKind::Pav),
        other => Err(format!("{other:?} is not a calibrator (logistic or pav)")),
    }
}

/// Arguments of `handid evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The split manifest (`handid splits`).
    #[arg(long)]
    split: PathBuf,
    /// The dataset root the manifest's paths are relative to.
    #[arg(long)]
    root: PathBuf,
    /// Output directory (results.json, verification.json/png, rankings.csv/png).
    #[arg(long)]
    out: PathBuf,
    /// An 11k Hands HandInfo.csv describing the evaluated images by file name, for the figures
    /// per group (gender, age, skin colour, nail polish, irregularities); by default the root's
    /// HandInfo.csv for an 11k Hands manifest.
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// A calibration of the model (`handid calibrate`): adds each group's Cllr; refused if made
    /// with another model.
    #[arg(long)]
    calibration: Option<PathBuf>,
}

/// Loads the model on the chosen backend and runs `body` with it.
macro_rules! with_model {
    ($arg:expr, |$model:ident, $device:ident, $observer:ident| $body:expr) => {{
        let backend = $arg.run.backend.ensure_compiled()?;
        let mut terminal = Terminal::new($arg.run.quiet);
        clip_handid::with_backend!(backend, |B, device| {
            let $device = device;
            let $observer: &mut dyn Observer = &mut terminal;
            $observer.message(&format!("loading {}", $arg.model.display()));
            let config = match &$arg.config {
                Some(path) => Some(ClipConfig::from_json_file(path).map_err(|e| e.to_string())?),
                None => None,
            };
            let $model = RetrievalModel::<B>::load_with_config(&$arg.model, config.as_ref(), &$device)
                .map_err(|e| e.to_string())?;
            $observer.message(&format!("{}, SHA-256 {}", $model.name(), $model.sha256()));
            $body
        })?
    }};
}

pub fn embed(args: &EmbedArgs) -> Result<(), String> {
    let images = collect_images(&args.images).map_err(|e| e.to_string())?;
    with_model!(args.model, |model, device, observer| {
        embed_to_file(&model, &images, &args.out, &device, observer).map_err(|e| e.to_string())?;
        println!("wrote the features of {} images (dimension {}) to {}", images.len(), model.dim(), args.out.display());
        Ok(())
    })
}

pub fn index(command: &IndexCommand) -> Result<(), String> {
    match command {
        IndexCommand::Build { model: arg, index, append, identity_from_folder, inputs } => {
            let images = collect_images(inputs).map_err(|e| e.to_string())?;
            with_model!(arg, |model, device, observer| {
                let needed = (images.len() * model.dim() * 4) as u64;
                clip_handid::io::check_output_file(index, needed)
                    .map_err(|e| format!("{}: cannot write the index there: {e}", index.display()))?;
                let existing = if *append {
                    Some((index.as_path(), GalleryIndex::load(index).map_err(|e| e.to_string())?))
                } else {
                    None
                };
                let built = build_index(&model, &images, *identity_from_folder, existing, &device, observer)
                    .map_err(|e| e.to_string())?;
                built.save(index).map_err(|e| e.to_string())?;
                println!(
                    "indexed {} images ({} in all, dimension {}) in {}",
                    images.len(),
                    built.len(),
                    built.dim(),
                    index.display()
                );
                Ok(())
            })
        }
        IndexCommand::Query { model: arg, index, k, out, calibration, queries } => {
            let queries = collect_images(queries).map_err(|e| e.to_string())?;
            if let Some(out) = out {
                clip_handid::io::check_output_file(out, 0)
                    .map_err(|e| format!("{}: cannot write the ranked candidates there: {e}", out.display()))?;
            }
            with_model!(arg, |model, device, observer| {
                let report =
                    query_index_calibrated(&model, index, &queries, *k, calibration.as_deref(), &device, observer)
                        .map_err(|e| e.to_string())?;
                for query in &report.queries {
                    println!("{}", query.path);
                    for c in &query.candidates {
                        let lr = match (c.log10_lr, &c.strength) {
                            (Some(llr), Some(strength)) => format!("  log10 LR {llr:+.2} ({strength})"),
                            _ => String::new(),
                        };
                        println!(
                            "  {:>4}  {:.4}{lr}  {}  {}",
                            c.rank,
                            c.score,
                            c.identity.as_deref().unwrap_or("-"),
                            c.path
                        );
                    }
                }
                if let Some(out) = out {
                    report.write_json(out).map_err(|e| e.to_string())?;
                    println!("wrote the ranked candidates to {}", out.display());
                }
                Ok(())
            })
        }
    }
}

pub fn compare(args: &CompareArgs) -> Result<(), String> {
    with_model!(args.model, |model, device, _observer| {
        let comparison = compare_images(&model, &args.a, &args.b, args.calibration.as_deref(), &device)
            .map_err(|e| e.to_string())?;
        if args.json {
            let text = serde_json::to_string_pretty(&comparison).map_err(|e| e.to_string())?;
            println!("{text}");
        } else if comparison.evidence.is_none() {
            println!("{:.6}", comparison.score);
        } else {
            print_comparison(&comparison);
        }
        Ok(())
    })
}

fn print_comparison(c: &Comparison) {
    println!("score {:.6} (cosine similarity of the two images' features)", c.score);
    if let Some(e) = &c.evidence {
        let bound = if e.at_bound { "limited by the bound" } else { "within the bounds" };
        println!(
            "log10 LR {:+.3}, LR {:.4e} ({bound} [{:+.3}, {:+.3}] the calibration data supports)",
            e.llr, e.lr, e.bounds.lower, e.bounds.upper
        );
        println!("verbal equivalent: {} support ({})", e.verbal.strength, e.verbal.scale);
        println!("  {}", e.verbal.statement);
    }
    if let Some(cal) = &c.calibration {
        println!(
            "calibration {} ({:?}, on {} same-source and {} different-source comparisons of {} images, {} identities \
             from {})",
            cal.path,
            cal.calibrator,
            cal.counts.same_source,
            cal.counts.different_source,
            cal.counts.images,
            cal.counts.identities,
            cal.data
        );
        match &cal.validity {
            Some(m) => validity_lines(m).iter().for_each(|line| println!("  {line}")),
            None => println!("  not validated: its validity is unknown"),
        }
    }
    println!("provenance ({}, backend {}):", c.provenance.tool, c.provenance.backend);
    println!("  model {} SHA-256 {}", c.provenance.model, c.provenance.model_sha256);
    for image in &c.images {
        println!("  image {} SHA-256 {}", image.path, image.sha256);
    }
    if let Some(cal) = &c.calibration {
        println!("  calibration {} SHA-256 {}", cal.path, cal.sha256);
    }
}

/// The validity figures of a calibration, one line each.
fn validity_lines(m: &LrMetrics) -> Vec<String> {
    let strongest = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.2}"));
    let (d, s) = (&m.misleading_different_source, &m.misleading_same_source);
    vec![
        format!(
            "validity (cross-validated by identity, {} same-source and {} different-source comparisons):",
            m.same_source, m.different_source
        ),
        format!(
            "  Cllr {:.4}  Cllr_min {:.4}  Cllr_cal {:.4}  devPAV {}  EER {:.4}",
            m.cllr,
            m.cllr_min,
            m.cllr_cal,
            m.devpav.map_or("-".to_string(), |v| format!("{v:.4}")),
            m.eer
        ),
        format!(
            "  misleading evidence: LR > 1 for different people {} of {} ({:.4}, strongest log10 LR {}); LR < 1 for \
             the same person {} of {} ({:.4}, strongest log10 LR {})",
            d.misleading,
            d.comparisons,
            d.rate,
            strongest(d.strongest_llr),
            s.misleading,
            s.comparisons,
            s.rate,
            strongest(s.strongest_llr)
        ),
    ]
}

pub fn calibrate(args: &CalibrateArgs) -> Result<(), String> {
    let data = match &args.split {
        Some(manifest) => {
            CalibrationData::Split { manifest: manifest.clone(), root: args.data.clone(), subset: args.subset.clone() }
        }
        None => CalibrationData::Folder(args.data.clone()),
    };
    let mut options =
        CalibrationOptions { calibrator: args.calibrator, folds: args.folds, seed: args.seed, ..Default::default() };
    options.pairs.seed = args.seed;
    with_model!(args.model, |model, device, observer| {
        let made = calibrate_model(&model, &data, &options, &args.out, &device, observer).map_err(|e| e.to_string())?;
        let (c, b) = (&made.calibration, made.calibration.bounds);
        println!(
            "calibrated {:?} on {} images of {} identities: {} same-source and {} different-source comparisons; log10 \
             LR bounded to [{:+.3}, {:+.3}] (ELUB)",
            c.calibrator.kind(),
            c.counts.images,
            c.counts.identities,
            c.counts.same_source,
            c.counts.different_source,
            b.lower,
            b.upper
        );
        validity_lines(&made.report.metrics).iter().for_each(|line| println!("{line}"));
        let o = &made.outputs;
        for file in [&o.validation, &o.tippett, &o.ece, &o.pav, &o.histograms, &o.calibration] {
            println!("wrote {}", file.display());
        }
        println!(
            "next: handid compare --model {} --calibration {} A.jpg B.jpg",
            model.path().display(),
            o.calibration.display()
        );
        Ok(())
    })
}

pub fn evaluate(args: &EvaluateArgs) -> Result<(), String> {
    let options = EvaluateOptions {
        metadata: args.metadata.clone(),
        calibration: args.calibration.clone(),
        ..Default::default()
    };
    with_model!(args.model, |model, device, observer| {
        let (evaluation, files) =
            evaluate_model(&model, &args.split, &args.root, &args.out, &options, &device, observer)
                .map_err(|e| e.to_string())?;
        for subset in &evaluation.report.subsets {
            let s = &subset.summary;
            println!(
                "{}: rank-1 {:.4} rank-5 {:.4} rank-10 {:.4} mAP {:.4} (standard {:.4}) mINP {:.4} over {} runs",
                subset.name,
                s.rank1.mean,
                s.rank5.mean,
                s.rank10.mean,
                s.map_interpolated.mean,
                s.map_standard.mean,
                s.minp.mean,
                s.n_runs
            );
        }
        if let Some(verification) = &evaluation.verification {
            println!("EER {:.4} (first run)", verification.eer.rate);
        }
        if let Some(differential) = &evaluation.differential {
            differential_lines(differential).iter().for_each(|line| println!("{line}"));
        }
        for file in files {
            println!("wrote {}", file.display());
        }
        Ok(())
    })
}

/// The figures per group as a table per subset, one line each.
fn differential_lines(differential: &Differential) -> Vec<String> {
    let results = match differential {
        Differential::Unavailable { reason } => return vec![format!("no figures per group: {reason}")],
        Differential::Computed(results) => results,
    };
    let figure = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut lines = vec![format!(
        "figures per group (metadata {}, SHA-256 {}{})",
        results.metadata.path,
        results.metadata.sha256,
        results.calibration.as_ref().map_or(String::new(), |c| format!("; Cllr under the calibration {}", c.path))
    )];
    lines.extend(results.notes.iter().map(|n| format!("  {n}")));
    for subset in &results.subsets {
        lines.push(format!("{} ({} images):", subset.subset, subset.images));
        lines.push(format!(
            "  {:<15} {:<14} {:>7} {:>11} {:>8} {:>9} {:>7} {:>11} {:>11} {:>7} {:>8} {:>7}",
            "group",
            "value",
            "#images",
            "#identities",
            "#genuine",
            "#impostor",
            "EER",
            "TAR@FAR1e-2",
            "TAR@FAR1e-3",
            "rank-1",
            "#queries",
            "Cllr"
        ));
        for g in &subset.report.groups {
            let tar = |target: f64| {
                g.tar_at_far.iter().find(|t| t.far_target == target).map_or("-".to_string(), |t| {
                    format!("{:.4}{}", t.tar, if t.limited_by_sample_size { "*" } else { "" })
                })
            };
            lines.push(format!(
                "  {:<15} {:<14} {:>7} {:>11} {:>8} {:>9} {:>7} {:>11} {:>11} {:>7} {:>8} {:>7}",
                g.attribute,
                g.value,
                g.images,
                g.identities,
                g.same_source,
                g.different_source,
                figure(g.eer),
                tar(1e-2),
                tar(1e-3),
                figure(g.rank1),
                g.rank1_queries,
                figure(g.cllr)
            ));
            lines.extend(g.notes.iter().map(|n| format!("    {}={}: {n}", g.attribute, g.value)));
        }
    }
    lines.push(
        "  (* the group has too few impostor comparisons to resolve that FAR: the figure is the TAR at FAR 0)".into(),
    );
    lines
}
