//! Record keys and cell keys. A record key is the first byte of HMAC-SHA-256 over the incident's
//! stable identity (source, agency incident id) under the deployment's secret: fixed for the
//! incident's life (revisions, restarts and rebuilds do not change it), uniform over 0..=255,
//! and not computable without the secret — so nobody can strip the noise off a published cell
//! by recomputing its key.

use sha2::{Digest, Sha256};

/// Cell keys take this many values (0..=255), the resolution of the perturbation lookup.
pub const CELL_KEYS: u32 = 256;

/// SHA-256's block size, for HMAC.
const BLOCK: usize = 64;

/// The record key of incident `agency_incident_id` of `source` under `secret`.
pub fn record_key(secret: &[u8], source: &str, agency_incident_id: &str) -> u8 {
    // The unit separator keeps ("ab", "c") and ("a", "bc") apart.
    let mac = hmac_sha256(secret, &[source.as_bytes(), &[0x1f], agency_incident_id.as_bytes()]);
    mac[0]
}

/// The record keys of one deployment: HMAC-SHA-256 under its secret with the key's pad blocks
/// hashed once, so a record key costs two SHA-256 compressions (the fold computes one per new
/// incident).
#[derive(Clone)]
pub struct RecordKeys {
    inner: Sha256,
    outer: Sha256,
    fingerprint: String,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordKeys({})", self.fingerprint)
    }
}

/// A secret too short to key record keys.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "the disclosure secret holds {found} bytes; it needs at least {MIN_SECRET_BYTES} random bytes \
     (write 64 hex digits from a random source to the secret file)"
)]
pub struct WeakSecret {
    pub found: usize,
}

/// Fewer random bytes than this would let someone guess the secret and strip the noise.
pub const MIN_SECRET_BYTES: usize = 16;

impl RecordKeys {
    pub fn new(secret: &[u8]) -> Result<RecordKeys, WeakSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret { found: secret.len() });
        }
        let key = block_key(secret);
        let mut inner = Sha256::new();
        inner.update(key.map(|k| k ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(key.map(|k| k ^ 0x5c));
        let fingerprint = hmac_sha256(secret, &[b"observatory record keys"])[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(RecordKeys { inner, outer, fingerprint })
    }

    /// The secret as the secret file holds it: hex digits (whitespace around them ignored).
    pub fn from_hex(text: &str) -> Result<RecordKeys, WeakSecret> {
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        RecordKeys::new(&bytes.unwrap_or_default())
    }

    /// The record key of incident `agency_incident_id` of `source`: equal to [`record_key`]
    /// under the same secret.
    pub fn key(&self, source: &str, agency_incident_id: &str) -> u8 {
        let mut inner = self.inner.clone();
        inner.update(source.as_bytes());
        inner.update([0x1f]);
        inner.update(agency_incident_id.as_bytes());
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize()[0]
    }

    /// Names the secret without revealing it (the first 8 bytes of an HMAC of a constant): a
    /// projection records it, and a query refuses to serve a projection keyed by another secret.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The cell key of a cell whose records' keys sum to `sum_of_record_keys` (any width: only the
/// sum modulo 256 matters, so sums of fine cells add up to the sum of any aggregate of them).
pub fn cell_key(sum_of_record_keys: u64) -> u8 {
    (sum_of_record_keys % u64::from(CELL_KEYS)) as u8
}

/// The HMAC key block: the secret, or its hash when longer than a block, zero-padded.
fn block_key(secret: &[u8]) -> [u8; BLOCK] {
    let mut key = [0u8; BLOCK];
    if secret.len() > BLOCK {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    key
}

/// HMAC-SHA-256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = block_key(secret);
    let pad = |byte: u8| key.map(|k| k ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 test cases 1 and 2 (and case 6, a key longer than a block).
    #[test]
    fn hmac_matches_the_rfc_4231_vectors() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_record_key_depends_on_the_secret_and_the_whole_identity() {
        let key = record_key(b"secret", "pn", "PN-1");
        assert_eq!(key, record_key(b"secret", "pn", "PN-1"), "stable");
        let others = [
            record_key(b"other secret", "pn", "PN-1"),
            record_key(b"secret", "gn", "PN-1"),
            record_key(b"secret", "pn", "PN-2"),
        ];
        // One byte: a collision with one of three is possible but not with all three.
        assert!(others.iter().any(|&k| k != key));
        assert_ne!(
            hmac_sha256(b"s", &[b"ab", &[0x1f], b"c"]),
            hmac_sha256(b"s", &[b"a", &[0x1f], b"bc"])
        );
    }

    #[test]
    fn record_keys_are_close_to_uniform() {
        let mut counts = [0u32; 256];
        for i in 0..256_000 {
            counts[usize::from(record_key(b"deployment secret", "pn", &format!("PN-{i}")))] += 1;
        }
        // 1 000 expected per key; a chi-square with 255 degrees of freedom stays far below 400
        // for a uniform hash (its 99.99th percentile is about 360).
        let chi2: f64 = counts.iter().map(|&c| (f64::from(c) - 1000.0).powi(2) / 1000.0).sum();
        assert!(chi2 < 400.0, "chi-square {chi2}");
    }

    #[test]
    fn the_cell_key_of_an_aggregate_is_the_sum_of_its_parts() {
        let fine = [200u64, 100, 255, 3];
        let whole: u64 = fine.iter().sum();
        let from_parts = fine.iter().map(|&s| u64::from(cell_key(s))).sum::<u64>();
        assert_eq!(cell_key(whole), cell_key(from_parts));
        assert_eq!(cell_key(256), 0);
    }

    #[test]
    fn precomputed_record_keys_equal_the_plain_hmac_and_refuse_weak_secrets() {
        let secret = b"a deployment secret of 32 bytes!";
        let keys = RecordKeys::new(secret).unwrap();
        for i in 0..200 {
            let id = format!("PN-{i}");
            assert_eq!(keys.key("pn", &id), record_key(secret, "pn", &id));
        }
        let long = [7u8; 100];
        assert_eq!(RecordKeys::new(&long).unwrap().key("gn", "x"), record_key(&long, "gn", "x"));
        assert_eq!(RecordKeys::new(b"short").err(), Some(WeakSecret { found: 5 }));
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let from_hex = RecordKeys::from_hex(&format!("{hex}\n")).unwrap();
        assert_eq!(from_hex.fingerprint(), keys.fingerprint());
        assert_eq!(from_hex.fingerprint().len(), 16);
        assert_ne!(RecordKeys::new(&long).unwrap().fingerprint(), keys.fingerprint());
        assert_eq!(
            RecordKeys::from_hex("not hex at all, but long enough").err(),
            Some(WeakSecret { found: 0 })
        );
    }
}
