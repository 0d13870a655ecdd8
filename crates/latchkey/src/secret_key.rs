//! The server key that token values are sealed under (SPEC §9).
//!
//! It comes from `LATCHKEY_SECRET_KEY` (32 bytes in base64, or 64 hex
//! digits). For the embedded SQLite default only, when the variable is not
//! set, it is generated once and kept beside the database file, readable by
//! its owner only, so that `latchkey serve` works with no setup. With
//! PostgreSQL the variable is required: every instance must share the key,
//! and a key file on one machine would split them. With `memory://` a
//! key is made for the life of the process, like everything else there.
//!
//! Rotation (`latchkey keys rotate`) re-seals every stored value under a
//! new key. Until every instance runs with the new key, values sealed under
//! the old one must still open: `LATCHKEY_PREVIOUS_SECRET_KEY`, or the
//! `.key.previous` file beside a SQLite database, names it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::database::DatabaseUrl;

/// The variable holding the key.
pub const VARIABLE: &str = "LATCHKEY_SECRET_KEY";

/// The variable holding the key being rotated away from.
pub const PREVIOUS_VARIABLE: &str = "LATCHKEY_PREVIOUS_SECRET_KEY";

/// The keys of a process: the current one seals and opens, previous ones
/// only open.
pub struct Keyring {
    pub current: [u8; 32],
    pub previous: Vec<[u8; 32]>,
}

impl Keyring {
    pub fn sealer(&self) -> latchkey_app::Sealer {
        self.previous.iter().fold(latchkey_app::Sealer::new(&self.current), |sealer, key| sealer.with_previous(key))
    }
}

/// Reads a key written as base64 (standard or URL-safe, padded) or hex.
pub fn parse(text: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>()?
    } else {
        STANDARD.decode(text).or_else(|_| URL_SAFE.decode(text)).context("not base64 or hex")?
    };
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!("the key must be 32 bytes (e.g. from `openssl rand -base64 32`), not {}", bytes.len())
    })
}

fn random_key() -> Result<[u8; 32]> {
    use rand::TryRng;
    let mut key = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut key).map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    Ok(key)
}

/// The file beside a SQLite database that holds its generated key.
pub fn key_file(database: &Path) -> PathBuf {
    beside(database, ".key")
}

/// `database` with `suffix` added to its file name.
fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    database.with_file_name(name)
}

/// Writes `key` to `path` so that a crash leaves either the old file or the
/// whole new one: a temporary file, made owner-only and flushed to disk,
/// renamed over `path`, then the directory flushed.
fn write_durably(path: &Path, key: &[u8; 32]) -> Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).with_context(|| format!("cannot create {}", temporary.display()))?;
    writeln!(file, "{}", STANDARD.encode(key))?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    sync_directory(path)
}

fn sync_directory(path: &Path) -> Result<()> {
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(directory)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush {}", directory.display()))
}

