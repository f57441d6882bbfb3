//! Live progress of a sweep, read from the coordinator's Watch stream (the CLI is just another
//! client). A bar on a terminal; plain periodic lines otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kappa_core::Progress;
use kappa_proto::pb::WatchRequest;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a plain log line is printed when stdout is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(2);

/// Follows the progress of `sweep` (empty: the latest) until it finishes, the stream ends, or
/// `stop` turns true.
pub async fn follow(
    url: String,
    token: Option<String>,
    ca: Option<Vec<u8>>,
    sweep: String,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut client) = kappa_proto::connect_with(&url, token.as_deref(), ca.as_deref()).await else {
        return;
    };
    let Ok(stream) = client.watch(WatchRequest { sweep }).await else {
        return;
    };
    let mut stream = stream.into_inner();
    let mut view = View::new();
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(p)) => {
                    let p = Progress::from(p);
                    view.update(&p);
                    if p.finished {
                        break;
                    }
                }
                _ => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    view.finish();
}

struct View {
    bar: Option<ProgressBar>,
    started: Instant,
    done_at_start: Option<u64>,
    last_log: Option<Instant>,
    last: Option<Progress>,
}

impl View {
    fn new() -> View {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        View { bar, started: Instant::now(), done_at_start: None, last_log: None, last: None }
    }

    fn line(&mut self, p: &Progress) -> String {
        let c = &p.counts;
        let done = c.done();
        let base = *self.done_at_start.get_or_insert(done);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (done - base) as f64 / elapsed;
        let eta = if rate > 0.0 && c.total > done {
            format!("ETA {}", fmt_secs((c.total - done) as f64 / rate))
        } else {
            "ETA -".into()
        };
        let mut s = match p.at_most {
            Some(m) => format!("done (a search: at most {m}) · {} running · {} failed", c.running, c.failed),
            None => format!("done · {} running · {} failed", c.running, c.failed),
        };
        if c.diverged > 0 {
            s.push_str(&format!(" · {} diverged", c.diverged));
        }
        if c.did_not_train + c.unstable > 0 {
            s.push_str(&format!(" · {} did not train · {} unstable", c.did_not_train, c.unstable));
        }
        if !p.rungs.is_empty() {
            s.push_str(&format!(" · {} stopped · rungs {}", c.stopped, rungs_text(&p.rungs)));
        }
        s.push_str(&format!(" · {rate:.1} trials/s · {eta}"));
        s
    }

    fn update(&mut self, p: &Progress) {
        let msg = self.line(p);
        let (done, total) = (p.counts.done(), p.counts.total);
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(msg);
            }
            None => {
                let due = self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY);
                if due || p.finished {
                    eprintln!("[{:>6.1}s] {done}/{total} {msg}", self.started.elapsed().as_secs_f64());
                    self.last_log = Some(Instant::now());
                }
            }
        }
        self.last = Some(p.clone());
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        } else if let Some(p) = self.last.clone()
            && !p.finished
        {
            let msg = self.line(&p);
            let (done, total) = (p.counts.done(), p.counts.total);
            eprintln!("[{:>6.1}s] {done}/{total} {msg}", self.started.elapsed().as_secs_f64());
        }
    }
}

/// `75s` → `1m15s`.
pub fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Successive halving's rungs as progress shows them: how many trials finished each, by its
/// budget (`10k:36 30k:12 90k:4`).
pub(crate) fn rungs_text(rungs: &[kappa_core::RungCount]) -> String {
    rungs.iter().map(|r| format!("{}:{}", short_samples(r.samples), r.reached)).collect::<Vec<_>>().join(" ")
}

/// A budget in samples, short: 900, 20k, 1.5M.
pub(crate) fn short_samples(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", kappa_core::format_real(n as f64 / 1e6)),
        n if n >= 1_000 => format!("{}k", kappa_core::format_real(n as f64 / 1e3)),
        n => n.to_string(),
    }
}
