//! The panel's live feed: every step of every call (ringing, answered, ended), as the
//! call processor reads it, becomes a [`Card`] broadcast to the open panels; each panel
//! takes the cards of its own extension. The cards of calls in progress (and of calls
//! that ended in the last minutes) are kept, so a panel opened or reconnected mid-call
//! shows them at once. In memory only: the CRM's records are what lasts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::debug;

use crate::call::{CallStage, CallUpdate, Direction};
use crate::delivery::decider::Decider;
use crate::matrix::Customer;

/// How long an ended call's card stays for a panel that opens later.
const KEEP_ENDED_SECS: i64 = 600;

/// What a panel shows of one call, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Card {
    /// The call's id (`cb-<pbx>-<id>`): a card is replaced by the next one of its call.
    pub call_id: String,
    /// `ringing`, `answered` or `ended`.
    pub state: &'static str,
    pub direction: &'static str,
    /// The client's number.
    pub number: Option<String>,
    /// Our number the client called.
    pub did: Option<String>,
    /// Every extension that rang, answered or talked: the panels that see this call.
    pub extensions: Vec<String>,
    /// Who picked up (inbound) or dialled (outbound).
    pub answered_by: Option<String>,
    /// At the end: `answered`, `missed`, `busy`, `failed`, `voicemail`.
    pub outcome: Option<&'static str>,
    pub talk_secs: Option<u32>,
    /// Who is calling, once the CRM answered (`None` while it is being asked).
    pub who: Option<Who>,
    /// When the call started, Unix milliseconds.
    pub started_ms: i64,
    /// When this state was reached, Unix milliseconds.
    pub at_ms: i64,
}

/// Who the caller is in the CRM, as the seeds' panels show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Who {
    /// `one`, `several`, `none`, or `unknown` (the CRM did not answer).
    pub found: &'static str,
    /// The clients with the number, the most recently active first.
    pub clients: Vec<Client>,
    /// The one an employee chose on the panel (its id), when several have the number.
    pub chosen: Option<String>,
}

/// One client with the caller's number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// Their open orders (retailCRM) or open cases (Creatio), by number.
    pub open: Vec<String>,
}

impl Who {
    /// From the CRM's customers with the number.
    pub fn of(customers: &[Customer]) -> Who {
        let mut sorted: Vec<&Customer> = customers.iter().collect();
        // The most recently active first: the one the matrix takes for the caller.
        sorted.sort_by(|a, b| b.last_activity.cmp(&a.last_activity));
        Who {
            found: match customers.len() {
                0 => "none",
                1 => "one",
                _ => "several",
            },
            clients: sorted
                .into_iter()
                .map(|c| Client {
                    id: c.id.to_string(),
                    name: c.name.clone(),
                    open: c
                        .orders
                        .iter()
                        .filter(|o| o.open)
                        .map(|o| {
                            if o.number.is_empty() {
                                o.id.to_string()
                            } else {
                                o.number.clone()
                            }
                        })
                        .collect(),
                })
                .collect(),
            chosen: None,
        }
    }
}

impl Card {
    pub fn seen_by(&self, extension: &str) -> bool {
        self.extensions.iter().any(|e| e == extension)
    }
}

