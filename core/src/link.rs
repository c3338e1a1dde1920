//! Share links: a read-only, expiring signature for one job (`?sig=`), accepted
//! instead of a token on that job's status, events and raw log.
//!
//! Rules:
//! 1. A signature is `<expires>.<mac>`: `expires` is the expiry in Unix seconds
//!    (decimal, no sign, no leading zero), `mac` the unpadded URL-safe base64 of
//!    HMAC-SHA256 over `"spout-link/1\0" + job id + "\0" + expires`, keyed by the
//!    server's link key (the same key on every server of a cluster).
//! 2. The expiry is part of what is signed, so it cannot be moved; the job id too,
//!    so a link to one job opens no other.
//! 3. The MAC is compared in constant time ([`Mac::verify_slice`]).
//! 4. A link grants watching one job, nothing else: never start, stop or list.
//! 5. The clock is an input (`now` in Unix seconds): this module reads no time.

use crate::id::JobId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The shortest accepted link key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// What is signed before the job id: names the scheme and its version, so a MAC
/// made for anything else can never pass as a link.
const DOMAIN: &[u8] = b"spout-link/1\0";

/// Length of the MAC's text form: 32 bytes as unpadded base64.
const MAC_TEXT_LEN: usize = 43;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The server's secret for signing links. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey(Vec<u8>);

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkKey({} bytes)", self.0.len())
    }
}

impl LinkKey {
    /// A key from its bytes (the config's `link_key`, or the data dir's key file).
    ///
    /// # Errors
    /// [`LinkError::ShortKey`] below [`MIN_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Result<LinkKey, LinkError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(LinkError::ShortKey);
        }
        Ok(LinkKey(bytes.to_vec()))
    }

    fn mac(&self, job: JobId, expires: u64) -> Hmac<Sha256> {
        // invariant: HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("hmac takes any key length");
        mac.update(DOMAIN);
        mac.update(job.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

/// Why a link key or signature is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The key is shorter than [`MIN_KEY_BYTES`].
    ShortKey,
    /// The text is not a signature at all.
    Malformed,
    /// A valid signature whose time has passed.
    Expired,
    /// The signature is not this server's for this job: tampered with, for
    /// another job, or made with another key.
    Mismatch,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkError::ShortKey => "the link key must be at least 16 bytes",
            LinkError::Malformed => "the link signature is malformed",
            LinkError::Expired => "the link has expired",
            LinkError::Mismatch => "the link signature is not valid for this job",
        })
    }
}

impl std::error::Error for LinkError {}

/// The signature of a link to `job` that expires at `expires` (Unix seconds).
///
/// # Examples
/// ```
/// use spout_core::link::{sign, verify, LinkKey};
/// use spout_core::JobId;
/// let key = LinkKey::new(b"0123456789abcdef").unwrap();
/// let job = JobId::from_random([7; 16]);
/// let sig = sign(&key, job, 2_000_000_000);
/// assert_eq!(verify(&key, job, &sig, 1_900_000_000), Ok(2_000_000_000));
/// ```
#[must_use]
pub fn sign(key: &LinkKey, job: JobId, expires: u64) -> String {
    let tag = key.mac(job, expires).finalize().into_bytes();
    let mut out = expires.to_string();
    out.push('.');
    encode_b64(&tag, &mut out);
    out
}

/// Checks `sig` for `job` at `now` (Unix seconds); returns its expiry.
///
/// # Errors
/// [`LinkError::Malformed`], [`LinkError::Mismatch`] (checked before the expiry,
/// so a forged signature never learns whether its time would have passed), then
/// [`LinkError::Expired`] at or after the expiry.
pub fn verify(key: &LinkKey, job: JobId, sig: &str, now: u64) -> Result<u64, LinkError> {
    let (expires, mac) = parse(sig).ok_or(LinkError::Malformed)?;
    key.mac(job, expires)
        .verify_slice(&mac)
        .map_err(|_| LinkError::Mismatch)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(expires)
}

/// Splits `<expires>.<mac>`; `None` unless both parts have their one exact form.
fn parse(sig: &str) -> Option<(u64, [u8; 32])> {
    let (expires, mac) = sig.split_once('.')?;
    let canonical = !expires.is_empty()
        && expires.bytes().all(|b| b.is_ascii_digit())
        && (expires == "0" || !expires.starts_with('0'));
    if !canonical || mac.len() != MAC_TEXT_LEN {
        return None;
    }
    Some((expires.parse().ok()?, decode_b64(mac.as_bytes())?))
}

