pub async fn run(_speed: f64) -> anyhow::Result<()> {
    anyhow::bail!("demo: not yet")
}
