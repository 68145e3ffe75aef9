//! Backend selection: which backends this build contains, chosen by name at run time.
//!
//! `flex` (pure-Rust CPU) is always compiled; `wgpu` and `cuda` need the Cargo features of the
//! same names.

use std::fmt;
use std::str::FromStr;

/// The CPU backend, always available.
pub type Cpu = burn::backend::Flex;
/// The WGPU backend (Vulkan, Metal, DX12), with kernel fusion.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;
/// The CUDA backend, with kernel fusion; CUDA is loaded at run time.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// The fastest backend compiled in, chosen at compile time: `cuda`, then `wgpu`, else `flex`
/// (what the benchmarks run on; [`BackendKind::default_compiled`] is the run-time counterpart).
#[cfg(feature = "cuda")]
pub type Fastest = Cuda;
/// The fastest backend compiled in, chosen at compile time: `cuda`, then `wgpu`, else `flex`
/// (what the benchmarks run on; [`BackendKind::default_compiled`] is the run-time counterpart).
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Fastest = Wgpu;
/// The fastest backend compiled in, chosen at compile time: `cuda`, then `wgpu`, else `flex`
/// (what the benchmarks run on; [`BackendKind::default_compiled`] is the run-time counterpart).
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub type Fastest = Cpu;

/// A backend name as given on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Pure-Rust CPU backend.
    Flex,
    /// WGPU (needs `--features wgpu`).
    Wgpu,
    /// CUDA (needs `--features cuda`).
    Cuda,
}

impl BackendKind {
    /// Whether this build contains the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backend to use when none is named: the fastest one compiled in.
    pub fn default_compiled() -> Self {
        [Self::Cuda, Self::Wgpu].into_iter().find(|b| b.is_compiled()).unwrap_or(Self::Flex)
    }

    /// An error if the backend is not part of this build, saying which feature to enable.
    pub fn ensure_compiled(self) -> Result<Self, String> {
        if self.is_compiled() {
            Ok(self)
        } else {
            Err(format!("the {self} backend is not compiled into this program; rebuild with `--features {self}`"))
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            _ => Err(format!("unknown backend `{s}`; expected flex, wgpu or cuda")),
        }
    }
}

/// Checks that `device` of backend `B` can run a computation. GPU backends report a missing
/// driver or adapter by panicking inside Burn (on a worker thread, too); this turns that into
/// an error naming the backend, with the panic silenced.
pub fn probe<B: burn::tensor::backend::Backend>(kind: BackendKind, device: &B::Device) -> Result<(), String> {
    if kind == BackendKind::Flex {
        return Ok(());
    }
    // The first panic, wherever it happens, says what is missing (later ones are its echoes).
    let first = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let hook = std::panic::take_hook();
    let record = first.clone();
    std::panic::set_hook(Box::new(move |info| {
        let mut slot = record.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()));
            *slot = Some(message.unwrap_or_else(|| "no details".into()));
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0], device).sum().into_data()
    }));
    std::panic::set_hook(hook);
    result.map(|_| ()).map_err(|_| {
        let reason = first.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(|| "no details".into());
        let reason: String = reason.chars().take(200).collect();
        format!("the {kind} backend has no usable device on this machine ({reason}); use --backend flex or install the driver")
    })
}

/// Keeps memory freed by the CPU backend in the process instead of returning it to the system.
///
/// The `flex` backend frees and allocates the same tensor sizes on every training step. glibc's
/// malloc gives the top of the heap back to the kernel once more than 128 KiB of it is free, so
/// the next step faults those pages in again, zero-filled: a fifth of the quickstart's time was
/// spent in the kernel. Keeping them (up to the program's peak, which it reaches anyway) makes
/// each epoch about 20 % faster (docs/BENCHMARKS.md). Called by [`with_backend!`](crate::with_backend)
/// for `flex`; a no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's tuning parameters; it is safe to call at any time.
    unsafe {
        // Free space at the top of the heap is kept up to 1 GiB, and blocks up to 32 MiB (glibc's
        // largest mmap threshold) come from the heap rather than from mmap, whose memory is
        // unmapped again on every free.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// Runs `$body` with `$B` bound to the backend type named by `$kind` and `$device` to its
/// default device; evaluates to `Err(String)` if that backend is not compiled in. For `flex`
/// it first calls [`keep_freed_memory`](crate::backend::keep_freed_memory).
#[macro_export]
macro_rules! with_backend {
    ($kind:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $kind {
            $crate::backend::BackendKind::Flex => {
                type $B = $crate::backend::Cpu;
                $crate::backend::keep_freed_memory();
                let $device = burn::tensor::Device::<$B>::default();
                Ok($body)
            }
            #[cfg(feature = "wgpu")]
            $crate::backend::BackendKind::Wgpu => {
                type $B = $crate::backend::Wgpu;
                let $device = burn::tensor::Device::<$B>::default();
                $crate::backend::probe::<$B>($kind, &$device).map(|()| $body)
            }
            #[cfg(feature = "cuda")]
            $crate::backend::BackendKind::Cuda => {
                type $B = $crate::backend::Cuda;
                let $device = burn::tensor::Device::<$B>::default();
                $crate::backend::probe::<$B>($kind, &$device).map(|()| $body)
            }
            #[allow(unreachable_patterns)]
            other => other.ensure_compiled().map(|_| unreachable!()),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_missing_backends_say_which_feature() {
        assert_eq!("flex".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        assert!("tpu".parse::<BackendKind>().unwrap_err().contains("flex, wgpu or cuda"));
        if !cfg!(feature = "cuda") {
            let err = BackendKind::Cuda.ensure_compiled().unwrap_err();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
