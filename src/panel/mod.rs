//! The operators' panel (`[panel] enabled = true`): a web page per employee, served on
//! `[http] listen`, that shows the calls ringing, answered and ended on their extension
//! as they happen. `access` signs the links and sessions, `hub` turns the call
//! processor's steps into cards, `page` renders them, `routes` serves it all.

pub mod access;
pub mod hub;
mod page;
mod routes;

pub use access::PanelAccess;
pub use hub::{Card, PanelHub};
pub use routes::{router, PanelState};
