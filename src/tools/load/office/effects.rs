//! Checking what each call left in the CRM against what its kind of call must leave.

use std::collections::HashMap;

use super::calls::CallTimes;
use crate::tools::load::mix::Template;

/// Customers per 10-digit national number (the last ten digits of each phone).
pub(super) fn customers_by_number(
    customers: &[crate::tools::sim::retailcrm::Customer],
) -> HashMap<String, usize> {
    let mut by_number: HashMap<String, usize> = HashMap::new();
    for c in customers {
        let mut numbers: Vec<String> = c
            .phones
            .iter()
            .map(|p| {
                let digits: String = p.number.chars().filter(char::is_ascii_digit).collect();
                digits[digits.len().saturating_sub(10)..].to_string()
            })
            .collect();
        numbers.sort();
        numbers.dedup();
        for n in numbers {
            *by_number.entry(n).or_default() += 1;
        }
    }
    by_number
}

pub(super) struct Effects {
    pub(super) wrong: usize,
    pub(super) missing: usize,
    pub(super) examples: Vec<String>,
}

/// Each call's CRM effects as its kind needs them: a pop-up for an inbound call, one
/// history record with the right result, one customer for a new inbound caller and
/// none for an outbound call to an unknown number.
pub(super) fn check_effects(
    templates: &[Template],
    calls: &[CallTimes],
    customers: &HashMap<String, usize>,
) -> Effects {
    let mut e = Effects {
        wrong: 0,
        missing: 0,
        examples: Vec::new(),
    };
    let note = |e: &mut Effects, wrong: bool, text: String| {
        if wrong {
            e.wrong += 1;
        } else {
            e.missing += 1;
        }
        if e.examples.len() < 10 {
            e.examples.push(text);
        }
    };
    for (n, c) in calls.iter().enumerate() {
        let t = &templates[c.template];
        if t.inbound && c.popup.is_none() {
            note(&mut e, false, format!("call {n} ({}): no pop-up", t.name));
        }
        match (&c.history_result, c.histories) {
            (_, 0) => note(
                &mut e,
                false,
                format!("call {n} ({}): no history record", t.name),
            ),
            (Some(r), 1) if r == t.result => {}
            (r, k) => note(
                &mut e,
                true,
                format!(
                    "call {n} ({}): history {k} record(s), result {r:?}, expected one {:?}",
                    t.name, t.result
                ),
            ),
        }
        let found = customers.get(&c.number).copied().unwrap_or(0);
        match (t.inbound, found) {
            (true, 1) | (false, 0) => {}
            (true, 0) => note(&mut e, false, format!("call {n} ({}): no customer", t.name)),
            (_, k) => note(
                &mut e,
                true,
                format!("call {n} ({}): {k} customers for {}", t.name, c.number),
            ),
        }
    }
    e
}
