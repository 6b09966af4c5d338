//! `callbridge outbox …`: what an operator does with the outbox beside a running daemon:
//! list actions by state, put dead ones back in the queue, drop one for good. Works on the
//! store directly (SQLite in WAL mode or PostgreSQL), so the daemon need not stop; the
//! daemon's worker picks a retried action up within a second.

use std::io::Write;

use anyhow::Context;

use crate::config::redact_url_password;
use crate::store::{ActionFilter, ActionRow, Store};
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub enum OutboxCommand {
    List { filter: ActionFilter, limit: i64 },
    Retry { id: Option<i64>, all_dead: bool },
    Drop { id: i64, yes: bool },
}

pub async fn run(
    store_url: &str,
    command: OutboxCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if let OutboxCommand::Drop { id, yes: false } = command {
        anyhow::bail!(
            "dropping action {id} takes it out of delivery for good; run again with --yes to confirm"
        );
    }
    let store = Store::open(store_url)
        .await
        .with_context(|| format!("opening the store ({})", redact_url_password(store_url)))?;
    let result = execute(&store, command, out).await;
    store.close().await;
    result
}

async fn execute(
    store: &Store,
    command: OutboxCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        OutboxCommand::List { filter, limit } => {
            let rows = store.list_actions(filter, limit).await?;
            write_table(&rows, Timestamp::now(), out)?;
            let m = store.outbox_metrics(Timestamp::now()).await?;
            writeln!(
                out,
                "\n{} shown; outbox: {} pending ({} failed, {} in flight), {} dead, {} done",
                rows.len(),
                m.pending,
                m.failed,
                m.in_flight,
                m.dead,
                m.done
            )?;
        }
        OutboxCommand::Retry { id: Some(id), .. } => {
            store.retry_action(id).await?;
            writeln!(
                out,
                "action {id} is pending again; the daemon sends it within a second"
            )?;
        }
        OutboxCommand::Retry {
            id: None,
            all_dead: true,
        } => {
            let n = store.retry_all_dead().await?;
            writeln!(out, "{n} dead action(s) pending again")?;
        }
        OutboxCommand::Retry {
            id: None,
            all_dead: false,
        } => {
            anyhow::bail!("say which: an action ID, or --all-dead");
        }
        OutboxCommand::Drop { id, .. } => {
            store.drop_action(id).await?;
            writeln!(out, "action {id} dropped (kept in the store as `dropped`)")?;
        }
    }
    Ok(())
}

/// A fixed-width table, one action per line; long errors are cut to keep lines short.
pub fn write_table(
    rows: &[ActionRow],
    now: Timestamp,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>7}  {:<32}  {:<16}  {:<8}  {:>5}  {:>4}  {:>8}  ERROR / NOTE",
        "ID", "CALL", "KIND", "STATE", "TRIES", "HTTP", "AGE"
    )?;
    for r in rows {
        let detail = r.last_error.as_deref().or(r.note.as_deref()).unwrap_or("");
        writeln!(
            out,
            "{:>7}  {:<32}  {:<16}  {:<8}  {:>5}  {:>4}  {:>8}  {}",
            r.id,
            cut(&r.call_id, 32),
            r.kind,
            r.state,
            r.attempts,
            r.last_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            age(now.0 - r.created_at),
            cut(detail, 100),
        )?;
    }
    Ok(())
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `42s`, `17m`, `5h`, `3d`.
fn age(micros: i64) -> String {
    let s = (micros / 1_000_000).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(42_000_000), "42s");
        assert_eq!(age(17 * 60 * 1_000_000), "17m");
        assert_eq!(age(5 * 3600 * 1_000_000), "5h");
        assert_eq!(age(3 * 86_400 * 1_000_000), "3d");
    }
}
