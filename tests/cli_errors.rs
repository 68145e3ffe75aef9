//! Bad input to the `handid` command: one line on stderr naming the file and the problem, exit
//! code 1 (2 for wrong usage), never a panic. And every subcommand's `--help` has an example.

mod common;

use std::path::Path;
use std::process::Command;

use clip_handid::handid::data::SyntheticHands;
use common::TempDir;

/// Small CLIP weights (random parameters) and their architecture: their text tower's head count
/// does not follow OpenAI's width / 64 rule, so the architecture is given with `--config`.
const WEIGHTS: &str = "tests/fixtures/clip/resnet_tiny/weights.safetensors";
const CONFIG: &str = "tests/fixtures/clip/resnet_tiny/config.json";
const OTHER_WEIGHTS: &str = "tests/fixtures/clip/vit_tiny/weights.safetensors";
const OTHER_CONFIG: &str = "tests/fixtures/clip/vit_tiny/config.json";

fn weights(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel).to_str().unwrap().to_string()
}

/// Runs handid expecting failure with `code`; returns stderr, checked to be one line that
/// starts with `error:` (usage errors excepted) and shows no panic.
fn fails(code: i32, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_handid")).args(args).output().expect("the handid binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "handid {}: {stderr}", args.join(" "));
    assert!(!stderr.contains("panicked"), "handid {} panicked: {stderr}", args.join(" "));
    if code == 1 {
        assert!(stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1, "not one line: {stderr:?}");
    }
    stderr
}

