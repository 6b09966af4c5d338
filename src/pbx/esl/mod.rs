//! FreeSWITCH through the Event Socket (mod_event_socket, inbound mode): the framing
//! (`codec`), events read in place (`plain`), their translation into `PbxEvent`s
//! (`normalize`) and the connection (`client`).

pub mod client;
pub mod codec;
pub mod normalize;
pub mod plain;

pub use codec::{parse_event_plain, EslCodec, EslCommand, EslEvent, EslItem, EslMessage};
pub use normalize::EslNormalizer;
pub use plain::PlainEvent;
