//! The custom-handler envelope and every typed trigger decoder on arbitrary bytes.
#![no_main]

// The handler's protocol module, compiled from its source: it depends only on serde,
// serde_json, base64, chrono and thiserror, so the fuzz build stays small.
#[allow(dead_code, unused_imports)]
#[path = "../../handlers/src/protocol/mod.rs"]
mod protocol;

use libfuzzer_sys::fuzz_target;
use protocol::*;
use serde_json::Value;

const BINDINGS: [&str; 7] = [
    "request", "command", "alerts", "metric", "event", "timer", "req",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let _ = decode_value(&value);
        let _ = serde_json::from_value::<Encoded<String>>(value.clone());
        let _ = serde_json::from_value::<Encoded<Vec<i64>>>(value.clone());
        let _ = serde_json::from_value::<GridEvent>(value);
    }
    let Ok(req) = serde_json::from_str::<InvocationRequest>(text) else {
        return;
    };
    for binding in BINDINGS {
        let _ = QueueTrigger::from_request(&req, binding);
        let _ = ServiceBusTrigger::from_request(&req, binding);
        let _ = EventHubTrigger::from_request(&req, binding);
        let _ = EventHubBatchTrigger::from_request(&req, binding);
        let _ = EventGridTrigger::from_request(&req, binding);
        let _ = TimerTrigger::from_request(&req, binding);
        let _ = HttpTrigger::from_request(&req, binding);
    }
    // Whatever was accepted serialises and reads back the same.
    let again: InvocationRequest =
        serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
    assert_eq!(again.data.len(), req.data.len());
    assert_eq!(again.metadata.len(), req.metadata.len());
});
