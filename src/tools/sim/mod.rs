//! Simulators of the systems around callbridge, served over real loopback sockets: an
//! Asterisk AMI peer and a FreeSWITCH event socket that replay recorded transcripts, and
//! a stateful retailCRM API v5 stand-in. `callbridge demo` and the integration tests run
//! the real daemon against them. The two PBX simulators are one handle (`pbx`) over
//! their protocol (`ami`, `esl`); what they play is a `transcript`.

use std::sync::{Mutex, MutexGuard};

pub mod ami;
pub mod creatio;
pub mod esl;
pub mod pbx;
pub mod retailcrm;
pub mod subscribers;
pub mod transcript;

/// Locks without panicking: a poisoned lock still holds consistent data in the
/// simulators, because every mutation validates first and writes after.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
