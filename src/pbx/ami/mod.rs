//! Asterisk Manager Interface: codec (bytes ↔ frames), normalize (frames → `PbxEvent`),
//! client (TCP, login, keep-alive, reconnect).

pub mod client;
pub mod codec;
pub mod normalize;

pub use codec::{AmiCodec, AmiFrame, AmiItem};
