//! The Creatio simulator's data: one table per entity of [`schema`](super::schema),
//! written the way Creatio writes (every column present, an unset lookup the empty GUID,
//! `CreatedOn`/`ModifiedOn` stamped, a communication's `SearchNumber` = its number's
//! digits reversed, a case numbered `SR00001`…, a lookup that points nowhere refused)
//! and read with OData's `$filter`, `$select`, `$orderby`, `$top` and `$skip`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::filter::{self, Columns};
use super::schema::{self, Kind};

/// Creatio's empty GUID: a lookup that points nowhere.
pub const EMPTY_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// An OData refusal: HTTP status and the `error.message` of `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct OdataError {
    pub status: u16,
    pub message: String,
}

impl OdataError {
    pub fn bad(message: impl Into<String>) -> OdataError {
        OdataError {
            status: 400,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> OdataError {
        OdataError {
            status: 404,
            message: message.into(),
        }
    }
}

/// A read of a collection: the system query options.
#[derive(Debug, Default)]
pub struct Query {
    pub filter: Option<String>,
    pub select: Option<String>,
    pub orderby: Option<String>,
    pub top: Option<usize>,
    pub skip: Option<usize>,
}

impl Query {
    /// Reads `$filter=…&$select=…` (percent-decoded); an unknown `$` option is refused.
    pub fn parse(raw: Option<&str>) -> Result<Query, OdataError> {
        let mut q = Query::default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| OdataError::bad(format!("the query string cannot be read: {e}")))?;
        for (key, value) in pairs {
            let number = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| OdataError::bad(format!("{key}={v} is not a number")))
            };
            match key.as_str() {
                "$filter" => q.filter = Some(value),
                "$select" => q.select = Some(value),
                "$orderby" => q.orderby = Some(value),
                "$top" => q.top = Some(number(&value)?),
                "$skip" => q.skip = Some(number(&value)?),
                "$count" | "$format" | "$expand" => {}
                other if other.starts_with('$') => {
                    return Err(OdataError::bad(format!(
                        "The query parameter '{other}' is not supported."
                    )))
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Every table.
#[derive(Debug, Default)]
pub struct Db {
    tables: HashMap<&'static str, Vec<Map<String, Value>>>,
    cases_numbered: u32,
}

impl Db {
    /// The records of `entity`, in the order they were made.
    pub fn records(&self, entity: &str) -> Vec<Value> {
        self.tables
            .get(entity)
            .map(|t| t.iter().cloned().map(Value::Object).collect())
            .unwrap_or_default()
    }

    fn find(&self, entity: &str, id: &str) -> Option<&Map<String, Value>> {
        self.tables
            .get(entity)?
            .iter()
            .find(|r| r.get("Id").and_then(Value::as_str) == Some(id))
    }

    /// `POST {entity}`: the record as Creatio stores it.
    pub fn insert(
        &mut self,
        entity: &str,
        body: &Map<String, Value>,
        now: &str,
    ) -> Result<Map<String, Value>, OdataError> {
        let entity = known(entity)?;
        let columns = schema::columns(entity).unwrap_or_default();
        let mut record = Map::new();
        for (name, kind) in &columns {
            record.insert((*name).to_string(), empty(*kind));
        }
        for (name, value) in body {
            record.insert(name.clone(), self.checked(entity, name, value)?);
        }
        let id = match record.get("Id").and_then(Value::as_str) {
            Some(id) if id != EMPTY_GUID => id.to_string(),
            _ => new_guid(),
        };
        if self.find(entity, &id).is_some() {
            return Err(OdataError::bad(format!(
                "Violation of PRIMARY KEY constraint 'PK{entity}Id'. Cannot insert duplicate key in object 'dbo.{entity}'. The duplicate key value is ({id})."
            )));
        }
        record.insert("Id".into(), Value::String(id));
        for stamp in ["CreatedOn", "ModifiedOn"] {
            if record.get(stamp).is_none_or(Value::is_null) {
                record.insert(stamp.into(), Value::String(now.to_string()));
            }
        }
        self.complete(entity, &mut record, now)?;
        self.tables.entry(entity).or_default().push(record.clone());
        Ok(record)
    }

    /// `PATCH {entity}({id})`.
    pub fn update(
        &mut self,
        entity: &str,
        id: &str,
        body: &Map<String, Value>,
        now: &str,
    ) -> Result<(), OdataError> {
        let entity = known(entity)?;
        let mut changes = Map::new();
        for (name, value) in body {
            if name == "Id" {
                continue;
            }
            changes.insert(name.clone(), self.checked(entity, name, value)?);
        }
        let Some(mut record) = self.find(entity, id).cloned() else {
            return Err(not_found(entity, id));
        };
        record.extend(changes);
        if !body.contains_key("ModifiedOn") {
            record.insert("ModifiedOn".into(), Value::String(now.to_string()));
        }
        self.complete(entity, &mut record, now)?;
        if let Some(slot) = self
            .tables
            .get_mut(entity)
            .and_then(|t| t.iter_mut().find(|r| r.get("Id") == record.get("Id")))
        {
            *slot = record;
        }
        Ok(())
    }

    /// `DELETE {entity}({id})`.
    pub fn delete(&mut self, entity: &str, id: &str) -> Result<(), OdataError> {
        let entity = known(entity)?;
        let table = self.tables.entry(entity).or_default();
        let before = table.len();
        table.retain(|r| r.get("Id").and_then(Value::as_str) != Some(id));
        if table.len() == before {
            return Err(not_found(entity, id));
        }
        Ok(())
    }

    /// `GET {entity}({id})`.
    pub fn get(&self, entity: &str, id: &str, select: Option<&str>) -> Result<Value, OdataError> {
        let entity = known(entity)?;
        let record = self.find(entity, id).ok_or_else(|| not_found(entity, id))?;
        project(entity, record, select)
    }

    /// `GET {entity}?…`.
    pub fn query(&self, entity: &str, q: &Query) -> Result<Vec<Value>, OdataError> {
        let entity = known(entity)?;
        let filter = q
            .filter
            .as_deref()
            .map(filter::parse)
            .transpose()
            .map_err(OdataError::bad)?;
        let mut rows: Vec<&Map<String, Value>> = self
            .tables
            .get(entity)
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        if let Some(filter) = &filter {
            self.check_paths(entity, filter)?;
            rows.retain(|r| {
                filter.matches(&Row {
                    db: self,
                    entity,
                    record: r,
                })
            });
        }
        if let Some(orderby) = &q.orderby {
            let mut keys = Vec::new();
            for part in orderby.split(',') {
                let mut words = part.split_whitespace();
                let column = words.next().unwrap_or_default();
                let descending = words.next().is_some_and(|w| w.eq_ignore_ascii_case("desc"));
                self.path_kind(entity, column)?;
                keys.push((column.to_string(), descending));
            }
            rows.sort_by(|a, b| {
                for (column, descending) in &keys {
                    let ra = Row {
                        db: self,
                        entity,
                        record: a,
                    }
                    .column(column);
                    let rb = Row {
                        db: self,
                        entity,
                        record: b,
                    }
                    .column(column);
                    let o = compare(&ra, &rb);
                    let o = if *descending { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        rows.into_iter()
            .skip(q.skip.unwrap_or(0))
            .take(q.top.unwrap_or(20_000))
            .map(|r| project(entity, r, q.select.as_deref()))
            .collect()
    }

    /// A value for `column` of `entity`, as it will be stored.
    fn checked(&self, entity: &str, column: &str, value: &Value) -> Result<Value, OdataError> {
        let kind = schema::kind(entity, column).ok_or_else(|| unknown_column(entity, column))?;
        let wrong = |what: &str| {
            OdataError::bad(format!(
                "Cannot convert the literal '{value}' to the expected type '{what}' of the property '{column}'."
            ))
        };
        Ok(match (kind, value) {
            (_, Value::Null) => empty(kind),
            (Kind::Text, Value::String(_)) => value.clone(),
            (Kind::Text, _) => return Err(wrong("Edm.String")),
            (Kind::Int, Value::Number(n)) if n.is_i64() => value.clone(),
            (Kind::Int, Value::String(s)) => {
                Value::from(s.parse::<i64>().map_err(|_| wrong("Edm.Int32"))?)
            }
            (Kind::Int, _) => return Err(wrong("Edm.Int32")),
            (Kind::Bool, Value::Bool(_)) => value.clone(),
            (Kind::Bool, _) => return Err(wrong("Edm.Boolean")),
            (Kind::Date, Value::String(s)) => {
                chrono::DateTime::parse_from_rfc3339(s).map_err(|_| wrong("Edm.DateTimeOffset"))?;
                value.clone()
            }
            (Kind::Date, _) => return Err(wrong("Edm.DateTimeOffset")),
            (Kind::Lookup(target), Value::String(s)) => {
                let id = guid(s).ok_or_else(|| wrong("Edm.Guid"))?;
                if id != EMPTY_GUID && self.find(target, &id).is_none() {
                    return Err(OdataError::bad(format!(
                        "The INSERT statement conflicted with the FOREIGN KEY constraint \"FK{entity}{column}\". The conflict occurred in table \"dbo.{target}\", column 'Id' ({id})."
                    )));
                }
                Value::String(id)
            }
            (Kind::AnyRecord, Value::String(s)) => {
                Value::String(guid(s).ok_or_else(|| wrong("Edm.Guid"))?)
            }
            (Kind::Lookup(_) | Kind::AnyRecord, _) => return Err(wrong("Edm.Guid")),
        })
    }

    /// What Creatio's own event handlers fill in on save.
    fn complete(
        &mut self,
        entity: &str,
        record: &mut Map<String, Value>,
        now: &str,
    ) -> Result<(), OdataError> {
        let text = |r: &Map<String, Value>, c: &str| {
            r.get(c)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match entity {
            "ContactCommunication" | "AccountCommunication" => {
                let reversed: String = text(record, "Number")
                    .chars()
                    .filter(char::is_ascii_digit)
                    .rev()
                    .collect();
                record.insert("SearchNumber".into(), Value::String(reversed));
            }
            "Contact" | "Account" if text(record, "Name").trim().is_empty() => {
                return Err(OdataError::bad(format!(
                    "Field \"Name\" of object \"{entity}\" must be filled in"
                )));
            }
            "Case" => {
                if text(record, "Number").is_empty() {
                    self.cases_numbered += 1;
                    record.insert(
                        "Number".into(),
                        Value::String(format!("SR{:05}", self.cases_numbered)),
                    );
                }
                if text(record, "StatusId") == EMPTY_GUID {
                    record.insert(
                        "StatusId".into(),
                        Value::String(super::seed::CASE_NEW.into()),
                    );
                }
                if record.get("RegisteredOn").is_none_or(Value::is_null) {
                    record.insert("RegisteredOn".into(), Value::String(now.to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuses a filter naming a column the entity does not have.
    fn check_paths(&self, entity: &str, f: &filter::Filter) -> Result<(), OdataError> {
        use filter::{Filter, Operand};
        let check = |o: &Operand| match o {
            Operand::Path(p) => self.path_kind(entity, p).map(|_| ()),
            Operand::Literal(_) => Ok(()),
        };
        match f {
            Filter::Compare(a, _, b) | Filter::Function(_, a, b) => {
                check(a)?;
                check(b)
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.check_paths(entity, a)?;
                self.check_paths(entity, b)
            }
            Filter::Not(a) => self.check_paths(entity, a),
        }
    }

    /// The kind at the end of `A/B/C` from `entity`.
    fn path_kind(&self, entity: &str, path: &str) -> Result<Kind, OdataError> {
        let mut at = entity;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                return schema::kind(at, part).ok_or_else(|| unknown_column(at, part));
            }
            match schema::kind(at, &format!("{part}Id")) {
                Some(Kind::Lookup(target)) => at = target,
                _ => return Err(unknown_column(at, part)),
            }
        }
        Err(unknown_column(entity, path))
    }
}

/// A record being filtered or ordered, its lookups followed through the other tables.
struct Row<'a> {
    db: &'a Db,
    entity: &'a str,
    record: &'a Map<String, Value>,
}

impl Columns for Row<'_> {
    fn column(&self, path: &str) -> Value {
        let (mut entity, mut record) = (self.entity, self.record);
        let parts: Vec<&str> = path.split('/').collect();
        for (n, part) in parts.iter().enumerate() {
            if n + 1 == parts.len() {
                return record.get(*part).cloned().unwrap_or(Value::Null);
            }
            let lookup = format!("{part}Id");
            // `Contact/Id` is the lookup column itself.
            if parts.get(n + 1) == Some(&"Id") && n + 2 == parts.len() {
                return record.get(&lookup).cloned().unwrap_or(Value::Null);
            }
            let Some(Kind::Lookup(target)) = schema::kind(entity, &lookup) else {
                return Value::Null;
            };
            let id = record
                .get(&lookup)
                .and_then(Value::as_str)
                .unwrap_or(EMPTY_GUID);
            let Some(next) = self.db.find(target, id) else {
                return Value::Null;
            };
            (entity, record) = (target, next);
        }
        Value::Null
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    }
}

/// The record with only the `$select`ed columns.
fn project(
    entity: &str,
    record: &Map<String, Value>,
    select: Option<&str>,
) -> Result<Value, OdataError> {
    let Some(select) = select.filter(|s| !s.trim().is_empty()) else {
        return Ok(Value::Object(record.clone()));
    };
    let mut out = Map::new();
    for column in select.split(',').map(str::trim) {
        let value = record
            .get(column)
            .ok_or_else(|| unknown_column(entity, column))?;
        out.insert(column.to_string(), value.clone());
    }
    Ok(Value::Object(out))
}

fn empty(kind: Kind) -> Value {
    match kind {
        Kind::Text => Value::String(String::new()),
        Kind::Int => Value::from(0),
        Kind::Bool => Value::Bool(false),
        Kind::Date => Value::Null,
        Kind::Lookup(_) | Kind::AnyRecord => Value::String(EMPTY_GUID.into()),
    }
}

fn known(entity: &str) -> Result<&'static str, OdataError> {
    schema::entity(entity).ok_or_else(|| {
        OdataError::not_found(format!(
            "No HTTP resource was found that matches the request URI '{entity}'."
        ))
    })
}

fn not_found(entity: &str, id: &str) -> OdataError {
    OdataError::not_found(format!("The {entity} with Id {id} was not found."))
}

fn unknown_column(entity: &str, column: &str) -> OdataError {
    OdataError::bad(format!(
        "The property '{column}' does not exist on type 'Terrasoft.Configuration.{entity}'. Make sure to only use property names that are defined by the type."
    ))
}

/// A GUID in Creatio's lower-case form, if `text` is one.
pub fn guid(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = t.len() == 36
        && t.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    ok.then(|| t.to_ascii_lowercase())
}

/// A new random (version 4) GUID.
pub fn new_guid() -> String {
    let b: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        8 | (b[8] & 0x3),
        &h(8..10)[1..],
        h(10..16)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-12-07T10:00:00Z";

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_communication_gets_its_search_number_and_unset_lookups_read_empty() {
        let mut db = Db::default();
        let contact = db
            .insert("Contact", &obj(json!({"Name": "Ivan"})), NOW)
            .unwrap();
        assert_eq!(contact["OwnerId"], EMPTY_GUID);
        assert_eq!(contact["CreatedOn"], NOW);
        let id = contact["Id"].as_str().unwrap();
        assert!(guid(id).is_some(), "{id}");
        let c = db
            .insert(
                "ContactCommunication",
                &obj(json!({"ContactId": id, "Number": "8 (916) 123-45-67"})),
                NOW,
            )
            .unwrap();
        assert_eq!(c["SearchNumber"], "76543216198");
        let q = Query::parse(Some(
            "$filter=startswith(SearchNumber,%277654321%27)&$select=ContactId",
        ))
        .unwrap();
        assert_eq!(
            db.query("ContactCommunication", &q).unwrap(),
            vec![json!({"ContactId": id})]
        );
    }

    #[test]
    fn what_creatio_refuses() {
        let mut db = Db::default();
        assert_eq!(
            db.insert("Contact", &obj(json!({"Name": ""})), NOW)
                .unwrap_err()
                .status,
            400
        );
        let e = db
            .insert("Contact", &obj(json!({"Name": "x", "Nmae": "y"})), NOW)
            .unwrap_err();
        assert!(e.message.contains("Nmae"), "{e:?}");
        let e = db
            .insert(
                "Contact",
                &obj(json!({"Name": "x", "OwnerId": new_guid()})),
                NOW,
            )
            .unwrap_err();
        assert!(e.message.contains("FOREIGN KEY"), "{e:?}");
        assert_eq!(db.query("Nope", &Query::default()).unwrap_err().status, 404);
        let q = Query::parse(Some("$filter=Nmae eq 'x'")).unwrap();
        assert_eq!(db.query("Contact", &q).unwrap_err().status, 400);
    }

    #[test]
    fn cases_are_numbered_new_and_found_through_their_status() {
        let mut db = Db::default();
        for (id, name, fin) in [
            (super::super::seed::CASE_NEW, "New", false),
            ("3e7f420c-f46b-1410-fc9a-0050ba5d6c38", "Closed", true),
        ] {
            db.insert(
                "CaseStatus",
                &obj(json!({"Id": id, "Name": name, "IsFinal": fin})),
                NOW,
            )
            .unwrap();
        }
        let a = db
            .insert("Case", &obj(json!({"Subject": "a"})), NOW)
            .unwrap();
        assert_eq!(a["Number"], "SR00001");
        assert_eq!(a["StatusId"], super::super::seed::CASE_NEW);
        db.insert(
            "Case",
            &obj(json!({"Subject": "b", "StatusId": "3e7f420c-f46b-1410-fc9a-0050ba5d6c38"})),
            NOW,
        )
        .unwrap();
        let q = Query::parse(Some("$filter=Status/IsFinal eq false&$select=Subject")).unwrap();
        assert_eq!(db.query("Case", &q).unwrap(), vec![json!({"Subject": "a"})]);
        let q = Query::parse(Some("$orderby=Number desc&$top=1&$select=Number")).unwrap();
        assert_eq!(
            db.query("Case", &q).unwrap(),
            vec![json!({"Number": "SR00002"})]
        );
    }
}
