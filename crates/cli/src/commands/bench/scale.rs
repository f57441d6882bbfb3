//! `kappa bench scale`: one `kappa coordinator` and many simulated workers (lightweight clients
//! in this process, each with its own gRPC connection on loopback) that register, heartbeat,
//! lease and report noop trials, a share of them killed abruptly once a third of the trials are
//! done. Prints the throughput held, lease and report latency, coordinator CPU and memory per
//! worker, lease expiries, and checks from the store that every trial was counted exactly once.

use super::dispatch::{Child, noop_sweep, rss_kib};
use crate::args::duration;
use anyhow::{Context, anyhow};
use kappa_proto::{CallFailure, Client, pb};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Arguments of `kappa bench scale`.
#[derive(clap::Args, Debug)]
pub struct ScaleBench {
    /// Simulated workers, each with its own connection.
    #[arg(long, default_value_t = 1000)]
    workers: u32,
    /// Noop trials to dispatch.
    #[arg(long, default_value_t = 200_000)]
    trials: u64,
    /// Slots per simulated worker (trials asked for per Lease call; a GPU node's 8 by default).
    #[arg(long, default_value_t = 8)]
    slots: u32,
    /// Share of the workers killed abruptly once a third of the trials are done.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    kill_fraction: f64,
    /// The coordinator's heartbeat interval (shorter than the default 5 s, so the killed
    /// workers' leases expire within the run).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    heartbeat: Duration,
    /// Missed heartbeats after which the coordinator expires a lease.
    #[arg(long, value_name = "N", default_value_t = 2)]
    missed_heartbeats: u32,
}

/// The targets of the scale issue (printed, not failed on: the machine is shared and noisy).
const TARGET_TRIALS_PER_S: f64 = 10_000.0;
const TARGET_P99_LEASE_S: f64 = 0.050;
const SWEEP: &str = "scale";
/// A run that accepts no report (or does not commit) for this long is stuck.
const STALL: Duration = Duration::from_secs(60);

