//! Progress on a terminal for the `handid` command and the examples: an
//! [`Observer`] and a download
//! [`Progress`](crate::clip::weights::download::Progress) drawn with indicatif on stderr.

use handid::progress::Observer;
use handid::train::EpochMetrics;
use indicatif::{ProgressBar, ProgressStyle};

/// Draws tasks as progress bars and messages and epochs as lines, on stderr.
#[derive(Default)]
pub struct Terminal {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Terminal {
    /// A terminal observer; `quiet` shows nothing.
    pub fn new(quiet: bool) -> Self {
        Self { bar: None, quiet }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Observer for Terminal {
    fn message(&mut self, line: &str) {
        self.line(line);
    }

    fn task(&mut self, name: &str, total: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        let template = format!("{name} {{bar:30}} {{pos}}/{{len}} {{msg}} eta {{eta}}");
        bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: usize, status: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(status.to_string());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn epoch(&mut self, m: &EpochMetrics, epochs: usize) {
        self.line(&format!(
            "epoch {:>3}/{epochs}: loss {:.4} (id {:.4}, contrastive {:.4}) train acc {:.3}{} lr {:.2e} ({:.1} s)",
            m.epoch + 1,
            m.loss,
            m.id_loss,
            m.contrastive_loss,
            m.train_accuracy,
            m.val_accuracy.map_or(String::new(), |a| format!(" val acc {a:.3}")),
            m.lr_image,
            m.seconds
        ));
    }
}

/// A download's progress as a byte bar.
pub struct DownloadBar(ProgressBar);

impl DownloadBar {
    /// A bar for a transfer of `size` bytes (0 if unknown).
    pub fn new(size: u64) -> Self {
        let style = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        Self(ProgressBar::new(size).with_style(style))
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl crate::clip::weights::download::Progress for DownloadBar {
    fn start(&mut self, total: Option<u64>, already: u64) {
        if let Some(total) = total {
            self.0.set_length(total);
        }
        self.0.set_position(already);
        if already > 0 {
            self.0.println(format!("resuming from byte {already}"));
        }
        self.0.set_message("downloading");
    }

    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn retry(&mut self, attempt: u32, reason: &str) {
        self.0.println(format!("attempt {attempt} broke off ({reason}); resuming"));
    }

    fn verifying(&mut self) {
        self.0.set_message("verifying SHA-256");
    }
}
