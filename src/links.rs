//! Signed recording links: what the CRM gets instead of a path on the PBX.
//! `{public_url}/recordings/{call_id}?exp={unix seconds}&sig={hex}` where `sig` is
//! HMAC-SHA256 over the call id and the expiry with `[http] link_secret`. Anyone holding
//! the link may listen until it expires; changing the call id or the expiry breaks the
//! signature. Pure: the time comes in.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::time::Timestamp;

type HmacSha256 = Hmac<Sha256>;

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has no valid signature")]
    BadSignature,
    #[error("the link expired")]
    Expired,
}

/// The key links are signed with: `[http] link_secret`.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(***)")
    }
}

impl LinkKey {
    pub fn new(secret: &str) -> Self {
        LinkKey(secret.as_bytes().to_vec())
    }

    /// A random key for a daemon without `link_secret`: its links stop working when it
    /// restarts, but they are never unsigned.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        LinkKey(key)
    }

    fn mac(&self, call_id: &str, expires: i64) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` fails for none.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_mac(),
        };
        mac.update(call_id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The link to `call_id`'s audio, valid until `expires`.
    pub fn link(&self, public_url: &str, call_id: &str, expires: Timestamp) -> String {
        let exp = expires.0.div_euclid(1_000_000);
        let sig = hex(&self.mac(call_id, exp).finalize().into_bytes());
        format!(
            "{}/recordings/{}?exp={exp}&sig={sig}",
            public_url.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(call_id, PATH_SEGMENT)
        )
    }

    /// Checks a link's `exp` and `sig` for `call_id` at `now`. The signature is compared
    /// in constant time.
    pub fn verify(
        &self,
        call_id: &str,
        exp: &str,
        sig: &str,
        now: Timestamp,
    ) -> Result<(), LinkError> {
        let expires: i64 = exp.parse().map_err(|_| LinkError::BadSignature)?;
        let sig = unhex(sig).ok_or(LinkError::BadSignature)?;
        self.mac(call_id, expires)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if now.0.div_euclid(1_000_000) > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

impl LinkKey {
    /// A signature of `subject` for `purpose` until `expires_secs` (Unix seconds), for the
    /// other things callbridge signs with this key (the operator panel's links, sessions
    /// and CSRF tokens). The purpose goes into the signed text, so one kind never passes
    /// for another, nor for a recording link (call ids have no `:`).
    pub fn sign(&self, purpose: &str, subject: &str, expires_secs: i64) -> String {
        let text = format!("{purpose}:{subject}");
        hex(&self.mac(&text, expires_secs).finalize().into_bytes())
    }

    /// Whether `sig` is [`LinkKey::sign`]'s for these; compared in constant time.
    pub fn check(&self, purpose: &str, subject: &str, expires_secs: i64, sig: &str) -> bool {
        let Some(sig) = unhex(sig) else {
            return false;
        };
        let text = format!("{purpose}:{subject}");
        self.mac(&text, expires_secs).verify_slice(&sig).is_ok()
    }
}

/// `HmacSha256::new_from_slice` accepts every key length; this is never reached.
fn unreachable_mac() -> HmacSha256 {
    <HmacSha256 as Mac>::new(&Default::default())
}

/// Call ids are `cb-<pbx>-<id>`; anything else in a path segment is escaped.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(link: &str) -> (String, String, String) {
        let (path, query) = link.split_once('?').expect("query");
        let id = path.rsplit('/').next().expect("id").to_string();
        let mut exp = String::new();
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = v.to_string(),
                Some(("sig", v)) => sig = v.to_string(),
                _ => {}
            }
        }
        (id, exp, sig)
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let key = LinkKey::new("s3cret");
        let now = Timestamp::from_secs(1_800_000_000);
        let expires = Timestamp::from_secs(1_800_000_000 + 90 * 86_400);
        let link = key.link(
            "https://cb.example.com/",
            "cb-office-1795627676.33",
            expires,
        );
        assert!(
            link.starts_with(
                "https://cb.example.com/recordings/cb-office-1795627676.33?exp=1807776000&sig="
            ),
            "{link}"
        );
        let (id, exp, sig) = parts(&link);
        assert_eq!(sig.len(), 64);
        assert_eq!(key.verify(&id, &exp, &sig, now), Ok(()));
        let after = Timestamp::from_secs(1_800_000_000 + 90 * 86_400 + 1);
        assert_eq!(key.verify(&id, &exp, &sig, after), Err(LinkError::Expired));
    }

    #[test]
    fn tampering_with_any_part_breaks_the_signature() {
        let key = LinkKey::new("s3cret");
        let now = Timestamp::from_secs(1_800_000_000);
        let link = key.link(
            "http://h",
            "cb-office-1.1",
            Timestamp::from_secs(1_900_000_000),
        );
        let (id, exp, sig) = parts(&link);
        let bad = Err(LinkError::BadSignature);
        assert_eq!(key.verify("cb-office-1.2", &exp, &sig, now), bad);
        assert_eq!(key.verify(&id, "1900000001", &sig, now), bad);
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(key.verify(&id, &exp, &flipped, now), bad);
        assert_eq!(key.verify(&id, &exp, "", now), bad);
        assert_eq!(key.verify(&id, &exp, "zz", now), bad);
        assert_eq!(key.verify(&id, "soon", &sig, now), bad);
        assert_eq!(LinkKey::new("other").verify(&id, &exp, &sig, now), bad);
    }

    #[test]
    fn the_key_never_shows() {
        assert_eq!(format!("{:?}", LinkKey::new("s3cret")), "LinkKey(***)");
    }
}
