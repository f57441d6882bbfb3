//! Who may do what: the holders of tokens, their roles, and the one check every gRPC call and
//! every dashboard request passes.
//!
//! An [`Access`] is one of three setups: *open* (no token: anyone who reaches the server is
//! trusted with everything, as `kappa run` on a laptop), *shared* (`--token-file`: one token,
//! one holder with every right), or a *tokens file* (`--tokens`: one entry per person or worker
//! node, each with a [`Role`], kept as SHA-256 digests, reloaded on SIGHUP or when the file
//! changes). A presented token is hashed and looked up ([`Access::authenticate`]); what the
//! holder may then do is [`Holder::may`] (by role) and [`Holder::may_change`] (by who owns the
//! sweep). Refusals are [`Refusal`]s, UNAUTHENTICATED or PERMISSION_DENIED in the one error
//! table ([`ErrorCode`]). Every submit, cancel, retry, refusal and reload is an event of target
//! `kappa_coordinator::audit` naming the holder, never the token.

mod file;

use crate::ErrorCode;
use file::{Stamps, hex, sha256, stamp, unhex};
pub use file::{
    TokenSet, TokensError, entry_text, loose_permissions, new_token, read_tokens_file, token_digest, valid_name,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

/// The log target of audit events.
pub const AUDIT: &str = "kappa_coordinator::audit";

/// Longest token accepted: anything longer is refused without being hashed.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// What a holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Status, watch, results, reports and the dashboard, read-only.
    Read,
    /// `read`, plus submitting sweeps and cancelling and retrying its own.
    Submit,
    /// Everything, other people's sweeps and command trials included.
    Admin,
    /// Register, lease, heartbeat and report, and nothing else.
    Worker,
}

impl Role {
    /// Every role, as the tokens file names them.
    pub const ALL: [Role; 4] = [Role::Read, Role::Submit, Role::Admin, Role::Worker];

    /// The role's name in the tokens file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a call asks to do, as far as roles go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A worker's calls: register, lease, heartbeat, report, deregister.
    Work,
    /// Reading sweeps: status, watch, results, reports, the dashboard.
    Read,
    /// Submitting a sweep.
    Submit,
    /// Cancelling a sweep.
    Cancel,
    /// Putting a sweep's failed trials back to pending.
    Retry,
}

/// Every method of `kappa.v1.Coordinator` and what it asks to do: the one table the guard reads.
pub const RPCS: [(&str, Action); 12] = [
    ("Register", Action::Work),
    ("Lease", Action::Work),
    ("Heartbeat", Action::Work),
    ("Report", Action::Work),
    ("ReportBatch", Action::Work),
    ("Deregister", Action::Work),
    ("Submit", Action::Submit),
    ("Cancel", Action::Cancel),
    ("RetryFailed", Action::Retry),
    ("Status", Action::Read),
    ("Watch", Action::Read),
    ("Results", Action::Read),
];

impl Action {
    /// The action of a `kappa.v1.Coordinator` method (`None`: not one of its methods).
    pub fn of_rpc(method: &str) -> Option<Action> {
        RPCS.iter().find(|(m, _)| *m == method).map(|(_, a)| *a)
    }

    /// What it is, in a refusal: "may not …".
    pub fn describe(self) -> &'static str {
        match self {
            Action::Work => "act as a worker (register, lease, heartbeat, report)",
            Action::Read => "read sweeps (status, watch, results, reports, the dashboard)",
            Action::Submit => "submit sweeps",
            Action::Cancel => "cancel sweeps",
            Action::Retry => "retry sweeps",
        }
    }

    /// The verb, for one sweep: "may not cancel sweep …".
    fn verb(self) -> &'static str {
        match self {
            Action::Work => "work for",
            Action::Read => "read",
            Action::Submit => "submit again",
            Action::Cancel => "cancel",
            Action::Retry => "retry",
        }
    }

    /// The roles that may do it.
    fn roles(self) -> &'static str {
        match self {
            Action::Work => "worker or admin",
            Action::Read => "read, submit or admin",
            Action::Submit | Action::Cancel | Action::Retry => "submit or admin",
        }
    }
}

