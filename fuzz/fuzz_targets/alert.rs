//! The alert parser (`ALERTS.md` shape) on arbitrary bytes: refuse with a reason, or accept an
//! alert that keeps its invariants.
#![no_main]

use alertgraph::alert::{Alert, MAX_FIELD_CHARS, MAX_FUTURE_MS, MAX_PAST_MS};
use libfuzzer_sys::fuzz_target;

/// 2026-11-22T10:15:00Z, a fixed reference clock.
const NOW_MS: i64 = 1_795_342_500_000;

fn good_text(t: &str) -> bool {
    !t.is_empty()
        && t.trim() == t
        && t.chars().count() <= MAX_FIELD_CHARS
        && !t.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for now in [Some(NOW_MS), None] {
        for result in Alert::from_body(&value, now) {
            match result {
                Err(rejected) => assert!(!rejected.reason.is_empty()),
                Ok(a) => {
                    assert!(good_text(&a.alert_id) && good_text(&a.alert_name));
                    for t in [&a.src_host, &a.dst_host, &a.protocol, &a.tactic]
                        .into_iter()
                        .flatten()
                    {
                        assert!(good_text(t), "{t:?}");
                    }
                    for ip in std::iter::once(&a.src_ip).chain(a.dst_ip.iter()) {
                        let parsed: std::net::IpAddr = ip.parse().unwrap();
                        assert_eq!(&parsed.to_string(), ip);
                    }
                    if let Some(now) = now {
                        assert!(a.time_generated <= now + MAX_FUTURE_MS);
                        assert!(a.time_generated >= now - MAX_PAST_MS);
                    }
                    let back = serde_json::to_value(&a).unwrap();
                    assert_eq!(Alert::from_json(&back, None).unwrap(), a);
                }
            }
        }
    }
});
