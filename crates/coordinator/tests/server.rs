//! The coordinator served in-process on 127.0.0.1:0 and driven over real gRPC (after mini-redis's
//! `tests/server.rs`), on controlled time: lease expiry, retry backoff and revocation are tested
//! with tokio's paused clock, never with real sleeps. Also: the token is checked before a request
//! body is read, and a submission's sweep-file error keeps its position across the wire.

use kappa_coordinator::Access;
use kappa_coordinator::{Coordinator, CoordinatorConfig, ServeOptions, Server};
use kappa_core::AttemptRef;
use kappa_core::TaskSpec;
use kappa_proto::{Client, pb};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// Noop trials: no code version (every worker may run them).
fn version(_: &TaskSpec) -> kappa_core::CodeVersion {
    kappa_core::CodeVersion::NONE
}

/// `n` noop trials (seeds 0..n).
fn noop_sweep(name: &str, n: u64, execution: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\n[task]\nkind = \"noop\"\n[grid]\noptimizer = [\"sgd\"]\nlr = [0.01]\n\
         seed = {{ linspace = [0, {}], num = {n} }}\n[execution]\n{execution}\n",
        n.saturating_sub(1)
    )
}

/// Leases of 3 s renewed every second.
fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        heartbeat_interval: Duration::from_secs(1),
        lease_timeout: Duration::from_secs(3),
        ..CoordinatorConfig::default()
    }
}

struct Served {
    server: Server,
    url: String,
    _dir: tempfile::TempDir,
}

async fn serve(access: Access) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = Arc::new(Coordinator::new(Some(dir.path().to_path_buf()), config(), version));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server =
        Server::start(listener, coordinator, ServeOptions { access: Arc::new(access), tls: None }).await.unwrap();
    let url = format!("http://{}", server.addr());
    Served { server, url, _dir: dir }
}

async fn client(url: &str, token: Option<&str>) -> Client {
    kappa_proto::connect(url, token).await.unwrap()
}

async fn register(c: &mut Client, name: &str) -> kappa_core::WorkerId {
    let r = c.register(kappa_proto::register_request(name, 1, 0, &[])).await.unwrap().into_inner();
    kappa_core::WorkerId(r.worker_id)
}

/// One lease call that does not wait for work.
async fn lease_now(c: &mut Client, w: kappa_core::WorkerId) -> Vec<kappa_core::Lease> {
    lease_within(c, w, Duration::ZERO).await
}

/// One lease call waiting up to `wait` for work.
async fn lease_within(c: &mut Client, w: kappa_core::WorkerId, wait: Duration) -> Vec<kappa_core::Lease> {
    let r = c.lease(kappa_proto::lease_request(w, 4, wait, 0)).await.unwrap().into_inner();
    r.leases.into_iter().map(|l| kappa_proto::lease_from_pb(l).unwrap()).collect()
}

async fn heartbeat(c: &mut Client, w: kappa_core::WorkerId, held: &[AttemptRef]) -> Vec<AttemptRef> {
    let r = c.heartbeat(kappa_proto::heartbeat_request(w, held)).await.unwrap().into_inner();
    kappa_proto::lease_refs_from_pb(&r.revoked).unwrap()
}

async fn report(
    c: &mut Client,
    w: kappa_core::WorkerId,
    l: &kappa_core::Lease,
    outcome: kappa_core::AttemptOutcome,
) -> pb::Disposition {
    let r = kappa_core::AttemptReport { worker: w, id: l.id, attempt: l.attempt, outcome, duration_s: 0.0 };
    let d = c.report(pb::ReportRequest::from(&r)).await.unwrap().into_inner().disposition;
    pb::Disposition::try_from(d).unwrap()
}

fn succeeded() -> kappa_core::AttemptOutcome {
    kappa_core::AttemptOutcome::Succeeded(kappa_core::TrialMetrics::default())
}

async fn submit(c: &mut Client, text: &str) {
    c.submit(pb::SubmitRequest { spec: text.to_string(), file_name: "s.toml".into(), ..Default::default() })
        .await
        .unwrap();
}

