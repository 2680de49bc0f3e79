//! Deterministic ids: the same namespace and key always give the same id, so a repeated
//! effect (a comment, an event, a job) overwrites or is recognised instead of duplicating.

/// A deterministic UUID-shaped id from a namespace and a key (sha-256, UUIDv8 layout), used for
/// comment ids and event ids so that a repeated effect overwrites instead of duplicating.
pub fn stable_id(namespace: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(namespace.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}
