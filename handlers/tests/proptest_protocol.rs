//! Property tests for everything that parses outside input in the handler: the invocation
//! envelope, every typed trigger, the host's value encoding, and Sentinel incident ids. None
//! may panic on any input; round-trips hold where the format defines them.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use socwire::protocol::{
    decode_value, Encoded, EventGridTrigger, EventHubBatchTrigger, EventHubTrigger,
    HttpResponseData, HttpTrigger, InvocationRequest, InvocationResponse, QueueMetadata,
    QueueTrigger, ServiceBusTrigger, TimerTrigger,
};
use socwire::sentinel::IncidentId;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings that matter to these parsers: JSON text, numbers, quotes, control and
/// non-ASCII characters, as well as noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[0-9]{1,6}",
        "-?[0-9]{1,20}(\\.[0-9]{1,4})?",
        Just(String::new()),
        Just("null".to_string()),
        Just("\"quoted\"".to_string()),
        Just("[1,2,3]".to_string()),
        Just("[\"a\",{\"b\":1}]".to_string()),
        Just("{\"a\":[1,{\"b\":null}]}".to_string()),
        Just("\"{\\\"a\\\":1}\"".to_string()),
        Just("2026-11-22T10:15:00".to_string()),
        "[\\[\\]{}\":,0-9a-z\\\\ ]{0,30}",
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths are exact in binary: serde_json (without `float_roundtrip`) may move other
        // floats by one ULP on parsing, which is not what these tests are about.
        (-1_000_000_000i64..1_000_000_000).prop_map(|k| Value::from(k as f64 / 8.0)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the decoders look for, mixed with others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "DequeueCount",
            "Id",
            "PopReceipt",
            "InsertionTime",
            "sys",
            "DeliveryCount",
            "MessageId",
            "SequenceNumber",
            "Subject",
            "SessionId",
            "ApplicationProperties",
            "PartitionContext",
            "SequenceNumberArray",
            "PartitionKeyArray",
            "EnqueuedTimeUtcArray",
            "PropertiesArray",
            "RetryContext",
            "RetryCount",
            "Offset",
            "Url",
            "Method",
            "Query",
            "Headers",
            "Params",
            "Body",
            "id",
            "subject",
            "eventType",
            "eventTime",
            "data",
            "specversion",
            "type",
            "source",
            "Schedule",
            "ScheduleStatus",
            "IsPastDue",
            "Last",
            "Next",
            "statusCode",
            "body",
            "headers",
        ])
        .prop_map(str::to_string),
        "[A-Za-z]{1,8}",
    ]
}

/// A value, or the same value the way the host encodes it (JSON text in a string), once or twice.
fn host_value() -> impl Strategy<Value = Value> {
    (json_value(), 0..3u8)
        .prop_map(|(v, times)| (0..times).fold(v, |v, _| Value::String(v.to_string())))
}

fn request() -> impl Strategy<Value = InvocationRequest> {
    (
        prop::collection::btree_map(key(), host_value(), 0..8),
        prop::collection::btree_map(key(), host_value(), 0..12),
        host_value(),
    )
        .prop_map(|(data, metadata, trigger)| {
            let mut data: Map<String, Value> = data.into_iter().collect();
            data.insert("trigger".into(), trigger);
            InvocationRequest {
                data,
                metadata: metadata.into_iter().collect(),
            }
        })
}

/// Captured host requests (tests/fixtures) and their trigger binding names.
const FIXTURES: [(&str, &str); 8] = [
    ("queue.json", "request"),
    ("servicebus.json", "command"),
    ("eventhub-batch.json", "alerts"),
    ("eventhub-single.json", "metric"),
    ("eventgrid.json", "event"),
    ("cloudevents.json", "event"),
    ("timer.json", "timer"),
    ("http.json", "req"),
];

