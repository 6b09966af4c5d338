//! This process's name on its claims in the store (host, process id, a random tag),
//! and whether another process of this host is gone (so its claims and its following of
//! a PBX need not wait to run out).

/// Whether `worker` (a name from [`Outbox::worker`]) was a process of this host that is
/// no longer running. Workers of other hosts are not judged here.
pub(crate) fn worker_is_gone(worker: &str, host: &str) -> bool {
    let mut parts = worker.split(':');
    match (parts.next(), parts.next()) {
        (Some(h), Some(pid)) => h == host && !process_is_callbridge(pid),
        _ => false,
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Whether `pid` is a running callbridge process (a reused pid belongs to something else).
fn process_is_callbridge(pid: &str) -> bool {
    if pid == std::process::id().to_string() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().starts_with("callbridge"))
        .unwrap_or(false)
}

/// Names this process's claims in the store: host, process id and a random tag, so two
/// processes (or a restarted one) never mistake each other's claims.
pub(super) fn worker_name() -> String {
    format!(
        "{}:{}:{:08x}",
        host_name(),
        std::process::id(),
        rand::random::<u32>()
    )
}
