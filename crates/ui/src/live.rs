//! Live progress: one sampler task reads every sweep's progress once a second, keeps a short
//! history of finished counts (for the rate and the ETA) and publishes the overview when it
//! changed; every event stream follows that one publication, however many browsers watch.

use kappa_coordinator::Coordinator;
use kappa_core::Progress;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the sampler looks (and the most often an event goes out).
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// The window the rate is measured over.
const WINDOW: Duration = Duration::from_secs(30);

/// The sampler's state.
pub(crate) struct Live {
    /// Per sweep, (when, trials done) over the last [`WINDOW`].
    history: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
    /// The latest overview, as JSON text.
    overview: watch::Sender<Arc<str>>,
}

impl Live {
    pub(crate) fn new() -> Live {
        Live { history: Mutex::new(HashMap::new()), overview: watch::channel(Arc::from("")).0 }
    }

    /// Follows the published overview (the event streams).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<str>> {
        self.overview.subscribe()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<(Instant, u64)>>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records every sweep's finished count now.
    fn record(&self, progress: &[Progress], now: Instant) {
        let mut history = self.history();
        history.retain(|name, _| progress.iter().any(|p| &p.sweep == name));
        for p in progress {
            let h = history.entry(p.sweep.clone()).or_default();
            h.push_back((now, p.counts.done()));
            while h.len() > 2 && h.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
                h.pop_front();
            }
        }
    }

    /// Trials finished per second over the window, and the seconds left at that rate.
    fn rate(&self, p: &Progress) -> (Option<f64>, Option<f64>) {
        if p.finished {
            return (None, Some(0.0));
        }
        let history = self.history();
        let Some(h) = history.get(&p.sweep) else { return (None, None) };
        let (Some((t0, d0)), Some((t1, d1))) = (h.front(), h.back()) else { return (None, None) };
        let dt = t1.duration_since(*t0).as_secs_f64();
        if dt < 1.0 {
            return (None, None);
        }
        let rate = d1.saturating_sub(*d0) as f64 / dt;
        let left = p.counts.total.saturating_sub(p.counts.done()) as f64;
        (Some(rate), (rate > 0.0).then(|| left / rate))
    }
}

/// One sweep's progress as the API gives it.
pub(crate) fn sweep_json(live: &Live, p: &Progress) -> Value {
    let c = &p.counts;
    let (rate, eta) = live.rate(p);
    json!({
        "name": p.sweep,
        "counts": {
            "total": c.total, "pending": c.pending, "running": c.running, "succeeded": c.succeeded,
            "failed": c.failed, "diverged": c.diverged, "done": c.done(),
            "did_not_train": c.did_not_train, "unstable": c.unstable, "stopped": c.stopped,
        },
        "reused": p.reused,
        "finished": p.finished,
        "cancelled": p.cancelled,
        // Who submitted it (null: nobody recorded, without a tokens file).
        "owner": p.owner,
        // A search's sweep: the most trials it can run (`counts.total` is the ones proposed so far).
        "at_most": p.at_most,
        // Successive halving: each rung's budget and the trials that finished it.
        "rungs": p.rungs.iter().map(|r| json!({ "samples": r.samples, "reached": r.reached })).collect::<Vec<_>>(),
        "rate": rate,
        "eta_s": eta,
    })
}

/// Every sweep and worker, as `/api/sweeps` and the event stream give them.
pub(crate) fn overview(coordinator: &Coordinator, live: &Live) -> Value {
    let sweeps: Vec<Value> = coordinator.progress().iter().map(|p| sweep_json(live, p)).collect();
    let workers: Vec<Value> = coordinator
        .workers()
        .into_iter()
        .map(|w| {
            json!({
                "name": w.name, "slots": w.slots, "gpus": w.gpus, "code_versions": w.code_versions,
                "silent_s": w.silent_s, "lost": w.lost,
            })
        })
        .collect();
    json!({ "now": kappa_store::now_s(), "sweeps": sweeps, "workers": workers })
}

/// What makes an overview worth sending again: the sweeps, and which workers there are and
/// whether they are lost (not how long ago each was heard from, which changes every tick).
fn change_key(overview: &Value) -> String {
    let workers: Vec<(&Value, &Value)> = overview["workers"]
        .as_array()
        .map(|ws| ws.iter().map(|w| (&w["name"], &w["lost"])).collect())
        .unwrap_or_default();
    format!("{}{:?}", overview["sweeps"], workers)
}

/// The sampler: once a tick, records progress and publishes the overview if it changed.
pub(crate) async fn sample(coordinator: Arc<Coordinator>, live: Arc<Live>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::new();
    loop {
        tick.tick().await;
        live.record(&coordinator.progress(), Instant::now());
        let ov = overview(&coordinator, &live);
        let key = change_key(&ov);
        if key != last {
            last = key;
            live.overview.send_replace(Arc::from(ov.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::Counts;

    fn progress(done: u64, total: u64) -> Progress {
        Progress {
            owner: None,
            rungs: Vec::new(),
            sweep: "s".into(),
            counts: Counts { total, pending: total - done, succeeded: done, ..Counts::default() },
            reused: 0,
            workers: 1,
            finished: done == total,
            cancelled: false,
            at_most: None,
        }
    }

    #[test]
    fn the_rate_is_trials_done_over_the_window_and_the_eta_what_is_left_at_it() {
        let live = Live::new();
        let t0 = Instant::now();
        assert_eq!(live.rate(&progress(0, 100)), (None, None), "no history yet");
        live.record(&[progress(0, 100)], t0);
        live.record(&[progress(10, 100)], t0 + Duration::from_millis(500));
        assert_eq!(live.rate(&progress(10, 100)), (None, None), "under a second is no rate");
        live.record(&[progress(20, 100)], t0 + Duration::from_secs(2));
        let (rate, eta) = live.rate(&progress(20, 100));
        assert_eq!(rate, Some(10.0));
        assert_eq!(eta, Some(8.0));
        // Old samples leave the window.
        live.record(&[progress(20, 100)], t0 + Duration::from_secs(60));
        let (rate, eta) = live.rate(&progress(20, 100));
        assert_eq!(rate, Some(0.0), "stalled: nothing finished in the window");
        assert_eq!(eta, None);
        assert_eq!(live.rate(&progress(100, 100)), (None, Some(0.0)), "finished");
    }

    #[test]
    fn a_sweep_gives_its_counts_with_those_that_did_not_train() {
        let mut p = progress(10, 12);
        (p.counts.did_not_train, p.counts.unstable) = (3, 1);
        let v = sweep_json(&Live::new(), &p);
        assert_eq!(v["counts"]["succeeded"], 10);
        assert_eq!(
            (v["counts"]["did_not_train"].as_u64(), v["counts"]["unstable"].as_u64()),
            (Some(3), Some(1)),
            "{v}"
        );
    }
}
