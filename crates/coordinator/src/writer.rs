//! The store writer: one thread owns the SQLite connection and commits whatever has queued up
//! since its last commit in one transaction (group commit), so the scheduler never waits on disk.

use kappa_store::{Store, StoreError, StoreOp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Largest batch committed at once.
const MAX_BATCH: usize = 8192;

/// Handle to the writer thread.
pub struct StoreWriter {
    tx: Mutex<Option<Sender<StoreOp>>>,
    thread: Mutex<Option<JoinHandle<Result<Store, StoreError>>>>,
    failed: Arc<Mutex<Option<String>>>,
    /// Operations queued so far, and (from the thread) operations committed so far.
    sent: AtomicU64,
    committed: tokio::sync::watch::Receiver<u64>,
}

impl StoreWriter {
    /// Starts the writer thread of sweep `sweep`; it owns `store` until [`StoreWriter::close`].
    pub fn start(mut store: Store, sweep: &str) -> StoreWriter {
        let sweep = sweep.to_string();
        let (tx, rx): (Sender<StoreOp>, Receiver<StoreOp>) = channel();
        let failed = Arc::new(Mutex::new(None));
        let flag = failed.clone();
        let (done, committed) = tokio::sync::watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("kappa-store-writer".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(1024);
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    let mut closed = false;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    if let Err(e) = store.apply(&batch) {
                        tracing::error!(sweep = %sweep, error = %e, ops = batch.len(), "store write failed");
                        if let Ok(mut f) = flag.lock() {
                            *f = Some(e.to_string());
                        }
                        return Err(e);
                    }
                    done.send_modify(|n| *n += batch.len() as u64);
                    batch.clear();
                    if closed {
                        break;
                    }
                }
                Ok(store)
            })
            .ok();
        if thread.is_none()
            && let Ok(mut f) = failed.lock()
        {
            *f = Some("could not start the store writer thread".into());
        }
        StoreWriter { tx: Mutex::new(Some(tx)), thread: Mutex::new(thread), failed, sent: AtomicU64::new(0), committed }
    }

    /// Waits until everything queued before the call is committed (or the writer stopped), so a
    /// reader of the store that is told afterwards sees it.
    pub async fn flushed(&self) {
        let target = self.sent.load(Ordering::SeqCst);
        let mut rx = self.committed.clone();
        // An error means the thread is gone (closed or failed): nothing more will be committed.
        let _ = rx.wait_for(|n| *n >= target).await;
    }

    /// Queues an operation. Never blocks on disk.
    pub fn send(&self, op: StoreOp) {
        if let Ok(guard) = self.tx.lock()
            && let Some(tx) = guard.as_ref()
        {
            // A send fails only when the writer died; `failure()` reports why.
            if tx.send(op).is_ok() {
                self.sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Queues several operations.
    pub fn send_all(&self, ops: impl IntoIterator<Item = StoreOp>) {
        for op in ops {
            self.send(op);
        }
    }

    /// The write error that stopped the writer, if any.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Commits everything queued and stops the thread, returning the store.
    pub fn close(&self) -> Result<Option<Store>, StoreError> {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        match handle {
            Some(h) => match h.join() {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }
}
