//! Simulators of the systems around callbridge, served over real loopback sockets: an
//! Asterisk AMI peer and a FreeSWITCH event socket that replay recorded transcripts, and
//! a stateful retailCRM API v5 stand-in. `callbridge demo` and the integration tests run
//! the real daemon against them.

pub mod ami;
pub mod esl;
pub mod retailcrm;
pub mod subscribers;
