//! The account's reference books and credentials, the same in every run: order status
//! groups and statuses, order methods, the one site, the key's scopes.

use serde_json::{json, Map, Value};

/// The only store (site) of the simulated account.
pub const DEFAULT_SITE: &str = "demo";

type StatusGroup = (
    &'static str,
    &'static str,
    bool,
    &'static [(&'static str, &'static str)],
);

/// (group code, name, process, statuses (code, name)) of a fresh account.
const STATUS_GROUPS: &[StatusGroup] = &[
    ("new", "New", false, &[("new", "New")]),
    (
        "approval",
        "Approval",
        true,
        &[
            ("availability-confirmed", "Availability confirmed"),
            ("offer-analog", "Offer an analog"),
            ("client-confirmed", "Confirmed by the client"),
            ("prepayed", "Prepaid"),
        ],
    ),
    (
        "assembling",
        "Assembling",
        true,
        &[
            ("send-to-assembling", "Sent to assembling"),
            ("assembling", "Assembling"),
            ("assembling-complete", "Assembled"),
        ],
    ),
    (
        "delivery",
        "Delivery",
        true,
        &[
            ("send-to-delivery", "Sent to delivery"),
            ("delivering", "Delivering"),
            ("redirect", "Redirected"),
        ],
    ),
    ("complete", "Complete", false, &[("complete", "Complete")]),
    (
        "cancel",
        "Cancel",
        false,
        &[
            ("no-call", "Could not reach the client"),
            ("no-product", "Out of stock"),
            ("already-buyed", "Bought elsewhere"),
            ("delivery-did-not-suit", "Delivery did not suit"),
            ("prices-did-not-suit", "Price did not suit"),
            ("cancel-other", "Cancelled, other reason"),
            ("return", "Returned"),
        ],
    ),
];

pub(super) const ORDER_METHODS: &[(&str, &str)] = &[
    ("phone", "Phone call"),
    ("shopping-cart", "Shopping cart"),
    ("one-click", "One click"),
    ("landing-page", "Landing page"),
    ("offline", "Offline"),
    ("app", "Mobile app"),
    ("live-chat", "Live chat"),
    ("messenger", "Messenger"),
    ("missed-call", "Missed call"),
];

/// The group of a status code.
pub(super) fn status_group(status: &str) -> Option<&'static str> {
    STATUS_GROUPS
        .iter()
        .find(|(_, _, _, statuses)| statuses.iter().any(|(c, _)| *c == status))
        .map(|(group, ..)| *group)
}

pub(super) fn statuses_json() -> Value {
    let mut map = Map::new();
    let mut ordering = 0;
    for (group, _, _, statuses) in STATUS_GROUPS {
        for (code, name) in *statuses {
            ordering += 10;
            map.insert(
                (*code).into(),
                json!({"name": name, "code": code, "active": true, "ordering": ordering, "group": group}),
            );
        }
    }
    json!({"success": true, "statuses": map})
}

pub(super) fn status_groups_json() -> Value {
    let mut map = Map::new();
    for (i, (code, name, process, statuses)) in STATUS_GROUPS.iter().enumerate() {
        let codes: Vec<&str> = statuses.iter().map(|(c, _)| *c).collect();
        map.insert(
            (*code).into(),
            json!({"name": name, "code": code, "active": true, "ordering": (i + 1) * 10,
                   "process": process, "statuses": codes}),
        );
    }
    json!({"success": true, "statusGroups": map})
}

pub(super) fn order_methods_json() -> Value {
    let mut map = Map::new();
    for (code, name) in ORDER_METHODS {
        map.insert(
            (*code).into(),
            json!({"name": name, "code": code, "active": true,
                   "defaultForCrm": *code == "phone", "defaultForApi": *code == "phone"}),
        );
    }
    json!({"success": true, "orderMethods": map})
}

pub(super) fn sites_json(base_url: &str) -> Value {
    json!({"success": true, "sites": {
        DEFAULT_SITE: {"name": "Demo store", "code": DEFAULT_SITE, "url": base_url,
                        "defaultForCrm": true, "currency": "RUB"}
    }})
}

pub(super) fn credentials_json() -> Value {
    json!({
        "success": true,
        "scopes": ["customer_read", "customer_write", "order_read", "order_write", "task_read",
                   "task_write", "user_read", "user_write", "reference_read", "telephony_read",
                   "telephony_write", "integration_read", "integration_write"],
        "siteAccess": "access_full",
        "sitesAvailable": [DEFAULT_SITE],
    })
}
