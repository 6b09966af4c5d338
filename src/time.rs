//! Time as a value. The pure middle (normalize, tracker, actions) never reads a clock:
//! every event carries the moment it happened, taken from the PBX's own timestamp when it
//! sends one and from the socket read otherwise.

use std::fmt;

/// Microseconds since the Unix epoch (UTC).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(now.as_micros() as i64)
    }

    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Parses the AMI / ESL form `1795627488.472224` (seconds with a fraction). Runs for
    /// every event the tracker keeps, so it works on bytes.
    pub fn parse_epoch(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        let (secs, frac) = match text.iter().position(|&b| b == b'.') {
            Some(dot) => (&text[..dot], &text[dot + 1..]),
            None => (text, &[][..]),
        };
        let secs = parse_i64(secs)?;
        if !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Keep the first six digits (microseconds), padding shorter fractions.
        let mut micros: i64 = 0;
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
        Some(Timestamp(secs.checked_mul(1_000_000)?.checked_add(micros)?))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Whole seconds from `earlier` to `self`, rounded to the nearest second, never negative.
    pub fn secs_since(self, earlier: Timestamp) -> u32 {
        let micros = (self.0 - earlier.0).max(0);
        ((micros + 500_000) / 1_000_000).min(i64::from(u32::MAX)) as u32
    }

    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// `Y-m-d H:i:s` in the machine's local time zone, as retailCRM expects its dates.
    pub fn to_crm_local(self) -> String {
        self.to_chrono()
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_chrono().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// `str::parse::<i64>` on bytes: an optional sign, then ASCII digits; `None` when empty,
/// on any other byte, or on overflow.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ami_timestamps() {
        assert_eq!(
            Timestamp::parse_epoch("1795627488.472224"),
            Some(Timestamp(1_795_627_488_472_224))
        );
        assert_eq!(Timestamp::parse_epoch("12.5"), Some(Timestamp(12_500_000)));
        assert_eq!(Timestamp::parse_epoch("12"), Some(Timestamp(12_000_000)));
        assert_eq!(
            Timestamp::parse_epoch("1.1234567"),
            Some(Timestamp(1_123_456))
        );
        assert_eq!(Timestamp::parse_epoch("abc"), None);
        assert_eq!(Timestamp::parse_epoch("1.2x"), None);
        assert_eq!(Timestamp::parse_epoch(""), None);
    }

    #[test]
    fn seconds_parse_like_str_parse() {
        for text in [
            "",
            "+",
            "-",
            "0",
            "-0",
            "+7",
            "0012",
            "12a",
            " 1",
            "1 ",
            "+-1",
            "-12",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
        ] {
            assert_eq!(
                parse_i64(text.as_bytes()),
                text.parse::<i64>().ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rounds_seconds_between() {
        let a = Timestamp(10_000_000);
        assert_eq!(Timestamp(16_020_000).secs_since(a), 6);
        assert_eq!(Timestamp(16_600_000).secs_since(a), 7);
        assert_eq!(Timestamp(9_000_000).secs_since(a), 0);
    }
}
