//! Ids of records and users in the CRM. retailCRM numbers them (`3`, `1042`); Creatio
//! names them with GUIDs (`a1b2c3d4-…`). The matrix and the outbox carry them without
//! knowing which: a `CrmId` is either, and each adapter reads the form its CRM uses.
//!
//! Stored actions are JSON in the outbox, so the serde form is a storage format: a
//! numeric id is written as a JSON number (as before there were GUIDs), any other as a
//! string, and both are read back.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest id kept: a GUID is 36 characters, a number at most 20.
pub const MAX_ID_LEN: usize = 38;

/// An id of a record or a user in the CRM. Small and `Copy`, like the numbers it
/// replaced: ids are passed around by value in the matrix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrmId {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

impl CrmId {
    /// An id as the CRM wrote it (`"3"`, `"a1b2c3d4-…"`); `None` when blank or longer
    /// than [`MAX_ID_LEN`].
    pub fn new(text: &str) -> Option<CrmId> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_ID_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_ID_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(CrmId {
            len: text.len() as u8,
            bytes,
        })
    }

    /// A numeric id (retailCRM's), usable in constants.
    pub const fn number(mut n: u64) -> CrmId {
        // At most 20 digits, written from the end, then moved to the front.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = digits.len() - at;
        let mut bytes = [0u8; MAX_ID_LEN];
        let mut i = 0;
        while i < len {
            bytes[i] = digits[at + i];
            i += 1;
        }
        CrmId {
            len: len as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        // Built from a `&str` and cut at its length: always UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The id as a number, when it is one (retailCRM's ids).
    pub fn as_u64(&self) -> Option<u64> {
        let text = self.as_str();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    /// Whether the id has a GUID's form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex).
    pub fn is_guid(&self) -> bool {
        is_guid(self.as_str())
    }

    /// Reads an id from a JSON value: a number, or a non-blank string.
    pub fn from_json(value: &serde_json::Value) -> Option<CrmId> {
        match value {
            serde_json::Value::Number(n) => n.as_u64().map(CrmId::from),
            serde_json::Value::String(s) => CrmId::new(s),
            _ => None,
        }
    }

    /// The id as JSON: a number when it is one, else a string.
    pub fn to_json(&self) -> serde_json::Value {
        match self.as_u64() {
            Some(n) => n.into(),
            None => self.as_str().into(),
        }
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits.
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl From<u64> for CrmId {
    fn from(n: u64) -> CrmId {
        CrmId::number(n)
    }
}

impl fmt::Display for CrmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CrmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

impl Serialize for CrmId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(n) => serializer.serialize_u64(n),
            None => serializer.serialize_str(self.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for CrmId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CrmId, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Number(u64),
            Text(String),
        }
        match Form::deserialize(deserializer)? {
            Form::Number(n) => Ok(CrmId::from(n)),
            Form::Text(s) => {
                CrmId::new(&s).ok_or_else(|| serde::de::Error::custom("an empty CRM id"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_numbers_and_guids_strings() {
        let n = CrmId::from(42);
        assert_eq!(serde_json::to_string(&n).unwrap_or_default(), "42");
        assert_eq!(n.as_u64(), Some(42));
        let g = CrmId::new("a1b2c3d4-0000-4000-8000-0000000000ab").expect("id");
        assert!(g.is_guid());
        assert_eq!(g.as_u64(), None);
        assert_eq!(
            serde_json::to_string(&g).unwrap_or_default(),
            "\"a1b2c3d4-0000-4000-8000-0000000000ab\""
        );
        for text in ["42", "\"42\"", "\"a1b2c3d4-0000-4000-8000-0000000000ab\""] {
            let id: CrmId = serde_json::from_str(text).expect("reads back");
            assert!(id == n || id == g, "{text}");
        }
        assert!(serde_json::from_str::<CrmId>("\"  \"").is_err());
        assert!(!CrmId::from(7).is_guid());
        assert!(!is_guid("a1b2c3d4-0000-4000-8000-00000000zzzz"));
    }
}