#[tokio::test]
async fn renewed_leases_last_and_unrenewed_ones_expire_on_the_lease_clock() {
    let s = serve(Access::open()).await;
    let mut c = client(&s.url, None).await;
    submit(&mut c, &noop_sweep("expire", 1, "")).await;
    let (a, b) = (register(&mut c, "a").await, register(&mut c, "b").await);
    tokio::time::pause();
    let first = lease_now(&mut c, a).await;
    assert_eq!((first.len(), first[0].attempt), (1, 1));
    let held = [AttemptRef::new(first[0].id, 1)];
    // Renewed every 2 s, the lease outlives many lease timeouts (3 s) of virtual time.
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(heartbeat(&mut c, a, &held).await.is_empty(), "a renewed lease was revoked");
        assert!(lease_now(&mut c, b).await.is_empty(), "a held trial was leased twice");
    }
    // Not renewed past the lease timeout: the lease clock takes it back and `b` gets attempt 2
    // (the lease call waits for the expiry to hand the trial out).
    tokio::time::advance(Duration::from_secs(4)).await;
    let second = lease_within(&mut c, b, Duration::from_secs(5)).await;
    assert_eq!((second[0].id, second[0].attempt), (first[0].id, 2));
    // The old holder is fenced: its heartbeat is told to stop, its report is late.
    assert_eq!(heartbeat(&mut c, a, &held).await, held.to_vec());
    assert_eq!(report(&mut c, a, &first[0], succeeded()).await, pb::Disposition::Late);
    assert_eq!(report(&mut c, b, &second[0], succeeded()).await, pb::Disposition::Accepted);
    s.server.stop(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_its_backoff_and_a_cancel_revokes_leases() {
    let s = serve(Access::open()).await;
    let mut c = client(&s.url, None).await;
    submit(&mut c, &noop_sweep("backoff", 2, "retries = 3")).await;
    let w = register(&mut c, "w").await;
    tokio::time::pause();
    let leases = lease_now(&mut c, w).await;
    assert_eq!(leases.len(), 2);
    let failed = kappa_core::AttemptOutcome::Failed { error: "boom".into(), class: kappa_core::FailureClass::Error };
    assert_eq!(report(&mut c, w, &leases[0], failed.clone()).await, pb::Disposition::Accepted);
    // The retry waits 1 s (the default backoff), then 2 s after a second failure.
    assert!(lease_now(&mut c, w).await.is_empty(), "retried before its backoff");
    // (Paused time moves in whole milliseconds: the checks keep clear of the exact boundary.
    // The other trial's lease is renewed meanwhile, as its worker would.)
    let other = [AttemptRef::new(leases[1].id, 1)];
    tokio::time::advance(Duration::from_millis(990)).await;
    assert!(heartbeat(&mut c, w, &other).await.is_empty());
    assert!(lease_now(&mut c, w).await.is_empty(), "retried before its backoff");
    tokio::time::advance(Duration::from_millis(20)).await;
    let retry = lease_now(&mut c, w).await;
    assert_eq!((retry[0].id, retry[0].attempt), (leases[0].id, 2));
    assert_eq!(report(&mut c, w, &retry[0], failed).await, pb::Disposition::Accepted);
    for _ in 0..2 {
        tokio::time::advance(Duration::from_millis(995)).await;
        assert!(heartbeat(&mut c, w, &other).await.is_empty());
    }
    assert!(lease_now(&mut c, w).await.is_empty(), "the second backoff doubles");
    tokio::time::advance(Duration::from_millis(20)).await;
    let again = lease_now(&mut c, w).await;
    assert_eq!((again[0].id, again[0].attempt), (leases[0].id, 3));
    // Cancelling the sweep revokes both leases still held.
    let held = [AttemptRef::new(leases[1].id, 1), AttemptRef::new(again[0].id, 3)];
    assert!(heartbeat(&mut c, w, &held).await.is_empty());
    c.cancel(pb::CancelRequest { sweep: "backoff".into() }).await.unwrap();
    let mut revoked = heartbeat(&mut c, w, &held).await;
    revoked.sort();
    let mut expected = held.to_vec();
    expected.sort();
    assert_eq!(revoked, expected);
    assert!(lease_now(&mut c, w).await.is_empty(), "a cancelled sweep leased a trial");
    s.server.stop(Duration::from_secs(1)).await.unwrap();
}

/// Sends raw bytes as the body of a unary call, like a client that speaks HTTP/2 but not kappa.
mod raw {
    use prost::bytes::{Buf, BufMut};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    pub struct Raw;

    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let mut v = vec![0; src.remaining()];
            src.copy_to_slice(&mut v);
            Ok(Some(v))
        }
    }

    /// Calls `method` of the coordinator at `url` with `body`, carrying `token` if any.
    pub async fn call(url: &str, method: &str, body: Vec<u8>, token: Option<&str>) -> tonic::Code {
        let channel = tonic::transport::Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
        grpc.ready().await.unwrap();
        let mut req = tonic::Request::new(body);
        if let Some(t) = token {
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let path = format!("/kappa.v1.Coordinator/{method}").parse().unwrap();
        match grpc.unary::<Vec<u8>, Vec<u8>, Raw>(req, path, Raw).await {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        }
    }
}

