//! Phone numbers: one canonical form for a caller's number and a CRM's, so that
//! `89161234567`, `+7 916 123-45-67` and `79161234567` are found to be the same number.
//! Parsing is libphonenumber's (the `phonenumber` crate, Google's metadata), with the
//! configured default region (`[crm] default_region`) for numbers dialed without a
//! country code. Pure.

use phonenumber::country::Id as Region;
use phonenumber::Mode;

/// A phone number in E.164 (`+79161234567`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// A number kept as the PBX gave it, not a valid phone number (a short service code,
    /// a caller id the library cannot read): good for the history, never for a customer.
    pub fn as_given(raw: &str) -> PhoneNumber {
        PhoneNumber(raw.trim().to_string())
    }

    /// `+79161234567`: what the CRM's telephony pop-ups take.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// `79161234567`: the form without `+` (retailCRM's call history, and a stable part
    /// of our externalIds).
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a number could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("{0:?} is not a phone number")]
    NotANumber(String),
    #[error("unknown region {0:?} (an ISO 3166 code like \"RU\")")]
    UnknownRegion(String),
}

/// Reads numbers as dialed in one region.
#[derive(Debug, Clone, Copy)]
pub struct PhoneNormalizer {
    region: Region,
}

impl Default for PhoneNormalizer {
    fn default() -> Self {
        PhoneNormalizer { region: Region::RU }
    }
}

impl PhoneNormalizer {
    /// `region`: an ISO 3166 alpha-2 code (`RU`, `KZ`, `DE`).
    pub fn new(region: &str) -> Result<Self, PhoneError> {
        region
            .trim()
            .to_ascii_uppercase()
            .parse::<Region>()
            .map(|region| PhoneNormalizer { region })
            .map_err(|_| PhoneError::UnknownRegion(region.to_string()))
    }

    /// The canonical form of `raw`, when it is a valid number. Short numbers
    /// (extensions), service codes and garbage are errors: they are nobody's customer.
    pub fn normalize(&self, raw: &str) -> Result<PhoneNumber, PhoneError> {
        let trimmed = raw.trim();
        let valid = |p: phonenumber::PhoneNumber| phonenumber::is_valid(&p).then_some(p);
        // As dialed in the region; failing that, as written with its country code but
        // without `+` (`442079460958`, which reads as a local number in RU and is invalid).
        let parsed = phonenumber::parse(Some(self.region), trimmed)
            .ok()
            .and_then(valid)
            .or_else(|| {
                phonenumber::parse(None, format!("+{trimmed}"))
                    .ok()
                    .and_then(valid)
            })
            .ok_or_else(|| PhoneError::NotANumber(raw.to_string()))?;
        Ok(PhoneNumber(parsed.format().mode(Mode::E164).to_string()))
    }

    /// Loads the phone-number metadata (parsing the first number does: tens of
    /// milliseconds, half a second in a debug build). Run it off the async workers at
    /// start-up, so that the first call's decision does not stall event processing.
    pub fn warm_up(&self) {
        let _ = self.normalize("+74951234567");
    }

    /// Whether two written numbers are the same number.
    pub fn same(&self, a: &str, b: &str) -> bool {
        match (self.normalize(a), self.normalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_forms_are_one_number() {
        let n = PhoneNormalizer::new("RU").expect("region");
        for raw in [
            "89161234567",
            "+7 916 123-45-67",
            "79161234567",
            "8 (916) 123-45-67",
            "+79161234567",
            " 9161234567 ",
        ] {
            assert_eq!(
                n.normalize(raw).map(|p| p.e164().to_string()),
                Ok("+79161234567".to_string()),
                "{raw}"
            );
        }
        assert!(n.same("89161234567", "+7 (916) 123 45 67"));
        assert!(!n.same("89161234567", "89161234568"));
    }

    #[test]
    fn foreign_numbers_with_or_without_plus() {
        let n = PhoneNormalizer::new("ru").expect("region");
        assert_eq!(
            n.normalize("+44 20 7946 0958")
                .map(|p| p.digits().to_string()),
            Ok("442079460958".to_string())
        );
        assert_eq!(
            n.normalize("442079460958").map(|p| p.e164().to_string()),
            Ok("+442079460958".to_string())
        );
    }

    #[test]
    fn extensions_and_garbage_are_no_customer_numbers() {
        let n = PhoneNormalizer::default();
        for raw in ["101", "", "anonymous", "s", "+", "12"] {
            assert!(n.normalize(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn unknown_region_is_named() {
        assert_eq!(
            PhoneNormalizer::new("XX").map(|_| ()),
            Err(PhoneError::UnknownRegion("XX".into()))
        );
    }
}
