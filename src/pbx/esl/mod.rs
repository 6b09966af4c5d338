//! FreeSWITCH through the Event Socket (mod_event_socket, inbound mode): the message
//! types (`frame`), the framing (`codec`), events read in place (`plain`), their
//! translation into `PbxEvent`s (`normalize`), the channel list read into `LiveChannel`s
//! (`channels`) and the connection (`client`).

pub mod channels;
pub mod client;
pub mod codec;
pub mod frame;
pub mod normalize;
pub mod plain;

pub use codec::{EslCodec, EslItem};
pub use frame::{parse_event_plain, EslCommand, EslEvent, EslMessage};
pub use normalize::EslNormalizer;
pub use plain::PlainEvent;
