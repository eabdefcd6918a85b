//! The live progress line on stderr (indicatif): connected, refused by CONNACK code, msgs/s, p99.
//! Hidden when stderr is not a terminal or with `--quiet`.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::Progress;

/// The progress line and what it needs to compute a rate.
#[derive(Debug)]
pub(crate) struct Live {
    bar: ProgressBar,
    /// (when, replied then, rate computed then): the rate is recomputed at most every 500 ms, as
    /// snapshots arrive from several workers in quick succession.
    last: Mutex<Option<(Instant, u64, f64)>>,
}

impl Live {
    pub(crate) fn new(quiet: bool, devices: u64) -> Self {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(4)
        };
        let bar = ProgressBar::with_draw_target(Some(devices), target);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Self {
            bar,
            last: Mutex::new(None),
        }
    }

    /// Shows a snapshot (summed over the processes).
    pub(crate) fn show(&self, p: &Progress) {
        let now = Instant::now();
        let rate = {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match *last {
                Some((t, _, rate)) if now.duration_since(t).as_millis() < 500 => rate,
                Some((t, n, _)) => {
                    let rate = p.replied.saturating_sub(n) as f64 / now.duration_since(t).as_secs_f64();
                    *last = Some((now, p.replied, rate));
                    rate
                }
                None => {
                    *last = Some((now, p.replied, 0.0));
                    0.0
                }
            }
        };
        let refused: Vec<String> = p.refused.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        self.bar.set_position(p.connected);
        self.bar.set_message(format!(
            "{} | refused {{{}}} errors {} dropped {} | sent {} replied {} | {:.0} msg/s p99 {:.1} ms",
            p.phase,
            refused.join(","),
            p.connect_errors,
            p.dropped,
            p.sent,
            p.replied,
            rate,
            p.reply_p99_ms
        ));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
