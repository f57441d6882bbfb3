//! A worker and a coordinator in one process, over real gRPC on 127.0.0.1 (the libraries, not the
//! binary), on controlled time: heartbeats keep a lease through many lease timeouts of paused
//! time, a revocation stops the trial's process, and a worker whose coordinator goes away
//! reconnects with backoff and finishes the sweep, every trial counted once.

use kappa_coordinator::{Coordinator, CoordinatorConfig, ServeOptions, Server};
use kappa_core::TaskSpec;
use kappa_proto::pb;
use kappa_tests::noop_sweep;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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
    let c = Arc::new(Coordinator::new(Some(root.to_path_buf()), config(), kappa_worker::code_version));
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
            trial_root: workdir.join("trials"),
            per_sweep: true,
        }),
        trials: None,
        gpus: Vec::new(),
        backend: None,
        code_versions: kappa_worker::code_versions(),
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
    server.coordinator().submit(&kappa_coordinator::Holder::anyone(), sweep, "long.toml", false).unwrap();
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
    server.coordinator().cancel(&kappa_coordinator::Holder::anyone(), "long").unwrap();
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
    server
        .coordinator()
        .submit(&kappa_coordinator::Holder::anyone(), &noop_sweep("again", 40, "20ms"), "again.toml", false)
        .unwrap();
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

/// A coordinator that logs the order of the calls it gets, holds every report a while before it
/// takes it in, and hands out one noop trial.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl Recorder {
    fn log(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }
}

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for Recorder {
    async fn register(
        &self,
        _: tonic::Request<pb::RegisterRequest>,
    ) -> Result<tonic::Response<pb::RegisterResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::RegisterResponse {
            worker_id: 1,
            heartbeat_interval_ms: 1000,
            lease_timeout_ms: 3000,
        }))
    }
    async fn lease(
        &self,
        _: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, tonic::Status> {
        let first = self.calls.lock().unwrap().iter().all(|c| *c != "lease");
        self.log("lease");
        let leases = if first {
            let task = serde_json::to_string(&TaskSpec::Noop { sleep_ms: 0 }).unwrap();
            let params = kappa_core::Hyperparams {
                optimizer: kappa_core::OptimizerKind::Sgd,
                batch_size: 1,
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                seed: 0,
            };
            vec![pb::TrialLease {
                trial_id: "00000000000000aa".into(),
                attempt: 1,
                task_json: task,
                params: Some((&kappa_core::Params::from(params)).into()),
                timeout_ms: 0,
                gpus: 0,
                sweep: "recorded".into(),
                rung: 0,
                stop_samples: 0,
                last_rung: false,
            }]
        } else {
            Vec::new()
        };
        Ok(tonic::Response::new(pb::LeaseResponse { sweep_finished: !first, leases }))
    }
    async fn heartbeat(
        &self,
        _: tonic::Request<pb::HeartbeatRequest>,
    ) -> Result<tonic::Response<pb::HeartbeatResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::HeartbeatResponse { revoked: Vec::new() }))
    }
    async fn report(
        &self,
        _: tonic::Request<pb::ReportRequest>,
    ) -> Result<tonic::Response<pb::ReportResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("report"))
    }
    async fn report_batch(
        &self,
        r: tonic::Request<pb::ReportBatchRequest>,
    ) -> Result<tonic::Response<pb::ReportBatchResponse>, tonic::Status> {
        // A busy coordinator: the report is taken in only after a while (real time: on paused
        // time the clock would jump ahead of the lease call still on its way).
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.log("report");
        Ok(tonic::Response::new(pb::ReportBatchResponse { dispositions: vec![0; r.into_inner().reports.len()] }))
    }
    async fn deregister(
        &self,
        _: tonic::Request<pb::DeregisterRequest>,
    ) -> Result<tonic::Response<pb::DeregisterResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::DeregisterResponse {}))
    }
    async fn submit(
        &self,
        _: tonic::Request<pb::SubmitRequest>,
    ) -> Result<tonic::Response<pb::SubmitResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("submit"))
    }
    async fn cancel(
        &self,
        _: tonic::Request<pb::CancelRequest>,
    ) -> Result<tonic::Response<pb::CancelResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("cancel"))
    }
    async fn retry_failed(
        &self,
        _: tonic::Request<pb::RetryFailedRequest>,
    ) -> Result<tonic::Response<pb::RetryFailedResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("retry"))
    }
    async fn status(
        &self,
        _: tonic::Request<pb::StatusRequest>,
    ) -> Result<tonic::Response<pb::StatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("status"))
    }
    type WatchStream = Stream<pb::Progress>;
    async fn watch(
        &self,
        _: tonic::Request<pb::WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
    type ResultsStream = Stream<pb::ResultsChunk>;
    async fn results(
        &self,
        _: tonic::Request<pb::ResultsRequest>,
    ) -> Result<tonic::Response<Self::ResultsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("results"))
    }
}

/// A slot freed by a finished trial asks for more work only after that trial's report is in: the
/// coordinator must count an outcome (a used-up failure budget) before it hands out the next
/// trial. (A worker that leased ahead of its reports ran a fourth trial after a budget of three
/// failures was used up.)
#[tokio::test]
async fn a_freed_slot_leases_again_only_after_its_report_is_in() {
    let recorder = Arc::new(Recorder::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = pb::coordinator_server::CoordinatorServer::from_arc(recorder.clone());
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = worker(addr, dir.path(), 1);
    cfg.exit_when_finished = true;
    let (_stop, stopped) = watch::channel(false);
    let stats = kappa_worker::run(cfg, stopped).await.unwrap();
    assert_eq!(stats.reported, 1);
    assert_eq!(*recorder.calls.lock().unwrap(), ["lease", "report", "lease"]);
    serving.abort();
}
