//! Reading API v5 answers: `{"success":true,…}`, or `{"success":false,"errorMsg":…,
//! "errors":…}` turned into a typed `CrmError` that says whether trying again can help.

use std::time::Duration;

use serde_json::Value;

use crate::crm::CrmError;

/// Reads an API v5 answer: `{"success":true,…}` or `{"success":false,"errorMsg":…,"errors":…}`.
pub fn interpret(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> Result<(u16, Value), CrmError> {
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        return Err(CrmError::BadBody {
            status,
            snippet: text
                .chars()
                .take(120)
                .collect::<String>()
                .replace(['\n', '\r'], " "),
        });
    };
    let success = body.get("success").and_then(Value::as_bool) == Some(true);
    if success && (200..300).contains(&status) {
        return Ok((status, body));
    }
    let mut message = body
        .get("errorMsg")
        .and_then(Value::as_str)
        .unwrap_or("success is not true")
        .to_string();
    // `errors` is either {field: message} or [message].
    let details: Vec<String> = match body.get("errors") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => Vec::new(),
    };
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    Err(CrmError::Rejected {
        status,
        message,
        retry_after,
    })
}

pub(super) fn unknown_codes_note(answer: &Value) -> Option<String> {
    let list = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .map(|a| format!("{k}: {}", Value::Array(a.clone())))
    };
    match (list("notExistCodes"), list("notExistUsers")) {
        (None, None) => None,
        (a, b) => Some([a, b].into_iter().flatten().collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_false_becomes_rejected_with_field_errors() {
        let err = interpret(
            400,
            None,
            r#"{"success":false,"errorMsg":"Errors in the entity format","errors":{"phone":"This value should not be blank."}}"#,
        )
        .expect_err("rejected");
        assert_eq!(
            err,
            CrmError::Rejected {
                status: 400,
                message: "Errors in the entity format (phone: This value should not be blank.)"
                    .into(),
                retry_after: None
            }
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn errors_may_be_a_list() {
        let err = interpret(
            400,
            None,
            r#"{"success":false,"errorMsg":"Validation error","errors":["a","b"]}"#,
        )
        .expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "CRM answered HTTP 400: Validation error (a; b)"
        );
    }

    #[test]
    fn rate_limit_and_html_are_transient() {
        let err = interpret(
            429,
            Some(Duration::from_secs(2)),
            r#"{"success":false,"errorMsg":"Too many requests"}"#,
        )
        .expect_err("limited");
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        let err = interpret(502, None, "<html>Bad gateway</html>").expect_err("html");
        assert!(matches!(err, CrmError::BadBody { status: 502, .. }));
        assert!(err.is_transient());
        let err = interpret(
            403,
            None,
            r#"{"success":false,"errorMsg":"Wrong \"apiKey\" value."}"#,
        )
        .expect_err("key");
        assert!(!err.is_transient());
    }

    #[test]
    fn success_true_is_ok() {
        let (status, body) =
            interpret(200, None, r#"{"success":true,"notExistCodes":["109"]}"#).expect("ok");
        assert_eq!(status, 200);
        assert_eq!(
            unknown_codes_note(&body).as_deref(),
            Some(r#"notExistCodes: ["109"]"#)
        );
    }
}
