//! Who may use the agent on a machine with several users: with
//! `--proxy-auth FILE`, every request must carry the file's `user:password`
//! as Basic credentials (`Proxy-Authorization` when proxied, `Authorization`
//! for the agent's own pages). Only a SHA-256 of the credentials is kept,
//! and it is compared in constant time.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The credentials the agent accepts, hashed.
pub struct ProxyAuth {
    digest: [u8; 32],
}

impl ProxyAuth {
    /// Read `user:password` (one line) from `path`. Refused: a file other
    /// users may read, an empty file, a line without a colon.
    pub fn load(path: &Path) -> anyhow::Result<ProxyAuth> {
        let mut f = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("--proxy-auth {}: {e}", path.display()))?;
        let mode = f.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "--proxy-auth {}: other users can read it (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
        let mut text = Zeroizing::new(String::new());
        f.read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("--proxy-auth {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        match line.split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {}
            _ => anyhow::bail!(
                "--proxy-auth {}:1: expected one line `user:password` (both non-empty)",
                path.display()
            ),
        }
        Ok(ProxyAuth {
            digest: Sha256::digest(line.as_bytes()).into(),
        })
    }

    /// Whether `header` (a `Basic` credentials header) carries them.
    pub fn allows(&self, header: Option<&HeaderValue>) -> bool {
        let Some(b64) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let given = Zeroizing::new(given);
        let digest: [u8; 32] = Sha256::digest(&given[..]).into();
        digest.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    fn basic(cred: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(cred);
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[test]
    fn only_the_files_credentials_pass() {
        let f = file("alice:s3cret\n", 0o600);
        let auth = ProxyAuth::load(f.path()).unwrap();
        assert!(auth.allows(Some(&basic("alice:s3cret"))));
        for bad in ["alice:s3cre", "alice:s3cret ", "bob:s3cret", ""] {
            assert!(!auth.allows(Some(&basic(bad))), "{bad:?}");
        }
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some(&HeaderValue::from_static("Bearer x"))));
        assert!(!auth.allows(Some(&HeaderValue::from_static("Basic !!!"))));
    }

    #[test]
    fn a_readable_or_malformed_file_is_refused_with_the_reason() {
        let f = file("alice:s3cret\n", 0o644);
        let e = ProxyAuth::load(f.path()).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        for text in ["", "alice\n", ":pw\n", "alice:\n"] {
            let f = file(text, 0o600);
            let e = ProxyAuth::load(f.path()).err().unwrap().to_string();
            assert!(e.contains(":1: expected one line"), "{text:?}: {e}");
        }
    }
}