/// The feed; cheap to clone.
#[derive(Clone, Debug)]
pub struct PanelHub {
    tx: broadcast::Sender<Arc<Card>>,
    cards: Arc<Mutex<HashMap<String, Arc<Card>>>>,
    /// Asks the CRM who is calling (set once the decider exists).
    identifier: Arc<OnceLock<Decider>>,
    /// When ended cards were last forgotten (Unix ms): at most once a second, so a
    /// busy PBX's steps do not each walk every card.
    pruned_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Default for PanelHub {
    fn default() -> Self {
        PanelHub::new()
    }
}

impl PanelHub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        PanelHub {
            tx,
            cards: Arc::default(),
            identifier: Arc::default(),
            pruned_ms: Arc::default(),
        }
    }

    /// From now on, each new inbound call's caller is looked up in the CRM.
    pub fn identify_with(&self, decider: Decider) {
        let _ = self.identifier.set(decider);
    }

    /// A step of a call, as the processor read it.
    pub fn publish(&self, update: &CallUpdate) {
        let mut cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        let before = cards.get(&update.header.external_id()).cloned();
        let card = Arc::new(card_of(before.as_deref(), update));
        let now = update.at.0.div_euclid(1000);
        let pruned = &self.pruned_ms;
        if now - pruned.load(std::sync::atomic::Ordering::Relaxed) >= 1000 {
            pruned.store(now, std::sync::atomic::Ordering::Relaxed);
            cards.retain(|_, c| c.state != "ended" || now - c.at_ms < KEEP_ENDED_SECS * 1000);
        }
        cards.insert(card.call_id.clone(), card.clone());
        drop(cards);
        let first = before.is_none();
        // No panel open: nobody to tell.
        let _ = self.tx.send(card.clone());
        if first && update.header.direction == Direction::Inbound {
            self.look_up(&card);
        }
    }

    /// Asks the CRM who `card`'s caller is, in the background; the card is sent again
    /// with the answer.
    fn look_up(&self, card: &Card) {
        let (Some(decider), Some(number), Ok(runtime)) = (
            self.identifier.get().cloned(),
            card.number.clone(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let (hub, call_id) = (self.clone(), card.call_id.clone());
        runtime.spawn(async move {
            let who = match decider.identify(&number).await {
                Ok(customers) => Who::of(&customers),
                Err(e) => {
                    debug!(error = %e, call_id, "the panel could not ask the CRM who is calling");
                    Who {
                        found: "unknown",
                        clients: Vec::new(),
                        chosen: None,
                    }
                }
            };
            hub.identified(&call_id, who);
        });
    }

    /// The card of `call_id`, as `extension` may see it.
    pub fn card(&self, call_id: &str, extension: &str) -> Option<Arc<Card>> {
        let cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        cards.get(call_id).filter(|c| c.seen_by(extension)).cloned()
    }

    /// An employee chose `client` among the callers with the number.
    pub fn chosen(&self, call_id: &str, client: &str) {
        let mut cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        let Some(before) = cards.get(call_id) else {
            return;
        };
        let mut card = (**before).clone();
        if let Some(who) = card.who.as_mut() {
            who.chosen = Some(client.to_string());
        }
        let card = Arc::new(card);
        cards.insert(call_id.to_string(), card.clone());
        drop(cards);
        let _ = self.tx.send(card);
    }

    /// The CRM said who `call_id`'s caller is.
    pub fn identified(&self, call_id: &str, who: Who) {
        let mut cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        let Some(before) = cards.get(call_id) else {
            return;
        };
        let card = Arc::new(Card {
            who: Some(who),
            ..(**before).clone()
        });
        cards.insert(call_id.to_string(), card.clone());
        drop(cards);
        let _ = self.tx.send(card);
    }

    /// The cards `extension` sees now, oldest call first, and the feed of what comes next.
    pub fn subscribe(&self, extension: &str) -> (Vec<Arc<Card>>, broadcast::Receiver<Arc<Card>>) {
        let cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let mut now: Vec<Arc<Card>> = cards
            .values()
            .filter(|c| c.seen_by(extension))
            .cloned()
            .collect();
        now.sort_by_key(|c| (c.started_ms, c.call_id.clone()));
        (now, rx)
    }
}

/// The card after `update`, from the call's card before it.
pub fn card_of(before: Option<&Card>, update: &CallUpdate) -> Card {
    let h = &update.header;
    let mut extensions = before.map(|c| c.extensions.clone()).unwrap_or_default();
    let mut add = |e: &str| {
        if !e.is_empty() && !extensions.iter().any(|x| x == e) {
            extensions.push(e.to_string());
        }
    };
    let (state, mut answered_by, mut outcome, mut talk_secs) = (
        "ringing",
        before.and_then(|c| c.answered_by.clone()),
        None,
        None,
    );
    let state = match &update.stage {
        CallStage::Ringing {
            extensions: ringing,
            ..
        } => {
            for e in ringing {
                add(e);
            }
            if answered_by.is_some() {
                "answered"
            } else {
                state
            }
        }
        CallStage::Answered { extension } => {
            add(extension);
            answered_by = Some(extension.clone());
            "answered"
        }
        CallStage::Ended(summary) => {
            for e in summary
                .rang
                .iter()
                .chain(summary.talkers.iter().map(|t| &t.extension))
            {
                add(e);
            }
            if let Some(e) = &summary.employee {
                add(e);
                answered_by = Some(e.clone());
            }
            outcome = Some(summary.outcome.as_str());
            talk_secs = Some(summary.talk_secs);
            "ended"
        }
    };
    Card {
        call_id: h.external_id(),
        state,
        direction: h.direction.as_str(),
        number: h.customer_number.clone(),
        did: h.did.clone(),
        extensions,
        answered_by,
        outcome,
        talk_secs,
        who: before.and_then(|c| c.who.clone()),
        started_ms: before
            .map(|c| c.started_ms)
            .unwrap_or(h.started_at.0.div_euclid(1000)),
        at_ms: update.at.0.div_euclid(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallHeader, CallSummary, Direction, Outcome, Talker};
    use crate::time::Timestamp;

    fn header() -> CallHeader {
        CallHeader {
            pbx: "office".into(),
            call_id: "1.2".into(),
            direction: Direction::Inbound,
            customer_number: Some("+79161234567".into()),
            did: Some("74951234567".into()),
            started_at: Timestamp(1_000_000),
            campaign: Default::default(),
        }
    }

    fn step(at_s: i64, stage: CallStage) -> CallUpdate {
        CallUpdate {
            header: header(),
            at: Timestamp(at_s * 1_000_000),
            stage,
        }
    }

    #[test]
    fn a_ring_group_call_is_seen_by_every_extension_that_rang_to_its_end() {
        let hub = PanelHub::new();
        hub.publish(&step(
            1,
            CallStage::Ringing {
                extensions: vec!["101".into(), "102".into()],
                new: vec![],
            },
        ));
        let (cards, _) = hub.subscribe("102");
        assert_eq!(cards.len(), 1);
        assert_eq!(cards[0].state, "ringing");
        assert_eq!(cards[0].number.as_deref(), Some("+79161234567"));
        hub.publish(&step(
            3,
            CallStage::Answered {
                extension: "102".into(),
            },
        ));
        let summary = CallSummary {
            header: header(),
            outcome: Outcome::Answered,
            rang: vec!["101".into(), "102".into()],
            employee: Some("102".into()),
            answered_at: Some(Timestamp(3_000_000)),
            ended_at: Timestamp(9_000_000),
            duration_secs: 8,
            talk_secs: 6,
            wait_secs: 2,
            talkers: vec![Talker {
                extension: "102".into(),
                talk_secs: 6,
            }],
            recording: None,
            voicemail: None,
            queue: None,
            channels: vec![],
            reconstructed: false,
        };
        hub.publish(&step(9, CallStage::Ended(Box::new(summary))));
        let (cards, _) = hub.subscribe("101");
        let card = &cards[0];
        assert_eq!(
            (card.state, card.outcome, card.talk_secs),
            ("ended", Some("answered"), Some(6))
        );
        assert_eq!(card.answered_by.as_deref(), Some("102"));
        assert_eq!(card.extensions, vec!["101".to_string(), "102".to_string()]);
        assert_eq!(card.started_ms, 1_000);
        assert!(hub.subscribe("103").0.is_empty(), "103 never rang");
    }

    #[test]
    fn ended_cards_are_forgotten_after_ten_minutes_live_ones_never() {
        let hub = PanelHub::new();
        let mut live = step(
            1,
            CallStage::Answered {
                extension: "101".into(),
            },
        );
        live.header.call_id = "5.6".into();
        hub.publish(&live);
        hub.publish(&step(
            2,
            CallStage::Answered {
                extension: "101".into(),
            },
        ));
        let mut summary = CallSummary {
            header: header(),
            outcome: Outcome::Missed,
            rang: vec!["101".into()],
            employee: None,
            answered_at: None,
            ended_at: Timestamp(10_000_000),
            duration_secs: 9,
            talk_secs: 0,
            wait_secs: 9,
            talkers: vec![],
            recording: None,
            voicemail: None,
            queue: None,
            channels: vec![],
            reconstructed: false,
        };
        summary.rang.push("101".into());
        hub.publish(&step(10, CallStage::Ended(Box::new(summary))));
        assert_eq!(hub.subscribe("101").0.len(), 2);
        let mut later = step(
            700,
            CallStage::Ringing {
                extensions: vec!["105".into()],
                new: vec![],
            },
        );
        later.header.call_id = "3.4".into();
        hub.publish(&later);
        let (cards, _) = hub.subscribe("101");
        assert_eq!(cards.len(), 1, "the ended call is gone, the live one stays");
        assert_eq!(cards[0].call_id, "cb-office-5.6");
    }
}
