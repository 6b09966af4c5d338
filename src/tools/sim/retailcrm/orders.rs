//! Orders: creating one (and its customer when it names none), editing, finding them (by
//! id, number, `externalId`, customer), and the API of `/orders`.

use serde_json::{json, Map, Value};

use super::db::{by_seq, by_seq_mut, next_id, Db};
use super::errors::{created, ok, ApiResult, Errors, SimError};
use super::fields::{looks_like_phone, now_datetime, phone_key, Fields, CHOICE, NOT_INT};
use super::records::{EntityRef, Order};
use super::reference::{status_group, DEFAULT_SITE, ORDER_METHODS};
use super::routing::{Page, Params};
use super::server::Inner;

impl Db {
    pub(super) fn order(&self, id: u64) -> Option<&Order> {
        by_seq(&self.orders, id)
    }

    pub(super) fn find_order(&self, key: &str, by_id: bool) -> Option<&Order> {
        let id = if by_id {
            key.parse().ok()?
        } else {
            *self.order_by_ext.get(key)?
        };
        self.order(id)
    }

    fn order_json(&self, o: &Order) -> Value {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        if let (Value::Object(m), Some(r)) = (&mut v, &o.customer) {
            if let Some(c) = self.customer(r.id) {
                m.insert("customer".into(), self.customer_json(c));
            }
        }
        v
    }

    fn apply_order(&self, o: &mut Order, obj: &Map<String, Value>, errors: &mut Errors) {
        let mut f = Fields::new(obj, "", errors);
        if f.has("externalId") {
            let ext = f.str("externalId");
            if let Some(ext) = &ext {
                if self.order_by_ext.get(ext).is_some_and(|&id| id != o.id) {
                    f.err(
                        "externalId",
                        &format!("Order with externalId={ext} already exists."),
                    );
                }
            }
            o.external_id = ext;
        }
        if let Some(number) = f.str("number") {
            if self
                .order_by_number
                .get(&number)
                .is_some_and(|&id| id != o.id)
            {
                f.err(
                    "number",
                    &format!("Order with number={number} already exists."),
                );
            }
            o.number = number;
        }
        if f.has("status") {
            match f.str("status") {
                Some(s) if status_group(&s).is_some() => o.status = s,
                _ => f.err("status", CHOICE),
            }
        }
        if f.has("orderMethod") {
            let method = f.str("orderMethod");
            if method
                .as_deref()
                .is_some_and(|m| !ORDER_METHODS.iter().any(|(c, _)| *c == m))
            {
                f.err("orderMethod", CHOICE);
            }
            o.order_method = method;
        }
        if f.has("managerId") {
            let manager = f.u64("managerId");
            if manager.is_some_and(|m| self.user(m).is_none()) {
                f.err("managerId", "User not found.");
            }
            o.manager_id = manager;
        }
        for (key, slot) in [
            ("firstName", &mut o.first_name),
            ("lastName", &mut o.last_name),
            ("patronymic", &mut o.patronymic),
            ("phone", &mut o.phone),
            ("email", &mut o.email),
        ] {
            if f.has(key) {
                *slot = f.str(key);
            }
        }
        if f.has("customer") {
            o.customer = self.resolve_customer_ref(&mut f, "customer");
        }
        let known = [
            "id",
            "number",
            "externalId",
            "status",
            "site",
            "createdAt",
            "orderMethod",
            "managerId",
            "firstName",
            "lastName",
            "patronymic",
            "phone",
            "email",
            "customer",
        ];
        o.extra.extend(f.rest(&known));
    }

