//! Asterisk Manager Interface: frame (one message as a value, and its bytes), codec
//! (bytes ↔ frames), normalize (frames → `PbxEvent`s and `LiveChannel`s), client (TCP,
//! login, keep-alive, channel list, reconnect).

pub mod client;
pub mod codec;
pub mod frame;
pub mod normalize;
mod scan;

pub use codec::{AmiCodec, AmiItem};
pub use frame::AmiFrame;
