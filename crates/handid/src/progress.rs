//! Progress reports of long calls: the library prints nothing; a caller that wants progress bars
//! or per-epoch lines passes an [`Observer`] and renders what it receives.
//!
//! ```
//! use handid::progress::Observer;
//! use handid::train::EpochMetrics;
//!
//! /// Counts finished epochs and keeps the messages.
//! #[derive(Default)]
//! struct Log { epochs: usize, lines: Vec<String> }
//!
//! impl Observer for Log {
//!     fn message(&mut self, line: &str) { self.lines.push(line.to_string()); }
//!     fn epoch(&mut self, _metrics: &EpochMetrics, _epochs: usize) { self.epochs += 1; }
//! }
//! let mut log = Log::default();
//! log.message("training on 40 images of 10 identities");
//! assert_eq!(log.lines.len(), 1);
//! ```

use crate::train::EpochMetrics;

/// Receives the progress of a long call; every method has an empty default.
///
/// A call announces a counted piece of work with [`task`](Self::task), reports it with
/// [`advance`](Self::advance) and ends it with [`finish`](Self::finish); tasks do not nest.
pub trait Observer {
    /// A line of information: what is about to happen, a setting chosen, a warning.
    fn message(&mut self, _line: &str) {}
    /// A piece of work of `total` units (images, training steps) starts; `name` says which.
    fn task(&mut self, _name: &str, _total: usize) {}
    /// `done` units of the current task are done; `status` is a short running figure (e.g. the
    /// running loss), possibly empty.
    fn advance(&mut self, _done: usize, _status: &str) {}
    /// The current task ended.
    fn finish(&mut self) {}
    /// A training epoch ended with these figures (of `epochs` in all).
    fn epoch(&mut self, _metrics: &EpochMetrics, _epochs: usize) {}
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Runs `work` as one task of `observer`, reporting through the returned closure's count.
pub(crate) fn counted<T>(
    observer: &mut dyn Observer,
    name: &str,
    total: usize,
    work: impl FnOnce(&mut dyn FnMut(usize)) -> T,
) -> T {
    observer.task(name, total);
    let result = {
        let mut report = |done: usize| observer.advance(done, "");
        work(&mut report)
    };
    observer.finish();
    result
}