fn encode_b64(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 0x3F) as usize]));
        }
    }
}

/// Decodes the 43-character form of 32 bytes; `None` for any other text,
/// including a last character with bits set past the 256th (one text per MAC).
fn decode_b64(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut bits: u32 = 0;
    let mut held = 0;
    let mut at = 0;
    for &c in text {
        let v = B64.iter().position(|&b| b == c)? as u32;
        bits = bits << 6 | v;
        held += 6;
        if held >= 8 {
            held -= 8;
            *out.get_mut(at)? = (bits >> held) as u8;
            at += 1;
            bits &= (1 << held) - 1;
        }
    }
    (at == 32 && bits == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::new(b"a-long-random-link-key").unwrap()
    }

    fn job(n: u8) -> JobId {
        JobId::from_random([n; 16])
    }

    #[test]
    fn round_trip_and_form() {
        let sig = sign(&key(), job(1), 1_800_000_000);
        let (expires, mac) = sig.split_once('.').unwrap();
        assert_eq!(expires, "1800000000");
        assert_eq!(mac.len(), MAC_TEXT_LEN);
        assert!(mac.bytes().all(|b| B64.contains(&b)));
        assert_eq!(
            verify(&key(), job(1), &sig, 1_799_999_999),
            Ok(1_800_000_000)
        );
    }

    #[test]
    fn base64_round_trips() {
        for seed in 0..=255u8 {
            let bytes: [u8; 32] =
                std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let mut text = String::new();
            encode_b64(&bytes, &mut text);
            assert_eq!(decode_b64(text.as_bytes()), Some(bytes));
        }
    }

    #[test]
    fn expiry_is_exclusive() {
        let sig = sign(&key(), job(1), 100);
        assert_eq!(verify(&key(), job(1), &sig, 99), Ok(100));
        assert_eq!(verify(&key(), job(1), &sig, 100), Err(LinkError::Expired));
        assert_eq!(
            verify(&key(), job(1), &sig, u64::MAX),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn other_job_other_key_and_tampering_are_mismatches() {
        let sig = sign(&key(), job(1), 1_000);
        assert_eq!(verify(&key(), job(2), &sig, 0), Err(LinkError::Mismatch));
        let other = LinkKey::new(b"another-long-link-key").unwrap();
        assert_eq!(verify(&other, job(1), &sig, 0), Err(LinkError::Mismatch));
        // A later expiry with the same MAC.
        let moved = sig.replacen("1000", "9000", 1);
        assert_eq!(verify(&key(), job(1), &moved, 0), Err(LinkError::Mismatch));
        // Every single-character change of the MAC.
        let dot = sig.find('.').unwrap();
        for i in dot + 1..sig.len() {
            for &c in B64 {
                let mut t = sig.clone().into_bytes();
                if t[i] == c {
                    continue;
                }
                t[i] = c;
                let t = String::from_utf8(t).unwrap();
                assert!(
                    matches!(
                        verify(&key(), job(1), &t, 0),
                        Err(LinkError::Mismatch | LinkError::Malformed)
                    ),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn malformed_table() {
        let good = sign(&key(), job(1), 1_000);
        let mac = good.split_once('.').unwrap().1;
        let rows = [
            String::new(),
            "1000".into(),
            format!("1000{mac}"),
            format!(".{mac}"),
            format!("01000.{mac}"),
            format!("+1000.{mac}"),
            format!("-1.{mac}"),
            format!("99999999999999999999999.{mac}"),
            format!("1000.{mac}="),
            format!("1000.{}", &mac[1..]),
            format!("1000.{mac}A"),
            format!("1000.{}", mac.replace(|c: char| c.is_ascii_digit(), "+")),
            format!("1000.{}/", &mac[..42]),
            "1000.é".into(),
        ];
        for row in rows {
            if row == good {
                continue;
            }
            assert_eq!(
                verify(&key(), job(1), &row, 0),
                Err(LinkError::Malformed),
                "{row:?}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_and_never_printed() {
        assert_eq!(LinkKey::new(b"short").unwrap_err(), LinkError::ShortKey);
        let k = LinkKey::new(b"secret-secret-secret").unwrap();
        assert!(!format!("{k:?}").contains("secret"));
    }
}
