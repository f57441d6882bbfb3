//! The tokens file: its holders parsed from TOML with errors that name the line, read from disk
//! with a warning on loose permissions, its change stamps for reloading, and the entries
//! `kappa token new` issues.

use super::{Holder, Role};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// An error in a tokens file, naming the file and, where it can, the line.
#[derive(Debug, thiserror::Error)]
#[error("tokens file {}{}: {message}", .path.display(), .line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct TokensError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The hex SHA-256 of a token, as the tokens file keeps it.
pub fn token_digest(token: &str) -> String {
    hex(&sha256(token.trim().as_bytes()))
}

/// The SHA-256 of `bytes`: what a tokens file, a shared token and a presented token are
/// compared by.
pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Whether `name` may name a holder: 1–64 characters of letters, digits and `._@-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

/// The holders of a tokens file, by the digest of their token.
#[derive(Clone, Debug, Default)]
pub struct TokenSet {
    pub(super) by_digest: HashMap<[u8; 32], Arc<Holder>>,
}

impl TokenSet {
    /// Parses a tokens file's text (`path` is for errors).
    pub fn parse(path: &Path, text: &str) -> Result<TokenSet, TokensError> {
        use toml::Spanned;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            user: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            name: Spanned<String>,
            token_sha256: Spanned<String>,
            role: Spanned<String>,
            #[serde(default)]
            commands: Option<Spanned<bool>>,
        }
        let err = |span: Option<std::ops::Range<usize>>, message: String| TokensError {
            path: path.to_path_buf(),
            line: span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
        let mut set = TokenSet::default();
        let mut names = HashMap::new();
        for e in file.user {
            let name = e.name.get_ref().trim();
            if !valid_name(name) {
                return Err(err(Some(e.name.span()), format!("name `{name}`: use 1–64 letters, digits and `._@-`")));
            }
            if let Some(line) = names.insert(name.to_string(), e.name.span()) {
                return Err(err(
                    Some(e.name.span()),
                    format!(
                        "name `{name}` appears twice (first at line {})",
                        text[..line.start].matches('\n').count() + 1
                    ),
                ));
            }
            let digest = unhex(&e.token_sha256.get_ref().to_ascii_lowercase()).ok_or_else(|| {
                // Never repeated: it may be a token pasted where its digest belongs.
                let value = e.token_sha256.get_ref();
                let hint = if value.starts_with("kappa_") {
                    " (that looks like a token itself: put its digest here, as `kappa token new` does)"
                } else {
                    ""
                };
                err(
                    Some(e.token_sha256.span()),
                    format!(
                        "token_sha256 of `{name}` must be 64 hex characters (the SHA-256 of the token), not a \
                         value of {} characters{hint}",
                        value.chars().count()
                    ),
                )
            })?;
            let role = Role::parse(e.role.get_ref()).ok_or_else(|| {
                err(
                    Some(e.role.span()),
                    format!("unknown role `{}` for `{name}`: use read, submit, admin or worker", e.role.get_ref()),
                )
            })?;
            let commands = e.commands.as_ref().is_some_and(|c| *c.get_ref());
            if commands && matches!(role, Role::Read | Role::Worker) {
                let span = e.commands.as_ref().map(|c| c.span());
                return Err(err(
                    span,
                    format!(
                        "`{name}` has role {role}, which cannot submit sweeps: commands = true means nothing there"
                    ),
                ));
            }
            let holder = Holder { name: name.to_string(), role, commands, named: true, digest: Some(digest) };
            if let Some(other) = set.by_digest.insert(digest, Arc::new(holder)) {
                return Err(err(
                    Some(e.token_sha256.span()),
                    format!(
                        "`{name}` has the same token_sha256 as `{}`: every holder needs a token of its own",
                        other.name
                    ),
                ));
            }
        }
        Ok(set)
    }

    /// Every holder, by name.
    pub fn holders(&self) -> Vec<Arc<Holder>> {
        let mut all: Vec<_> = self.by_digest.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The holders, counted.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether it has no holder.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// Reads a tokens file, with a warning when others than its owner may read it.
pub fn read_tokens_file(path: &Path) -> Result<(TokenSet, Option<String>), TokensError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokensError {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read it: {e}"),
    })?;
    let set = TokenSet::parse(path, &text)?;
    Ok((set, loose_permissions(path)))
}

/// A warning when a file is readable or writable by others than its owner. Not for a file of a
/// Kubernetes Secret volume (its directory holds the kubelet's `..data` link): its mode is the
/// pod's `defaultMode` and `fsGroup`, which the pod's own user cannot change.
pub fn loose_permissions(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path.parent().is_some_and(|d| d.join("..data").exists()) {
            return None;
        }
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} may be read or written by others than its owner (mode {mode:03o}): chmod 600 {}",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// A new random token: `kappa_` and 64 hex characters (256 bits from the operating system).
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no random bytes: {e}")))?;
    Ok(format!("kappa_{}", hex(&bytes)))
}

/// The tokens-file entry of a holder of `token` (what `kappa token new` appends).
pub fn entry_text(name: &str, role: Role, commands: bool, token: &str) -> String {
    let mut s =
        format!("\n[[user]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nrole = \"{role}\"\n", token_digest(token));
    if commands {
        s.push_str("commands = true\n");
    }
    s
}

/// When a file last changed, as far as reloading goes: its modification time and length, and
/// on Unix its inode and change time (a rewrite of the same size, or a copy that keeps the
/// modification time, still changes those).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
    changed: (i64, i64),
}

pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, changed) = {
        use std::os::unix::fs::MetadataExt;
        ((m.dev(), m.ino()), (m.ctime(), m.ctime_nsec()))
    };
    #[cfg(not(unix))]
    let (inode, changed) = ((0, 0), (0, 0));
    Some(Stamp { modified: m.modified().ok(), len: m.len(), inode, changed })
}

/// Where the tokens file stands: as it was when last read, and as the last poll found it when
/// that differed (a change is reloaded once two polls in a row find it the same, so a file
/// caught halfway through being written is not read).
#[derive(Default)]
pub(super) struct Stamps {
    pub(super) read: Option<Stamp>,
    pub(super) seen: Option<Stamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> TokensError {
        TokenSet::parse(Path::new("t.toml"), text).expect_err("an invalid tokens file")
    }

    #[test]
    fn every_mistake_in_a_tokens_file_is_named_with_its_line() {
        let d = token_digest("t");
        let cases = [
            (format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{d}\"\nrole = \"owner\"\n"), 4, "unknown role `owner`"),
            (
                format!(
                    "[[user]]\nname = \"a\"\ntoken_sha256 = \"{d}\"\nrole = \"read\"\n[[user]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nrole = \"read\"\n",
                    token_digest("u")
                ),
                6,
                "appears twice (first at line 2)",
            ),
            (
                format!(
                    "[[user]]\nname = \"a\"\ntoken_sha256 = \"{d}\"\nrole = \"read\"\n[[user]]\nname = \"b\"\ntoken_sha256 = \"{d}\"\nrole = \"read\"\n"
                ),
                7,
                "same token_sha256 as `a`",
            ),
            (
                "[[user]]\nname = \"a\"\ntoken_sha256 = \"abc\"\nrole = \"read\"\n".to_string(),
                3,
                "must be 64 hex characters",
            ),
            (
                format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nrole = \"read\"\n", "g".repeat(64)),
                3,
                "must be 64 hex characters",
            ),
            (format!("[[user]]\nname = \"a b\"\ntoken_sha256 = \"{d}\"\nrole = \"read\"\n"), 2, "name `a b`"),
            (
                format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{d}\"\nrole = \"worker\"\ncommands = true\n"),
                5,
                "commands = true means nothing",
            ),
            (
                format!("[[user]]\nname = \"a\"\ntoken_sha256 = \"{d}\"\nrole = \"read\"\ntoken = \"t\"\n"),
                5,
                "unknown field `token`",
            ),
            ("[[user]]\nname = \"a\"\nrole = \"read\"\n".to_string(), 1, "missing field `token_sha256`"),
            ("[[user]\n".to_string(), 1, ""),
        ];
        for (text, line, message) in cases {
            let e = parse_err(&text);
            assert_eq!(e.line, Some(line), "{e}\n{text}");
            assert!(e.to_string().starts_with(&format!("tokens file t.toml, line {line}: ")), "{e}");
            assert!(e.message.contains(message), "{e}");
        }
        assert!(TokenSet::parse(Path::new("t.toml"), "").unwrap().is_empty());
    }

    #[test]
    fn a_new_tokens_entry_parses_and_its_token_authenticates() {
        let token = new_token().unwrap();
        assert!(token.starts_with("kappa_") && token.len() == 70, "{token}");
        assert_ne!(token, new_token().unwrap());
        let text = entry_text("carol", Role::Submit, true, &token);
        let set = TokenSet::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(set.holders()[0].to_string(), "carol (submit)");
        assert!(!text.contains(&token), "the file keeps the digest, never the token");
    }
}
