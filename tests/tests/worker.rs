//! A worker and a coordinator in one process, over real gRPC on 127.0.0.1 (the libraries, not the
//! binary), on controlled time: heartbeats keep a lease through many lease timeouts of paused
//! time, a revocation stops the trial's process, and a worker whose coordinator goes away
//! reconnects with backoff and finishes the sweep, every trial counted once.

use kappa_coordinator::{Coordinator, CoordinatorConfig, ServeOptions, Server};
use kappa_core::TaskSpec;
use kappa_tests::noop_sweep;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn version(_: &TaskSpec) -> &'static str {
    "test"
}

/// Leases of 3 s renewed every second.
fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        heartbeat_interval: Duration::from_secs(1),
        lease_timeout: Duration::from_secs(3),
        ..CoordinatorConfig::default()
    }
}

/// A coordinator over `root` (reloading what is there) served on `addr`.
async fn serve(root: &Path, addr: &str) -> Server {
    let c = Arc::new(Coordinator::new(Some(root.to_path_buf()), config(), version));
    c.load_all().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    Server::start(listener, c, ServeOptions::default()).await.unwrap()
}

fn worker(addr: SocketAddr, workdir: &Path, slots: usize) -> kappa_worker::WorkerConfig {
    kappa_worker::WorkerConfig {
        coordinator: format!("http://{addr}"),
        name: "w".into(),
        slots,
        lease_wait: Duration::from_secs(1),
        exit_when_finished: false,
        token: None,
        tls_ca: None,
        commands: Some(kappa_worker::CommandEnv {
            workdir: workdir.to_path_buf(),
            logs: workdir.join("logs"),
            host: "localhost".into(),
        }),
        gpus: Vec::new(),
        backend: None,
        drain: Duration::ZERO,
    }
}

/// Waits (on the sweep's progress, not on a clock) until `done` holds for sweep `name`.
async fn until(server: &Server, name: &str, done: impl Fn(&kappa_core::Counts) -> bool) {
    let mut rx = server.coordinator().sweep(name).unwrap().subscribe();
    rx.wait_for(|p| done(&p.counts)).await.unwrap();
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn heartbeats_keep_a_lease_through_paused_time_and_a_revocation_stops_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "127.0.0.1:0").await;
    let sweep = "version = 1\nname = \"long\"\n[task]\nkind = \"command\"\n\
                 argv = [\"sh\", \"-c\", \"echo $$ > pid; exec sleep 300\"]\n[grid]\noptimizer = [\"sgd\"]\nlr = [0.01]\n";
    server.coordinator().submit(sweep, "long.toml").unwrap();
    let (stop, stopped) = watch::channel(false);
    let w = tokio::spawn(kappa_worker::run(worker(server.addr(), dir.path(), 1), stopped));
    until(&server, "long", |c| c.running == 1).await;
    let pid_file = dir.path().join("pid");
    let started = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the trial's process did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Two minutes of paused time, forty lease timeouts: the heartbeats renew it throughout.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let p = server.coordinator().sweep("long").unwrap().progress();
    assert_eq!((p.counts.running, p.counts.pending), (1, 0), "the lease expired although it was renewed");
    assert!(alive(pid));
    // Cancelling the sweep revokes the lease at the next heartbeat: the worker kills the process.
    server.coordinator().cancel("long").unwrap();
    let started = Instant::now();
    while alive(pid) {
        assert!(started.elapsed() < Duration::from_secs(30), "the revoked trial's process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    let stats = w.await.unwrap().unwrap();
    assert_eq!((stats.reported, stats.abandoned), (0, 1));
    server.stop(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_worker_reconnects_with_backoff_and_every_trial_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let server = serve(&root, "127.0.0.1:0").await;
    let addr = server.addr();
    server.coordinator().submit(&noop_sweep("again", 40, "20ms"), "again.toml").unwrap();
    let (stop, stopped) = watch::channel(false);
    let w = tokio::spawn(kappa_worker::run(worker(addr, dir.path(), 2), stopped));
    until(&server, "again", |c| c.succeeded >= 5).await;
    // The coordinator goes away; the worker retries with backoff on paused time, and a new
    // coordinator on the same address (reloading the same state) gets it back.
    server.stop(Duration::from_secs(1)).await.unwrap();
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(30)).await;
    tokio::time::resume();
    let server = serve(&root, &addr.to_string()).await;
    until(&server, "again", |c| c.succeeded == 40).await;
    let _ = stop.send(true);
    let stats = w.await.unwrap().unwrap();
    assert!(stats.reported >= 40, "{stats:?}");
    server.stop(Duration::from_secs(1)).await.unwrap();
    let db = rusqlite::Connection::open(root.join("again").join("kappa.db")).unwrap();
    let rows = kappa_tests::ledger(&db);
    assert_eq!(rows.len(), 40);
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{rows:?}");
}
