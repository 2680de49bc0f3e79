//! Every trigger kind's fixture, in the shape the Functions host sends, decodes into its typed
//! trigger and re-encodes to exactly the same JSON (the host's double encoding included).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use socwire::protocol::*;

fn fixture(name: &str) -> (Value, InvocationRequest) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap();
    let req: InvocationRequest = serde_json::from_value(value.clone()).unwrap();
    (value, req)
}

/// Decodes `raw` as `T` and checks it serializes back to `raw`.
fn round_trip<T: DeserializeOwned + Serialize>(raw: &Value) -> T {
    let typed: T = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        raw,
        "re-encoding changed the value"
    );
    typed
}

#[test]
fn envelope_round_trips_for_every_fixture() {
    for name in [
        "queue.json",
        "servicebus.json",
        "eventhub-batch.json",
        "eventhub-batch-untyped.json",
        "eventhub-single.json",
        "eventgrid.json",
        "cloudevents.json",
        "timer.json",
        "http.json",
    ] {
        let (raw, req) = fixture(name);
        assert_eq!(serde_json::to_value(&req).unwrap(), raw, "{name}");
    }
}

#[test]
fn queue_trigger() {
    let (raw, req) = fixture("queue.json");
    let t = QueueTrigger::from_request(&req, "request").unwrap();
    assert!(
        t.message.starts_with("/subscriptions/"),
        "double encoding removed"
    );
    assert_eq!(t.metadata.dequeue_count.0, 1);
    assert_eq!(t.metadata.id.0, "52d5a5f3-9c1e-4a7b-8a57-1f0c6d8e2b11");
    round_trip::<QueueMetadata>(&raw["Metadata"]);
    assert_eq!(
        serde_json::to_value(Encoded(t.message)).unwrap(),
        raw["Data"]["request"]
    );
}

#[test]
fn service_bus_trigger() {
    let (raw, req) = fixture("servicebus.json");
    let t = ServiceBusTrigger::from_request(&req, "command").unwrap();
    let body: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(body["command"], "ProvisionGpuCluster");
    assert_eq!(t.metadata.delivery_count.0, 2);
    assert_eq!(t.metadata.sequence_number, Some(17));
    assert_eq!(t.metadata.session_id.as_deref(), Some("gpu-a"));
    round_trip::<ServiceBusMetadata>(&raw["Metadata"]);
    assert_eq!(
        serde_json::to_value(Encoded(t.body)).unwrap(),
        raw["Data"]["command"]
    );
}

/// With `dataType: string` the host sends a JSON-encoded array of strings; with no `dataType` it
/// binds `object[]` and sends a JSON-encoded array of the parsed bodies. Both read the same.
#[test]
fn event_hub_batch_reads_the_same_with_and_without_data_type() {
    let (_, typed) = fixture("eventhub-batch.json");
    let (_, untyped) = fixture("eventhub-batch-untyped.json");
    let a = EventHubBatchTrigger::from_request(&typed, "alerts").unwrap();
    let b = EventHubBatchTrigger::from_request(&untyped, "alerts").unwrap();
    let parse = |t: &EventHubBatchTrigger| -> Vec<Value> {
        t.events
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect()
    };
    assert_eq!(parse(&a), parse(&b));
    assert_eq!(b.events.len(), 2);
}

#[test]
fn event_hub_batch_trigger() {
    let (raw, req) = fixture("eventhub-batch.json");
    let t = EventHubBatchTrigger::from_request(&req, "alerts").unwrap();
    assert_eq!(t.events.len(), 2);
    let first: Value = serde_json::from_str(&t.events[0]).unwrap();
    assert_eq!(first["AlertId"], "a-1");
    assert_eq!(t.metadata.sequence_number_array.0, vec![100, 101]);
    assert_eq!(
        t.metadata.retry_context.as_ref().unwrap().max_retry_count,
        -1
    );
    assert_eq!(
        t.metadata
            .partition_context
            .as_ref()
            .unwrap()
            .partition_id
            .as_deref(),
        Some("3")
    );
    round_trip::<EventHubBatchMetadata>(&raw["Metadata"]);
    assert_eq!(
        serde_json::to_value(Encoded(t.events)).unwrap(),
        raw["Data"]["alerts"]
    );
}

