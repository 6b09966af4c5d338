//! The PBX side: one vocabulary (`PbxEvent`) for every PBX, and the protocol clients
//! that produce it. Asterisk and FreeSWITCH differ only below this module's `PbxEvent`.

pub mod ami;
pub mod connect;
pub mod esl;
pub mod event;
pub mod reconnect;
pub mod status;

pub use event::{ChannelId, LiveChannel, PbxEvent, PbxEventKind, PbxInput};
