//! CLIP-HandID training on the backend that `CLIP_HANDID_TEST_BACKEND` names (`flex` by
//! default; CI also runs this file on `wgpu`): seeded initialisation that does not depend on the
//! backend, the re-identification position embeddings as trained parameters, and a few training
//! steps of a tiny re-ID model in both text modes whose losses fall and match the same steps on
//! `flex` from the same initial weights.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clip_handid::clip::vision::ImageEncoder;
use clip_handid::clip::{ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};
use clip_handid::handid::model::{HandIdConfig, HandIdModel, TextMode};
use clip_handid::handid::train::{StepStats, TrainConfig, optimizer, step, training_loss};

/// Training steps per run.
const STEPS: usize = 4;
/// Four identities, two images each (the contrastive losses need positives).
const BATCH: usize = 8;
/// The image encoder's learning rate (the new layers get 10x). At 1e-3 the tiny ModifiedResNet's
/// loss jumps from 6.9 to 8.5 after one step: a trajectory that unstable magnifies every rounding
/// difference, so it would compare the backends' chaos rather than their arithmetic.
const LR: f64 = 1e-4;
/// How far the losses of the first step (the same weights, so forward arithmetic alone) may be
/// from `flex`'s, relative. GPU kernels sum in another order than the CPU backend; measured on
/// `wgpu` / lavapipe: at most 1.1e-7. On `flex` itself the runs are identical.
const FIRST_LOSS_TOLERANCE: f64 = 1e-5;
/// The same for the later steps, after the backends' rounding has gone through Adam: its first
/// update moves every weight by about the learning rate times the *sign* of its gradient, so
/// gradient elements that are zero up to rounding (attention's key bias, whose gradient cancels
/// in the softmax: |g| ~ 1e-10, of either sign) move differently on each backend. Measured on
/// `wgpu` / lavapipe at `LR`: at most 9.0e-6. The gradients themselves are compared in
/// `first_step_gradients_match_flex` (cosine >= 0.99999 per tensor).
const LOSS_TOLERANCE: f64 = 1e-4;
/// Gradient tensors whose norm is below this (relative to the largest one) are zero in exact
/// arithmetic and carry only rounding noise; their direction is not compared.
const NOISE_GRADIENT: f64 = 1e-6;

fn tiny(vision: VisionConfig) -> HandIdConfig {
    let clip = ClipConfig {
        embed_dim: 16,
        vision,
        text: TextConfig { context_length: 77, vocab_size: 49408, width: 16, heads: 2, layers: 1 },
    };
    HandIdConfig::new(clip, 4)
}

/// A ViT made for 32 x 32 inputs, trained at 48 x 32: its position embedding is resized.
fn tiny_vit() -> HandIdConfig {
    let mut config =
        tiny(VisionConfig::Vit(VitConfig { layers: 1, width: 32, heads: 2, patch_size: 8, image_size: 32 }));
    config.input_size = [48, 32];
    config
}

/// A ModifiedResNet made for 64 x 64 inputs, trained at 48 x 32 with layer4 stride 1: its
/// attention-pool position embedding is resized.
fn tiny_resnet() -> HandIdConfig {
    let mut config =
        tiny(VisionConfig::ResNet(ResNetConfig { layers: [1, 1, 1, 1], width: 8, heads: 2, image_size: 64 }));
    config.input_size = [48, 32];
    config
}

/// `config` at its CLIP model's own input size, ViT stride and ResNet layer4 stride.
fn native(mut config: HandIdConfig) -> HandIdConfig {
    let side = config.clip.vision.image_size();
    config.input_size = [side, side];
    config.resnet_last_stride = 2;
    config
}

