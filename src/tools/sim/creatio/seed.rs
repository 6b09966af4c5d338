//! What a fresh Creatio installation of the simulator holds: the lookups Creatio ships
//! with their fixed ids (case statuses with `IsFinal`, activity types, categories,
//! statuses and priorities, communication types, call directions, queue item statuses),
//! the values an installation names itself (the case origin "Call", the categories, the
//! "Missed calls" queue), the default case priority setting, and the employees: a
//! contact, a user (`SysAdminUnit`) and telephony settings naming the extension.

use serde_json::{json, Value};

use super::store::Db;

/// `CaseStatus` New (Creatio's fixed id).
pub const CASE_NEW: &str = "ae5f2f10-f46b-1410-fd9a-0050ba5d6c38";
/// `CaseStatus` Closed.
pub const CASE_CLOSED: &str = "3e7f420c-f46b-1410-fc9a-0050ba5d6c38";
/// `CasePriority` Medium, the `CasePriorityDef` setting here.
pub const CASE_PRIORITY_MEDIUM: &str = "d9bd322c-f46b-1410-ee8c-0050ba5d6c38";
/// The "Missed calls" queue.
pub const MISSED_CALLS_QUEUE: &str = "5f2e1c7a-0b3d-4e8f-9a61-2c4d8e0f1a20";
/// The case origin "Call" (an installation's own id: looked up by name).
pub const ORIGIN_CALL: &str = "6c1f7a42-3b9e-4d15-8f02-7e4a9b3c5d61";

/// An employee: their contact, their user, the extension their telephony settings name.
#[derive(Debug, Clone)]
pub struct SimEmployee {
    pub contact: String,
    pub user: String,
    pub name: String,
    pub extension: Option<String>,
}

impl SimEmployee {
    /// An employee with ids derived from `n` (readable in tests and the demo).
    pub fn new(n: u32, name: &str, extension: Option<&str>) -> SimEmployee {
        SimEmployee {
            contact: format!("c0a70000-0000-4000-8000-{n:012}"),
            user: format!("5a0a0000-0000-4000-8000-{n:012}"),
            name: name.to_string(),
            extension: extension.map(str::to_string),
        }
    }
}

/// Anna (101), Boris (102, no telephony settings: mapped in config when needed) and
/// Svetlana, the senior manager (107): the same people as the retailCRM simulator's.
pub fn default_employees() -> Vec<SimEmployee> {
    vec![
        SimEmployee::new(3, "Anna Ivanova", Some("101")),
        SimEmployee::new(4, "Boris Petrov", None),
        SimEmployee::new(7, "Svetlana Orlova (senior)", Some("107")),
    ]
}

const SEED_TIME: &str = "2026-01-01T00:00:00Z";

