//! The account's users, their extension codes (profile codes overlaid by the integration
//! modules' `additionalCodes`), and the API of users and of integration modules.

use serde_json::{json, Value};

use super::db::Db;
use super::errors::{ok, ApiResult, Errors, SimError};
use super::fields::{add_err, as_string, as_u64, Fields, BLANK, CHOICE, NOT_ARRAY};
use super::records::SimUser;
use super::routing::{Page, Params};
use super::server::Inner;

impl Db {
    pub(super) fn user(&self, id: u64) -> Option<&SimUser> {
        self.user_pos.get(&id).and_then(|&i| self.users.get(i))
    }

    pub(super) fn recompute_codes(&mut self) {
        self.codes.clear();
        for u in &self.users {
            if let Some(code) = &u.code {
                self.codes.insert(code.clone(), u.id);
            }
        }
        for (_, module) in &self.modules {
            let list = module.pointer("/integrations/telephony/additionalCodes");
            for entry in list.and_then(Value::as_array).into_iter().flatten() {
                let code = entry.get("code").and_then(as_string);
                let user = entry.get("userId").and_then(as_u64);
                if let (Some(code), Some(user)) = (code, user) {
                    self.codes.insert(code, user);
                }
            }
        }
        self.user_codes.clear();
        for (code, user) in &self.codes {
            self.user_codes.entry(*user).or_default().push(code.clone());
        }
        for codes in self.user_codes.values_mut() {
            codes.sort();
        }
    }

    fn user_json(&self, u: &SimUser) -> Value {
        let status = self
            .user_status
            .get(&u.id)
            .map(String::as_str)
            .unwrap_or("free");
        json!({
            "id": u.id,
            "createdAt": "2024-01-01 09:00:00",
            "active": u.active,
            "email": format!("user{}@example.com", u.id),
            "firstName": u.first_name,
            "lastName": u.last_name,
            "status": status,
            "online": u.active,
            "isAdmin": false,
            "isManager": u.is_manager,
            "groups": [],
        })
    }
}

impl Inner {
    pub(super) fn users(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let active = p.filter_bool("active")?;
        let is_manager = p.filter_bool("isManager")?;
        let is_admin = p.filter_bool("isAdmin")?;
        let online = p.filter_bool("online")?;
        let email = p.filter("email");
        let status = p.filter("status");
        let db = self.db();
        let ids: Vec<u64> = db
            .users
            .iter()
            .filter(|u| active.is_none_or(|a| u.active == a))
            .filter(|u| is_manager.is_none_or(|m| u.is_manager == m))
            .filter(|_| is_admin.is_none_or(|a| !a))
            .filter(|u| online.is_none_or(|o| u.active == o))
            .filter(|u| email.is_none_or(|e| format!("user{}@example.com", u.id) == e))
            .filter(|u| {
                status.is_none_or(|s| db.user_status.get(&u.id).map_or("free", String::as_str) == s)
            })
            .map(|u| u.id)
            .collect();
        let (page_ids, pagination) = page.slice(&ids);
        let users: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| db.user(id))
            .map(|u| db.user_json(u))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "users": users}),
        ))
    }

    pub(super) fn user(&self, id: u64) -> ApiResult {
        let db = self.db();
        let user = db.user(id).ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "user": db.user_json(user)})))
    }

    pub(super) fn user_status(&self, id: u64, p: &Params) -> ApiResult {
        let status = p
            .get("status")
            .ok_or_else(|| SimError::missing_param("status"))?;
        if !["free", "busy", "dinner", "break"].contains(&status) {
            return Err(SimError::entity1("status", CHOICE));
        }
        let mut db = self.db();
        if db.user(id).is_none() {
            return Err(SimError::not_found());
        }
        db.user_status.insert(id, status.to_string());
        Ok(ok(json!({"success": true})))
    }
}

impl Inner {
    pub(super) fn module(&self, code: &str) -> ApiResult {
        let db = self.db();
        let (_, module) = db
            .modules
            .iter()
            .find(|(c, _)| c == code)
            .ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "integrationModule": module})))
    }

    pub(super) fn module_edit(&self, code: &str, p: &Params) -> ApiResult {
        let mut module = p.json_object("integrationModule")?;
        let mut errors = Errors::new();
        let mut f = Fields::new(&module, "", &mut errors);
        f.req_str("baseUrl");
        if let Some(logo) = f.str("logo") {
            let logo = logo.to_lowercase();
            if !(logo.ends_with(".svg") || logo.contains("image/svg") || logo.contains("<svg")) {
                f.err("logo", "Logo image must be svg");
            }
        }
        if let Some(body_code) = f.str("code") {
            if body_code != code {
                f.err("code", "The code must match the code in the URL.");
            }
        }
        let telephony = f
            .object("integrations")
            .and_then(|i| i.get("telephony"))
            .and_then(Value::as_object);
        let db = self.db();
        if let Some(list) = telephony.and_then(|t| t.get("additionalCodes")) {
            let prefix = "integrations[telephony][additionalCodes]";
            match list.as_array() {
                None => add_err(&mut errors, prefix, NOT_ARRAY),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let user = item.get("userId").and_then(as_u64);
                        if user.is_none_or(|u| db.user(u).is_none()) {
                            add_err(
                                &mut errors,
                                &format!("{prefix}[{i}][userId]"),
                                "User not found.",
                            );
                        }
                        if item
                            .get("code")
                            .and_then(as_string)
                            .is_none_or(|c| c.is_empty())
                        {
                            add_err(&mut errors, &format!("{prefix}[{i}][code]"), BLANK);
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        drop(db);
        module.insert("code".into(), json!(code));
        let module = Value::Object(module);
        let mut db = self.db();
        match db.modules.iter_mut().find(|(c, _)| c == code) {
            // Each edit replaces the module, `additionalCodes` included.
            Some((_, slot)) => *slot = module,
            None => db.modules.push((code.to_string(), module)),
        }
        db.recompute_codes();
        Ok(ok(json!({"success": true, "info": {}})))
    }
}
