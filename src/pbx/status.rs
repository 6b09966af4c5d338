//! Connection state of each PBX, shared between the PBX clients (which write it) and the
//! HTTP health endpoint (which reads it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, Serialize)]
pub struct PbxLink {
    pub kind: String,
    pub state: LinkState,
    /// When the current state began (ISO 8601, UTC).
    pub since: String,
    /// The PBX's greeting, e.g. `Asterisk Call Manager/11.0.0`.
    pub version: Option<String>,
    pub last_error: Option<String>,
    pub reconnects: u64,
    pub events: u64,
}

/// Cheap to clone; every clone sees the same table.
#[derive(Debug, Clone, Default)]
pub struct PbxStatus {
    inner: Arc<Mutex<BTreeMap<String, PbxLink>>>,
}

impl PbxStatus {
    pub fn register(&self, name: &str, kind: &str) {
        self.with(|m| {
            m.insert(
                name.to_string(),
                PbxLink {
                    kind: kind.to_string(),
                    state: LinkState::Connecting,
                    since: Timestamp::now().to_string(),
                    version: None,
                    last_error: None,
                    reconnects: 0,
                    events: 0,
                },
            );
        });
    }

    pub fn connected(&self, name: &str, version: &str) {
        self.update(name, |l| {
            l.state = LinkState::Connected;
            l.since = Timestamp::now().to_string();
            l.version = Some(version.to_string());
            l.last_error = None;
        });
    }

    pub fn disconnected(&self, name: &str, error: &str) {
        self.update(name, |l| {
            if l.state == LinkState::Connected {
                l.reconnects += 1;
            }
            if l.state != LinkState::Disconnected {
                l.since = Timestamp::now().to_string();
            }
            l.state = LinkState::Disconnected;
            l.last_error = Some(error.to_string());
        });
    }

    pub fn count_event(&self, name: &str) {
        self.update(name, |l| l.events += 1);
    }

    pub fn snapshot(&self) -> BTreeMap<String, PbxLink> {
        self.with(|m| m.clone())
    }

    pub fn all_connected(&self) -> bool {
        self.with(|m| m.values().all(|l| l.state == LinkState::Connected))
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut PbxLink)) {
        self.with(|m| {
            if let Some(link) = m.get_mut(name) {
                f(link)
            }
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, PbxLink>) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain data;
        // the table is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}
