//! OData 4 requests to Creatio: the headers it expects, pacing by the rate limiter, a
//! session renewed once when Creatio ended it, and its answers read: `{"value": [...]}`
//! for a collection, the record for a create, `{"error":{"code","message"}}` for a refusal.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::Method;
use serde_json::Value;

use super::session::transport_text;
use super::CreatioCrm;
use crate::crm::CrmError;

/// Creatio's empty lookup: a column that points nowhere reads back as this.
pub(super) const EMPTY_GUID: &str = "00000000-0000-0000-0000-000000000000";

impl CreatioCrm {
    /// One request to `{odata}/{path}` (query included), with `body` as JSON; the answer's
    /// JSON (`Value::Null` for an empty body).
    pub(super) async fn odata(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CrmError> {
        self.limit.acquire().await;
        let url = format!("{}{}/{path}", self.base, self.odata_path);
        let label = format!(
            "{}/{}",
            self.odata_path,
            path.split('?').next().unwrap_or(path)
        );
        let mut credentials = self.session.credentials(&self.http).await?;
        let mut renewed = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("Accept", "application/json")
                .header(
                    "Content-Type",
                    "application/json; charset=utf-8; IEEE754Compatible=true",
                )
                .header("ForceUseSession", "true");
            if let Some(body) = body {
                request = request.body(body.to_string());
            }
            request = credentials.apply(request);
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    crate::ops::metrics::crm_request(&label, None);
                    let text = transport_text(&e);
                    self.answered(Some(text.clone()));
                    return Err(CrmError::Transport(text));
                }
            };
            let status = response.status().as_u16();
            crate::ops::metrics::crm_request(&label, Some(status));
            self.answered(None);
            if matches!(status, 401 | 403) && !renewed {
                // The session (or token) ended: log in again, once, and repeat.
                renewed = true;
                credentials = self.session.renew(&self.http, &credentials).await?;
                continue;
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response
                .text()
                .await
                .map_err(|e| CrmError::Transport(transport_text(&e)))?;
            return interpret(status, retry_after, &text);
        }
    }

    /// `GET {entity}?…`: the records of the collection.
    pub(super) async fn list(
        &self,
        entity: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, CrmError> {
        let path = with_query(entity, query);
        let answer = self.odata(Method::GET, &path, None).await?;
        Ok(answer
            .get("value")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `POST {entity}`: the record Creatio made.
    pub(super) async fn create(&self, entity: &str, record: &Value) -> Result<Value, CrmError> {
        self.odata(Method::POST, entity, Some(record)).await
    }

    /// `PATCH {entity}({id})`.
    pub(super) async fn update(
        &self,
        entity: &str,
        id: &str,
        fields: &Value,
    ) -> Result<(), CrmError> {
        self.odata(Method::PATCH, &format!("{entity}({id})"), Some(fields))
            .await
            .map(|_| ())
    }

    /// Several requests in one `POST $batch` (OData 4 JSON batch): one round trip. Creatio
    /// stops at the first one that fails; each request's own answer is returned, and
    /// one not carried out is an error saying so.
    pub(super) async fn batch(
        &self,
        requests: &[(Method, String, Value)],
    ) -> Result<Vec<Result<Value, CrmError>>, CrmError> {
        let body = serde_json::json!({
            "requests": requests
                .iter()
                .enumerate()
                .map(|(n, (method, url, body))| serde_json::json!({
                    "method": method.as_str(),
                    "url": url,
                    "id": (n + 1).to_string(),
                    "body": body,
                    "headers": {
                        "Content-Type": "application/json;odata=verbose",
                        "Accept": "application/json;odata=verbose",
                    },
                }))
                .collect::<Vec<_>>(),
        });
        let answer = self.odata(Method::POST, "$batch", Some(&body)).await?;
        let responses = answer
            .get("responses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok((1..=requests.len())
            .map(|n| {
                let id = n.to_string();
                let Some(r) = responses
                    .iter()
                    .find(|r| r.get("id").and_then(Value::as_str) == Some(id.as_str()))
                else {
                    return Err(CrmError::Rejected {
                        status: 424,
                        message: format!("request {n} of the batch was not carried out"),
                        retry_after: None,
                    });
                };
                let status = r
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0);
                let text = match r.get("body") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(b) => b.to_string(),
                };
                interpret(status, None, &text)
            })
            .collect())
    }
}

