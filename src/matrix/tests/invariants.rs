//! The walk over every combination of direction × outcome × client × answerer ×
//! `create_on`, checking the invariants that must hold whatever the row.

use super::*;

/// Every combination, through all three moments, against the invariants.
#[test]
fn invariants_hold_for_every_combination() {
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        New,
        Existing,
        Returning,
        Several,
    }
    #[derive(Debug, Clone, Copy)]
    enum Answerer {
        Responsible,
        Other,
        Unmapped,
        Nobody,
    }
    let mut walked = 0;
    for direction in [Direction::Inbound, Direction::Outbound] {
        for outcome in [
            Outcome::Answered,
            Outcome::Missed,
            Outcome::Busy,
            Outcome::Failed,
            Outcome::Voicemail,
        ] {
            for kind in [Kind::New, Kind::Existing, Kind::Returning, Kind::Several] {
                for answerer in [
                    Answerer::Responsible,
                    Answerer::Other,
                    Answerer::Unmapped,
                    Answerer::Nobody,
                ] {
                    for create_on in [CreateOn::Answer, CreateOn::Ring] {
                        walked += 1;
                        let case = format!(
                            "{direction:?} {outcome:?} {kind:?} {answerer:?} {create_on:?}"
                        );
                        let customers = match kind {
                            Kind::New => vec![],
                            Kind::Existing => vec![existing(ANNA)],
                            Kind::Returning => vec![returning(ANNA)],
                            Kind::Several => vec![returning(BORIS), existing(ANNA)],
                        };
                        let ext = match answerer {
                            Answerer::Responsible => Some("101"),
                            Answerer::Other => Some("102"),
                            Answerer::Unmapped => Some("109"),
                            Answerer::Nobody => None,
                        };
                        let talked: Vec<&str> = if outcome == Outcome::Answered {
                            ext.into_iter().collect()
                        } else {
                            Vec::new()
                        };
                        let s = summary(direction, outcome, &talked);
                        let c = config(create_on);
                        let mut snap = snapshot(customers.clone());
                        let mut all = Vec::new();
                        if direction == Direction::Inbound {
                            let ring =
                                decide_ringing(&s.header, &phone(), &s.rang, None, &snap, &c);
                            all.extend(ring);
                            snap.earlier = Earlier::from_actions(&all);
                            if let (Outcome::Answered, Some(ext)) = (outcome, ext) {
                                all.extend(decide_answered(
                                    &s.header,
                                    &phone(),
                                    ext,
                                    None,
                                    &snap,
                                    &c,
                                ));
                                snap.earlier = Earlier::from_actions(&all);
                            }
                        }
                        all.extend(decide(&s, Some(&phone()), None, &snap, &c));
                        check(
                            &case,
                            &all,
                            &s,
                            &customers,
                            answerer_is_mapped(ext, outcome),
                        );
                    }
                }
            }
        }
    }
    assert_eq!(walked, 2 * 5 * 4 * 4 * 2);

    fn answerer_is_mapped(ext: Option<&str>, outcome: Outcome) -> bool {
        outcome == Outcome::Answered && matches!(ext, Some("101" | "102" | "103"))
    }

    fn check(
        case: &str,
        all: &[CrmAction],
        s: &CallSummary,
        customers: &[Customer],
        mapped_handled: bool,
    ) {
        let lines = describe(all);
        let created_customers = all
            .iter()
            .filter(|a| matches!(a, CrmAction::CreateCustomer(_)))
            .count();
        let created_orders = all
            .iter()
            .filter(|a| matches!(a, CrmAction::CreateOrder(_)))
            .count();
        assert!(
            created_customers <= 1,
            "{case}: one customer at most: {lines:#?}"
        );
        assert!(created_orders <= 1, "{case}: one order at most: {lines:#?}");
        if !customers.is_empty() {
            assert_eq!(
                created_customers, 0,
                "{case}: a known number makes no customer: {lines:#?}"
            );
        }
        // Steps named by later actions were created before them.
        let mut steps: Vec<String> = Vec::new();
        let known_users = [3, 4, 5, 7].map(UserId::number);
        for a in all {
            let mut a2 = a.clone();
            for r in a2.refs_mut() {
                if let EntityRef::Step(step) = r {
                    assert!(
                        steps.contains(step),
                        "{case}: {step} used before it is made: {lines:#?}"
                    );
                }
            }
            if let Some(step) = a.step() {
                steps.push(step);
            }
            if let CrmAction::CreateTask(t) = a {
                assert!(
                    t.customer.is_some() || t.order.is_some(),
                    "{case}: a task hangs on a customer or an order: {lines:#?}"
                );
                assert!(
                    known_users.contains(&t.performer_id),
                    "{case}: a task is for somebody: {lines:#?}"
                );
                if t.complete {
                    assert!(mapped_handled, "{case}: a completed task records a call a mapped employee handled: {lines:#?}");
                }
            }
        }
        let histories = all
            .iter()
            .filter(|a| matches!(a, CrmAction::CallHistory(_)))
            .count();
        assert_eq!(
            histories, 1,
            "{case}: the call is in the history once: {lines:#?}"
        );
        if s.header.direction == Direction::Inbound && !mapped_handled {
            let senior_told = all.iter().any(|a| match a {
                CrmAction::CreateTask(t) => t.performer_id == SENIOR,
                CrmAction::CallEvent(e) => e.user_ids.contains(&SENIOR),
                _ => false,
            });
            assert!(
                senior_told,
                "{case}: the senior manager gets something: {lines:#?}"
            );
        }
        if s.header.direction == Direction::Outbound && customers.is_empty() {
            assert_eq!(
                lines.len(),
                1,
                "{case}: an unknown number's outbound call is history only: {lines:#?}"
            );
        }
    }
}