#[tokio::test]
async fn without_the_token_every_call_is_unauthenticated_whatever_its_body() {
    let s = serve(Access::shared("secret")).await;
    let garbage = vec![0xff, 0xff, 0xff];
    let oversized = vec![0xff; 17 << 20];
    for (method, _) in kappa_coordinator::access::RPCS {
        for (what, body) in [("garbage", &garbage), ("17 MiB", &oversized)] {
            let code = raw::call(&s.url, method, body.clone(), None).await;
            assert_eq!(code, Code::Unauthenticated, "{method} with a {what} body and no token");
            let code = raw::call(&s.url, method, body.clone(), Some("wrong")).await;
            assert_eq!(code, Code::Unauthenticated, "{method} with a {what} body and a wrong token");
        }
        // With the token, the body is read and judged.
        assert_eq!(raw::call(&s.url, method, garbage.clone(), Some("secret")).await, Code::InvalidArgument, "{method}");
        assert_eq!(raw::call(&s.url, method, oversized.clone(), Some("secret")).await, Code::OutOfRange, "{method}");
    }
    // The health service stays open to probes.
    let channel = tonic::transport::Channel::from_shared(s.url.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    assert!(r.is_ok(), "{r:?}");
    s.server.stop(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_submitted_sweep_file_error_keeps_its_file_line_and_column() {
    let s = serve(Access::open()).await;
    let mut c = client(&s.url, None).await;
    let bad = noop_sweep("bad", 2, "").replace("lr = [0.01]", "lr = [0.01, -1.0]");
    let e = c
        .submit(pb::SubmitRequest { spec: bad, file_name: "sweeps/bad.toml".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("sweeps/bad.toml:7:"), "{}", e.message());
    assert!(e.message().contains("grid.lr[1]"), "{}", e.message());
    s.server.stop(Duration::from_secs(1)).await.unwrap();
}

/// A finished run's metrics: loss 1 at the start, `end` at the end.
fn trained(end: f64) -> kappa_core::AttemptOutcome {
    kappa_core::AttemptOutcome::Succeeded(kappa_core::TrialMetrics {
        curve: vec![kappa_core::CurvePoint::single(0, 0, 1.0), kappa_core::CurvePoint::single(100, 10, end)],
        ..kappa_core::TrialMetrics::default()
    })
}

#[tokio::test]
async fn a_search_goes_on_when_a_probe_is_given_up_after_losing_its_leases() {
    let s = serve(Access::open()).await;
    let mut c = client(&s.url, None).await;
    let text = "version = 1\nname = \"search-lost\"\n[task]\nkind = \"noop\"\n[grid]\noptimizer = [\"sgd\"]\nseed = [0]\n\
                [search]\nkind = \"bracket\"\naxis = \"lr\"\nrange = [1e-3, 1.0]\nstart = 0.01\n\
                [execution]\nretries = { lost = 0 }\n";
    submit(&mut c, text).await;
    let (a, b) = (register(&mut c, "a").await, register(&mut c, "b").await);
    tokio::time::pause();
    let first = lease_now(&mut c, a).await;
    assert_eq!(first.len(), 3, "the first round: start/2, start, start·2");
    let mut by_lr = first.clone();
    by_lr.sort_by(|x, y| x.params.hyper.lr.total_cmp(&y.params.hyper.lr));
    // The two smaller learning rates end; the largest loses its lease, once, and is given up.
    assert_eq!(report(&mut c, a, &by_lr[0], trained(0.5)).await, pb::Disposition::Accepted);
    assert_eq!(report(&mut c, a, &by_lr[1], trained(0.2)).await, pb::Disposition::Accepted);
    tokio::time::advance(Duration::from_secs(4)).await;
    // The round is complete with a failure above the best: the search locates the edge.
    let next = lease_within(&mut c, b, Duration::from_secs(5)).await;
    assert_eq!(next.len(), 2, "{next:?}");
    assert!(next.iter().all(|l| l.params.hyper.lr > 0.01 && l.params.hyper.lr < 0.02), "{next:?}");
    s.server.stop(Duration::from_secs(1)).await.unwrap();
}