fn succeeds(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_handid")).args(args).output().expect("the handid binary runs");
    assert!(output.status.success(), "handid {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn missing_files_are_named() {
    let dir = TempDir::new("cli-missing");
    let missing = dir.path("no-such-model.safetensors");
    let image = dir.path("a.png");
    SyntheticHands { identities: 1, images_per_identity: 1, size: 32, seed: 1 }.render(0, 0).save(&image).unwrap();
    let err = fails(1, &["compare", "-q", "--model", s(&missing), s(&image), s(&image)]);
    assert!(err.contains("no-such-model.safetensors") && err.contains("does not exist"), "{err}");

    let gone = dir.path("gone.png");
    let err =
        fails(1, &["compare", "-q", "--model", &weights(WEIGHTS), "--config", &weights(CONFIG), s(&image), s(&gone)]);
    assert!(err.contains("gone.png") && err.contains("does not exist"), "{err}");

    let err = fails(
        1,
        &[
            "index",
            "query",
            "-q",
            "--model",
            &weights(WEIGHTS),
            "--config",
            &weights(CONFIG),
            "--index",
            s(&dir.path("none.safetensors")),
            s(&image),
        ],
    );
    assert!(err.contains("none.safetensors"), "{err}");

    let err = fails(
        1,
        &[
            "train",
            "-q",
            "--data",
            s(&dir.path("no-data")),
            "--weights",
            &weights(WEIGHTS),
            "--config",
            &weights(CONFIG),
            "--out",
            s(&dir.path("run")),
        ],
    );
    assert!(err.contains("no-data"), "{err}");
}

#[test]
fn an_image_that_is_not_one_is_named() {
    let dir = TempDir::new("cli-not-image");
    let fake = dir.path("hand.jpg");
    std::fs::write(&fake, b"<html>not a picture</html>").unwrap();
    let err =
        fails(1, &["compare", "-q", "--model", &weights(WEIGHTS), "--config", &weights(CONFIG), s(&fake), s(&fake)]);
    assert!(err.contains("hand.jpg") && err.contains("not an image"), "{err}");
    let err = fails(
        1,
        &[
            "embed",
            "-q",
            "--model",
            &weights(WEIGHTS),
            "--config",
            &weights(CONFIG),
            "--out",
            s(&dir.path("e.safetensors")),
            s(&fake),
        ],
    );
    assert!(err.contains("hand.jpg") && err.contains("not an image"), "{err}");
    // Nor is a text file a model.
    let err = fails(1, &["compare", "-q", "--model", s(&fake), s(&fake), s(&fake)]);
    assert!(err.contains("hand.jpg"), "{err}");
}

#[test]
fn a_run_directory_without_a_trained_model_is_refused() {
    let dir = TempDir::new("cli-run");
    let out = dir.path("model.safetensors");
    let empty = dir.path("empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    let err = fails(1, &["export", s(&empty), "--out", s(&out)]);
    assert!(err.contains("empty-run") && err.contains("not a training run"), "{err}");
    std::fs::write(empty.join("model.json"), b"{}").unwrap();
    let err = fails(1, &["export", s(&empty), "--out", s(&out)]);
    assert!(err.contains("empty-run") && err.contains("no trained model"), "{err}");
    let err = fails(1, &["export", s(&dir.path("no-run")), "--out", s(&out)]);
    assert!(err.contains("no-run") && err.contains("does not exist"), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_index_built_with_another_model_is_refused_by_its_sha256() {
    let dir = TempDir::new("cli-index");
    let gallery = dir.path("gallery");
    SyntheticHands { identities: 2, images_per_identity: 2, size: 64, seed: 5 }.write_folders(&gallery).unwrap();
    let query = gallery.join("id_0000").join("img_01.png");
    let index = dir.path("g.safetensors");
    // The model file at one path, indexed, then replaced by another model under the same name.
    let model = dir.path("model.safetensors");
    std::fs::copy(weights(WEIGHTS), &model).unwrap();
    let config = weights(CONFIG);
    succeeds(&["index", "build", "-q", "--model", s(&model), "--config", &config, "--index", s(&index), s(&gallery)]);
    // The same bytes under another name are the same model.
    let copy = dir.path("copy.safetensors");
    std::fs::copy(&model, &copy).unwrap();
    succeeds(&[
        "index",
        "query",
        "-q",
        "--model",
        s(&copy),
        "--config",
        &config,
        "--index",
        s(&index),
        "-k",
        "2",
        s(&query),
    ]);
    std::fs::copy(weights(OTHER_WEIGHTS), &model).unwrap();
    let other = weights(OTHER_CONFIG);
    let err =
        fails(1, &["index", "query", "-q", "--model", s(&model), "--config", &other, "--index", s(&index), s(&query)]);
    assert!(err.contains("g.safetensors") && err.contains("another model"), "{err}");
    let args = ["index", "build", "-q", "--append", "--model", s(&model), "--config", &other, "--index", s(&index)];
    let err = fails(1, &[&args[..], &[s(&gallery)]].concat());
    assert!(err.contains("g.safetensors") && err.contains("another model"), "{err}");
}

#[test]
fn folders_that_cannot_train_are_refused() {
    let dir = TempDir::new("cli-folders");
    let run = dir.path("run");
    let one = dir.path("one-identity");
    SyntheticHands { identities: 1, images_per_identity: 4, size: 64, seed: 5 }.write_folders(&one).unwrap();
    let err = fails(
        1,
        &[
            "train",
            "-q",
            "--data",
            s(&one),
            "--weights",
            &weights(WEIGHTS),
            "--config",
            &weights(CONFIG),
            "--out",
            s(&run),
        ],
    );
    assert!(err.contains("one-identity") && err.contains("at least two identities"), "{err}");
    let single = dir.path("single-images");
    SyntheticHands { identities: 3, images_per_identity: 1, size: 64, seed: 5 }.write_folders(&single).unwrap();
    let err = fails(
        1,
        &[
            "train",
            "-q",
            "--data",
            s(&single),
            "--weights",
            &weights(WEIGHTS),
            "--config",
            &weights(CONFIG),
            "--out",
            s(&run),
        ],
    );
    assert!(err.contains("single-images") && err.contains("1 usable image"), "{err}");
    assert!(!run.join("model.json").exists(), "a refused run wrote its model.json");
}

#[test]
fn wrong_usage_exits_with_2_and_every_subcommand_has_an_example() {
    fails(2, &["train", "--data"]);
    fails(2, &["no-such-command"]);
    fails(2, &["index", "query", "--model", "m", "--index", "i", "-k", "many", "q.jpg"]);
    let commands: &[&[&str]] = &[
        &["demo"],
        &["fetch"],
        &["convert"],
        &["splits"],
        &["train"],
        &["export"],
        &["embed"],
        &["index", "build"],
        &["index", "query"],
        &["compare"],
        &["calibrate"],
        &["evaluate"],
        &["reproduce"],
    ];
    for command in commands {
        let help = succeeds(&[command, &["--help"][..]].concat());
        assert!(help.contains("Example:\n  handid "), "handid {} --help has no example:\n{help}", command.join(" "));
    }
}