/// Who presented a token: a name, a role, and whether it may run programs on workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's name (`anyone` without a token, `shared-token` for `--token-file`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Whether it may submit sweeps with command trials.
    pub commands: bool,
    /// A person or node of a tokens file (its sweeps record it as their owner).
    pub named: bool,
    /// SHA-256 of its token (none when nobody needs one).
    digest: Option<[u8; 32]>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

/// A refused call: UNAUTHENTICATED (no token, or an unknown one) or PERMISSION_DENIED (a known
/// holder without the right), with a message that names the holder and what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// [`ErrorCode::Unauthenticated`] or [`ErrorCode::PermissionDenied`].
    pub code: ErrorCode,
    /// What to tell the caller.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for tonic::Status {
    fn from(r: Refusal) -> tonic::Status {
        r.code.status(r.message)
    }
}

impl Refusal {
    fn unauthenticated(message: impl Into<String>) -> Refusal {
        Refusal { code: ErrorCode::Unauthenticated, message: message.into() }
    }

    pub(crate) fn denied(message: impl Into<String>) -> Refusal {
        Refusal { code: ErrorCode::PermissionDenied, message: message.into() }
    }
}

impl Holder {
    /// Whoever reaches a server without tokens: may do everything, owns nothing.
    pub fn anyone() -> Holder {
        Holder::everything("anyone", None)
    }

    fn everything(name: &str, digest: Option<[u8; 32]>) -> Holder {
        Holder { name: name.to_string(), role: Role::Admin, commands: true, named: false, digest }
    }

    /// The owner a sweep this holder submits records: its name when it is a holder of a tokens
    /// file (with one shared token, or none, nobody is told apart).
    pub fn owner(&self) -> Option<&str> {
        self.named.then_some(self.name.as_str())
    }

