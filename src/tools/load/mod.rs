//! Load runs: workloads that drive callbridge's real components hard, for benchmarks and
//! their short variants in the tests. Not used by the daemon.

pub mod mix;
pub mod office;
pub mod outbox;
