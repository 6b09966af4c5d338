//! What a key that is not set means: the values the checker fills in, in one place so
//! the example file, the documentation and the code can be compared at a glance.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const DEFAULT_STORE_URL: &str = "sqlite://callbridge.db";
pub const DEFAULT_HTTP_PORT: u16 = 8089;
pub const DEFAULT_AMI_PORT: u16 = 5038;
/// mod_event_socket's default `listen-port`.
pub const DEFAULT_ESL_PORT: u16 = 8021;
pub const DEFAULT_RECORDINGS_DIR: &str = "/var/spool/asterisk/monitor";
/// FreeSWITCH's `$${recordings_dir}` in a source install (packages: /var/lib/freeswitch).
pub const DEFAULT_FS_RECORDINGS_DIR: &str = "/usr/local/freeswitch/recordings";
/// FreeSWITCH's voicemail storage (`<dir>/<profile>/<domain>/<id>/msg_<uuid>.wav`).
pub const DEFAULT_FS_VOICEMAIL_DIR: &str = "/usr/local/freeswitch/storage/voicemail";
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);
pub const DEFAULT_VOICEMAIL_DIR: &str = "/var/spool/asterisk/voicemail";
pub const DEFAULT_STALE_CALL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// Recording links stay valid 90 days: long enough for the call's follow-up.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(90 * 86_400);
/// How long after a call ended a recording that is not (completely) on disk yet is
/// waited for: MixMonitor closing its file, a post-processing step converting it.
pub const DEFAULT_RECORDING_WAIT: Duration = Duration::from_secs(120);
pub const DEFAULT_CRM_TIMEOUT: Duration = Duration::from_secs(10);
/// retailCRM's published limit per API key: 10 requests/s, 40/s for `/telephony*`
/// (the official Go client's `rate.go`; see docs/retailcrm.md).
pub const DEFAULT_CRM_RATE_LIMIT: f64 = 10.0;
pub const DEFAULT_CRM_TELEPHONY_RATE_LIMIT: f64 = 40.0;
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Requests in flight at most: with a CRM answering in 30 ms, 64 carry ~2,000 requests/s (an
/// office of ~250 calls/s); under retailCRM's own rate limit the limiter, not this, sets the pace.
pub const DEFAULT_CRM_CONCURRENCY: usize = 64;
/// How often the CRM's users, extension codes and statuses are read again.
pub const DEFAULT_DIRECTORY_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The default `[http] listen` address, 127.0.0.1:8089.
pub fn default_http_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_HTTP_PORT))
}
