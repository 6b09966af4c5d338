//! FreeSWITCH through the Event Socket (mod_event_socket, inbound mode). So far the pure
//! framing layer: the client, the normalizer to `PbxEvent` and the call shapes are the
//! rest of issue 7.

pub mod codec;

pub use codec::{parse_event_plain, EslCodec, EslCommand, EslEvent, EslItem, EslMessage};