/// `entity?$filter=…&$select=…`, each value percent-encoded.
pub(super) fn with_query(entity: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return entity.to_string();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    format!("{entity}?{}", pairs.join("&"))
}

/// An OData string literal: `'…'` with `'` doubled.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Reads an answer: 2xx JSON (or nothing), else Creatio's error.
pub(super) fn interpret(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> Result<Value, CrmError> {
    if (200..300).contains(&status) {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(text).map_err(|_| CrmError::BadBody {
            status,
            snippet: text.chars().take(120).collect(),
        });
    }
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            let message = error
                .get("message")
                .and_then(|m| {
                    m.as_str()
                        .map(String::from)
                        .or_else(|| m.get("value")?.as_str().map(String::from))
                })
                .unwrap_or_default();
            let code = error
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(if code.is_empty() {
                message
            } else {
                format!("{code}: {message}")
            })
        })
        .filter(|m| !m.is_empty());
    match message {
        Some(message) => Err(CrmError::Rejected {
            status,
            message,
            retry_after,
        }),
        None if text.trim_start().starts_with('<') || text.trim().is_empty() => {
            Err(CrmError::Rejected {
                status,
                message: format!("HTTP {status} without an OData error"),
                retry_after,
            })
        }
        None => Err(CrmError::BadBody {
            status,
            snippet: text.chars().take(120).collect(),
        }),
    }
}

/// A GUID column's value, `None` for Creatio's empty GUID or no value.
pub(super) fn guid(record: &Value, column: &str) -> Option<crate::ids::CrmId> {
    record
        .get(column)
        .and_then(Value::as_str)
        .filter(|g| *g != EMPTY_GUID)
        .and_then(crate::ids::CrmId::new)
}

/// A text column.
pub(super) fn text(record: &Value, column: &str) -> Option<String> {
    record
        .get(column)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(String::from)
}

/// Creatio's `2026-11-25T17:20:56.123Z` as the `Y-m-d H:i:s` the matrix orders by.
pub(super) fn sortable_date(iso: &str) -> String {
    let plain = iso.trim_end_matches('Z').replace('T', " ");
    plain
        .split('.')
        .next()
        .unwrap_or(&plain)
        .chars()
        .take(19)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_and_typed() {
        let e = interpret(
            400,
            None,
            r#"{"error":{"code":"","message":"The property 'X' does not exist"}}"#,
        );
        assert!(
            matches!(e, Err(CrmError::Rejected { status: 400, ref message, .. }) if message.contains("'X'"))
        );
        assert!(!e.as_ref().err().is_some_and(CrmError::is_transient));
        let e = interpret(503, Some(Duration::from_secs(3)), "<html>busy</html>");
        assert!(e.as_ref().err().is_some_and(CrmError::is_transient));
        assert_eq!(interpret(204, None, "").ok(), Some(Value::Null));
        assert_eq!(
            with_query("Case", &[("$filter", "Contact/Id eq 1".into())]),
            "Case?$filter=Contact%2FId%20eq%201"
        );
        assert_eq!(literal("O'Brien"), "'O''Brien'");
        assert_eq!(
            sortable_date("2026-11-25T17:20:56.123Z"),
            "2026-11-25 17:20:56"
        );
        let r = serde_json::json!({"OwnerId": EMPTY_GUID, "ContactId": "a1b2c3d4-0000-4000-8000-000000000001"});
        assert_eq!(guid(&r, "OwnerId"), None);
        assert!(guid(&r, "ContactId").is_some());
    }
}