#[test]
fn event_hub_single_trigger() {
    let (raw, req) = fixture("eventhub-single.json");
    let t = EventHubTrigger::from_request(&req, "metric").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&t.event).unwrap()["step"],
        120
    );
    assert_eq!(t.metadata.sequence_number.0, 5521);
    round_trip::<EventHubMetadata>(&raw["Metadata"]);
}

#[test]
fn event_grid_trigger_in_both_schemas() {
    let (raw, req) = fixture("eventgrid.json");
    let grid = EventGridTrigger::from_request(&req, "event").unwrap();
    assert!(matches!(grid.event, GridEvent::Grid(_)));
    assert_eq!(grid.event.event_type(), "Sentinel.IncidentCreated");
    round_trip::<GridEvent>(&raw["Data"]["event"]);

    let (raw, req) = fixture("cloudevents.json");
    let cloud = EventGridTrigger::from_request(&req, "event").unwrap();
    assert!(matches!(cloud.event, GridEvent::Cloud(_)));
    assert_eq!(cloud.event.data(), grid.event.data());
    assert_eq!(cloud.event.subject(), grid.event.subject());
    round_trip::<GridEvent>(&raw["Data"]["event"]);
}

#[test]
fn event_grid_event_sent_as_json_text_is_accepted() {
    let (raw, _) = fixture("eventgrid.json");
    let mut req = InvocationRequest::default();
    req.data.insert(
        "event".into(),
        Value::String(raw["Data"]["event"].to_string()),
    );
    let t = EventGridTrigger::from_request(&req, "event").unwrap();
    assert_eq!(t.event.id(), "4f2c8a9e-1d3b-4b7a-9c0e-2e5f6a7b8c9d");
}

#[test]
fn timer_trigger() {
    let (raw, req) = fixture("timer.json");
    let t = TimerTrigger::from_request(&req, "timer").unwrap();
    assert!(!t.timer.is_past_due);
    assert_eq!(
        t.timer.schedule_status.as_ref().unwrap().next.as_deref(),
        Some("2026-11-22T10:10:00Z")
    );
    round_trip::<TimerInfo>(&raw["Data"]["timer"]);
}

#[test]
fn http_trigger() {
    let (raw, req) = fixture("http.json");
    let t = HttpTrigger::from_request(&req, "req").unwrap();
    assert_eq!(t.request.method, "POST");
    assert_eq!(t.request.header("content-type"), Some("application/json"));
    assert!(t.request.body.as_deref().unwrap().contains("incidentArmId"));
    round_trip::<HttpRequestData>(&raw["Data"]["req"]);
}

#[test]
fn response_round_trips_with_every_output_kind() {
    let (raw, _) = fixture("response.json");
    let resp: InvocationResponse = round_trip(&raw);
    let http: HttpResponseData = serde_json::from_value(resp.outputs["res"].clone()).unwrap();
    assert_eq!(http.status_code, 202);
    assert_eq!(resp.logs.len(), 1);
}

#[test]
fn missing_or_wrong_bindings_are_clear_errors() {
    let (_, req) = fixture("queue.json");
    let e = QueueTrigger::from_request(&req, "other").unwrap_err();
    assert!(e.to_string().contains("Data.other"));
    let mut bad = req.clone();
    bad.metadata
        .insert("DequeueCount".into(), Value::String("many".into()));
    let e = QueueTrigger::from_request(&bad, "request").unwrap_err();
    assert!(e.to_string().contains("Metadata"));
    let (_, grid) = fixture("timer.json");
    assert!(EventGridTrigger::from_request(&grid, "timer").is_err());
}
