//! callbridge: follows every call on a PBX (Asterisk AMI, FreeSWITCH ESL) and turns it
//! into the right CRM records (retailCRM API v5).
//!
//! The data flow (docs/design.md draws it, and says where each stage lives): `pbx`
//! reads the PBX's bytes into `PbxEvent`s; `processor` runs them through the call
//! tracker (`call`) and stores each moment of a call with the action it causes
//! (`actions`) in the `store`; `delivery` sends the stored actions, running the
//! `matrix` for each decision when the CRM can be asked who the caller is; `crm` holds
//! the CRM adapters. `config`, `ops` (HTTP, metrics, systemd, logs) and `daemon` (the
//! wiring) run it; `tools` holds the simulators, the demo and the load, replay and
//! outbox commands. The middle (`pbx` protocol layers, `call`, `matrix`, `actions`) is
//! pure; I/O lives at the edges.

pub mod actions;
pub mod call;
pub mod config;
pub mod crm;
pub mod daemon;
pub mod delivery;
pub mod directory;
pub mod ids;
pub mod links;
pub mod matrix;
pub mod ops;
pub mod panel;
pub mod pbx;
pub mod phone;
pub mod processor;
pub mod store;
pub mod time;
pub mod tools;
