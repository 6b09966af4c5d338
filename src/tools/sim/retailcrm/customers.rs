//! Customers: creating, editing and finding them (by id, `externalId`, phone, name), and
//! the API of `/customers`.

use serde_json::{json, Map, Value};

use super::db::{by_seq, by_seq_mut, next_id, Db};
use super::errors::{created, ok, ApiResult, Errors, SimError};
use super::fields::{
    as_string, as_u64, contains_ci, looks_like_phone, now_datetime, phone_key, Fields, BLANK,
};
use super::records::{Customer, EntityRef, Phone};
use super::reference::DEFAULT_SITE;
use super::routing::{Page, Params};
use super::server::Inner;

impl Db {
    pub(super) fn customer(&self, id: u64) -> Option<&Customer> {
        by_seq(&self.customers, id)
    }

    fn find_customer(&self, key: &str, by_id: bool) -> Option<&Customer> {
        let id = if by_id {
            key.parse().ok()?
        } else {
            *self.customer_by_ext.get(key)?
        };
        self.customer(id)
    }

    /// Customers whose phone matches, newest first.
    pub(super) fn customers_by_phone(&self, phone: &str) -> Vec<u64> {
        let mut ids = phone_key(phone)
            .and_then(|k| self.customers_by_phone.get(&k))
            .cloned()
            .unwrap_or_default();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        ids
    }

    pub(super) fn customer_json(&self, c: &Customer) -> Value {
        let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("type".into(), json!("customer"));
        }
        v
    }

    /// A customer reference `{id}` or `{externalId}` in an order or a task.
    pub(super) fn resolve_customer_ref(&self, f: &mut Fields, key: &str) -> Option<EntityRef> {
        let obj = f.object(key)?;
        let found = if let Some(id) = obj.get("id").and_then(as_u64) {
            self.customer(id)
        } else if let Some(ext) = obj.get("externalId").and_then(as_string) {
            self.find_customer(&ext, false)
        } else {
            None
        };
        match found {
            Some(c) => Some(EntityRef {
                id: c.id,
                external_id: c.external_id.clone(),
            }),
            None => {
                f.err(key, "Customer not found.");
                None
            }
        }
    }

    /// Applies a customer JSON onto `c` (a new or an existing customer), collecting errors.
    fn apply_customer(&self, c: &mut Customer, obj: &Map<String, Value>, errors: &mut Errors) {
        let mut f = Fields::new(obj, "", errors);
        if f.has("externalId") {
            let ext = f.str("externalId");
            if let Some(ext) = &ext {
                let taken = self.customer_by_ext.get(ext).is_some_and(|&id| id != c.id);
                if taken {
                    f.err(
                        "externalId",
                        &format!("Customer with externalId={ext} already exists."),
                    );
                }
            }
            c.external_id = ext;
        }
        for (key, slot) in [
            ("firstName", &mut c.first_name),
            ("lastName", &mut c.last_name),
            ("patronymic", &mut c.patronymic),
        ] {
            if f.has(key) {
                *slot = f.str(key);
            }
        }
        if f.has("email") {
            let email = f.str("email").filter(|e| !e.is_empty());
            if email.as_deref().is_some_and(|e| !e.contains('@')) {
                f.err("email", "This value is not a valid email address.");
            }
            c.email = email;
        }
        if f.has("phones") {
            let mut phones = Vec::new();
            for (i, p) in f.array("phones").into_iter().flatten().enumerate() {
                match p.get("number").and_then(as_string) {
                    Some(number) => phones.push(Phone { number }),
                    None => f.err(&format!("phones[{i}][number]"), BLANK),
                }
            }
            c.phones = phones;
        }
        if f.has("managerId") {
            let manager = f.u64("managerId");
            if manager.is_some_and(|m| self.user(m).is_none()) {
                f.err("managerId", "User not found.");
            }
            c.manager_id = manager;
        }
        let known = [
            "id",
            "type",
            "externalId",
            "firstName",
            "lastName",
            "patronymic",
            "email",
            "phones",
            "managerId",
            "site",
            "createdAt",
        ];
        c.extra.extend(f.rest(&known));
    }

    fn index_customer(&mut self, c: &Customer) {
        if let Some(ext) = &c.external_id {
            self.customer_by_ext.insert(ext.clone(), c.id);
        }
        for p in &c.phones {
            if let Some(k) = phone_key(&p.number) {
                self.customers_by_phone.entry(k).or_default().push(c.id);
            }
        }
    }

    fn unindex_customer(&mut self, c: &Customer) {
        if let Some(ext) = &c.external_id {
            self.customer_by_ext.remove(ext);
        }
        for p in &c.phones {
            if let Some(ids) =
                phone_key(&p.number).and_then(|k| self.customers_by_phone.get_mut(&k))
            {
                ids.retain(|&id| id != c.id);
            }
        }
    }

    pub(super) fn create_customer(
        &mut self,
        obj: &Map<String, Value>,
        site: Option<&str>,
    ) -> Result<u64, SimError> {
        let mut c = Customer {
            id: next_id(self.customers.len()),
            external_id: None,
            first_name: None,
            last_name: None,
            patronymic: None,
            email: None,
            phones: Vec::new(),
            manager_id: None,
            site: site.unwrap_or(DEFAULT_SITE).to_string(),
            created_at: now_datetime(),
            extra: Map::new(),
        };
        let mut errors = Errors::new();
        self.apply_customer(&mut c, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        self.index_customer(&c);
        let id = c.id;
        self.customers.push(c);
        Ok(id)
    }

    pub(super) fn customer_matches_text(&self, c: &Customer, needle: &str) -> bool {
        if looks_like_phone(needle) {
            let key = phone_key(needle);
            return c.phones.iter().any(|p| phone_key(&p.number) == key);
        }
        let needle = needle.to_lowercase();
        let name = [&c.last_name, &c.first_name, &c.patronymic]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        contains_ci(&name, &needle)
            || c.email.as_deref().is_some_and(|e| contains_ci(e, &needle))
            || c.external_id.as_deref() == Some(needle.as_str())
    }
}

