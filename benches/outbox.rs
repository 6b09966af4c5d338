//! Outbox throughput on SQLite and PostgreSQL: actions enqueued + delivered per second
//! against a local fake CRM with no rate limit (see `callbridge::tools::load::outbox`): a bare
//! responder by default, the retailCRM stand-in with OUTBOX_CRM=standin.
//!
//!     cargo bench --bench outbox
//!
//! Target (issue 5): ≥ 2,000 actions/s on SQLite on this machine. PostgreSQL runs when the
//! machine's server answers at 127.0.0.1:5432 (user postgres, database test); each run
//! gets a schema of its own. Sizes: OUTBOX_CALLS (default 3000 calls, ~10,800 actions),
//! OUTBOX_PG_CALLS (default 1000: PostgreSQL is slower here), OUTBOX_RUNS (default 5); the
//! median is reported.

use callbridge::tools::load::outbox::{run, FakeCrm, OutboxLoad};
use sqlx::Connection;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn pg_schema(tag: usize) -> Option<(String, String)> {
    let mut conn = sqlx::PgConnection::connect(PG).await.ok()?;
    let name = format!("cb_bench_{}_{tag}", std::process::id());
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut conn)
        .await
        .ok()?;
    Some((
        name.clone(),
        format!("{PG}?options=-c%20search_path%3D{name}"),
    ))
}

async fn drop_schema(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
            .execute(&mut conn)
            .await;
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run small then.
    let full = std::env::args().any(|a| a == "--bench");
    // OUTBOX_CRM=standin: the retailCRM stand-in instead of the bare responder.
    let crm = match std::env::var("OUTBOX_CRM").as_deref() {
        Ok("standin") => FakeCrm::Standin,
        _ => FakeCrm::Bare,
    };
    let load = OutboxLoad {
        crm,
        calls: if full { env("OUTBOX_CALLS", 3000) } else { 50 },
        batch: 32,
        concurrency: env("OUTBOX_CONCURRENCY", 16),
    };
    let runs = if full { env("OUTBOX_RUNS", 5) } else { 1 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for backend in ["sqlite", "postgres"] {
            let mut rates = Vec::new();
            for i in 0..runs {
                let dir = tempfile::tempdir().expect("tempdir");
                let (url, schema) = if backend == "sqlite" {
                    (
                        format!("sqlite://{}", dir.path().join("cb.db").display()),
                        None,
                    )
                } else {
                    match pg_schema(i).await {
                        Some((name, url)) => (url, Some(name)),
                        None => {
                            println!("outbox/postgres: skipped (no server at {PG})");
                            break;
                        }
                    }
                };
                let mut load = load.clone();
                if backend == "postgres" && full {
                    load.calls = env("OUTBOX_PG_CALLS", 1000);
                }
                let report = run(&url, &load).await.expect("load run");
                rates.push(report.per_sec());
                println!(
                    "outbox/{backend} run {}: {} actions in {:.2?} = {:.0} actions/s",
                    i + 1,
                    report.actions,
                    report.elapsed,
                    report.per_sec()
                );
                if let Some(name) = schema {
                    drop_schema(&name).await;
                }
            }
            if !rates.is_empty() {
                rates.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "outbox/{backend}: median {:.0} actions/s over {} runs (min {:.0}, max {:.0})",
                    rates[rates.len() / 2],
                    rates.len(),
                    rates[0],
                    rates[rates.len() - 1]
                );
            }
        }
    });
}