fn fixture(name: &str) -> InvocationRequest {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A captured request with one Data or Metadata value (at any depth of the first level)
/// replaced by something arbitrary: the decoders get past the envelope and meet bad fields.
fn mutated_fixture() -> impl Strategy<Value = (InvocationRequest, &'static str)> {
    (
        0..FIXTURES.len(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        host_value(),
    )
        .prop_map(|(which, index, in_data, value)| {
            let (name, binding) = FIXTURES[which];
            let mut req = fixture(name);
            let map = if in_data || req.metadata.is_empty() {
                &mut req.data
            } else {
                &mut req.metadata
            };
            let key = map.keys().nth(index.index(map.len())).unwrap().clone();
            map.insert(key, value);
            (req, binding)
        })
}

fn decode_all(req: &InvocationRequest) {
    decode_binding(req, "trigger");
}

fn decode_binding(req: &InvocationRequest, binding: &str) {
    for binding in [binding, "missing"] {
        let _ = QueueTrigger::from_request(req, binding);
        let _ = ServiceBusTrigger::from_request(req, binding);
        let _ = EventHubTrigger::from_request(req, binding);
        let _ = EventHubBatchTrigger::from_request(req, binding);
        let _ = EventGridTrigger::from_request(req, binding);
        let _ = TimerTrigger::from_request(req, binding);
        let _ = HttpTrigger::from_request(req, binding);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_envelope_never_panics_on_any_text(body in prop_oneof![
        ".{0,200}",
        json_value().prop_map(|v| v.to_string()),
        request().prop_map(|r| serde_json::to_string(&r).unwrap()),
    ]) {
        if let Ok(req) = serde_json::from_str::<InvocationRequest>(&body) {
            decode_all(&req);
        }
        let _ = serde_json::from_str::<InvocationResponse>(&body);
        let _ = serde_json::from_str::<HttpResponseData>(&body);
    }

    #[test]
    fn every_trigger_decoder_refuses_or_accepts_without_panicking(req in request()) {
        decode_all(&req);
        // A missing binding is always refused, by name.
        let err = QueueTrigger::from_request(&req, "missing").unwrap_err();
        prop_assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn decoders_survive_one_bad_field_in_a_real_request((req, binding) in mutated_fixture()) {
        decode_binding(&req, binding);
    }

    #[test]
    fn the_envelope_round_trips(req in request()) {
        let text = serde_json::to_string(&req).unwrap();
        prop_assert_eq!(serde_json::from_str::<InvocationRequest>(&text).unwrap(), req);
    }

    #[test]
    fn decode_value_never_panics_and_unwraps_host_encoding(v in json_value()) {
        let _ = decode_value(&v);
        if !v.is_string() {
            prop_assert_eq!(decode_value(&Value::String(v.to_string())), v.clone());
            prop_assert_eq!(
                decode_value(&Value::String(Value::String(v.to_string()).to_string())),
                v
            );
        }
    }

    #[test]
    fn encoded_scalars_round_trip_in_the_host_form(s in ".{0,40}", n in any::<i64>(),
                                                   xs in prop::collection::vec(any::<i64>(), 0..5)) {
        let wire = serde_json::to_value(Encoded(s.clone())).unwrap();
        prop_assert_eq!(&wire, &Value::String(Value::String(s.clone()).to_string()));
        prop_assert_eq!(serde_json::from_value::<Encoded<String>>(wire).unwrap().0, s);
        let wire = serde_json::to_value(Encoded(n)).unwrap();
        prop_assert_eq!(serde_json::from_value::<Encoded<i64>>(wire).unwrap().0, n);
        prop_assert_eq!(serde_json::from_value::<Encoded<i64>>(json!(n)).unwrap().0, n);
        let wire = serde_json::to_value(Encoded(xs.clone())).unwrap();
        prop_assert_eq!(serde_json::from_value::<Encoded<Vec<i64>>>(wire).unwrap().0, xs);
    }

    #[test]
    fn a_queue_trigger_round_trips_through_the_host_encoding(
        message in ".{0,60}", count in 1u32..100, id in "[a-f0-9-]{1,36}",
        receipt in proptest::option::of(".{0,20}"),
    ) {
        let metadata = QueueMetadata {
            dequeue_count: Encoded(count),
            id: Encoded(id),
            pop_receipt: receipt,
            insertion_time: None,
            expiration_time: None,
            next_visible_time: None,
            sys: None,
        };
        let req = InvocationRequest {
            data: [("msg".to_string(), serde_json::to_value(Encoded(message.clone())).unwrap())]
                .into_iter()
                .collect(),
            metadata: match serde_json::to_value(&metadata).unwrap() {
                Value::Object(m) => m,
                _ => unreachable!(),
            },
        };
        let got = QueueTrigger::from_request(&req, "msg").unwrap();
        prop_assert_eq!(got.message, message);
        prop_assert_eq!(got.metadata, metadata);
    }

    #[test]
    fn responses_round_trip(status in 100u16..600, body in json_value(),
                            logs in prop::collection::vec(".{0,20}", 0..4)) {
        let mut response = InvocationResponse::default();
        for l in &logs {
            response.log(l.clone());
        }
        response.http("res", HttpResponseData::json(status, body));
        let text = serde_json::to_string(&response).unwrap();
        prop_assert_eq!(serde_json::from_str::<InvocationResponse>(&text).unwrap(), response);
    }
}

/// ARM id segments, hostile ones included.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_()-]{1,12}",
        1 => prop::sample::select(vec![
            ".", "..", "...", "%2e", "%2E%2e", "%2f", "%2F", "%5c", "a%2Fb", "..%2f", "a.b",
            "x..", "..x", "%00", "a b", "",
        ])
        .prop_map(str::to_string),
        1 => ".{0,10}",
    ]
}

fn incident_id_text() -> impl Strategy<Value = String> {
    let known = [
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.OperationalInsights",
        "workspaces",
        "providers",
        "Microsoft.SecurityInsights",
        "incidents",
    ];
    // Mostly the right shape, so that the checks on the free segments are reached.
    (
        prop::collection::vec(segment(), 4),
        prop::collection::vec(prop::bool::weighted(0.97), 8),
        prop_oneof![4 => Just(String::new()), 1 => ".{0,3}"],
    )
        .prop_map(move |(free, keep, tail)| {
            let word = |i: usize| {
                if keep[i] {
                    known[i].to_string()
                } else {
                    "x".to_string()
                }
            };
            format!(
                "/{}/{}/{}/{}/{}/{}/{}/{}/{}/{}/{}/{}{tail}",
                word(0),
                free[0],
                word(1),
                free[1],
                word(2),
                word(3),
                word(4),
                free[2],
                word(5),
                word(6),
                word(7),
                free[3]
            )
        })
}

fn has_unsafe_segment(text: &str) -> Option<String> {
    text.split('/').find_map(|s| {
        let lower = s.to_ascii_lowercase();
        (s == "." || s == ".." || ["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e)))
            .then(|| s.to_string())
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn incident_ids_never_panic(text in prop_oneof![".{0,300}", incident_id_text()]) {
        if let Ok(id) = IncidentId::parse(&text) {
            prop_assert!(!id.name().is_empty() && !id.name().contains('/'));
            prop_assert!(id.arm_id().starts_with(id.workspace_path()));
            prop_assert!(id.arm_id().ends_with(id.name()));
            let again = IncidentId::parse(id.arm_id()).unwrap();
            prop_assert_eq!(again.arm_id(), id.arm_id());
        }
    }

    #[test]
    fn accepted_incident_ids_have_no_dot_segments_or_encoded_separators(
        text in incident_id_text()
    ) {
        if let Ok(id) = IncidentId::parse(&text) {
            for part in [id.arm_id(), id.name(), id.workspace_path()] {
                prop_assert_eq!(has_unsafe_segment(part), None, "accepted {:?}", text);
            }
        }
    }
}
