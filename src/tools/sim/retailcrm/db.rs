//! The account's data in memory: one `Db` behind the server's lock, with the indexes the
//! hot lookups use. Each resource's file adds the methods that read and change its part.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::errors::{Errors, SimError};
use super::records::{CallEvent, Customer, Order, SimUser, Task, UploadedCall};

pub(super) struct Db {
    pub(super) users: Vec<SimUser>,
    pub(super) user_pos: HashMap<u64, usize>,
    pub(super) user_status: HashMap<u64, String>,
    /// Extension code → user id: profile codes, overlaid by the modules' `additionalCodes`.
    pub(super) codes: HashMap<String, u64>,
    pub(super) user_codes: HashMap<u64, Vec<String>>,
    /// (code, module) in order of first registration.
    pub(super) modules: Vec<(String, Value)>,
    pub(super) call_events: Vec<CallEvent>,
    pub(super) calls: Vec<UploadedCall>,
    pub(super) call_external_ids: HashSet<String>,
    pub(super) customers: Vec<Customer>,
    pub(super) customer_by_ext: HashMap<String, u64>,
    pub(super) customers_by_phone: HashMap<String, Vec<u64>>,
    pub(super) orders: Vec<Order>,
    pub(super) order_by_ext: HashMap<String, u64>,
    pub(super) order_by_number: HashMap<String, u64>,
    pub(super) orders_by_customer: HashMap<u64, Vec<u64>>,
    pub(super) tasks: Vec<Task>,
}

pub(super) fn by_seq<T>(items: &[T], id: u64) -> Option<&T> {
    let index = usize::try_from(id.checked_sub(1)?).ok()?;
    items.get(index)
}

pub(super) fn by_seq_mut<T>(items: &mut [T], id: u64) -> Option<&mut T> {
    let index = usize::try_from(id.checked_sub(1)?).ok()?;
    items.get_mut(index)
}

pub(super) fn next_id(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX - 1) + 1
}

impl Db {
    pub(super) fn new(users: Vec<SimUser>) -> Db {
        let user_pos = users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let mut db = Db {
            users,
            user_pos,
            user_status: HashMap::new(),
            codes: HashMap::new(),
            user_codes: HashMap::new(),
            modules: Vec::new(),
            call_events: Vec::new(),
            calls: Vec::new(),
            call_external_ids: HashSet::new(),
            customers: Vec::new(),
            customer_by_ext: HashMap::new(),
            customers_by_phone: HashMap::new(),
            orders: Vec::new(),
            order_by_ext: HashMap::new(),
            order_by_number: HashMap::new(),
            orders_by_customer: HashMap::new(),
            tasks: Vec::new(),
        };
        db.recompute_codes();
        db
    }
}

/// A record the API edits in place (customers, orders): found by id or externalId, the
/// sent fields applied with each refusal named, its indexes kept right.
pub(super) trait Editable: Clone {
    fn find<'a>(db: &'a Db, key: &str, by_id: bool) -> Option<&'a Self>;
    fn apply(db: &Db, record: &mut Self, obj: &Map<String, Value>, errors: &mut Errors);
    fn index(db: &mut Db, record: &Self);
    fn unindex(db: &mut Db, record: &Self);
    fn slot(db: &mut Db, id: u64) -> Option<&mut Self>;
    fn id(&self) -> u64;
}

impl Db {
    /// `…/{key}/edit`: the record as it would be with `obj` applied, kept only when every
    /// field was accepted (as retailCRM refuses an edit as a whole).
    pub(super) fn edit<R: Editable>(
        &mut self,
        key: &str,
        by_id: bool,
        obj: &Map<String, Value>,
    ) -> Result<u64, SimError> {
        let old = R::find(self, key, by_id)
            .ok_or_else(SimError::not_found)?
            .clone();
        let mut record = old.clone();
        let mut errors = Errors::new();
        R::apply(self, &mut record, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        R::unindex(self, &old);
        R::index(self, &record);
        let id = record.id();
        if let Some(slot) = R::slot(self, id) {
            *slot = record;
        }
        Ok(id)
    }
}
