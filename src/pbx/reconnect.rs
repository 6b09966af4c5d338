//! How a PBX client waits between connection attempts: 1 s, doubling up to the
//! configured `reconnect_max_delay`, with jitter so that many daemons restarted together
//! do not knock on the PBX in step. Without end: a PBX down for a night is reached
//! again in the morning.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::PbxConfig;

/// The delays before each next attempt; start a new one after a session that got in.
pub fn reconnect_backoff(config: &PbxConfig) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1).min(config.reconnect_max_delay))
        .with_max_delay(config.reconnect_max_delay)
        .with_jitter()
        .without_max_times()
        .build()
}
