//! What callbridge reads from retailCRM to decide a call: the customers with the caller's
//! number and their orders, the order statuses (to tell open orders from closed ones),
//! the active managers, and the extension codes the telephony module holds. Each read
//! goes through the same rate limiter and error typing as the writes.
//!
//! API v5 documents no phone filter on `/customers`; `filter[name]` is the customer
//! search the CRM's own list uses (name, phone, e-mail), and `/telephony/manager` finds
//! the customer of a number. Whatever comes back is confirmed here by comparing
//! normalized numbers (docs/retailcrm.md).

use std::collections::HashMap;

use serde_json::Value;
use tracing::warn;

use super::RetailCrm;
use crate::crm::{CrmCustomer, CrmError, CrmOrder, ExtensionCodes};
use crate::ids::CrmId;
use crate::phone::{PhoneNormalizer, PhoneNumber};

/// Most records one page holds (API v5 takes 20, 50 or 100).
const PAGE: &str = "100";
/// Pages read at most when listing users (10,000 users).
const MAX_PAGES: u64 = 100;

impl RetailCrm {
    /// The customers whose phones include `phone`.
    pub async fn customers_by_phone(
        &self,
        phone: &PhoneNumber,
        normalizer: &PhoneNormalizer,
    ) -> Result<Vec<CrmCustomer>, CrmError> {
        // A search the CRM refuses outright (an account without it) is not retried: the
        // telephony method below is asked instead. Transient failures are retried.
        let searched = self
            .get(
                "/api/v5/customers",
                &[
                    ("filter[name]", phone.digits().to_string()),
                    ("limit", PAGE.to_string()),
                ],
            )
            .await;
        match searched {
            Ok((_, body)) => {
                let found: Vec<CrmCustomer> = list(&body, "customers")
                    .filter(|c| has_phone(c, phone, normalizer) == Some(true))
                    .filter_map(customer)
                    .collect();
                if !found.is_empty() {
                    return Ok(found);
                }
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                warn!(error = %e, "the CRM refused the customer search by phone; asking /telephony/manager")
            }
        }
        // The telephony method is the documented way from a number to its customer.
        let body = match self
            .get(
                "/api/v5/telephony/manager",
                &[
                    ("phone", phone.digits().to_string()),
                    ("details", "1".to_string()),
                ],
            )
            .await
        {
            Ok((_, body)) => body,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                warn!(error = %e, "the CRM refused /telephony/manager; the caller is taken for a new client");
                return Ok(Vec::new());
            }
        };
        Ok(body
            .get("customer")
            .filter(|c| has_phone(c, phone, normalizer) != Some(false))
            .and_then(customer)
            .into_iter()
            .collect())
    }

    /// A customer's orders (the most recent 100).
    pub async fn orders_of(&self, customer_id: CrmId) -> Result<Vec<CrmOrder>, CrmError> {
        let (_, body) = self
            .get(
                "/api/v5/orders",
                &[
                    ("filter[customerId]", customer_id.to_string()),
                    ("limit", PAGE.to_string()),
                ],
            )
            .await?;
        Ok(list(&body, "orders")
            .filter_map(|o| {
                Some(CrmOrder {
                    id: CrmId::from_json(o.get("id")?)?,
                    number: text(o, "number").unwrap_or_default(),
                    status: text(o, "status").unwrap_or_default(),
                    manager_id: o.get("managerId").and_then(CrmId::from_json),
                    created_at: text(o, "createdAt").unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Order status code → its status group's code (`GET /reference/statuses`).
    pub async fn status_groups(&self) -> Result<HashMap<String, String>, CrmError> {
        let (_, body) = self.get("/api/v5/reference/statuses", &[]).await?;
        Ok(status_groups_of(&body))
    }

    /// The ids of the active users who are managers (`GET /users`, every page).
    pub async fn active_managers(&self) -> Result<Vec<CrmId>, CrmError> {
        let mut ids = Vec::new();
        let mut page = 1u64;
        loop {
            let (_, body) = self
                .get(
                    "/api/v5/users",
                    &[
                        ("filter[isManager]", "1".to_string()),
                        ("filter[active]", "1".to_string()),
                        ("limit", PAGE.to_string()),
                        ("page", page.to_string()),
                    ],
                )
                .await?;
            ids.extend(
                list(&body, "users")
                    .filter(|u| u.get("active").and_then(Value::as_bool) != Some(false))
                    .filter(|u| u.get("isManager").and_then(Value::as_bool) != Some(false))
                    .filter_map(|u| u.get("id").and_then(CrmId::from_json)),
            );
            let pages = body
                .pointer("/pagination/totalPageCount")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if page >= pages || page >= MAX_PAGES {
                return Ok(ids);
            }
            page += 1;
        }
    }

    /// The extension codes the telephony module gives users (`additionalCodes`);
    /// `None` when the module is not registered.
    pub async fn module_codes(&self, code: &str) -> Result<Option<ExtensionCodes>, CrmError> {
        let path = format!("/api/v5/integration-modules/{}", super::path_segment(code));
        let body = match self.get(&path, &[]).await {
            Ok((_, body)) => body,
            Err(CrmError::Rejected { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let codes = body
            .pointer("/integrationModule/integrations/telephony/additionalCodes")
            .and_then(Value::as_array)
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(|c| {
                        let code = text(c, "code")?;
                        // An int in the PHP client, a string in the Go one.
                        let user = c.get("userId").and_then(CrmId::from_json)?;
                        Some((code, user))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(codes))
    }
}

/// Status code → group code from a `/reference/statuses` answer: a map code → status,
/// or (read too) a list of statuses each with its `code`.
fn status_groups_of(body: &Value) -> HashMap<String, String> {
    let statuses: Vec<(Option<String>, &Value)> = match body.get("statuses") {
        Some(Value::Object(map)) => map.iter().map(|(c, v)| (Some(c.clone()), v)).collect(),
        Some(Value::Array(list)) => list.iter().map(|v| (None, v)).collect(),
        _ => Vec::new(),
    };
    statuses
        .into_iter()
        .filter_map(|(key, status)| Some((text(status, "code").or(key)?, text(status, "group")?)))
        .collect()
}

fn list<'a>(body: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    body.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether one of the customer's phones is `phone` (`None`: the answer lists no phones).
fn has_phone(c: &Value, phone: &PhoneNumber, normalizer: &PhoneNormalizer) -> Option<bool> {
    let phones = c.get("phones").and_then(Value::as_array)?;
    Some(phones.iter().any(|p| {
        text(p, "number").is_some_and(|n| normalizer.normalize(&n).is_ok_and(|n| &n == phone))
    }))
}

fn customer(c: &Value) -> Option<CrmCustomer> {
    let name = ["firstName", "lastName"]
        .iter()
        .filter_map(|k| text(c, k))
        .collect::<Vec<_>>()
        .join(" ");
    Some(CrmCustomer {
        id: CrmId::from_json(c.get("id")?)?,
        name,
        manager_id: c.get("managerId").and_then(CrmId::from_json),
        created_at: text(c, "createdAt"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_as_a_map_or_a_list() {
        let map = json!({"success": true, "statuses": {
            "new": {"code": "new", "group": "new"},
            "complete": {"name": "Complete", "group": "complete"}}});
        let groups = status_groups_of(&map);
        assert_eq!(groups.get("complete").map(String::as_str), Some("complete"));
        assert_eq!(groups.get("new").map(String::as_str), Some("new"));
        let list = json!({"success": true, "statuses": [
            {"code": "no-call", "group": "cancel"}, {"code": "x"}]});
        let groups = status_groups_of(&list);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups.get("no-call").map(String::as_str), Some("cancel"));
    }

    #[test]
    fn a_customer_matches_by_normalized_phone() {
        let n = PhoneNormalizer::default();
        let phone = n.normalize("+79161234567").expect("phone");
        let c = json!({"id": 5, "firstName": "Ivan", "phones": [{"number": "8 (916) 123-45-67"}]});
        assert_eq!(has_phone(&c, &phone, &n), Some(true));
        let other = json!({"id": 6, "phones": [{"number": "+7 916 123-45-68"}]});
        assert_eq!(has_phone(&other, &phone, &n), Some(false));
        assert_eq!(has_phone(&json!({"id": 7}), &phone, &n), None);
        assert_eq!(
            customer(&c).map(|c| (c.id, c.name)),
            Some((CrmId::from(5), "Ivan".into()))
        );
    }
}
