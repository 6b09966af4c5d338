//! Who may see a panel: an employee's signed link, `{public_url}/panel/login?ext=101&exp=…&sig=…`
//! (HMAC with `[http] link_secret` over the extension and the expiry, made by
//! `callbridge panel-link`), opens a session kept in an HttpOnly, SameSite=Strict cookie
//! that carries the same three things under its own signature; every POST carries a CSRF
//! token derived from the session. Pure: the time comes in.

use crate::links::LinkKey;
use crate::time::Timestamp;

/// The session cookie's name.
pub const COOKIE: &str = "cb_panel";

/// Why a link, a session or a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("the panel link is not valid (its signature does not match)")]
    Forged,
    #[error("the panel link has expired: ask for a new one (callbridge panel-link)")]
    Expired,
    #[error("no panel session: open the panel with your link")]
    NoSession,
}

/// An employee's open panel: their extension, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub extension: String,
    /// Unix seconds.
    pub expires: i64,
}

/// Signs and checks links, sessions and CSRF tokens with `[http] link_secret`.
#[derive(Clone, Debug)]
pub struct PanelAccess {
    key: LinkKey,
}

const LINK: &str = "panel-link";
const SESSION: &str = "panel-session";
const CSRF: &str = "panel-csrf";

impl PanelAccess {
    pub fn new(key: LinkKey) -> Self {
        PanelAccess { key }
    }

    /// The link that opens `extension`'s panel until `expires`.
    pub fn link(&self, public_url: &str, extension: &str, expires: Timestamp) -> String {
        let exp = expires.0.div_euclid(1_000_000);
        let sig = self.key.sign(LINK, extension, exp);
        format!(
            "{}/panel/login?ext={}&exp={exp}&sig={sig}",
            public_url.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(extension, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    /// The session a link opens, if it is genuine and not expired at `now`.
    pub fn open(
        &self,
        ext: &str,
        exp: &str,
        sig: &str,
        now: Timestamp,
    ) -> Result<Session, AccessError> {
        let session = self.verified(LINK, ext, exp, sig)?;
        if now.0.div_euclid(1_000_000) > session.expires {
            return Err(AccessError::Expired);
        }
        Ok(session)
    }

    /// The cookie value that keeps `session`: `<ext>.<exp>.<sig>`.
    pub fn cookie_value(&self, session: &Session) -> String {
        let sig = self.key.sign(SESSION, &session.extension, session.expires);
        format!("{}.{}.{sig}", hex_of(&session.extension), session.expires)
    }

    /// The session a cookie value keeps, if genuine and not expired.
    pub fn session(&self, cookie: &str, now: Timestamp) -> Result<Session, AccessError> {
        let mut parts = cookie.trim().splitn(3, '.');
        let (Some(ext), Some(exp), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AccessError::NoSession);
        };
        let ext = text_of(ext).ok_or(AccessError::Forged)?;
        let session = self.verified(SESSION, &ext, exp, sig)?;
        if now.0.div_euclid(1_000_000) > session.expires {
            return Err(AccessError::Expired);
        }
        Ok(session)
    }

    /// The CSRF token every POST of `session` must carry.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.key.sign(CSRF, &session.extension, session.expires)
    }

    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        self.key
            .check(CSRF, &session.extension, session.expires, token)
    }

    fn verified(
        &self,
        purpose: &str,
        ext: &str,
        exp: &str,
        sig: &str,
    ) -> Result<Session, AccessError> {
        let expires: i64 = exp.trim().parse().map_err(|_| AccessError::Forged)?;
        if ext.is_empty() || !self.key.check(purpose, ext, expires, sig.trim()) {
            return Err(AccessError::Forged);
        }
        Ok(Session {
            extension: ext.to_string(),
            expires,
        })
    }
}

/// The `session` cookie in a `Cookie` header.
pub fn cookie_in(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// An extension in a cookie: hex, so no character of it needs escaping.
fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn text_of(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) || hex.len() > 64 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn access() -> PanelAccess {
        PanelAccess::new(LinkKey::new("panel-test-secret"))
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp(secs * 1_000_000)
    }

    fn query(link: &str) -> (String, String, String) {
        let q = link.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let get = |k: &str| {
            q.split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
                .to_string()
        };
        (get("ext"), get("exp"), get("sig"))
    }

    #[test]
    fn a_link_opens_its_extensions_session_until_it_expires() {
        let a = access();
        let link = a.link("https://cb.example.com/", "101", at(NOW + 60));
        assert!(
            link.starts_with("https://cb.example.com/panel/login?ext=101&exp="),
            "{link}"
        );
        let (ext, exp, sig) = query(&link);
        let s = a.open(&ext, &exp, &sig, at(NOW)).unwrap();
        assert_eq!(s.extension, "101");
        assert_eq!(
            a.open(&ext, &exp, &sig, at(NOW + 61)),
            Err(AccessError::Expired)
        );
        assert_eq!(
            a.open("102", &exp, &sig, at(NOW)),
            Err(AccessError::Forged),
            "another extension"
        );
        let later = (NOW + 6000).to_string();
        assert_eq!(
            a.open(&ext, &later, &sig, at(NOW)),
            Err(AccessError::Forged),
            "a longer life"
        );
        let other = PanelAccess::new(LinkKey::new("another-secret"));
        assert_eq!(
            other.open(&ext, &exp, &sig, at(NOW)),
            Err(AccessError::Forged)
        );
    }

    #[test]
    fn a_session_cookie_and_its_csrf_token_are_its_own() {
        let a = access();
        let s = Session {
            extension: "101".into(),
            expires: NOW + 60,
        };
        let cookie = a.cookie_value(&s);
        assert_eq!(a.session(&cookie, at(NOW)), Ok(s.clone()));
        assert_eq!(a.session(&cookie, at(NOW + 61)), Err(AccessError::Expired));
        // The link's signature is not a session's, and the other way round.
        let (ext, exp, sig) = query(&a.link("http://x", "101", at(NOW + 60)));
        assert_eq!(
            a.session(&format!("{}.{exp}.{sig}", hex_of(&ext)), at(NOW)),
            Err(AccessError::Forged)
        );
        let token = a.csrf_token(&s);
        assert!(a.csrf_ok(&s, &token));
        assert!(!a.csrf_ok(&s, ""));
        let other = Session {
            extension: "102".into(),
            expires: NOW + 60,
        };
        assert!(!a.csrf_ok(&other, &token));
        assert_eq!(
            cookie_in(&format!("a=1; {COOKIE}={cookie}; b=2")),
            Some(cookie.as_str())
        );
        assert_eq!(a.session("garbage", at(NOW)), Err(AccessError::NoSession));
    }
}
