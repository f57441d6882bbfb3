//! Arguments shared by several commands, and their parsing into checked values: the state
//! directory, the coordinator and its token and TLS authority, GPUs, the simulation backend,
//! durations and working directories.

use crate::exit::invalid;
use kappa_core::task::Backend;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a sweep's state lives.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArg {
    /// State directory of the sweep (default: the only sweep under ./runs).
    #[arg(long, value_name = "DIR", env = "KAPPA_STATE")]
    pub state: Option<PathBuf>,
}

/// Where the shared token (and, for TLS, the certificate authority) come from.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArg {
    /// File holding the shared bearer token (every RPC must carry it).
    #[arg(long, value_name = "FILE", env = "KAPPA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate authority to trust for an https:// coordinator.
    #[arg(long, value_name = "FILE", env = "KAPPA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl TokenArg {
    /// The token: from `--token-file`, else the `KAPPA_TOKEN` variable, else none.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f)
                .map_err(|e| invalid(format!("cannot read token file {}: {e}", f.display())))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(invalid(format!("token file {} is empty", f.display())));
            }
            return Ok(Some(t));
        }
        Ok(std::env::var("KAPPA_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
    }

    /// The certificate authority's PEM, if given.
    pub fn ca(&self) -> anyhow::Result<Option<Vec<u8>>> {
        match &self.tls_ca {
            Some(f) => {
                Ok(Some(std::fs::read(f).map_err(|e| invalid(format!("cannot read --tls-ca {}: {e}", f.display())))?))
            }
            None => Ok(None),
        }
    }
}

/// The coordinator a client talks to.
#[derive(clap::Args, Debug, Clone)]
pub struct CoordinatorArg {
    /// Coordinator URL, e.g. http://10.0.0.1:7070 (https://… when it serves TLS).
    #[arg(long, value_name = "URL", env = "KAPPA_COORDINATOR")]
    pub coordinator: String,
    #[command(flatten)]
    pub token: TokenArg,
}

/// A state directory, or a running coordinator given on the command line (which wins over
/// `--state` and `KAPPA_STATE`): what `status`, `retry` and `report` read.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArg {
    #[command(flatten)]
    pub state: StateArg,
    /// Ask a running coordinator instead of reading a state directory (it wins over --state
    /// and KAPPA_STATE).
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// With --coordinator: the sweep (default: the latest submitted, for retry with a tokens
    /// file your own latest; for status, all of them).
    #[arg(long, requires = "coordinator")]
    pub sweep: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
}

impl SourceArg {
    /// The coordinator, when one was named.
    pub fn coordinator(&self) -> Option<CoordinatorArg> {
        self.coordinator.clone().map(|coordinator| CoordinatorArg { coordinator, token: self.token.clone() })
    }
}

/// `--gpus`: `auto`, a count, or a comma-separated list of device ordinals.
pub fn parse_gpus(spec: &str) -> anyhow::Result<Vec<u32>> {
    let spec = spec.trim();
    if spec == "auto" {
        return Ok(detect_gpus());
    }
    if let Ok(n) = spec.parse::<u32>() {
        return Ok((0..n).collect());
    }
    spec.split(',')
        .map(|p| {
            p.trim().parse::<u32>().map_err(|_| {
                invalid(format!("--gpus must be `auto`, a count or a list of device numbers like 0,2; got `{spec}`"))
            })
        })
        .collect()
}

/// GPUs visible to this process: CUDA_VISIBLE_DEVICES when set, else what `nvidia-smi -L` lists.
fn detect_gpus() -> Vec<u32> {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        let n = v.split(',').filter(|d| !d.trim().is_empty() && d.trim() != "-1").count();
        return (0..n as u32).collect();
    }
    match std::process::Command::new("nvidia-smi").arg("-L").stderr(std::process::Stdio::null()).output() {
        Ok(o) if o.status.success() => {
            let n = String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count();
            (0..n as u32).collect()
        }
        _ => Vec::new(),
    }
}

/// Parses `--backend`.
pub fn backend(s: &str) -> Result<Backend, String> {
    s.parse()
}

/// Says on stderr where a worker's simulations will run, for a `--backend` other than the task's.
pub fn announce_backend(backend: Option<Backend>) {
    match backend {
        None | Some(Backend::Cpu) => {}
        Some(b) => match kappa_sim::gpu_available(0) {
            Ok(()) => crate::logging::note(&format!("simulations: --backend {b}, GPU 0 usable")),
            Err(why) if b == Backend::Auto => {
                crate::logging::note(&format!("simulations: --backend auto, on the CPU ({why})"))
            }
            Err(why) => crate::logging::warning(&format!(
                "simulations: --backend cuda, but no usable NVIDIA GPU: {why} (trials will fail)"
            )),
        },
    }
}

/// Parses a duration flag: `90s`, `10m`, `500ms`, `2h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    kappa_core::spec::parse_duration(s)
}

/// The working directory `--workdir` names for command trials, as an absolute path.
pub fn command_workdir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|e| invalid(format!("--workdir {}: {e}", dir.display())))
}
