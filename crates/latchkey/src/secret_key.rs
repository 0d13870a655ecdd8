//! The server key that token values are sealed under (SPEC §9).
//!
//! It comes from `LATCHKEY_SECRET_KEY` (32 bytes in base64, or 64 hex
//! digits). For the embedded SQLite default only, when the variable is not
//! set, it is generated once and kept beside the database file, readable by
//! its owner only, so that `latchkey serve` works with no setup. With
//! PostgreSQL the variable is required: every instance must share the key,
//! and a key file on one machine would split them. With `memory://` a
//! key is made for the life of the process, like everything else there.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::database::DatabaseUrl;

/// The variable holding the key.
pub const VARIABLE: &str = "LATCHKEY_SECRET_KEY";

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
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    database.with_file_name(name)
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

/// The server key for `database`.
pub fn load(database: &DatabaseUrl) -> Result<[u8; 32]> {
    if let Ok(text) = std::env::var(VARIABLE) {
        return parse(&text).with_context(|| format!("{VARIABLE} is not a valid key"));
    }
    match database {
        DatabaseUrl::Sqlite(path) => load_or_create(&key_file(path)),
        DatabaseUrl::Memory => random_key(),
        DatabaseUrl::Postgres(_) => bail!(
            "{VARIABLE} must be set with PostgreSQL: every instance needs the same key (make one with `openssl rand -base64 32`)"
        ),
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
