//! Progress bars on a terminal (indicatif), nothing otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vmc_cache::{ListReport, Progress};

/// Draws one bar per download and one for verification on stderr, when it is a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verify: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars if stderr is a terminal and output is not quietened, else hidden ones.
    pub fn new(enabled: bool) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            verify: Mutex::new(None),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:.bold} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

impl Progress for Bars {
    fn download_started(&self, id: &str, total: u64, resumed_from: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(Self::style());
        bar.set_prefix(id.chars().take(36).collect::<String>());
        bar.set_position(resumed_from);
        if let Ok(mut bars) = self.bars.lock()
            && let Some(old) = bars.insert(id.to_owned(), bar)
        {
            old.finish_and_clear();
        }
    }

    fn download_progress(&self, id: &str, done: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(id)
        {
            bar.set_position(done);
        }
    }

    fn download_finished(&self, id: &str, _ok: bool) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some(bar) = bars.remove(id)
        {
            bar.finish_and_clear();
        }
    }

    fn verify_started(&self, _files: usize, bytes: u64) {
        let bar = self.multi.add(ProgressBar::new(bytes));
        bar.set_style(Self::style());
        bar.set_prefix("verify");
        if let Ok(mut v) = self.verify.lock() {
            *v = Some(bar);
        }
    }

    fn verify_file_done(&self, _id: &str, bytes: u64) {
        if let Ok(v) = self.verify.lock()
            && let Some(bar) = v.as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn list_done(&self, _report: &ListReport) {}
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Ok(v) = self.verify.lock()
            && let Some(bar) = v.as_ref()
        {
            bar.finish_and_clear();
        }
    }
}
