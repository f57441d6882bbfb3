//! `kappa token new`: issues a token to a person or a worker node. The token is printed once
//! (on stdout, so `> alice.token` keeps it) and only its SHA-256 goes into the coordinator's
//! tokens file, which the coordinator reloads when it changes.

use crate::exit::{self, invalid};
use crate::logging;
use kappa_coordinator::Role;
use kappa_coordinator::access::{TokenSet, entry_text, loose_permissions, new_token, valid_name};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `kappa token`.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    /// Make a random token for NAME, print it once, and append its digest entry to the tokens file.
    ///
    /// Revoke it by deleting its `[[user]]` entry: the coordinator reloads the file when it
    /// changes (or on SIGHUP) and refuses the token from then on.
    New(NewArgs),
}

/// What a holder may do.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    /// Status, watch, results, reports and the dashboard, read-only.
    Read,
    /// `read`, plus submitting sweeps and cancelling and retrying its own.
    Submit,
    /// Everything, other people's sweeps and command sweeps included.
    Admin,
    /// Register, lease, heartbeat and report (a worker node), and nothing else.
    Worker,
}

#[derive(clap::Args, Debug)]
struct NewArgs {
    /// The holder's name (1–64 letters, digits and `._@-`), as logs, `kappa status` and refusals show it.
    name: String,
    /// What the holder may do.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// May submit sweeps with command trials (programs run on the workers); role submit only
    /// (an admin may anyway).
    #[arg(long)]
    commands: bool,
    /// The coordinator's tokens file (created, readable by its owner only, if missing).
    #[arg(long, value_name = "FILE", env = "KAPPA_TOKENS")]
    tokens: PathBuf,
}

/// `kappa token …`.
pub fn token(args: TokenArgs) -> anyhow::Result<u8> {
    match args.command {
        TokenCommand::New(a) => new(a),
    }
}

fn new(a: NewArgs) -> anyhow::Result<u8> {
    let role = match a.role {
        RoleArg::Read => Role::Read,
        RoleArg::Submit => Role::Submit,
        RoleArg::Admin => Role::Admin,
        RoleArg::Worker => Role::Worker,
    };
    if !valid_name(&a.name) {
        return Err(invalid(format!("name `{}`: use 1–64 letters, digits and `._@-`", a.name)));
    }
    if a.commands && matches!(role, Role::Read | Role::Worker) {
        return Err(invalid(format!("--commands is for role submit: role {role} cannot submit sweeps")));
    }
    let file = &a.tokens;
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(invalid(format!("cannot read the tokens file {}: {e}", file.display()))),
    };
    if let Some(text) = &existing {
        // Never append to a file the coordinator cannot read.
        let set = TokenSet::parse(file, text).map_err(|e| invalid(format!("{e} (fix it before adding a token)")))?;
        if set.holders().iter().any(|h| h.name == a.name) {
            return Err(invalid(format!(
                "{} already has `{}`: pick another name, or delete its entry to revoke its token first",
                file.display(),
                a.name
            )));
        }
    }
    let token = new_token()?;
    let mut entry = entry_text(&a.name, role, a.commands, &token);
    if existing.as_deref().is_some_and(|t| !t.is_empty() && !t.ends_with('\n')) {
        entry.insert(0, '\n');
    }
    let mut open = std::fs::OpenOptions::new();
    open.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut f =
        open.open(file).map_err(|e| invalid(format!("cannot write the tokens file {}: {e}", file.display())))?;
    f.write_all(entry.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| invalid(format!("cannot write the tokens file {}: {e}", file.display())))?;
    if let Some(w) = loose_permissions(file) {
        logging::warning(&w);
    }
    println!("{token}");
    let _ = std::io::stdout().flush();
    logging::note(&format!(
        "added {} ({role}{}) to {}: the token above is shown once; keep it in a file only its holder can read \
         (chmod 600) and pass it with --token-file",
        a.name,
        if a.commands { ", commands" } else { "" },
        file.display()
    ));
    Ok(exit::OK)
}
