//! callbridge: follows every call on a PBX (Asterisk AMI, FreeSWITCH ESL) and turns it
//! into the right CRM records (retailCRM API v5).
//!
//! Data flow (see `docs/` and DESIGN.md): bytes → `pbx::ami::codec` frames →
//! `pbx::ami::normalize` → `PbxEvent` → `call::tracker` → call stages → `actions`
//! (what the CRM must get) → `outbox` (durable, retried) → `crm::retailcrm` (HTTPS).
//! The middle (codec, normalize, tracker, actions) is pure; I/O lives at the edges.

pub mod actions;
pub mod call;
pub mod config;
pub mod crm;
pub mod daemon;
pub mod delivery;
pub mod directory;
pub mod links;
pub mod matrix;
pub mod ops;
pub mod pbx;
pub mod phone;
pub mod processor;
pub mod store;
pub mod time;
pub mod tools;