/// Deterministic pixels and labels, made on the CPU so that every backend sees the same batch.
fn batch<B: Backend>(config: &HandIdConfig, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let [h, w] = config.input_size;
    let mut values = Vec::with_capacity(BATCH * 3 * h * w);
    for i in 0..BATCH {
        let class = (i / 2) as f32;
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let v =
                        (0.37 * x as f32 + 0.11 * y as f32 * (class + 1.0) + c as f32 * class + i as f32 * 0.05).sin();
                    values.push(v);
                }
            }
        }
    }
    let pixels = Tensor::from_data(TensorData::new(values, [BATCH, 3, h, w]), device);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i / 2).collect();
    (pixels, Tensor::from_data(TensorData::new(labels, [BATCH]), device))
}

fn train_config(mode: TextMode) -> TrainConfig {
    let mut config = TrainConfig::paper(BATCH);
    config.text_mode = mode;
    config
}

/// Every float parameter and buffer of a module, in visiting order.
struct Values(Vec<Vec<f32>>);

impl<B: Backend> ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

fn values<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    let mut values = Values(Vec::new());
    module.visit(&mut values);
    values.0
}

fn position_embedding<B: Backend>(encoder: &ImageEncoder<B>) -> &Param<Tensor<B, 2>> {
    match encoder {
        ImageEncoder::Vit(vit) => &vit.positional_embedding,
        ImageEncoder::ResNet(resnet) => &resnet.attnpool.positional_embedding,
    }
}

/// `STEPS` steps at learning rate `LR` from the model seeded with 11; the losses of each step
/// and the trained model.
fn run<B: AutodiffBackend>(
    config: &HandIdConfig,
    mode: TextMode,
    device: &B::Device,
) -> (Vec<StepStats>, HandIdModel<B>) {
    let mut config = config.clone();
    config.text_mode = mode;
    let train = train_config(mode);
    let mut model = HandIdModel::<B>::seeded(&config, 11, device).unwrap();
    model.seed_dropout(12);
    let mut optim = optimizer::<B>(&train);
    let (pixels, labels) = batch::<B>(&config, device);
    let mut stats = Vec::new();
    for _ in 0..STEPS {
        let (next, s) = step(model, &mut optim, pixels.clone(), labels.clone(), &train, LR).unwrap();
        model = next;
        stats.push(s);
    }
    (stats, model)
}

#[test]
fn a_seed_gives_the_same_model_on_every_backend() {
    common::on_test_backend!(|B, device| {
        println!("backend: {}", B::name(&device));
        // At the checkpoint's own input size and strides: nothing is resized, so the model is only
        // the seeded draws and must be equal bit for bit (a resize is computed on the backend,
        // with its rounding).
        for config in [native(tiny_vit()), native(tiny_resnet())] {
            let here = values(&HandIdModel::<B>::seeded(&config, 5, &device).unwrap());
            let cpu = values(&HandIdModel::<Flex>::seeded(&config, 5, &Default::default()).unwrap());
            let differing: Vec<usize> = (0..here.len()).filter(|&i| here[i] != cpu[i]).collect();
            assert!(
                here == cpu,
                "seed 5 gives other weights on {} than on flex (tensors {differing:?} of {})",
                B::name(&device),
                here.len()
            );
            let other = values(&HandIdModel::<Flex>::seeded(&config, 6, &Default::default()).unwrap());
            assert!(other != cpu, "seeds 5 and 6 give the same weights");
        }
    })
}

#[test]
fn the_resized_position_embedding_gets_a_gradient_and_is_trained() {
    common::on_test_backend!(|B, device| {
        type AD = Autodiff<B>;
        for config in [tiny_vit(), tiny_resnet()] {
            let model = HandIdModel::<AD>::seeded(&config, 3, &device).unwrap();
            let position = position_embedding(&model.image_encoder);
            let [h, w] = config.input_size;
            assert_ne!(h, w, "the test needs a resized grid");
            let before = position.val().into_data().convert::<f32>().to_vec::<f32>().unwrap();
            let (pixels, _) = batch::<AD>(&config, &device);
            let grads = model.forward(pixels).retrieval.powf_scalar(2.0).sum().backward();
            let grad = position.grad(&grads).expect("the resized position embedding gets no gradient");
            let grad: Vec<f32> = grad.into_data().convert::<f32>().to_vec().unwrap();
            assert!(grad.iter().any(|g| *g != 0.0), "its gradient is zero");

            let (_, trained) = run::<AD>(&config, TextMode::Paper, &device);
            let after: Vec<f32> =
                position_embedding(&trained.image_encoder).val().into_data().convert::<f32>().to_vec().unwrap();
            assert_eq!(after.len(), before.len());
            assert!(after != before, "training left the resized position embedding unchanged");
        }
    })
}

