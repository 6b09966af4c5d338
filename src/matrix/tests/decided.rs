//! The matrix beyond its rows: returning clients who miss or reach voicemail, outbound
//! calls nobody answered, several clients with one number (and the one chosen on the
//! panel), transfers, numbers that are no phone numbers, internal calls.

use super::*;

#[test]
fn decided_missed_returning_client_gets_an_order_with_a_task_for_the_senior() {
    let s = summary(Direction::Inbound, Outcome::Missed, &[]);
    assert_eq!(
        ended(&s, &snapshot(vec![returning(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_MISSED.to_string(),
            format!("order {ORDER_STEP} customer=#12 manager=Some(7) method=phone"),
            format!("task for 7 on order step:{ORDER_STEP} open: Missed call: call the client back or pass the call to a manager: inbound call +79161234567."),
            "history Inbound NoAnswer phone=+79161234567 code=Some(\"101\") record=-".into(),
        ]
    );
}

#[test]
fn decided_voicemail_returning_client_is_6a_without_a_new_customer() {
    let s = summary(Direction::Inbound, Outcome::Voicemail, &[]);
    let lines = ended(&s, &snapshot(vec![returning(ANNA)]), CreateOn::Answer);
    assert_eq!(
        lines[1..3],
        [
            format!("order {ORDER_STEP} customer=#12 manager=Some(7) method=phone"),
            format!("task for 7 on order step:{ORDER_STEP} open: Call the client back: they left a voicemail: inbound call +79161234567."),
        ]
    );
    assert!(!lines.iter().any(|l| l.starts_with("customer ")));
}

#[test]
fn decided_outbound_not_answered_is_history_only() {
    for outcome in [Outcome::Missed, Outcome::Busy, Outcome::Failed] {
        let mut s = summary(Direction::Outbound, outcome, &[]);
        s.employee = Some("101".into());
        let lines = ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer);
        assert_eq!(lines.len(), 1, "{outcome:?}: {lines:?}");
        assert!(lines[0].starts_with("history Outbound"), "{lines:?}");
    }
}

#[test]
fn decided_several_customers_share_the_number() {
    // Ivan (open order, Anna's) was active later than Olga: he is the caller, and every
    // task says the number matched both.
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    let lines = ended(
        &s,
        &snapshot(vec![returning(BORIS), existing(ANNA)]),
        CreateOn::Answer,
    );
    assert_eq!(
        lines[1],
        "task for 3 on customer #11 done: Call with the client: inbound call +79161234567, talked: 101. The number matched several clients (#12 Olga Sidorova, #11 Ivan Petrov); this is #11, the most recently active."
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn decided_several_customers_the_one_chosen_on_the_panel_is_the_caller() {
    // Olga (Boris's, orders closed) was chosen on the panel over the more recently
    // active Ivan: the call is hers (returning: a new order, the one who answered
    // becomes responsible), and the tasks say why.
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    let mut snap = snapshot(vec![returning(BORIS), existing(ANNA)]);
    snap.chosen = Some(snap.customers[0].id);
    let lines = ended(&s, &snap, CreateOn::Answer);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("task for 3 on customer #12 done")
                && l.ends_with("this is #12, chosen by the employee on the panel.")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("order") && l.contains("#12")),
        "{lines:#?}"
    );
    // A choice of someone without the number is no choice.
    snap.chosen = Some(crate::ids::CrmId::from(99));
    let lines = ended(&s, &snap, CreateOn::Answer);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("this is #11, the most recently active")),
        "{lines:#?}"
    );
}

#[test]
fn decided_transfer_the_last_talker_answered() {
    // Anna answered and passed the call to Boris: Boris is "the manager who answered",
    // both are named.
    let s = summary(Direction::Inbound, Outcome::Answered, &["101", "102"]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer)[1..3],
        [
            "task for 4 on customer #11 done: Call with the client: inbound call +79161234567, talked: 101, 102.".to_string(),
            "task for 3 on customer #11 open: Your client's call was answered by another manager (extension 102): review the call: inbound call +79161234567, talked: 101, 102.".into(),
        ]
    );
}

#[test]
fn a_number_that_is_no_phone_number_goes_to_the_history_only() {
    let mut s = summary(Direction::Inbound, Outcome::Missed, &[]);
    s.header.customer_number = Some("0611".into());
    assert_eq!(
        describe(&decide_unverified(&s, "0611", &config(CreateOn::Answer))),
        vec!["history Inbound NoAnswer phone=0611 code=Some(\"101\") record=-"]
    );
    s.header.direction = Direction::Internal;
    assert!(decide_unverified(&s, "0611", &config(CreateOn::Answer)).is_empty());
}

#[test]
fn internal_and_hidden_number_calls_make_nothing() {
    let s = summary(Direction::Internal, Outcome::Answered, &["101"]);
    assert!(decide(
        &s,
        Some(&phone()),
        None,
        &snapshot(vec![]),
        &config(CreateOn::Answer)
    )
    .is_empty());
    let s = summary(Direction::Inbound, Outcome::Missed, &[]);
    assert!(decide(&s, None, None, &snapshot(vec![]), &config(CreateOn::Answer)).is_empty());
}
