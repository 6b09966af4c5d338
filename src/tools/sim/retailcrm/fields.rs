//! Reading an entity's JSON fields and collecting what is wrong with them, in the
//! messages the real service gives (Symfony's wording), and the value helpers the
//! resources share (ids, phone numbers, dates).

use serde_json::{json, Map, Value};

use super::errors::{Errors, SimError};

pub(super) const BLANK: &str = "This value should not be blank.";
pub(super) const CHOICE: &str = "The value you selected is not a valid choice.";
pub(super) const NOT_JSON: &str = "This value should be valid JSON.";
pub(super) const NOT_STRING: &str = "This value should be of type string.";
pub(super) const NOT_INT: &str = "This value should be of type integer.";
const NOT_BOOL: &str = "This value should be of type boolean.";
pub(super) const NOT_ARRAY: &str = "This value should be of type array.";
pub(super) const NOT_DATETIME: &str = "This value is not a valid datetime.";

pub(super) fn add_err(errors: &mut Errors, key: &str, msg: &str) {
    errors
        .entry(key.to_string())
        .or_insert_with(|| Value::String(msg.to_string()));
}

fn key_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}[{key}]")
    }
}

/// Reads the fields of one JSON object, collecting errors under `prefix`.
pub(super) struct Fields<'a, 'e> {
    obj: &'a Map<String, Value>,
    prefix: String,
    errors: &'e mut Errors,
}

impl<'a, 'e> Fields<'a, 'e> {
    pub(super) fn new(
        obj: &'a Map<String, Value>,
        prefix: &str,
        errors: &'e mut Errors,
    ) -> Fields<'a, 'e> {
        Fields {
            obj,
            prefix: prefix.to_string(),
            errors,
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    pub(super) fn err(&mut self, key: &str, msg: &str) {
        let path = key_path(&self.prefix, key);
        add_err(self.errors, &path, msg);
    }

    pub(super) fn str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                self.err(key, NOT_STRING);
                None
            }
        }
    }

    pub(super) fn req_str(&mut self, key: &str) -> Option<String> {
        let v = self.str(key).filter(|s| !s.trim().is_empty());
        if v.is_none() {
            self.err(key, BLANK);
        }
        v
    }

    pub(super) fn choice(&mut self, key: &str, allowed: &[&str], required: bool) -> Option<String> {
        let v = if required {
            self.req_str(key)
        } else {
            self.str(key)
        };
        match v {
            Some(s) if allowed.contains(&s.as_str()) => Some(s),
            Some(_) => {
                self.err(key, CHOICE);
                None
            }
            None => None,
        }
    }

    pub(super) fn u64(&mut self, key: &str) -> Option<u64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match as_u64(v) {
                Some(n) => Some(n),
                None => {
                    self.err(key, NOT_INT);
                    None
                }
            },
        }
    }

    pub(super) fn bool(&mut self, key: &str) -> Option<bool> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) if v == &json!(1) || v == &json!("1") || v == &json!("true") => Some(true),
            Some(v) if v == &json!(0) || v == &json!("0") || v == &json!("false") => Some(false),
            Some(_) => {
                self.err(key, NOT_BOOL);
                None
            }
        }
    }

    pub(super) fn datetime(&mut self, key: &str, format: &str) -> Option<String> {
        let s = self.str(key)?;
        if chrono::NaiveDateTime::parse_from_str(&s, format).is_ok() {
            Some(s)
        } else {
            self.err(key, NOT_DATETIME);
            None
        }
    }

    pub(super) fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.err(key, "This value should be of type object.");
                None
            }
        }
    }

    pub(super) fn array(&mut self, key: &str) -> Option<&'a Vec<Value>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                self.err(key, NOT_ARRAY);
                None
            }
        }
    }

    /// The fields not in `known`, for an entity's `extra`.
    pub(super) fn rest(&self, known: &[&str]) -> Map<String, Value> {
        self.obj
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn now_datetime() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The digits of a phone number that identify it: the last ten (so `+7 900 …` and `8 900 …`
/// meet), or all of them when shorter.
pub(super) fn phone_key(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let skip = digits.len().saturating_sub(10);
    Some(digits[skip..].to_string())
}

/// Whether a search string is a phone number rather than a name.
pub(super) fn looks_like_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 5 && s.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c))
}

pub(super) fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

pub(super) fn entity_object(v: Value, name: &str) -> Result<Map<String, Value>, SimError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(SimError::entity1(
            name,
            "This value should be of type object.",
        )),
    }
}
