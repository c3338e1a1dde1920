//! The share-link key's file: `link.key` in the data dir, 32 bytes of OS randomness
//! made on first start (owner-only), so links outlive a restart. A cluster names
//! one shared `link_key` in the config instead, which wins over the file.

use crate::os::{self, with_context};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The key file's name inside the data dir.
pub const FILE: &str = "link.key";

/// Length of a key this module makes.
const KEY_BYTES: usize = 32;

/// Reads the data dir's key, making it first if there is none. Two servers starting
/// on one data dir at once agree: the file is created exclusively, and the loser
/// reads the winner's.
///
/// # Errors
/// The file cannot be made or read, or holds fewer than 16 bytes (it was damaged
/// or written by hand: remove it to make a new one, which ends every earlier link).
pub fn load_or_create(data_dir: &Path) -> io::Result<Vec<u8>> {
    let path = data_dir.join(FILE);
    let made = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match made {
        Ok(mut file) => {
            let key = random_key()?;
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| with_context(e, &format!("cannot write {}", path.display())))?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let key = fs::read(&path)
                .map_err(|e| with_context(e, &format!("cannot read {}", path.display())))?;
            if key.len() < spout_core::link::MIN_KEY_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds {} bytes, fewer than a link key needs; remove it to make a new key (earlier share links then stop working)",
                        path.display(),
                        key.len()
                    ),
                ));
            }
            Ok(key)
        }
        Err(e) => Err(with_context(
            e,
            &format!("cannot create {}", path.display()),
        )),
    }
}

/// A key that lives as long as the process (memory mode without `link_key`).
///
/// # Errors
/// The OS gives no randomness.
pub fn random_key() -> io::Result<Vec<u8>> {
    let mut key = Vec::with_capacity(KEY_BYTES);
    while key.len() < KEY_BYTES {
        key.extend_from_slice(&os::try_random_bytes()?);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_owner_only() {
        let dir = std::env::temp_dir().join(format!("spout-link-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let first = load_or_create(&dir).unwrap();
        assert_eq!(first.len(), KEY_BYTES);
        assert_eq!(load_or_create(&dir).unwrap(), first);
        let mode = fs::metadata(dir.join(FILE)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        fs::write(dir.join(FILE), b"short").unwrap();
        let e = load_or_create(&dir).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("remove it"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key().unwrap(), random_key().unwrap());
    }
}
