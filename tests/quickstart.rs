//! The demo (`handid demo`, the `quickstart` example: both call [`run_demo`] with
//! [`DemoArgs`]) end to end at a toy size (the default run takes minutes): synthetic data, split
//! manifest, untrained and trained protocol evaluation, the training run, the ranked-candidate
//! outputs and the summary that is printed last.

mod common;

use clap::Parser;
use clip_handid::args::DemoArgs;
use clip_handid::handid::demo::{DemoSummary, run_demo};
use clip_handid::handid::progress::Silent;
use common::TempDir;

/// The demo's arguments as the command line gives them.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    demo: DemoArgs,
}

fn run_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<DemoSummary, String> {
    let args = Args::parse_from(std::iter::once("quickstart").chain(args));
    run_demo::<clip_handid::backend::Cpu>(&args.demo.options(), &Default::default(), &mut Silent)
}

#[test]
fn quickstart_runs_end_to_end_at_toy_size() {
    let dir = TempDir::new("quickstart");
    let out = dir.path("out");
    let summary = run_args([
        "--out",
        out.to_str().unwrap(),
        "--identities",
        "10",
        "--images-per-identity",
        "6",
        "--epochs",
        "2",
        "--batch-size",
        "8",
    ])
    .unwrap();

    let map = summary.trained.map_interpolated.mean;
    for (name, value) in [("rank1", summary.rank1()), ("map", map), ("rank1_untrained", summary.rank1_untrained())] {
        assert!((0.0..=1.0).contains(&value), "{name} = {value}");
    }
    assert!(summary.seconds > 0.0);
    let json = summary.json();
    for key in ["rank1", "map", "rank1_untrained", "seconds"] {
        assert!(json[key].is_f64(), "summary JSON lacks {key}: {json}");
    }
    for file in
        ["splits.json", "results.json", "rankings.csv", "rankings.png", "run/metrics.json", "data/id_0009/img_05.png"]
    {
        assert!(out.join(file).is_file(), "{file} was not written");
    }
}

#[test]
fn the_small_vit_backbone_runs_and_unknown_backbones_are_named() {
    let dir = TempDir::new("quickstart-vit");
    let out = dir.path("out");
    let out = out.to_str().unwrap();
    let toy = ["--identities", "6", "--images-per-identity", "4", "--epochs", "1", "--batch-size", "4"];
    let summary = run_args(["--out", out, "--backbone", "vit"].into_iter().chain(toy)).unwrap();
    assert!((0.0..=1.0).contains(&summary.rank1()), "rank1 = {}", summary.rank1());

    let error = run_args(["--out", out, "--backbone", "ViT-X-99"].into_iter().chain(toy)).unwrap_err();
    assert!(error.contains("ViT-X-99") && error.contains("resnet, vit"), "{error}");
}

/// The demo's promise at its defaults: on synthetic identities never seen in training, rank-1 is
/// at least 0.9 after training and at most 0.5 before. About six minutes on two cores in
/// release: `cargo test --release --test quickstart -- --ignored` (printed: the summary JSON,
/// whose `seconds` is the number to compare with the ten-minute budget).
#[test]
#[ignore = "the full default run: minutes in release"]
fn the_default_run_learns_identities_it_never_saw() {
    let dir = TempDir::new("quickstart-default");
    let out = dir.path("out");
    clip_handid::backend::keep_freed_memory();
    let summary = run_args(["--out", out.to_str().unwrap()]).unwrap();
    println!("{}", summary.json());
    assert!(summary.rank1() >= 0.9, "held-out rank-1 {} < 0.9", summary.rank1());
    assert!(summary.rank1_untrained() <= 0.5, "untrained held-out rank-1 {} > 0.5", summary.rank1_untrained());
}
