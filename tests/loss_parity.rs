//! Loss parity with PyTorch (docs/FIXTURES.md section 4): values and gradients of the committed
//! cases and of every file in `HANDID_LOSS_CASES`, on the backend that
//! `CLIP_HANDID_TEST_BACKEND` names (`flex` by default; `wgpu` and `cuda` need their features).

mod common;

use std::path::Path;

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clip_handid::handid::loss::{label_smoothing_cross_entropy, supervised_contrastive};
use serde_json::Value;

fn matrix<B: Backend>(v: &Value, device: &B::Device) -> Tensor<B, 2> {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let (n, d) = (rows.len(), rows.first().map_or(0, Vec::len));
    Tensor::from_data(TensorData::new(rows.concat(), [n, d]), device)
}

fn labels<B: Backend>(v: &Value, device: &B::Device) -> Tensor<B, 1, Int> {
    let ids: Vec<i64> = serde_json::from_value(v.clone()).unwrap();
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [n]), device)
}

fn check<B: AutodiffBackend>(
    name: &str,
    loss: Tensor<B, 1>,
    input: &Tensor<B, 2>,
    case: &Value,
    grad_key: &str,
) -> Option<String> {
    let expected_loss = case["loss"].as_f64().unwrap();
    let grads = loss.backward();
    let value = loss.into_scalar().elem::<f64>();
    let grad: Vec<f32> = input.grad(&grads).unwrap().into_data().to_vec().unwrap();
    let expected_grad: Vec<Vec<f64>> = serde_json::from_value(case[grad_key].clone()).unwrap();
    let worst_grad = grad.iter().zip(expected_grad.concat()).map(|(g, e)| (*g as f64 - e).abs()).fold(0.0, f64::max);
    let relative = (value - expected_loss).abs() / expected_loss.abs().max(f64::MIN_POSITIVE);
    println!(
        "{name}: loss {value:.8} vs {expected_loss:.8} (relative {relative:.2e}), worst grad error {worst_grad:.2e}"
    );
    (relative > 1e-5 || worst_grad > 1e-5)
        .then(|| format!("{name}: relative loss error {relative:.2e}, grad {worst_grad:.2e}"))
}

#[test]
fn losses_match_pytorch() {
    common::on_test_backend!(|B, device| check_all::<Autodiff<B>>(&device));
}

fn check_all<B: AutodiffBackend>(device: &B::Device) {
    println!("backend: {}", B::name(device));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/losses/cases.json");
    let mut failures = Vec::new();
    let mut count = 0;
    for file in common::case_locations(vec![committed], "HANDID_LOSS_CASES") {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (i, case) in cases.iter().enumerate() {
            let name = format!("{} case {i} ({})", file.display(), case["kind"]);
            let failure = match case["kind"].as_str() {
                Some("supcon") => {
                    let a = matrix::<B>(&case["a"], device).require_grad();
                    let loss = supervised_contrastive(
                        a.clone(),
                        matrix::<B>(&case["b"], device),
                        labels::<B>(&case["labels_a"], device),
                        labels::<B>(&case["labels_b"], device),
                    );
                    check(&name, loss, &a, case, "grad_a")
                }
                Some("label_smoothing_ce") => {
                    let logits = matrix::<B>(&case["logits"], device).require_grad();
                    let epsilon = case["epsilon"].as_f64().unwrap();
                    let loss =
                        label_smoothing_cross_entropy(logits.clone(), labels::<B>(&case["labels"], device), epsilon);
                    check(&name, loss, &logits, case, "grad_logits")
                }
                other => panic!("{name}: unknown kind {other:?}"),
            };
            failures.extend(failure);
            count += 1;
        }
    }
    assert!(count > 0, "no loss cases found");
    assert!(failures.is_empty(), "loss parity failures:\n{}", failures.join("\n"));
}
