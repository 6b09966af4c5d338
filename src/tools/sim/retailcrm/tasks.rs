//! Tasks: creating and editing them (performer, customer, order they are about), finding
//! them, and the API of `/tasks`.

use serde_json::{json, Map, Value};

use super::db::{by_seq, by_seq_mut, next_id, Db};
use super::errors::{created, ok, ApiResult, Errors, SimError};
use super::fields::{as_string, as_u64, contains_ci, now_datetime, Fields, BLANK, CHOICE};
use super::records::{OrderRef, Task};
use super::routing::{Page, Params};
use super::server::Inner;

impl Db {
    fn apply_task(&self, t: &mut Task, obj: &Map<String, Value>, errors: &mut Errors) {
        let mut f = Fields::new(obj, "", errors);
        if f.has("text") || t.text.is_empty() {
            if let Some(text) = f.req_str("text") {
                t.text = text;
            }
        }
        if f.has("performerId") || t.performer == 0 {
            match f.u64("performerId") {
                Some(p) if self.user(p).is_some() => {
                    t.performer = p;
                    t.performer_id = p;
                }
                Some(_) => f.err("performerId", "User not found."),
                None => f.err("performerId", BLANK),
            }
        }
        if f.has("commentary") {
            t.commentary = f.str("commentary");
        }
        if f.has("datetime") {
            t.datetime = f.datetime("datetime", "%Y-%m-%d %H:%M");
        }
        if let Some(complete) = f.bool("complete") {
            if complete && !t.complete {
                t.completed_at = Some(now_datetime());
            }
            if !complete {
                t.completed_at = None;
            }
            t.complete = complete;
        }
        if f.has("customer") {
            t.customer = self.resolve_customer_ref(&mut f, "customer");
        }
        if f.has("order") {
            t.order = self.resolve_order_ref(&mut f, "order");
        }
        if f.has("phone") {
            t.phone = f.str("phone");
        }
        if f.has("phoneSite") {
            t.phone_site = f.str("phoneSite");
        }
    }

    fn resolve_order_ref(&self, f: &mut Fields, key: &str) -> Option<OrderRef> {
        let obj = f.object(key)?;
        let found = if let Some(id) = obj.get("id").and_then(as_u64) {
            self.order(id)
        } else if let Some(n) = obj.get("number").and_then(as_string) {
            self.order_by_number.get(&n).and_then(|&id| self.order(id))
        } else if let Some(ext) = obj.get("externalId").and_then(as_string) {
            self.find_order(&ext, false)
        } else {
            None
        };
        match found {
            Some(o) => Some(OrderRef {
                id: o.id,
                number: o.number.clone(),
                external_id: o.external_id.clone(),
            }),
            None => {
                f.err(key, "Order not found.");
                None
            }
        }
    }

    pub(super) fn create_task(&mut self, obj: &Map<String, Value>) -> Result<u64, SimError> {
        let mut t = Task {
            id: next_id(self.tasks.len()),
            text: String::new(),
            commentary: None,
            datetime: None,
            created_at: now_datetime(),
            complete: false,
            completed_at: None,
            creator: None,
            performer: 0,
            performer_id: 0,
            performer_type: "user".to_string(),
            customer: None,
            order: None,
            phone: None,
            phone_site: None,
        };
        let mut errors = Errors::new();
        self.apply_task(&mut t, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        let id = t.id;
        self.tasks.push(t);
        Ok(id)
    }

    fn task_matches_customer(&self, t: &Task, needle: &str) -> bool {
        let Some(r) = &t.customer else { return false };
        if r.id.to_string() == needle || r.external_id.as_deref() == Some(needle) {
            return true;
        }
        self.customer(r.id)
            .is_some_and(|c| self.customer_matches_text(c, needle))
    }
}

impl Inner {
    pub(super) fn tasks(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let ids = p.filter_list("ids");
        let performers = p.filter_list("performers");
        let creators = p.filter_list("creators");
        let complete = match p.filter("status") {
            None => None,
            Some("performing") => Some(false),
            Some("completed") => Some(true),
            Some(_) => return Err(SimError::input("filter[status]", CHOICE)),
        };
        let text = p.filter("text").map(str::to_lowercase);
        let customer = p.filter("customer");
        let order_number = p.filter("orderNumber");
        let db = self.db();
        let matching: Vec<u64> = db
            .tasks
            .iter()
            .rev()
            .filter(|t| ids.is_empty() || ids.contains(&t.id.to_string().as_str()))
            .filter(|t| {
                performers.is_empty() || performers.contains(&t.performer.to_string().as_str())
            })
            .filter(|t| {
                creators.is_empty()
                    || t.creator
                        .is_some_and(|c| creators.contains(&c.to_string().as_str()))
            })
            .filter(|t| complete.is_none_or(|c| t.complete == c))
            .filter(|t| {
                text.as_deref().is_none_or(|x| {
                    contains_ci(&t.text, x)
                        || t.commentary.as_deref().is_some_and(|c| contains_ci(c, x))
                })
            })
            .filter(|t| customer.is_none_or(|c| db.task_matches_customer(t, c)))
            .filter(|t| {
                order_number.is_none_or(|n| t.order.as_ref().is_some_and(|o| o.number == n))
            })
            .map(|t| t.id)
            .collect();
        let (page_ids, pagination) = page.slice(&matching);
        let tasks: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| by_seq(&db.tasks, id))
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "tasks": tasks}),
        ))
    }

    pub(super) fn task_create(&self, p: &Params) -> ApiResult {
        let obj = p.json_object("task")?;
        let id = self.db().create_task(&obj)?;
        Ok(created(json!({"success": true, "id": id})))
    }

    pub(super) fn task(&self, id: u64) -> ApiResult {
        let db = self.db();
        let t = by_seq(&db.tasks, id).ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "task": t})))
    }

    pub(super) fn task_edit(&self, id: u64, p: &Params) -> ApiResult {
        let obj = p.json_object("task")?;
        let mut db = self.db();
        let mut t = by_seq(&db.tasks, id)
            .ok_or_else(SimError::not_found)?
            .clone();
        let mut errors = Errors::new();
        db.apply_task(&mut t, &obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        if let Some(slot) = by_seq_mut(&mut db.tasks, id) {
            *slot = t;
        }
        Ok(ok(json!({"success": true})))
    }
}