/// Counters every simulated worker updates; times are nanoseconds since `origin`.
struct Shared {
    origin: Instant,
    /// Reports the coordinator accepted as the current attempt.
    accepted: AtomicU64,
    first_lease: AtomicU64,
    last_report: AtomicU64,
    /// Every worker's calls, added once per lease and its reports.
    calls: Mutex<Calls>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// What the simulated workers' calls took (seconds) and how they ended.
#[derive(Default)]
struct Calls {
    /// Lease calls that returned trials.
    lease: Vec<f64>,
    report: Vec<f64>,
    /// Lease calls that waited for work and got none.
    idle: u64,
    /// Reports the coordinator did not count (not the current attempt).
    late: u64,
    errors: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn bench_scale(b: ScaleBench) -> anyhow::Result<u8> {
    let kill = (f64::from(b.workers) * b.kill_fraction).round() as u32;
    if b.workers == 0 || b.trials == 0 || b.slots == 0 || b.missed_heartbeats == 0 {
        return Err(crate::exit::invalid("--workers, --trials, --slots and --missed-heartbeats must be at least 1"));
    }
    if !(0.0..1.0).contains(&b.kill_fraction) || kill >= b.workers {
        return Err(crate::exit::invalid("--kill-fraction must be in [0, 1) and leave at least one worker"));
    }
    // Every simulated worker holds a connection here and one in the coordinator (which inherits
    // the limit), beside the store's files and the runtime's own.
    raise_nofile(libc::rlim_t::from(b.workers) + 256)?;
    let dir = std::env::temp_dir().join(format!("kappa-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&b, kill, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(b: &ScaleBench, kill: u32, dir: &Path) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let state = dir.join("state");
    let (coord, addr) = start_coordinator(&state, b.heartbeat, b.missed_heartbeats)?;
    println!(
        "scale: {} noop trials, 1 coordinator + {} simulated workers ({} slots, one gRPC connection each, on \
         loopback); {kill} killed abruptly at a third of the trials; leases expire after {} missed heartbeats of {:?}",
        b.trials, b.workers, b.slots, b.missed_heartbeats, b.heartbeat
    );
    runtime.block_on(drive(b, &format!("http://{addr}"), coord.0.id(), kill, &state.join(SWEEP)))?;
    let once = exactly_once(&state.join(SWEEP), b.trials, kill, b.slots)?;
    drop(coord);
    Ok(if once { crate::exit::OK } else { crate::exit::CHECK_FAILED })
}

/// Submits the sweep, runs the simulated workers until every result is committed (killing
/// `kill` of them at a third of the trials), and prints what it measured.
async fn drive(b: &ScaleBench, url: &str, pid: u32, kill: u32, store: &Path) -> anyhow::Result<()> {
    let mut client = kappa_proto::connect(url, None).await?;
    let started = Instant::now();
    let spec = noop_sweep(SWEEP, b.trials);
    client.submit(pb::SubmitRequest { spec, file_name: "noop.toml".into(), ..Default::default() }).await?;
    let planned_s = started.elapsed().as_secs_f64();
    let rss_before = rss_kib(pid).unwrap_or(0);

    let connecting = Instant::now();
    let registering: Vec<_> = (0..b.workers).map(|i| tokio::spawn(register(url.to_string(), i, b.slots))).collect();
    let mut registered = Vec::with_capacity(registering.len());
    for r in registering {
        registered.push(r.await.context("a simulated worker crashed while registering")??);
    }
    let connected_s = connecting.elapsed().as_secs_f64();

    let cpu_start = cpu_seconds(pid).unwrap_or(0.0);
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        accepted: AtomicU64::new(0),
        first_lease: AtomicU64::new(u64::MAX),
        last_report: AtomicU64::new(0),
        calls: Mutex::default(),
    });
    // Each simulated worker is a lease loop and a heartbeat task sharing a connection: aborting
    // both drops the connection without a word.
    let mut sims: Vec<(JoinHandle<()>, JoinHandle<()>)> = registered
        .into_iter()
        .map(|(client, worker_id, every)| {
            let held = Arc::new(Mutex::new(Vec::new()));
            let beat = tokio::spawn(heartbeat_loop(client.clone(), worker_id, every, held.clone()));
            let lease = tokio::spawn(lease_loop(client, worker_id, b.slots, held, shared.clone()));
            (lease, beat)
        })
        .collect();

    // Until the survivors are told the sweep is finished: sample the coordinator's memory, and
    // kill the victims at a third of the trials.
    let mut rss_peak = rss_before;
    let mut killed: Option<(u64, u64)> = None;
    let (mut last_seen, mut last_change) = (0, Instant::now());
    while !sims.iter().all(|(lease, _)| lease.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_peak = rss_peak.max(rss_kib(pid).ok_or_else(|| anyhow!("the coordinator exited mid-sweep"))?);
        let accepted = shared.accepted.load(Ordering::Relaxed);
        if killed.is_none() && accepted >= b.trials / 3 {
            // Abruptly: no deregistration, no report of the leases they hold.
            for (lease, beat) in sims.drain(sims.len() - kill as usize..) {
                lease.abort();
                beat.abort();
            }
            killed = Some((shared.now_ns(), accepted));
        }
        if accepted != last_seen {
            (last_seen, last_change) = (accepted, Instant::now());
        } else if last_change.elapsed() > STALL {
            return Err(anyhow!("no report was accepted for {STALL:?} ({accepted} of {} trials)", b.trials));
        }
    }
    sims.iter().for_each(|(_, beat)| beat.abort());
    let status = client.status(pb::StatusRequest { sweep: SWEEP.into() }).await?.into_inner();
    if !status.progress.is_some_and(|p| p.finished) {
        return Err(anyhow!("the simulated workers stopped but the sweep is not finished"));
    }
    // Durable means committed: wait until the store itself holds every result.
    let deadline = Instant::now() + STALL;
    while kappa_store::Store::open(store).and_then(|s| s.counts()).map_or(0, |c| c.done()) < b.trials {
        if Instant::now() > deadline {
            return Err(anyhow!("the store did not commit every result within {STALL:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end_to_end_s = started.elapsed().as_secs_f64();
    let (cpu_s, cpu_wall_s) = (cpu_seconds(pid).unwrap_or(0.0) - cpu_start, shared.origin.elapsed().as_secs_f64());
    rss_peak = rss_peak.max(rss_kib(pid).unwrap_or(0));

    let (first, last) = (shared.first_lease.load(Ordering::Relaxed), shared.last_report.load(Ordering::Relaxed));
    if first >= last {
        return Err(anyhow!("no trial was leased and reported"));
    }
    let held = b.trials as f64 / ((last - first) as f64 / 1e9);
    let after_kills = killed.map_or(f64::NAN, |(at, done)| {
        b.trials.saturating_sub(done) as f64 / (last.saturating_sub(at).max(1) as f64 / 1e9)
    });
    let calls = std::mem::take(&mut *lock(&shared.calls));
    let ((lease, lease_p99), (report, _)) = (latency(calls.lease), latency(calls.report));

    println!(
        "throughput: {held:.0} trials/s held with {} workers, first lease to last report (target ≥ 10,000): {}",
        b.workers,
        verdict(held >= TARGET_TRIALS_PER_S)
    );
    println!(
        "  end to end {:.0} trials/s, submit to every result committed in {end_to_end_s:.2} s (planning \
         {planned_s:.2} s, connecting {connected_s:.2} s); {after_kills:.0} trials/s after the kills",
        b.trials as f64 / end_to_end_s
    );
    println!(
        "lease latency: {lease} that returned trials, {} more waited for none (target p99 ≤ {:.0} ms): {}",
        calls.idle,
        TARGET_P99_LEASE_S * 1e3,
        verdict(lease_p99 <= TARGET_P99_LEASE_S)
    );
    println!("report latency: {report}");
    println!(
        "coordinator CPU: {cpu_s:.2} s over {cpu_wall_s:.2} s of leasing ({:.0}% of one core, {:.1} µs per trial)",
        100.0 * cpu_s / cpu_wall_s,
        1e6 * cpu_s / b.trials as f64
    );
    println!(
        "coordinator memory: RSS {rss_before} KiB before the workers connected, peak {rss_peak} KiB: {:.1} KiB per \
         worker",
        rss_peak.saturating_sub(rss_before) as f64 / f64::from(b.workers)
    );
    if calls.errors > 0 || calls.late > 0 {
        println!("client side: {} calls failed, {} reports not counted (late)", calls.errors, calls.late);
    }
    Ok(())
}

/// Connects and registers one simulated worker; returns its client, id and heartbeat interval.
async fn register(url: String, i: u32, slots: u32) -> anyhow::Result<(Client, u64, Duration)> {
    let mut client = kappa_proto::connect(&url, None).await?;
    let reg = pb::RegisterRequest {
        protocol_version: kappa_proto::PROTOCOL_VERSION,
        name: format!("sim-{i}"),
        slots,
        gpus: 0,
        // Noop trials need no code version.
        code_versions: Vec::new(),
    };
    let r = client.register(reg).await?.into_inner();
    Ok((client, r.worker_id, Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(1)))))
}

/// Leases up to `slots` trials at a time and reports each as succeeded, until the sweep is
/// finished, timing every call.
async fn lease_loop(
    mut client: Client,
    worker_id: u64,
    slots: u32,
    held: Arc<Mutex<Vec<pb::LeaseRef>>>,
    shared: Arc<Shared>,
) {
    let request = pb::LeaseRequest { worker_id, max_trials: slots, wait_ms: 1000, free_gpus: 0 };
    loop {
        let t = Instant::now();
        let got = match client.lease(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                lock(&shared.calls).errors += 1;
                if CallFailure::of(&s) != CallFailure::Retry {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let lease_s = t.elapsed().as_secs_f64();
        if got.leases.is_empty() {
            lock(&shared.calls).idle += 1;
            if got.sweep_finished {
                return;
            }
            continue;
        }
        shared.first_lease.fetch_min(shared.now_ns(), Ordering::Relaxed);
        let refs = got.leases.iter().map(|l| pb::LeaseRef { trial_id: l.trial_id.clone(), attempt: l.attempt });
        *lock(&held) = refs.collect();
        // Reported in one batch, as a worker reports what finished since its last call.
        let reports: Vec<pb::ReportRequest> = got
            .leases
            .into_iter()
            .map(|l| pb::ReportRequest {
                worker_id,
                trial_id: l.trial_id,
                attempt: l.attempt,
                outcome: Some(pb::report_request::Outcome::Succeeded(pb::TrialMetrics::default())),
                duration_s: 0.0,
            })
            .collect();
        let n = reports.len() as u64;
        let t = Instant::now();
        let (accepted, late, errors) = match client.report_batch(pb::ReportBatchRequest { reports }).await {
            Ok(r) => {
                let d = &r.get_ref().dispositions;
                let accepted = d.iter().filter(|&&d| d == pb::Disposition::Accepted as i32).count() as u64;
                (accepted, d.len() as u64 - accepted, 0)
            }
            Err(_) => (0, 0, n),
        };
        let mut report_s = vec![t.elapsed().as_secs_f64()];
        // Nothing is held any more; a trial whose report failed expires and runs again.
        lock(&held).clear();
        if accepted > 0 {
            shared.accepted.fetch_add(accepted, Ordering::Relaxed);
            shared.last_report.fetch_max(shared.now_ns(), Ordering::Relaxed);
        }
        let mut c = lock(&shared.calls);
        c.lease.push(lease_s);
        c.report.append(&mut report_s);
        c.late += late;
        c.errors += errors;
    }
}

/// Renews the leases the worker holds every `every`, until the coordinator stops knowing it.
async fn heartbeat_loop(mut client: Client, worker_id: u64, every: Duration, held: Arc<Mutex<Vec<pb::LeaseRef>>>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held = lock(&held).clone();
        let beat = pb::HeartbeatRequest { protocol_version: kappa_proto::PROTOCOL_VERSION, worker_id, held };
        if let Err(s) = client.heartbeat(beat).await
            && CallFailure::of(&s) != CallFailure::Retry
        {
            return;
        }
    }
}

/// Reads the store: prints the lease expiries and whether every one of the `trials` succeeded
/// with exactly one counted attempt, and returns that.
fn exactly_once(store: &Path, trials: u64, kill: u32, slots: u32) -> anyhow::Result<bool> {
    let store = kappa_store::Store::open(store)?;
    let succeeded = store.counts()?.succeeded;
    let attempts = store.attempts()?;
    let (mut lost, mut expired, mut late) = (0u64, 0u64, 0u64);
    let mut counted: HashMap<_, u32> = HashMap::with_capacity(attempts.len());
    for a in &attempts {
        *counted.entry(a.id).or_default() += u32::from(a.counted);
        match a.outcome.as_deref() {
            Some("lost") => {
                lost += 1;
                expired += u64::from(a.class.as_deref() == Some("lost"));
            }
            Some(o) if o.starts_with("late-") => late += 1,
            _ => {}
        }
    }
    let planned = store.trials()?;
    let (mut once, mut never, mut twice) = (0u64, 0u64, 0u64);
    for t in &planned {
        match counted.get(&t.result.id).copied().unwrap_or(0) {
            0 => never += 1,
            1 => once += 1,
            _ => twice += 1,
        }
    }
    println!(
        "lease expiries: {expired} leases expired after killing {kill} workers (they held at most {}); their trials \
         ran again",
        u64::from(kill) * u64::from(slots)
    );
    let met = succeeded == trials && planned.len() as u64 == trials && once == trials;
    println!(
        "exactly once: {} trials, {succeeded} succeeded, {once} counted once, {never} never, {twice} more than once, \
         after killing {kill} workers ({} attempts logged, {lost} lost, {late} late): {}",
        planned.len(),
        attempts.len(),
        verdict(met)
    );
    Ok(met)
}

/// Starts `kappa coordinator` on a free port with the given lease timing; returns it and its
/// address.
fn start_coordinator(state: &Path, heartbeat: Duration, missed: u32) -> anyhow::Result<(Child, String)> {
    let heartbeat = format!("{}s", heartbeat.as_secs_f64());
    let missed = missed.to_string();
    super::dispatch::start_coordinator(state, &["--heartbeat", &heartbeat, "--missed-heartbeats", &missed])
}

/// Raises the soft limit on open files to the hard one (children inherit it); fails when even
/// that is below `needed`.
fn raise_nofile(needed: libc::rlim_t) -> anyhow::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read the open-file limit");
    }
    if lim.rlim_cur < lim.rlim_max {
        // An unlimited hard limit is still capped by the kernel (nr_open, usually 2^20).
        let raised = libc::rlimit { rlim_cur: lim.rlim_max.min(1 << 20).max(lim.rlim_cur), rlim_max: lim.rlim_max };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    if lim.rlim_cur < needed {
        return Err(crate::exit::invalid(format!(
            "{needed} open files are needed and the limit is {} (hard limit {}): raise it (ulimit -Hn {needed}) or \
             pass fewer --workers",
            lim.rlim_cur, lim.rlim_max
        )));
    }
    Ok(())
}

/// CPU seconds (user + system) a process has used: fields 14 and 15 of /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start at field 3.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// The p50, p99 and max of call times `v` (seconds), in words, and the p99 (NaN when none).
fn latency(mut v: Vec<f64>) -> (String, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v.get((v.len().saturating_sub(1) as f64 * p).round() as usize).map_or(f64::NAN, |s| s * 1e3);
    let text = format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} calls", q(0.5), q(0.99), q(1.0), v.len());
    (text, q(0.99) / 1e3)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
