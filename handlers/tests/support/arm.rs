//! The ARM and data-plane payloads the fake Azure servers answer, from
//! `tests/fixtures/arm/` (sources in its README).

use serde_json::Value;

/// `tests/fixtures/arm/{name}.json`.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arm")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