    /// Whether `other` presented the same token (a holder renamed in the tokens file is still the
    /// same holder; without tokens, everyone is).
    pub fn same_token(&self, other: &Holder) -> bool {
        match (self.digest, other.digest) {
            (Some(a), Some(b)) => same(&a, &b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Whether its role allows `action` at all.
    pub fn allows(&self, action: Action) -> bool {
        match action {
            Action::Work => matches!(self.role, Role::Worker | Role::Admin),
            Action::Read => matches!(self.role, Role::Read | Role::Submit | Role::Admin),
            Action::Submit | Action::Cancel | Action::Retry => matches!(self.role, Role::Submit | Role::Admin),
        }
    }

    /// Refuses `action` unless its role allows it.
    pub fn may(&self, action: Action) -> Result<(), Refusal> {
        if self.allows(action) {
            return Ok(());
        }
        let only = if self.role == Role::Worker {
            "; a worker token may only register, lease, heartbeat and report".to_string()
        } else {
            format!("; that needs role {}", action.roles())
        };
        Err(Refusal::denied(format!("{self} may not {}{only}", action.describe())))
    }

    /// Refuses `action` on sweep `sweep` (owned by `owner`, `None`: nobody recorded) unless the
    /// role allows it and the sweep is the holder's own, or the holder is an admin.
    pub fn may_change(&self, action: Action, sweep: &str, owner: Option<&str>) -> Result<(), Refusal> {
        self.may(action)?;
        if self.role == Role::Admin || (owner.is_some() && owner == self.owner()) {
            return Ok(());
        }
        let owned = match owner {
            Some(o) => format!("owned by {o}"),
            None => "that has no recorded owner".to_string(),
        };
        Err(Refusal::denied(format!(
            "{self} may not {} sweep \"{sweep}\" {owned}: only its owner or an admin may",
            action.verb()
        )))
    }

    /// Refuses to submit or retry (`action`) a sweep with command trials unless the holder may
    /// run programs on workers.
    pub fn may_run_commands(&self, action: Action, sweep: &str) -> Result<(), Refusal> {
        if self.commands || self.role == Role::Admin {
            return Ok(());
        }
        let verb = if action == Action::Submit { "submit" } else { action.verb() };
        Err(Refusal::denied(format!(
            "{self} may not {verb} sweep \"{sweep}\": it runs command trials (programs on the workers), and this \
             holder's entry in the tokens file does not say commands = true"
        )))
    }
}

enum Mode {
    Open(Arc<Holder>),
    Shared(Arc<Holder>),
    File { path: PathBuf, set: RwLock<Arc<TokenSet>>, stamps: Mutex<Stamps> },
}

/// How long a dashboard session lasts.
pub const SESSION_HOURS: u64 = 12;

/// Unauthenticated refusals logged per minute; the rest are counted and summed up.
pub const REFUSALS_LOGGED_PER_MINUTE: u64 = 20;

/// Who may connect and what each holder may do: see the module's documentation.
pub struct Access {
    mode: Mode,
    reload: Notify,
    /// Keys the dashboard's session cookies (random per process: a restart logs everyone out).
    session_key: [u8; 32],
    refusals: Mutex<(Instant, u64, u64)>,
}

impl Default for Access {
    fn default() -> Access {
        Access::open()
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.mode {
            Mode::Open(_) => "Access::Open",
            Mode::Shared(_) => "Access::Shared",
            Mode::File { .. } => "Access::File",
        })
    }
}

impl Access {
    fn with(mode: Mode) -> Access {
        let mut session_key = [0u8; 32];
        if getrandom::fill(&mut session_key).is_err() {
            // No OS randomness (never seen on a supported system): key from the time and
            // address space instead, still unknown to a client.
            let seed = format!("{:?}{:p}", SystemTime::now(), &session_key);
            session_key = sha256(seed.as_bytes());
        }
        Access { mode, reload: Notify::new(), session_key, refusals: Mutex::new((Instant::now(), 0, 0)) }
    }

    /// No token: anyone who reaches the server may do everything.
    pub fn open() -> Access {
        Access::with(Mode::Open(Arc::new(Holder::anyone())))
    }

    /// One shared token (`--token-file`): its holder may do everything.
    pub fn shared(token: &str) -> Access {
        let digest = sha256(token.trim().as_bytes());
        Access::with(Mode::Shared(Arc::new(Holder::everything("shared-token", Some(digest)))))
    }

    /// The holders of a tokens file (`--tokens`), reloaded by [`Access::reload`]. Returns a
    /// warning too when the file's permissions are loose.
    pub fn from_file(path: &Path) -> Result<(Access, Option<String>), TokensError> {
        let read = stamp(path);
        let (set, warning) = read_tokens_file(path)?;
        let stamps = Mutex::new(Stamps { read, seen: None });
        let mode = Mode::File { path: path.to_path_buf(), set: RwLock::new(Arc::new(set)), stamps };
        Ok((Access::with(mode), warning))
    }

    /// Whether any token is needed.
    pub fn required(&self) -> bool {
        !matches!(self.mode, Mode::Open(_))
    }

    /// The tokens file, if holders come from one.
    pub fn tokens_file(&self) -> Option<&Path> {
        match &self.mode {
            Mode::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Holders of the current tokens (none without a tokens file).
    pub fn holders(&self) -> Vec<Arc<Holder>> {
        match &self.mode {
            Mode::File { set, .. } => set.read().unwrap_or_else(|e| e.into_inner()).holders(),
            _ => Vec::new(),
        }
    }

    /// The holder of a token presented as an `authorization` header value (`Bearer TOKEN`), or
    /// UNAUTHENTICATED. Without a token anyone is the open holder; an over-long value is refused
    /// without being hashed.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Holder>, Refusal> {
        if let Mode::Open(anyone) = &self.mode {
            return Ok(anyone.clone());
        }
        let Some(value) = header else {
            return Err(Refusal::unauthenticated("missing token: pass --token-file or set KAPPA_TOKEN"));
        };
        if value.len() > MAX_TOKEN_BYTES + 7 {
            return Err(Refusal::unauthenticated(format!(
                "the authorization header is {} bytes: no token is longer than {MAX_TOKEN_BYTES}",
                value.len()
            )));
        }
        let token = match value.get(..7) {
            Some(p) if p.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => return Err(Refusal::unauthenticated("the authorization header must be `Bearer TOKEN`")),
        };
        let digest = sha256(token);
        match &self.mode {
            Mode::Open(anyone) => Ok(anyone.clone()),
            Mode::Shared(h) if h.digest.is_some_and(|d| same(&d, &digest)) => Ok(h.clone()),
            Mode::Shared(_) => Err(Refusal::unauthenticated("wrong token")),
            Mode::File { set, .. } => {
                set.read().unwrap_or_else(|e| e.into_inner()).by_digest.get(&digest).cloned().ok_or_else(|| {
                    Refusal::unauthenticated("unknown token: not in the coordinator's tokens file (revoked?)")
                })
            }
        }
    }

    /// The holder a call may act as: authenticated, and with a role that allows `action`. A
    /// refusal is logged (audit).
    pub fn check(&self, header: Option<&[u8]>, action: Action, what: &str) -> Result<Arc<Holder>, Refusal> {
        let checked = self.authenticate(header).and_then(|h| h.may(action).map(|()| h));
        if let Err(r) = &checked {
            self.refused(r, what);
        }
        checked
    }

    /// The holder `h` is now: the same token after a reload (its entry may have changed), or
    /// `None` when its token was revoked.
    pub fn current(&self, h: &Holder) -> Option<Arc<Holder>> {
        match &self.mode {
            Mode::Open(a) => Some(a.clone()),
            Mode::Shared(s) => Some(s.clone()),
            Mode::File { set, .. } => set.read().unwrap_or_else(|e| e.into_inner()).by_digest.get(&h.digest?).cloned(),
        }
    }

    /// Refuses a holder whose token was revoked or whose role no longer allows `action` (an
    /// open stream's next message, a worker after a reload).
    pub fn still(&self, h: &Holder, action: Action) -> Result<Arc<Holder>, Refusal> {
        let now =
            self.current(h).ok_or_else(|| Refusal::unauthenticated(format!("the token of {} was revoked", h.name)))?;
        now.may(action)?;
        Ok(now)
    }

    /// Logs a refusal (audit). Unauthenticated ones are logged at most
    /// [`REFUSALS_LOGGED_PER_MINUTE`] a minute and then summed up, so a flood of wrong tokens
    /// cannot flood the log.
    pub fn refused(&self, r: &Refusal, what: &str) {
        if r.code == ErrorCode::PermissionDenied {
            audit_refusal(r, what);
            return;
        }
        let mut g = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let (since, logged, suppressed) = &mut *g;
        if since.elapsed().as_secs() >= 60 {
            if *suppressed > 0 {
                tracing::warn!(target: AUDIT, event = "refused", suppressed = *suppressed, "more calls without a valid token were refused in the last minute");
            }
            (*since, *logged, *suppressed) = (Instant::now(), 0, 0);
        }
        if *logged < REFUSALS_LOGGED_PER_MINUTE {
            *logged += 1;
            tracing::warn!(target: AUDIT, event = "refused", holder = "unknown", call = what, reason = %r.message, "refused");
        } else {
            *suppressed += 1;
        }
    }

    /// Asks the watcher to reload the tokens file now (SIGHUP).
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }

    /// Resolves when a reload was requested.
    pub async fn reload_requested(&self) {
        self.reload.notified().await
    }

    /// One poll of the tokens file: whether it changed since it was last read and has stayed
    /// the same since the poll before (then it is time to reload it).
    pub fn changed_on_disk(&self) -> bool {
        let Mode::File { path, stamps, .. } = &self.mode else { return false };
        let now = stamp(path);
        let mut s = stamps.lock().unwrap_or_else(|e| e.into_inner());
        if now == s.read {
            s.seen = None;
            return false;
        }
        let settled = now.is_some() && s.seen == now;
        s.seen = now;
        settled
    }

    /// Reads the tokens file again. On success its holders replace the previous ones (returns
    /// the names that are gone); a file that does not parse keeps the previous holders. Both
    /// are logged (audit). A file without any holder replaces a set that had some only when
    /// `forced` (SIGHUP: revoking everyone at once is then meant; a poll may have caught an
    /// editor's truncation). Without a tokens file, nothing happens.
    pub fn reload(&self, forced: bool) -> Result<Vec<String>, TokensError> {
        let Mode::File { path, set, stamps } = &self.mode else { return Ok(Vec::new()) };
        *stamps.lock().unwrap_or_else(|e| e.into_inner()) = Stamps { read: stamp(path), seen: None };
        let kept = || set.read().unwrap_or_else(|e| e.into_inner()).len();
        let read = read_tokens_file(path).and_then(|(new, warning)| {
            if new.is_empty() && kept() > 0 && !forced {
                return Err(TokensError {
                    path: path.to_path_buf(),
                    line: None,
                    message: "it has no holder left; to revoke everyone at once, send SIGHUP".to_string(),
                });
            }
            Ok((new, warning))
        });
        let (new, warning) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(target: AUDIT, event = "reload", error = %e, kept = kept(), "tokens file not reloaded: keeping the previous holders");
                return Err(e);
            }
        };
        if let Some(w) = warning {
            tracing::warn!(target: AUDIT, event = "reload", "{w}");
        }
        let mut g = set.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> =
            g.by_digest.iter().filter(|(d, _)| !new.by_digest.contains_key(*d)).map(|(_, h)| h.name.clone()).collect();
        let names: Vec<String> = new.holders().iter().map(|h| h.to_string()).collect();
        tracing::info!(
            target: AUDIT, event = "reload", file = %path.display(), holders = new.len(), revoked = %gone.join(","),
            "tokens reloaded: {}", names.join(", ")
        );
        *g = Arc::new(new);
        Ok(gone)
    }