    pub(super) fn create_order(
        &mut self,
        obj: &Map<String, Value>,
        site: Option<&str>,
    ) -> Result<u64, SimError> {
        let id = next_id(self.orders.len());
        let mut o = Order {
            id,
            number: format!("{id}A"),
            external_id: None,
            status: "new".to_string(),
            site: site.unwrap_or(DEFAULT_SITE).to_string(),
            created_at: now_datetime(),
            order_method: None,
            manager_id: None,
            first_name: None,
            last_name: None,
            patronymic: None,
            phone: None,
            email: None,
            customer: None,
            extra: Map::new(),
        };
        let mut errors = Errors::new();
        self.apply_order(&mut o, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        if o.customer.is_none() {
            // Like the real CRM, an order without a customer gets one from its contact data.
            let mut contact = Map::new();
            for (key, value) in [
                ("firstName", &o.first_name),
                ("lastName", &o.last_name),
                ("patronymic", &o.patronymic),
                ("email", &o.email),
            ] {
                if let Some(v) = value {
                    contact.insert(key.into(), json!(v));
                }
            }
            if let Some(phone) = &o.phone {
                contact.insert("phones".into(), json!([{ "number": phone }]));
            }
            if let Some(m) = o.manager_id {
                contact.insert("managerId".into(), json!(m));
            }
            let customer_id = self.create_customer(&contact, Some(&o.site))?;
            o.customer = Some(EntityRef {
                id: customer_id,
                external_id: None,
            });
        }
        self.index_order(&o);
        self.orders.push(o);
        Ok(id)
    }

    fn index_order(&mut self, o: &Order) {
        if let Some(ext) = &o.external_id {
            self.order_by_ext.insert(ext.clone(), o.id);
        }
        self.order_by_number.insert(o.number.clone(), o.id);
        if let Some(c) = &o.customer {
            self.orders_by_customer.entry(c.id).or_default().push(o.id);
        }
    }

    fn unindex_order(&mut self, o: &Order) {
        if let Some(ext) = &o.external_id {
            self.order_by_ext.remove(ext);
        }
        self.order_by_number.remove(&o.number);
        if let Some(ids) = o
            .customer
            .as_ref()
            .and_then(|c| self.orders_by_customer.get_mut(&c.id))
        {
            ids.retain(|&id| id != o.id);
        }
    }
}

impl Inner {
    pub(super) fn orders(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let db = self.db();
        let ids = p.filter_list("ids");
        let ext_ids = p.filter_list("externalIds");
        let numbers = p.filter_list("numbers");
        let managers = p.filter_list("managers");
        let sites = p.filter_list("sites");
        let statuses = p.filter_list("extendedStatus");
        let customer_text = p.filter("customer");
        let mut customer_id = match p.filter("customerId") {
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| SimError::input("filter[customerId]", NOT_INT))?,
            ),
            None => None,
        };
        if let Some(ext) = p.filter("customerExternalId") {
            let id = db.customer_by_ext.get(ext).copied().unwrap_or(0);
            if customer_id.is_some_and(|c| c != id) {
                customer_id = Some(0);
            } else {
                customer_id = Some(id);
            }
        }
        // The per-customer index answers the hot lookup without a scan.
        let candidates: Vec<u64> = match customer_id {
            Some(c) => {
                let mut v = db.orders_by_customer.get(&c).cloned().unwrap_or_default();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v
            }
            None => db.orders.iter().rev().map(|o| o.id).collect(),
        };
        let matching: Vec<u64> = candidates
            .into_iter()
            .filter_map(|id| db.order(id))
            .filter(|o| ids.is_empty() || ids.contains(&o.id.to_string().as_str()))
            .filter(|o| {
                ext_ids.is_empty()
                    || o.external_id
                        .as_deref()
                        .is_some_and(|e| ext_ids.contains(&e))
            })
            .filter(|o| numbers.is_empty() || numbers.contains(&o.number.as_str()))
            .filter(|o| {
                managers.is_empty()
                    || o.manager_id
                        .is_some_and(|m| managers.contains(&m.to_string().as_str()))
            })
            .filter(|o| sites.is_empty() || sites.contains(&o.site.as_str()))
            .filter(|o| statuses.is_empty() || statuses.contains(&o.status.as_str()))
            .filter(|o| {
                customer_text.is_none_or(|t| {
                    let by_customer = o.customer.as_ref().and_then(|r| db.customer(r.id));
                    by_customer.is_some_and(|c| db.customer_matches_text(c, t))
                        || (looks_like_phone(t)
                            && o.phone.as_deref().and_then(phone_key) == phone_key(t))
                })
            })
            .map(|o| o.id)
            .collect();
        let (page_ids, pagination) = page.slice(&matching);
        let orders: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| db.order(id))
            .map(|o| db.order_json(o))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "orders": orders}),
        ))
    }

    pub(super) fn order_create(&self, p: &Params) -> ApiResult {
        let obj = p.json_object("order")?;
        let mut db = self.db();
        let id = db.create_order(&obj, p.get("site"))?;
        let order = db
            .order(id)
            .map(|o| db.order_json(o))
            .unwrap_or(Value::Null);
        Ok(created(json!({"success": true, "id": id, "order": order})))
    }

    pub(super) fn order(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let db = self.db();
        let o = db.find_order(key, by_id).ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "order": db.order_json(o)})))
    }

    pub(super) fn order_edit(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let obj = p.json_object("order")?;
        let mut db = self.db();
        let id = db.edit::<Order>(key, by_id, &obj)?;
        let order = db
            .order(id)
            .map(|o| db.order_json(o))
            .unwrap_or(Value::Null);
        Ok(ok(json!({"success": true, "id": id, "order": order})))
    }
}

impl super::db::Editable for Order {
    fn find<'a>(db: &'a Db, key: &str, by_id: bool) -> Option<&'a Self> {
        db.find_order(key, by_id)
    }

    fn apply(db: &Db, record: &mut Self, obj: &Map<String, Value>, errors: &mut Errors) {
        db.apply_order(record, obj, errors)
    }

    fn index(db: &mut Db, record: &Self) {
        db.index_order(record)
    }

    fn unindex(db: &mut Db, record: &Self) {
        db.unindex_order(record)
    }

    fn slot(db: &mut Db, id: u64) -> Option<&mut Self> {
        by_seq_mut(&mut db.orders, id)
    }

    fn id(&self) -> u64 {
        self.id
    }
}
