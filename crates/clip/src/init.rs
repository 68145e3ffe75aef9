//! Parameter initialisation: open_clip's for the parameters Burn's modules do not own (so that an
//! untrained model is usable; pretrained weights replace these values), and initialisation that
//! gives the same weights on every backend ([`seeded`]).

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

/// A parameter drawn from `normal(0, std)`.
pub(crate) fn normal<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, std), device))
}

use burn::backend::{Flex, flex::FlexDevice};
use burn::store::ModuleSnapshot;
use std::sync::Mutex;

use crate::error::ClipError;

/// Copies the value of every parameter and buffer of `source` into `target`, a module of the
/// same structure on any backend (ids and trainability stay `target`'s).
///
/// # Errors
/// [`ClipError::InvalidInput`] naming the first tensor that `target` lacks, that `source` lacks,
/// or whose shape differs.
pub fn copy_parameters<BS: Backend, BT: Backend, MS: ModuleSnapshot<BS>, MT: ModuleSnapshot<BT>>(
    source: &MS,
    mut target: MT,
) -> Result<MT, ClipError> {
    let snapshots = source.collect(None, None, false);
    let count = snapshots.len();
    let result = target.apply(snapshots, None, None, false);
    let problem = result
        .errors
        .first()
        .map(|e| format!("{e:?}"))
        .or_else(|| result.missing.first().map(|(path, _)| format!("`{path}` has no value in the source")))
        .or_else(|| result.unused.first().map(|path| format!("`{path}` has no place in the target")));
    match problem {
        Some(problem) => Err(ClipError::InvalidInput(format!(
            "copying {count} parameters between modules of different structure: {problem}"
        ))),
        None => Ok(target),
    }
}

/// Builds a module whose random initial weights depend only on `seed`, not on the backend.
///
/// Each backend has its own random generator, so `B::seed(s)` followed by an initialiser gives
/// other weights on `wgpu` or `cuda` than on `flex`. Here `on_cpu` builds the module on the
/// CPU backend right after seeding it, and its values are copied into `on_device()`'s module
/// (built on `B`, whose own draws are overwritten): the same seed gives the same model on
/// every backend and machine. Seeded initialisations on several threads are serialised; other
/// draws from the CPU backend's generator made meanwhile on another thread (`Tensor::random`
/// on `flex`) would still change the result.
///
/// ```
/// use burn::backend::{Flex, flex::FlexDevice};
/// use burn::nn::{Linear, LinearConfig};
/// let config = LinearConfig::new(4, 2);
/// let build = || clip_burn::init::seeded::<Flex, _, _>(
///     7, |cpu| config.init(cpu), || config.init(&FlexDevice)).unwrap();
/// let (a, b): (Linear<Flex>, Linear<Flex>) = (build(), build());
/// assert_eq!(a.weight.val().into_data(), b.weight.val().into_data());
/// ```
///
/// # Errors
/// As [`copy_parameters`], if the two builders disagree on the structure.
pub fn seeded<B: Backend, MC: ModuleSnapshot<Flex>, MB: ModuleSnapshot<B>>(
    seed: u64,
    on_cpu: impl FnOnce(&FlexDevice) -> MC,
    on_device: impl FnOnce() -> MB,
) -> Result<MB, ClipError> {
    // The CPU backend's generator is global: two seeded initialisations running at once on
    // different threads would interleave their draws.
    static CPU_GENERATOR: Mutex<()> = Mutex::new(());
    let _serial = CPU_GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cpu = Default::default();
    Flex::seed(&cpu, seed);
    let source = on_cpu(&cpu);
    // Burn initialises parameters lazily: draw them all now, before `on_device` (which may draw
    // from the same generator when `B` is the CPU backend) and still under the lock.
    source.visit(&mut Materialize);
    copy_parameters(&source, on_device())
}

/// Draws the value of every lazily initialised parameter of the modules it visits.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        let _ = param.val();
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        let _ = param.val();
    }
}
