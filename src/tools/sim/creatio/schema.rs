//! The entities the Creatio simulator holds and their columns, as Creatio's
//! configuration defines them (`../shared/reference/creatio.md`): a lookup column is
//! `<Name>Id` and points at a record of another entity; a column not listed here is
//! refused the way OData refuses an unknown property.

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
    Date,
    /// A GUID of a record of the named entity; unset reads as the empty GUID.
    Lookup(&'static str),
    /// A GUID that may point at a record of any entity (`QueueItem.EntityRecordId`).
    AnyRecord,
}

use Kind::{AnyRecord, Bool, Date, Int, Lookup, Text};

/// Columns every entity has.
const COMMON: &[(&str, Kind)] = &[
    ("Id", AnyRecord),
    ("CreatedOn", Date),
    ("ModifiedOn", Date),
    ("CreatedById", Lookup("Contact")),
    ("ModifiedById", Lookup("Contact")),
];

/// A lookup table's columns.
const NAMED: &[(&str, Kind)] = &[("Name", Text), ("Description", Text)];

/// Every entity and its own columns.
pub const ENTITIES: &[(&str, &[(&str, Kind)])] = &[
    (
        "Contact",
        &[
            ("Name", Text),
            ("OwnerId", Lookup("Contact")),
            ("AccountId", Lookup("Account")),
            ("TypeId", Lookup("ContactType")),
            ("MobilePhone", Text),
            ("Phone", Text),
            ("Email", Text),
            ("Notes", Text),
        ],
    ),
    ("ContactType", NAMED),
    (
        "Account",
        &[
            ("Name", Text),
            ("OwnerId", Lookup("Contact")),
            ("Phone", Text),
            ("Notes", Text),
        ],
    ),
    (
        "ContactCommunication",
        &[
            ("ContactId", Lookup("Contact")),
            ("CommunicationTypeId", Lookup("CommunicationType")),
            ("Number", Text),
            ("SearchNumber", Text),
            ("Primary", Bool),
        ],
    ),
    (
        "AccountCommunication",
        &[
            ("AccountId", Lookup("Account")),
            ("CommunicationTypeId", Lookup("CommunicationType")),
            ("Number", Text),
            ("SearchNumber", Text),
            ("Primary", Bool),
        ],
    ),
    ("CommunicationType", NAMED),
    (
        "Case",
        &[
            ("Number", Text),
            ("Subject", Text),
            ("Symptoms", Text),
            ("RegisteredOn", Date),
            ("ContactId", Lookup("Contact")),
            ("AccountId", Lookup("Account")),
            ("OwnerId", Lookup("Contact")),
            ("GroupId", Lookup("SysAdminUnit")),
            ("OriginId", Lookup("CaseOrigin")),
            ("CategoryId", Lookup("CaseCategory")),
            ("StatusId", Lookup("CaseStatus")),
            ("PriorityId", Lookup("CasePriority")),
            ("SolutionDate", Date),
            ("ClosureDate", Date),
        ],
    ),
    (
        "CaseStatus",
        &[("Name", Text), ("IsFinal", Bool), ("IsResolved", Bool)],
    ),
    ("CaseOrigin", NAMED),
    ("CaseCategory", NAMED),
    ("CasePriority", NAMED),
    (
        "Activity",
        &[
            ("Title", Text),
            ("Notes", Text),
            ("StartDate", Date),
            ("DueDate", Date),
            ("TypeId", Lookup("ActivityType")),
            ("ActivityCategoryId", Lookup("ActivityCategory")),
            ("StatusId", Lookup("ActivityStatus")),
            ("PriorityId", Lookup("ActivityPriority")),
            ("OwnerId", Lookup("Contact")),
            ("AuthorId", Lookup("Contact")),
            ("ContactId", Lookup("Contact")),
            ("AccountId", Lookup("Account")),
            ("CaseId", Lookup("Case")),
        ],
    ),
    ("ActivityType", NAMED),
    ("ActivityCategory", NAMED),
    ("ActivityStatus", &[("Name", Text), ("Finish", Bool)]),
    ("ActivityPriority", NAMED),
    (
        "Call",
        &[
            ("IntegrationId", Text),
            ("Caption", Text),
            ("CallerId", Text),
            ("CalledId", Text),
            ("StartDate", Date),
            ("EndDate", Date),
            ("Duration", Int),
            ("TalkTime", Int),
            ("BeforeConnectionTime", Int),
            ("HoldTime", Int),
            ("DirectionId", Lookup("CallDirection")),
            ("ContactId", Lookup("Contact")),
            ("AccountId", Lookup("Account")),
            ("CaseId", Lookup("Case")),
            ("ParentCallId", Lookup("Call")),
            ("Comment", Text),
            ("Notes", Text),
        ],
    ),
    ("CallDirection", NAMED),
    ("Queue", NAMED),
    (
        "QueueItem",
        &[
            ("QueueId", Lookup("Queue")),
            ("EntityRecordId", AnyRecord),
            ("StatusId", Lookup("QueueItemStatus")),
            ("OperatorId", Lookup("Contact")),
            ("Caption", Text),
            ("Notes", Text),
        ],
    ),
    ("QueueItemStatus", NAMED),
    (
        "SysAdminUnit",
        &[
            ("Name", Text),
            ("ContactId", Lookup("Contact")),
            ("SysAdminUnitTypeValue", Int),
            ("Active", Bool),
        ],
    ),
    (
        "SysMsgUserSettings",
        &[
            ("UserId", Lookup("SysAdminUnit")),
            ("ConnectionParams", Text),
        ],
    ),
    ("SysSettings", &[("Name", Text), ("Code", Text)]),
    (
        "SysSettingsValue",
        &[
            ("SysSettingsId", Lookup("SysSettings")),
            ("SysAdminUnitId", Lookup("SysAdminUnit")),
            ("GuidValue", AnyRecord),
            ("TextValue", Text),
            ("IntegerValue", Int),
            ("BooleanValue", Bool),
        ],
    ),
];

/// The kind of `column` of `entity` (`None`: no such entity or column).
pub fn kind(entity: &str, column: &str) -> Option<Kind> {
    COMMON
        .iter()
        .chain(own_columns(entity)?.iter())
        .find(|(name, _)| *name == column)
        .map(|(_, kind)| *kind)
}

/// Every column of `entity`, the common ones first.
pub fn columns(entity: &str) -> Option<Vec<(&'static str, Kind)>> {
    Some(COMMON.iter().chain(own_columns(entity)?).copied().collect())
}

fn own_columns(entity: &str) -> Option<&'static [(&'static str, Kind)]> {
    ENTITIES
        .iter()
        .find(|(name, _)| *name == entity)
        .map(|(_, columns)| *columns)
}

/// The entity as OData spells it in a path (`Case` and `case` alike), if it is held.
pub fn entity(name: &str) -> Option<&'static str> {
    ENTITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, _)| *n)
}