impl Inner {
    pub(super) fn customers(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let db = self.db();
        let ids = p.filter_list("ids");
        let ext_ids = p.filter_list("externalIds");
        let managers = p.filter_list("managers");
        let sites = p.filter_list("sites");
        let name = p.filter("name");
        let email = p.filter("email").map(str::to_lowercase);
        // The phone index answers the hot lookup (`filter[name]=<phone>`) without a scan.
        let candidates: Vec<u64> = match name {
            Some(n) if looks_like_phone(n) => db.customers_by_phone(n),
            _ => db.customers.iter().rev().map(|c| c.id).collect(),
        };
        let matching: Vec<u64> = candidates
            .into_iter()
            .filter_map(|id| db.customer(id))
            .filter(|c| ids.is_empty() || ids.contains(&c.id.to_string().as_str()))
            .filter(|c| {
                ext_ids.is_empty()
                    || c.external_id
                        .as_deref()
                        .is_some_and(|e| ext_ids.contains(&e))
            })
            .filter(|c| {
                managers.is_empty()
                    || c.manager_id
                        .is_some_and(|m| managers.contains(&m.to_string().as_str()))
            })
            .filter(|c| sites.is_empty() || sites.contains(&c.site.as_str()))
            .filter(|c| name.is_none_or(|n| db.customer_matches_text(c, n)))
            .filter(|c| {
                email
                    .as_deref()
                    .is_none_or(|e| c.email.as_deref().is_some_and(|ce| contains_ci(ce, e)))
            })
            .map(|c| c.id)
            .collect();
        let (page_ids, pagination) = page.slice(&matching);
        let customers: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| db.customer(id))
            .map(|c| db.customer_json(c))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "customers": customers}),
        ))
    }

    pub(super) fn customer_create(&self, p: &Params) -> ApiResult {
        let obj = p.json_object("customer")?;
        let id = self.db().create_customer(&obj, p.get("site"))?;
        Ok(created(json!({"success": true, "id": id})))
    }

    pub(super) fn customer(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let db = self.db();
        let c = db
            .find_customer(key, by_id)
            .ok_or_else(SimError::not_found)?;
        Ok(ok(
            json!({"success": true, "customer": db.customer_json(c)}),
        ))
    }

    pub(super) fn customer_edit(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let obj = p.json_object("customer")?;
        let id = self.db().edit::<Customer>(key, by_id, &obj)?;
        Ok(ok(json!({"success": true, "id": id})))
    }
}

impl super::db::Editable for Customer {
    fn find<'a>(db: &'a Db, key: &str, by_id: bool) -> Option<&'a Self> {
        db.find_customer(key, by_id)
    }

    fn apply(db: &Db, record: &mut Self, obj: &Map<String, Value>, errors: &mut Errors) {
        db.apply_customer(record, obj, errors)
    }

    fn index(db: &mut Db, record: &Self) {
        db.index_customer(record)
    }

    fn unindex(db: &mut Db, record: &Self) {
        db.unindex_customer(record)
    }

    fn slot(db: &mut Db, id: u64) -> Option<&mut Self> {
        by_seq_mut(&mut db.customers, id)
    }

    fn id(&self) -> u64 {
        self.id
    }
}
