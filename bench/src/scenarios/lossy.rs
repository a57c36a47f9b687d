//! Loss and delay between the namespaces: 64 concurrent request streams
//! (filled in step 5).

pub const P99: &str = "p99 ms";
pub const GBPS: &str = "Gb/s";

pub fn scenario(loss_pct: f64, rtt_ms: u64) -> String {
    format!("64 concurrent request streams, {loss_pct}% loss, {rtt_ms} ms RTT")
}

/// Measures the loss/RTT conditions (step 5).
pub fn run_all(
    _setup: &crate::run::Setup,
    results: &mut crate::results::Results,
) -> anyhow::Result<()> {
    results
        .problems
        .push("loss/RTT conditions: not implemented yet".into());
    Ok(())
}
