//! SCRAM credentials: per user and mechanism, the salt, the iteration count, and the stored and
//! server keys of RFC 5802. The password itself, and the salted password a client sends in
//! AlterUserScramCredentials, are never kept: only keys derived from them, from which neither
//! can be recovered.
//!
//! One store serves the whole process (every shard authenticates against it). Changes are
//! written the way the controller writes cluster metadata: to a temporary file in the metadata
//! directory, fsynced, then renamed over `scram-credentials.json` (and the directory fsynced),
//! under one lock, before the change is visible or acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on SCRAM iterations.
pub const ITERATIONS_MIN: i32 = 4096;
pub const ITERATIONS_MAX: i32 = 16384;
/// Bound on stored users, so that a client cannot grow the file without limit.
pub const USERS_MAX: usize = 100_000;
/// Longest user name accepted.
pub const USER_NAME_BYTES_MAX: usize = 256;

const FILE_NAME: &str = "scram-credentials.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub fn parse(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The mechanism's number in AlterUserScramCredentials and DescribeUserScramCredentials.
    pub fn from_wire(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn wire(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn hash_bytes(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// RFC 5802: StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
    /// HMAC(SaltedPassword, "Server Key"), with rsasl's implementation of the HMACs.
    pub fn derive(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
        use rsasl::mechanisms::scram::tools::derive_keys;
        match self {
            ScramMechanism::Sha256 => {
                let (client_key, server_key) = derive_keys::<Sha256>(salted_password);
                (Sha256::digest(client_key).to_vec(), server_key.to_vec())
            }
            ScramMechanism::Sha512 => {
                let (client_key, server_key) = derive_keys::<Sha512>(salted_password);
                (Sha512::digest(client_key).to_vec(), server_key.to_vec())
            }
        }
    }

    /// PBKDF2 of a password, as a client computes it (used by `shardlog user create`).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        use rsasl::mechanisms::scram::tools::hash_password;
        match self {
            ScramMechanism::Sha256 => {
                let mut out = Default::default();
                hash_password::<Sha256>(password, iterations, salt, &mut out);
                out.to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut out = Default::default();
                hash_password::<Sha512>(password, iterations, salt, &mut out);
                out.to_vec()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

type Users = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;
/// Per user: the mechanisms and iteration counts, or None for an unknown user.
pub type UserCredentialInfo = (String, Option<Vec<(ScramMechanism, u32)>>);

#[derive(Default)]
pub struct ScramStore {
    users: RwLock<Users>,
    /// The file, once loaded; also serializes writers.
    path: Mutex<Option<PathBuf>>,
}

/// One change of an AlterUserScramCredentials request.
pub enum Change {
    Upsert { user: String, mechanism: ScramMechanism, credential: ScramCredential },
    Delete { user: String, mechanism: ScramMechanism },
}

impl ScramStore {
    /// Loads the credentials from the metadata directory (none yet is fine).
    pub fn load(&self, meta_dir: &Path) -> Result<()> {
        let path = meta_dir.join(FILE_NAME);
        let users: Users = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Users::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        tracing::info!(users = users.len(), "SCRAM credentials loaded");
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = users;
        *self.path.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
        Ok(())
    }

    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users.read().unwrap_or_else(|p| p.into_inner()).get(user)?.get(&mechanism).cloned()
    }

    /// (mechanism, iterations) per user; `None` lists every user.
    pub fn describe(&self, users: Option<&[String]>) -> Vec<UserCredentialInfo> {
        let all = self.users.read().unwrap_or_else(|p| p.into_inner());
        let info = |m: &BTreeMap<ScramMechanism, ScramCredential>| m.iter().map(|(k, c)| (*k, c.iterations)).collect::<Vec<_>>();
        match users {
            None => all.iter().map(|(u, m)| (u.clone(), Some(info(m)))).collect(),
            Some(names) => names.iter().map(|u| (u.clone(), all.get(u).map(info))).collect(),
        }
    }

    /// Applies the changes that are valid and persists them; returns per change None or an
    /// error (code, message). Nothing changes if persisting fails.
    pub fn alter(&self, changes: Vec<Change>) -> Vec<Option<(i16, String)>> {
        let path_guard = self.path.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.users.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            results.push(match change {
                Change::Upsert { user, mechanism, credential } => {
                    if !next.contains_key(&user) && next.len() >= USERS_MAX {
                        Some((shardlog_protocol::error_code::UNACCEPTABLE_CREDENTIAL, format!("the broker holds the maximum of {USERS_MAX} SCRAM users")))
                    } else {
                        next.entry(user).or_default().insert(mechanism, credential);
                        None
                    }
                }
                Change::Delete { user, mechanism } => match next.get_mut(&user).and_then(|m| m.remove(&mechanism)) {
                    Some(_) => {
                        if next.get(&user).is_some_and(|m| m.is_empty()) {
                            next.remove(&user);
                        }
                        None
                    }
                    None => Some((
                        shardlog_protocol::error_code::RESOURCE_NOT_FOUND,
                        format!("Attempt to delete a user credential that does not exist: {} for {user}", mechanism.name()),
                    )),
                },
            });
        }
        if let Some(path) = path_guard.as_ref() {
            if let Err(e) = persist(path, &next) {
                let msg = format!("persisting SCRAM credentials failed: {e:#}");
                tracing::error!(error = %msg, "SCRAM credential change not applied");
                return results.into_iter().map(|_| Some((shardlog_protocol::error_code::KAFKA_STORAGE_ERROR, msg.clone()))).collect();
            }
        }
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = next;
        results
    }
}

fn persist(path: &Path, users: &Users) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().context("credentials file has no directory")?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec(users)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_persist_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = ScramStore::default();
        store.load(dir.path()).unwrap();
        let salted = ScramMechanism::Sha256.salted_password(b"pw", b"salt", 4096);
        let (stored_key, server_key) = ScramMechanism::Sha256.derive(&salted);
        let credential = ScramCredential { iterations: 4096, salt: b"salt".to_vec(), stored_key, server_key };
        let results = store.alter(vec![
            Change::Upsert { user: "alice".into(), mechanism: ScramMechanism::Sha256, credential: credential.clone() },
            Change::Delete { user: "bob".into(), mechanism: ScramMechanism::Sha512 },
        ]);
        assert!(results[0].is_none());
        assert_eq!(results[1].as_ref().unwrap().0, shardlog_protocol::error_code::RESOURCE_NOT_FOUND);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("pw\""), "no password on disk");
        let again = ScramStore::default();
        again.load(dir.path()).unwrap();
        assert_eq!(again.get("alice", ScramMechanism::Sha256), Some(credential));
        assert_eq!(again.describe(None), vec![("alice".to_string(), Some(vec![(ScramMechanism::Sha256, 4096)]))]);
    }

    #[test]
    fn keys_have_the_hash_length_and_depend_on_the_password() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let salted = m.salted_password(b"pencil", b"salt", 4096);
            assert_eq!(salted.len(), m.hash_bytes());
            let (stored_key, server_key) = m.derive(&salted);
            assert_eq!((stored_key.len(), server_key.len()), (m.hash_bytes(), m.hash_bytes()));
            assert_ne!(m.derive(&m.salted_password(b"pencil2", b"salt", 4096)).0, stored_key);
        }
    }
}
