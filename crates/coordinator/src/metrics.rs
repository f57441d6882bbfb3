//! A Prometheus text endpoint (`GET /metrics`): trials by sweep and state, workers, leases, and a
//! counter of reports (Prometheus derives results/s from it with `rate()`).
//!
//! The server is deliberately tiny (one request per connection, HTTP/1.0 semantics): it only ever
//! answers scrapers, and pulling in an HTTP framework for one GET would cost more than it saves.

use crate::Coordinator;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Renders the metrics of `coordinator` in the Prometheus text format.
pub fn render(coordinator: &Coordinator) -> String {
    let mut s = String::new();
    let progress = coordinator.progress();
    s.push_str("# HELP kappa_trials Trials by sweep and status.\n# TYPE kappa_trials gauge\n");
    for p in &progress {
        let sweep = p.sweep.replace('\\', "\\\\").replace('"', "\\\"");
        let c = &p.counts;
        for (status, n) in [
            ("pending", c.pending),
            ("running", c.running),
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("diverged", c.diverged),
        ] {
            let _ = writeln!(s, "kappa_trials{{sweep=\"{sweep}\",status=\"{status}\"}} {n}");
        }
    }
    s.push_str("# HELP kappa_leases Trials leased to workers now.\n# TYPE kappa_leases gauge\n");
    let _ = writeln!(s, "kappa_leases {}", progress.iter().map(|p| p.counts.running).sum::<u64>());
    s.push_str("# HELP kappa_workers Registered workers.\n# TYPE kappa_workers gauge\n");
    let _ = writeln!(s, "kappa_workers {}", coordinator.worker_count());
    s.push_str("# HELP kappa_sweeps Sweeps served.\n# TYPE kappa_sweeps gauge\n");
    let _ = writeln!(s, "kappa_sweeps {}", progress.len());
    s.push_str("# HELP kappa_reports_total Attempt reports received (late ones included).\n# TYPE kappa_reports_total counter\n");
    let _ = writeln!(s, "kappa_reports_total {}", coordinator.reports());
    s
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(listener: TcpListener, coordinator: Arc<Coordinator>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = &mut shutdown => return,
        };
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read the request head (bounded in size and time).
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                ("200 OK", render(&coordinator))
            } else {
                ("404 Not Found", "only GET /metrics is served here\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