    /// The dashboard session cookie of a holder: its token's digest and when it was made, keyed
    /// with this process's secret (the cookie is not the token, a tokens file does not make
    /// one, and it lasts [`SESSION_HOURS`]).
    pub fn session_of(&self, h: &Holder) -> Option<String> {
        let d = h.digest?;
        let made = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        Some(format!("{}.{made}.{}", hex(&d), hex(&self.session_mac(&d, made))))
    }

    fn session_mac(&self, digest: &[u8; 32], made: u64) -> [u8; 32] {
        let mut m = Sha256::new();
        m.update(b"kappa-ui-session\0");
        m.update(self.session_key);
        m.update(digest);
        m.update(made.to_be_bytes());
        m.finalize().into()
    }

    /// The holder of a session cookie, if it is one this process made less than
    /// [`SESSION_HOURS`] ago and its token is current.
    pub fn session_holder(&self, cookie: &str) -> Option<Arc<Holder>> {
        let mut parts = cookie.splitn(3, '.');
        let (digest, made, mac) = (unhex(parts.next()?)?, parts.next()?.parse::<u64>().ok()?, unhex(parts.next()?)?);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        if !same(&mac, &self.session_mac(&digest, made)) || now.saturating_sub(made) > SESSION_HOURS * 3600 {
            return None;
        }
        match &self.mode {
            Mode::Open(_) => None,
            Mode::Shared(s) => s.digest.is_some_and(|x| same(&x, &digest)).then(|| s.clone()),
            Mode::File { set, .. } => set.read().unwrap_or_else(|e| e.into_inner()).by_digest.get(&digest).cloned(),
        }
    }
}

