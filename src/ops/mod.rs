//! Running callbridge as a service: the HTTP side (`/health`, `/metrics`, recording
//! links), the Prometheus series, systemd's notifications, the logs, and the PBX's
//! recording files that links serve.

pub mod http;
pub mod logging;
pub mod metrics;
pub mod recordings;
pub mod service;