#[test]
fn training_steps_lower_the_loss_and_match_flex_in_both_text_modes() {
    common::on_test_backend!(|B, device| {
        let name = B::name(&device);
        for (label, config) in [("vit", tiny_vit()), ("resnet", tiny_resnet())] {
            for mode in [TextMode::Paper, TextMode::Reference] {
                let (here, _) = run::<Autodiff<B>>(&config, mode, &device);
                let (cpu, _) = run::<Autodiff<Flex>>(&config, mode, &Default::default());
                let losses: Vec<f64> = here.iter().map(|s| s.loss).collect();
                println!("{name} {label} {mode:?}: losses {losses:?}");
                assert!(here[STEPS - 1].loss < here[0].loss, "{label} {mode:?}: the loss did not fall: {losses:?}");
                assert!(here.iter().all(|s| s.contrastive_loss > 0.0), "{label} {mode:?}: no contrastive loss");
                for (k, (a, b)) in here.iter().zip(&cpu).enumerate() {
                    for (part, x, y) in [
                        ("loss", a.loss, b.loss),
                        ("ID loss", a.id_loss, b.id_loss),
                        ("contrastive loss", a.contrastive_loss, b.contrastive_loss),
                    ] {
                        let relative = (x - y).abs() / y.abs().max(1e-12);
                        let tolerance = if k == 0 { FIRST_LOSS_TOLERANCE } else { LOSS_TOLERANCE };
                        println!("  step {k} {part}: {x:.7} vs flex {y:.7} (relative {relative:.1e})");
                        assert!(
                            relative <= tolerance,
                            "{label} {mode:?} step {k}: {part} {x} on {name}, {y} on flex (relative {relative:.2e})"
                        );
                    }
                }
            }
        }
    })
}

/// Every parameter's gradient after one forward and backward pass of the training loss, by path.
struct Gradients<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<f64>)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gradients<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = param.grad(self.grads) {
            self.out.push((self.path.join("."), grad.into_data().convert::<f64>().to_vec().unwrap()));
        }
    }
}

fn first_gradients<B: AutodiffBackend>(config: &HandIdConfig, device: &B::Device) -> Vec<(String, Vec<f64>)> {
    let model = HandIdModel::<B>::seeded(config, 11, device).unwrap();
    model.seed_dropout(12);
    let (pixels, labels) = batch::<B>(config, device);
    let out = model.forward(pixels);
    let grads = training_loss(&out, labels, &train_config(TextMode::Paper)).total.backward();
    let mut visitor = Gradients::<B> { grads: &grads, path: Vec::new(), out: Vec::new() };
    model.visit(&mut visitor);
    visitor.out
}

#[test]
fn first_step_gradients_match_flex() {
    common::on_test_backend!(|B, device| {
        for config in [tiny_vit(), tiny_resnet()] {
            let here = first_gradients::<Autodiff<B>>(&config, &device);
            let cpu = first_gradients::<Autodiff<Flex>>(&config, &Default::default());
            assert_eq!(here.len(), cpu.len(), "other parameters get gradients on {}", B::name(&device));
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let largest = cpu.iter().map(|(_, g)| norm(g)).fold(0.0, f64::max);
            for ((name, a), (_, b)) in here.iter().zip(&cpu) {
                if norm(b) < NOISE_GRADIENT * largest {
                    continue;
                }
                let cosine = a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b));
                assert!(cosine >= 0.99999, "{name}: gradient on {} has cosine {cosine} to flex's", B::name(&device));
            }
        }
    })
}