/// Equal without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An audit event: a refusal of a known holder (its message names the holder).
pub fn audit_refusal(r: &Refusal, what: &str) {
    tracing::warn!(target: AUDIT, event = "refused", call = what, reason = %r.message, "refused: {}", r.message);
}

/// An audit event: `holder` did `action` on `sweep`.
pub fn audit(holder: &Holder, action: Action, sweep: &str, detail: &str) {
    let what = match action {
        Action::Work => "work",
        Action::Read => "read",
        Action::Submit => "submit",
        Action::Cancel => "cancel",
        Action::Retry => "retry",
    };
    tracing::info!(
        target: AUDIT, event = what, holder = %holder.name, role = %holder.role, sweep, "{holder} {what} sweep `{sweep}`{detail}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    fn file(entries: &[(&str, &str, &str, bool)]) -> String {
        let mut s = String::new();
        for (name, token, role, commands) in entries {
            s += &format!(
                "[[user]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nrole = \"{role}\"\n",
                token_digest(token)
            );
            if *commands {
                s += "commands = true\n";
            }
        }
        s
    }

    #[test]
    fn a_tokens_file_is_parsed_and_each_holder_is_found_by_its_token_until_a_reload_revokes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let text =
            file(&[("alice", "ta", "submit", true), ("bob", "tb", "submit", false), ("node-1", "tw", "worker", false)]);
        std::fs::write(&path, &text).unwrap();
        let (access, _) = Access::from_file(&path).unwrap();
        assert!(access.required());
        let alice = access.authenticate(Some(&bearer("ta"))).unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.role, alice.commands, alice.owner()),
            ("alice", Role::Submit, true, Some("alice"))
        );
        for bad in
            [bearer("nope"), b"Basic dGE=".to_vec(), vec![b'a'; 2 << 20], bearer(&"x".repeat(MAX_TOKEN_BYTES + 1))]
        {
            assert_eq!(access.authenticate(Some(&bad)).unwrap_err().code, ErrorCode::Unauthenticated);
        }
        assert_eq!(access.authenticate(None).unwrap_err().code, ErrorCode::Unauthenticated);
        assert!(access.authenticate(Some(b"bearer  ta ")).is_ok(), "the scheme's case and spaces do not matter");
        let worker = access.authenticate(Some(&bearer("tw"))).unwrap();
        assert!(!access.changed_on_disk());
        // bob and node-1 are removed and alice becomes a reader.
        std::fs::write(&path, file(&[("alice", "ta", "read", false)])).unwrap();
        assert!(!access.changed_on_disk(), "the first poll that finds a change waits for the next");
        assert!(access.changed_on_disk(), "which finds it the same: time to reload");
        let mut gone = access.reload(false).unwrap();
        gone.sort();
        assert_eq!(gone, ["bob", "node-1"]);
        assert!(!access.changed_on_disk());
        assert_eq!(access.authenticate(Some(&bearer("tb"))).unwrap_err().code, ErrorCode::Unauthenticated);
        assert_eq!(access.still(&worker, Action::Work).unwrap_err().code, ErrorCode::Unauthenticated);
        assert_eq!(access.still(&alice, Action::Read).unwrap().role, Role::Read);
        assert_eq!(access.still(&alice, Action::Submit).unwrap_err().code, ErrorCode::PermissionDenied);
        // A file that no longer parses keeps the holders there were.
        std::fs::write(&path, "[[user]]\nname = \"alice\"\n").unwrap();
        let e = access.reload(false).unwrap_err();
        assert!(e.to_string().contains("t.toml"), "{e}");
        assert!(access.authenticate(Some(&bearer("ta"))).is_ok());
        // An empty file (an editor's truncation, caught by a poll) keeps them too; SIGHUP means it.
        std::fs::write(&path, "").unwrap();
        assert!(access.reload(false).unwrap_err().message.contains("no holder left"));
        assert!(access.authenticate(Some(&bearer("ta"))).is_ok());
        assert_eq!(access.reload(true).unwrap(), ["alice"]);
        assert!(access.authenticate(Some(&bearer("ta"))).is_err());
    }

    #[test]
    fn every_method_of_the_service_has_a_row_in_the_table() {
        // The generated client has a method per RPC: its paths are in the generated code's text
        // only, so read the .proto (the one wire contract) instead.
        let proto = include_str!("../../../../proto/kappa/v1/kappa.proto");
        let service = &proto[proto.find("service Coordinator").expect("the service")..];
        let service = &service[..service.find("\n}").expect("its end")];
        let methods: Vec<&str> = service
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .map(str::trim)
            .collect();
        let table: Vec<&str> = RPCS.iter().map(|(m, _)| *m).collect();
        assert_eq!(methods, table, "every method needs a row: one without is refused to all but admins");
    }

    #[test]
    fn roles_allow_what_the_table_says_and_refusals_name_the_holder() {
        let h = |role, commands| Holder { name: "alice".into(), role, commands, named: true, digest: None };
        let table = [
            (Role::Read, [false, true, false, false, false]),
            (Role::Submit, [false, true, true, true, true]),
            (Role::Admin, [true, true, true, true, true]),
            (Role::Worker, [true, false, false, false, false]),
        ];
        for (role, allowed) in table {
            for (action, want) in
                [Action::Work, Action::Read, Action::Submit, Action::Cancel, Action::Retry].into_iter().zip(allowed)
            {
                assert_eq!(h(role, false).allows(action), want, "{role} {action:?}");
            }
        }
        let e = h(Role::Submit, false).may_change(Action::Cancel, "bob-lr", Some("bob")).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.message.starts_with("alice (submit) may not cancel sweep \"bob-lr\" owned by bob"), "{e}");
        assert!(h(Role::Submit, false).may_change(Action::Retry, "mine", Some("alice")).is_ok());
        assert!(h(Role::Submit, false).may_change(Action::Retry, "old", None).is_err());
        assert!(h(Role::Admin, false).may_change(Action::Cancel, "bob-lr", Some("bob")).is_ok());
        let e = h(Role::Worker, false).may(Action::Read).unwrap_err();
        assert!(
            e.message.contains("alice (worker) may not read sweeps") && e.message.contains("a worker token"),
            "{e}"
        );
        let e = h(Role::Submit, false).may_run_commands(Action::Submit, "s").unwrap_err();
        assert!(
            e.message.starts_with("alice (submit) may not submit sweep \"s\"") && e.message.contains("commands = true"),
            "{e}"
        );
        assert!(h(Role::Submit, true).may_run_commands(Action::Retry, "s").is_ok());
        assert!(h(Role::Admin, false).may_run_commands(Action::Submit, "s").is_ok());
    }

    #[test]
    fn sessions_name_their_holder_and_cannot_be_forged_from_the_digest() {
        let access = Access::shared("s3cret");
        let h = access.authenticate(Some(&bearer("s3cret"))).unwrap();
        let cookie = access.session_of(&h).unwrap();
        assert!(!cookie.contains("s3cret"));
        assert_eq!(access.session_holder(&cookie).unwrap().name, "shared-token");
        let (digest, rest) = cookie.split_once('.').unwrap();
        let (made, _) = rest.split_once('.').unwrap();
        assert!(access.session_holder(&format!("{digest}.{made}.{}", "0".repeat(64))).is_none());
        assert!(access.session_holder(digest).is_none());
        let made: u64 = made.parse().unwrap();
        let old = made - SESSION_HOURS * 3600 - 1;
        let stale = format!("{digest}.{old}.{}", hex(&access.session_mac(&unhex(digest).unwrap(), old)));
        assert!(access.session_holder(&stale).is_none(), "a session older than SESSION_HOURS");
        assert!(
            access
                .session_holder(&format!("{digest}.{}", rest.replace(&made.to_string(), &(made + 1).to_string())))
                .is_none()
        );
        assert!(Access::shared("s3cret").session_holder(&cookie).is_none(), "another process's key");
        let open = Access::open();
        assert!(!open.required());
        assert_eq!(open.authenticate(Some(b"anything")).unwrap().name, "anyone");
        assert!(open.session_of(&open.authenticate(None).unwrap()).is_none());
    }
}
