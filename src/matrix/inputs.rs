//! What the matrix decides from: the configuration it needs, the CRM's records of the
//! caller (customers with the number, their orders), what an earlier moment of the call
//! created, and the kind of client and of employee they make.

use super::*;
use crate::ids::CrmId;

/// When the CRM records of a new caller are made (`[matrix] create_on`): once an
/// employee answered, or as the call starts ringing (row 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOn {
    Answer,
    Ring,
}

impl CreateOn {
    pub fn as_str(self) -> &'static str {
        match self {
            CreateOn::Answer => "answer",
            CreateOn::Ring => "ring",
        }
    }
}

impl std::fmt::Display for CreateOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the matrix needs from the configuration.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub create_on: CreateOn,
    /// `orderMethod` of the orders made for calls (`[crm] order_method`, `phone`).
    pub order_method: String,
    /// `[http] public_url`: recording links point there.
    pub public_url: String,
    /// Recording links are signed with this key and valid this long after the call.
    pub link_key: crate::links::LinkKey,
    pub link_ttl: std::time::Duration,
    pub directory: Directory,
}

/// What the CRM knows of the caller, read just before deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmSnapshot {
    /// The customers whose phone is the caller's number (matched on normalized numbers).
    pub customers: Vec<Customer>,
    /// What earlier moments of this call created.
    pub earlier: Earlier,
    /// The client an employee chose on the panel, when several have the number.
    pub chosen: Option<CrmId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: CrmId,
    pub name: String,
    pub manager_id: Option<UserId>,
    /// Latest activity (`Y-m-d H:i:s`, so text order is time order): when several
    /// customers share the number, the most recently active one is the caller.
    pub last_activity: Option<String>,
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: CrmId,
    pub number: String,
    pub manager_id: Option<UserId>,
    /// Its status is in no final status group (complete, cancel).
    pub open: bool,
    /// `Y-m-d H:i:s`.
    pub created_at: String,
}

/// The customer and order an earlier moment of the same call decided to create (as the
/// outbox's step names), and their responsible manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Earlier {
    pub customer: Option<String>,
    pub order: Option<String>,
    pub manager_id: Option<UserId>,
}

impl Earlier {
    /// What `actions` (an earlier moment's decision) created.
    pub fn from_actions<'a>(actions: impl IntoIterator<Item = &'a CrmAction>) -> Earlier {
        let mut earlier = Earlier::default();
        for action in actions {
            match action {
                CrmAction::CreateCustomer(c) => {
                    earlier.customer = Some(c.external_id.clone());
                    earlier.manager_id = earlier.manager_id.or(c.manager_id);
                }
                CrmAction::CreateOrder(o) => {
                    earlier.order = Some(o.external_id.clone());
                    earlier.manager_id = o.manager_id.or(earlier.manager_id);
                }
                _ => {}
            }
        }
        earlier
    }

    pub(super) fn created_anything(&self) -> bool {
        self.customer.is_some() || self.order.is_some()
    }
}

/// Who the caller is in the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind<'a> {
    /// No customer has this number.
    New,
    /// A customer with an open order (the most recent open one).
    Existing(&'a Customer, &'a Order),
    /// A customer whose orders are all closed, or who has none.
    Returning(&'a Customer),
}

/// Who took the call for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler<'a> {
    /// An extension mapped to a CRM user.
    Employee { extension: &'a str, user: UserId },
    /// An extension mapped to nobody.
    Unmapped { extension: &'a str },
    /// Nobody answered.
    Nobody,
}

/// The caller's customer: the one an employee chose on the panel, else the most recently
/// active one of those with the number.
pub fn classify(snapshot: &CrmSnapshot) -> ClientKind<'_> {
    let chosen = snapshot
        .chosen
        .and_then(|id| snapshot.customers.iter().find(|c| c.id == id));
    let Some(customer) = chosen.or_else(|| {
        snapshot
            .customers
            .iter()
            .max_by(|a, b| a.last_activity.cmp(&b.last_activity).then(a.id.cmp(&b.id)))
    }) else {
        return ClientKind::New;
    };
    match customer
        .orders
        .iter()
        .filter(|o| o.open)
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)))
    {
        Some(order) => ClientKind::Existing(customer, order),
        None => ClientKind::Returning(customer),
    }
}

pub(super) fn handler<'a>(extension: Option<&'a str>, directory: &Directory) -> Handler<'a> {
    match extension {
        Some(extension) => match directory.user_of(extension) {
            Some(user) => Handler::Employee { extension, user },
            None => Handler::Unmapped { extension },
        },
        None => Handler::Nobody,
    }
}

/// The externalId of the customer made for a number: the same for every call from it.
pub fn customer_external_id(phone: &PhoneNumber) -> String {
    format!("cb-tel-{}", phone.digits())
}

/// The externalId of the order made for a call.
pub fn order_external_id(header: &CallHeader) -> String {
    format!("{}-order", header.external_id())
}
