//! Progress bars while the bench runs (indicatif): one bar for the whole run
//! and one for the current step (a load counts rows, a timed run counts
//! seconds). When stderr is not a terminal indicatif draws nothing, and
//! `println` still prints, so logs of CI runs keep the step messages.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// How often bars redraw by themselves.
const TICK: Duration = Duration::from_millis(200);

/// The bars of one run.
pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
}

impl Progress {
    /// A run of `steps` workloads.
    pub fn new(steps: u64) -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(steps));
        overall.set_style(style("{prefix:.bold} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}"));
        overall.set_prefix("bench");
        overall.enable_steady_tick(TICK);
        Progress { multi, overall }
    }

    /// Announces the workload now running.
    pub fn start_workload(&self, name: &str) {
        self.overall.set_message(name.to_string());
        self.println(&format!("== {name}"));
    }

    /// Counts one workload as done.
    pub fn finish_workload(&self) {
        self.overall.inc(1);
    }

    /// A bar counting `total` items (rows loaded, queries run).
    pub fn counter(&self, label: &str, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(style("  {msg:40} {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})"));
        bar.set_message(label.to_string());
        bar.enable_steady_tick(TICK);
        bar
    }

    /// A bar that fills over `duration` of a timed run; it advances by itself
    /// and is cleared when the returned guard drops.
    pub fn timed(&self, label: &str, duration: Duration) -> TimedBar {
        let bar = self.multi.add(ProgressBar::new(duration.as_millis().max(1) as u64));
        bar.set_style(style("  {msg:40} {wide_bar} {elapsed}/{duration}"));
        bar.set_message(label.to_string());
        let ticker = bar.clone();
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            loop {
                ticker.set_position(started.elapsed().as_millis() as u64);
                tokio::time::sleep(TICK).await;
            }
        });
        TimedBar { bar, task }
    }

    /// Prints a line above the bars.
    pub fn println(&self, line: &str) {
        if self.multi.println(line).is_err() || self.overall.is_hidden() {
            eprintln!("{line}");
        }
    }

    /// Removes every bar from the terminal.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// A timed bar; dropping it stops its ticker and clears it.
pub struct TimedBar {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TimedBar {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// Clears a counter bar when done with it.
pub fn done(bar: &ProgressBar) {
    bar.finish_and_clear();
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}
