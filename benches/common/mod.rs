//! Helpers shared by the benchmarks: reading criterion's results back and
//! printing ratios of medians.
#![allow(dead_code)]

/// Median estimate (ns) of a finished criterion benchmark.
pub fn median(group: &str, id: &str) -> Option<f64> {
    let dir = format!(
        "{}/criterion/{}/{}/new/estimates.json",
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../target".into()),
        safe(group),
        safe(id)
    );
    let text = std::fs::read_to_string(&dir).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Criterion's file name for a group or benchmark id.
fn safe(name: &str) -> String {
    name.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_")
}

/// Print `label: a / b = ratio` for two finished benchmarks.
pub fn ratio(label: &str, (ga, a): (&str, &str), (gb, b): (&str, &str)) {
    match (median(ga, a), median(gb, b)) {
        (Some(x), Some(y)) => println!("{label}: {x:.1} ns / {y:.1} ns = {:.2}", x / y),
        _ => println!("{label}: (not measured in this run)"),
    }
}
