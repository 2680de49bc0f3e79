//! Property tests for the alert parser: any JSON is accepted or refused with a reason, never
//! a panic, and every accepted alert keeps the invariants `ALERTS.md` promises.

use alertgraph::alert::{Alert, MAX_FIELD_CHARS, MAX_FUTURE_MS, MAX_PAST_MS};
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::net::IpAddr;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field values near and far from valid: good values, padding, control characters, wrong
/// types, long text, odd addresses and times.
fn field(name: &'static str) -> impl Strategy<Value = Option<Value>> {
    let (valid, odd): (Vec<&'static str>, Vec<&'static str>) = match name {
        "TimeGenerated" => (
            vec![
                "2026-11-20T10:00:00Z",
                "2026-11-20T10:00:00.123456+02:00",
                "1970-01-01T00:00:00Z",
                "9999-12-31T23:59:59Z",
            ],
            vec!["2026-02-30T10:00:00Z", "yesterday", "2026-11-20 10:00:00"],
        ),
        "Severity" => (
            vec!["High", "low", "Info", "informational", " Medium "],
            vec!["Critical", ""],
        ),
        "Domain" => (vec!["IT", "ot"], vec!["Cloud"]),
        "SrcIp" | "DstIp" => (
            vec![
                "10.0.0.5",
                "::1",
                "2001:db8::0:1",
                "::ffff:10.0.0.1",
                " 10.0.0.7 ",
            ],
            vec!["fe80::1%eth0", "10.0.0.999", "010.0.0.1", "host.example"],
        ),
        "DstPort" | "SrcPort" => (vec!["445", "0", "65535"], vec!["65536", "-1", "0x1bd"]),
        "Direction" => (vec!["request", "Response", "to_client"], vec!["sideways"]),
        _ => (
            vec!["a1", "SMB lateral movement", "LateralMovement", " padded "],
            vec!["\u{1b}"],
        ),
    };
    let text = prop_oneof![
        40 => prop::sample::select(valid).prop_map(str::to_string),
        2 => prop::sample::select(odd).prop_map(str::to_string),
        1 => ".{0,12}",
        1 => Just("x".repeat(MAX_FIELD_CHARS + 1)),
        1 => Just("é".repeat(MAX_FIELD_CHARS)),
        1 => Just("a\u{1b}[31m".to_string()),
        1 => Just("   ".to_string()),
    ];
    prop_oneof![
        40 => text.prop_map(|t| Some(Value::from(t))),
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => any::<u16>().prop_map(|n| Some(Value::from(n))),
        1 => any_json().prop_map(Some),
    ]
}

const FIELDS: [&str; 18] = [
    "TimeGenerated",
    "AlertId",
    "AlertName",
    "Severity",
    "Domain",
    "SrcIp",
    "DstIp",
    "SrcHost",
    "DstHost",
    "DstPort",
    "Protocol",
    "Tactic",
    "SrcPort",
    "Category",
    "Account",
    "Direction",
    "Techniques",
    "SignatureId",
];

fn alert_like() -> impl Strategy<Value = Value> {
    FIELDS
        .iter()
        .map(|&f| field(f))
        .collect::<Vec<_>>()
        .prop_map(|values| {
            let mut m = Map::new();
            for (name, v) in FIELDS.iter().zip(values) {
                if let Some(v) = v {
                    m.insert(name.to_string(), v);
                }
            }
            Value::Object(m)
        })
}

fn check_text(t: &str) -> bool {
    !t.is_empty()
        && t.trim() == t
        && t.chars().count() <= MAX_FIELD_CHARS
        && !t.chars().any(char::is_control)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_is_accepted_or_refused_with_a_reason(v in prop_oneof![any_json(), alert_like()],
                                                     now in proptest::option::of(any::<i64>())) {
        for r in Alert::from_body(&v, now) {
            if let Err(rejected) = r {
                prop_assert!(!rejected.reason.is_empty());
                prop_assert!(rejected.reason.chars().count() < 400, "{}", rejected.reason);
            }
        }
    }

    #[test]
    fn accepted_alerts_keep_their_invariants(v in alert_like(),
                                             now in proptest::option::of(0i64..4_102_444_800_000)) {
        match Alert::from_json(&v, now) {
            Ok(a) => {
                for t in [&a.alert_id, &a.alert_name] {
                    prop_assert!(check_text(t), "{:?}", t);
                }
                // A source known only by name has no address.
                prop_assert!(!a.src_ip.is_empty() || a.src_host.is_some());
                let ext = &a.ext;
                for t in [&a.dst_ip, &a.src_host, &a.dst_host, &a.protocol, &a.tactic, &ext.category, &ext.account, &ext.signature_id]
                    .into_iter()
                    .flatten()
                    .chain(ext.techniques.iter())
                {
                    prop_assert!(check_text(t), "{:?}", t);
                }
                for ip in std::iter::once(&a.src_ip).filter(|ip| !ip.is_empty()).chain(a.dst_ip.iter()) {
                    let parsed: IpAddr = ip.parse().unwrap();
                    prop_assert_eq!(&parsed.to_string(), ip, "addresses are normalised");
                }
                if let Some(now) = now {
                    prop_assert!(a.time_generated <= now + MAX_FUTURE_MS);
                    prop_assert!(a.time_generated >= now - MAX_PAST_MS);
                }
                // What the engine writes back out is read back as the same alert.
                let back = serde_json::to_value(&a).unwrap();
                prop_assert_eq!(Alert::from_json(&back, None).unwrap(), a);
            }
            Err(rejected) => {
                prop_assert!(!rejected.reason.is_empty());
                if let Some(id) = rejected.alert_id {
                    prop_assert!(check_text(&id));
                }
            }
        }
    }
}

/// The generator reaches both sides: without accepted alerts the invariant test proves nothing.
#[test]
fn the_alert_generator_yields_accepted_and_refused_alerts() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = alert_like();
    let accepted = (0..512)
        .filter(|_| {
            let v = strategy.new_tree(&mut runner).unwrap().current();
            Alert::from_json(&v, None).is_ok()
        })
        .count();
    assert!((20..500).contains(&accepted), "{accepted} of 512 accepted");
}