/// Fills a new installation.
pub fn seed(db: &mut Db, employees: &[SimEmployee]) -> Result<(), super::store::OdataError> {
    let named = |pairs: &[(&str, &str)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(id, name)| json!({"Id": id, "Name": name}))
            .collect()
    };
    let mut rows: Vec<(&str, Vec<Value>)> = vec![
        (
            "CaseStatus",
            [
                (CASE_NEW, "New", false),
                ("7e9f1204-f46b-1410-fb9a-0050ba5d6c38", "In progress", false),
                ("f063ebbe-fdc6-4982-8431-d8cfa52fedcf", "Reopened", false),
                ("3859c6e7-cbcb-486b-ba53-77808fe6e593", "Waiting for response", false),
                ("56022749-b807-48ff-876c-0b9133d90365", "Pending", false),
                ("ae7f411e-f46b-1410-009b-0050ba5d6c38", "Resolved", true),
                (CASE_CLOSED, "Closed", true),
                ("6e5f4218-f46b-1410-fe9a-0050ba5d6c38", "Canceled", true),
            ]
            .iter()
            .map(|(id, name, fin)| json!({"Id": id, "Name": name, "IsFinal": fin, "IsResolved": fin}))
            .collect(),
        ),
        (
            "CaseOrigin",
            named(&[
                ("7f9e1f1e-f46b-1410-3492-0050ba5d6c38", "Email"),
                ("debf4124-f46b-1410-3592-0050ba5d6c38", "Portal"),
                (ORIGIN_CALL, "Call"),
            ]),
        ),
        (
            "CaseCategory",
            named(&[
                ("1b0bc159-150a-e111-a31b-00155d04c01d", "Incident"),
                ("1c0bc159-150a-e111-a31b-00155d04c01d", "Service request"),
            ]),
        ),
        (
            "CasePriority",
            named(&[
                ("d9bd322c-f46b-1410-ed8c-0050ba5d6c38", "Low"),
                (CASE_PRIORITY_MEDIUM, "Medium"),
                ("d9bd322c-f46b-1410-ef8c-0050ba5d6c38", "High"),
            ]),
        ),
        (
            "ActivityType",
            named(&[
                ("fbe0acdc-cfc0-df11-b00f-001d60e938c6", "Task"),
                ("e1831dec-cfc0-df11-b00f-001d60e938c6", "Call"),
            ]),
        ),
        (
            "ActivityCategory",
            named(&[
                ("f51c4643-58e6-df11-971b-001d60e938c6", "To do"),
                ("03df85bf-6b19-4dea-8463-d5d49b80bb28", "Call"),
            ]),
        ),
        (
            "ActivityStatus",
            [
                ("384d4b84-58e6-df11-971b-001d60e938c6", "Not started", false),
                ("394d4b84-58e6-df11-971b-001d60e938c6", "In progress", false),
                ("4bdbb88f-58e6-df11-971b-001d60e938c6", "Completed", true),
                ("201cfba8-58e6-df11-971b-001d60e938c6", "Canceled", true),
            ]
            .iter()
            .map(|(id, name, finish)| json!({"Id": id, "Name": name, "Finish": finish}))
            .collect(),
        ),
        (
            "ActivityPriority",
            named(&[("ab96fa02-7fe6-df11-971b-001d60e938c6", "Medium")]),
        ),
        (
            "CommunicationType",
            named(&[
                ("3dddb3cc-53ee-49c4-a71f-e9e257f59e49", "Work phone"),
                ("d4a2dc80-30ca-df11-9b2a-001d60e938c6", "Mobile phone"),
                ("0da6a26b-d7bc-df11-b00f-001d60e938c6", "Home phone"),
                ("6a3fb10c-67cc-df11-9b2a-001d60e938c6", "Main phone"),
            ]),
        ),
        (
            "CallDirection",
            named(&[
                ("1d96a65f-2131-4916-8825-2d142b1000b2", "Incoming"),
                ("53f71b5f-7e17-4cf5-bf14-6a59212db422", "Outgoing"),
            ]),
        ),
        (
            "QueueItemStatus",
            named(&[
                ("2b341a1d-6fa1-4960-9c85-fef60d1bbcc4", "New"),
                ("7e1e6d6b-5b5c-4d0f-9b1f-0a2c6f1f5c3a", "In progress"),
            ]),
        ),
        ("Queue", named(&[(MISSED_CALLS_QUEUE, "Missed calls")])),
        (
            "SysSettings",
            vec![json!({"Id": "a1b0c0de-0000-4000-8000-00000000000a", "Name": "Default case priority", "Code": "CasePriorityDef"})],
        ),
        (
            "SysSettingsValue",
            vec![json!({"SysSettingsId": "a1b0c0de-0000-4000-8000-00000000000a", "GuidValue": CASE_PRIORITY_MEDIUM})],
        ),
    ];
    for e in employees {
        rows.push(("Contact", vec![json!({"Id": e.contact, "Name": e.name})]));
        rows.push((
            "SysAdminUnit",
            vec![json!({"Id": e.user, "Name": e.name, "ContactId": e.contact,
                        "SysAdminUnitTypeValue": 4, "Active": true})],
        ));
        if let Some(ext) = &e.extension {
            let params = json!({"ExtensionName": ext, "ExtensionPassword": "", "UseWebRtc": false});
            rows.push((
                "SysMsgUserSettings",
                vec![json!({"UserId": e.user, "ConnectionParams": params.to_string()})],
            ));
        }
    }
    for (entity, records) in rows {
        for r in records {
            if let Value::Object(m) = r {
                db.insert(entity, &m, SEED_TIME)?;
            }
        }
    }
    Ok(())
}