fn read_key(path: &Path) -> Result<Option<[u8; 32]>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse(&text).with_context(|| format!("the key file {} is damaged", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Reads the key file, or creates it (owner-only) with a new key.
fn load_or_create(path: &Path) -> Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_shared(path);
            parse(&text).with_context(|| format!("the key file {} is damaged", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key()?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
            writeln!(file, "{}", STANDARD.encode(key))?;
            file.sync_all()?;
            tracing::warn!(
                file = %path.display(),
                "generated the server key; back it up with the database: without it, stored token values cannot be shown again"
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), "the server key file is readable by others; chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The key in variable `name`; unset or empty is none (an env file often
/// sets a variable to nothing rather than leave it out).
fn from_variable(name: &str) -> Result<Option<[u8; 32]>> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => {
            Ok(Some(parse(&text).with_context(|| format!("{name} is not a valid key"))?))
        }
        _ => Ok(None),
    }
}

/// The keys for `database`.
pub fn load(database: &DatabaseUrl) -> Result<Keyring> {
    let previous = from_variable(PREVIOUS_VARIABLE)?;
    if let Some(current) = from_variable(VARIABLE)? {
        return Ok(Keyring { current, previous: previous.into_iter().collect() });
    }
    if previous.is_some() {
        bail!("{PREVIOUS_VARIABLE} is set without {VARIABLE}: set both while a rotation is under way");
    }
    match database {
        DatabaseUrl::Sqlite(path) => {
            let current = load_or_create(&key_file(path))?;
            let previous = read_key(&beside(path, ".key.previous"))?;
            Ok(Keyring { current, previous: previous.into_iter().collect() })
        }
        DatabaseUrl::Memory => Ok(Keyring { current: random_key()?, previous: Vec::new() }),
        DatabaseUrl::Postgres(_) => bail!(
            "{VARIABLE} must be set with PostgreSQL: every instance needs the same key (make one with `openssl rand -base64 32`)"
        ),
    }
}

/// A rotation to a new key, and what completes it once every value is
/// re-sealed.
pub enum Rotation {
    /// The keys come from the environment: the operator moves the
    /// variables, nothing is left to do here.
    Variables(Keyring),
    /// The key files beside a SQLite database: the new key waits in
    /// `.key.next` until every value is re-sealed, then becomes `.key`, and
    /// the old key `.key.previous`.
    Files { keyring: Keyring, key: PathBuf, next: PathBuf, previous: PathBuf, resumed: bool },
}

impl Rotation {
    /// The rotation for `database`: with `LATCHKEY_SECRET_KEY` set, from
    /// `LATCHKEY_PREVIOUS_SECRET_KEY` to it; with a SQLite key file, from
    /// that key to a new one (kept in `.key.next`, so that a rotation cut
    /// short resumes with the same new key).
    pub fn prepare(database: &DatabaseUrl) -> Result<Self> {
        if let Some(current) = from_variable(VARIABLE)? {
            let previous = from_variable(PREVIOUS_VARIABLE)?.with_context(|| {
                format!("{VARIABLE} is the new key: set {PREVIOUS_VARIABLE} to the key the values are sealed under now")
            })?;
            if previous == current {
                bail!("{VARIABLE} and {PREVIOUS_VARIABLE} are the same key");
            }
            return Ok(Rotation::Variables(Keyring { current, previous: vec![previous] }));
        }
        let DatabaseUrl::Sqlite(path) = database else {
            bail!("set {VARIABLE} to the new key and {PREVIOUS_VARIABLE} to the current one");
        };
        let key = key_file(path);
        let (next, previous) = (beside(path, ".key.next"), beside(path, ".key.previous"));
        let old = read_key(&key)?.with_context(|| format!("there is no key file at {}", key.display()))?;
        let (new, resumed) = match read_key(&next)? {
            Some(new) => (new, true),
            None => {
                let new = random_key()?;
                write_durably(&next, &new)?;
                (new, false)
            }
        };
        // Values may also be under the key of the rotation before.
        let older = read_key(&previous)?;
        let keyring = Keyring { current: new, previous: std::iter::once(old).chain(older).collect() };
        Ok(Rotation::Files { keyring, key, next, previous, resumed })
    }

    pub fn keyring(&self) -> &Keyring {
        match self {
            Rotation::Variables(keyring) | Rotation::Files { keyring, .. } => keyring,
        }
    }

    /// Makes the new key the one in use, once every value is under it. The
    /// old key is kept as `.key.previous` first, so that a crash between
    /// the two steps leaves a rotation that resumes.
    pub fn complete(self) -> Result<()> {
        if let Rotation::Files { keyring, key, next, previous, .. } = self {
            write_durably(&previous, &keyring.previous[0])?;
            std::fs::rename(&next, &key)
                .with_context(|| format!("cannot move {} to {}", next.display(), key.display()))?;
            sync_directory(&key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats() {
        let key = [7u8; 32];
        assert_eq!(parse(&STANDARD.encode(key)).unwrap(), key);
        assert_eq!(parse(&format!("  {}\n", URL_SAFE.encode([0xfb; 32]))).unwrap(), [0xfb; 32]);
        assert_eq!(parse(&"07".repeat(32)).unwrap(), key);
        assert!(parse(&STANDARD.encode([7u8; 16])).is_err(), "too short");
        assert!(parse("not a key").is_err());
    }

    #[test]
    fn key_files_sit_beside_the_database() {
        assert_eq!(key_file(Path::new("latchkey.db")), PathBuf::from("latchkey.db.key"));
        assert_eq!(key_file(Path::new("/var/lib/l/x.db")), PathBuf::from("/var/lib/l/x.db.key"));
    }

    #[test]
    fn a_generated_key_is_kept_and_private() {
        let dir = std::env::temp_dir().join(format!("latchkey-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.db.key");
        let first = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
