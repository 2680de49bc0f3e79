//! Timer triggers: six-field NCRONTAB schedules (`{second} {minute} {hour} {day} {month}
//! {day-of-week}`) and `runOnStartup`.

use super::shared::Shared;
use crate::config::Trigger;
use crate::stats::Outcome;
use chrono::Utc;
use serde_json::{json, Map};
use socwire_common::text::for_log;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Parses an NCRONTAB expression. NCRONTAB numbers days of the week 0–6 from Sunday; the
/// `cron` crate numbers them 1–7, so numeric day-of-week values are shifted by one.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "schedule {expr:?} must have 6 fields (second minute hour day month day-of-week)"
        ));
    }
    let dow: String = {
        let mut out = String::new();
        let mut number = String::new();
        for c in fields[5].chars().chain(std::iter::once('\0')) {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            if !number.is_empty() {
                let n: u32 = number
                    .parse()
                    .map_err(|_| format!("bad day of week in {expr:?}"))?;
                if n > 6 {
                    return Err(format!("day of week {n} in {expr:?} is outside 0-6"));
                }
                out.push_str(&(n + 1).to_string());
                number.clear();
            }
            if c != '\0' {
                out.push(c);
            }
        }
        out
    };
    let shifted = format!(
        "{} {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], fields[4], dow
    );
    cron::Schedule::from_str(&shifted).map_err(|e| format!("schedule {expr:?}: {e}"))
}

pub(crate) async fn timer_loop(s: Arc<Shared>, name: String) {
    let f = s.function(&name).clone();
    let Trigger::Timer {
        name: binding,
        schedule,
        run_on_startup,
    } = &f.trigger
    else {
        return;
    };
    // `%NAME%` takes the schedule from an app setting, as the Functions host resolves it.
    let schedule = crate::worker::expand_vars(schedule, &s.cfg.settings);
    let schedule = match parse_schedule(&schedule) {
        Ok(sc) => sc,
        Err(e) => {
            tracing::error!(function = %name, error = %e, "timer disabled");
            return;
        }
    };
    let mut last: Option<chrono::DateTime<Utc>> = None;
    let mut first = *run_on_startup;
    while !s.stopping.load(Ordering::SeqCst) {
        if !first {
            let Some(next) = schedule.upcoming(Utc).next() else {
                return;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        first = false;
        let now = Utc::now();
        let next = schedule.upcoming(Utc).next();
        let mut data = Map::new();
        data.insert(
            binding.clone(),
            json!({
                "Schedule": { "AdjustForDST": true },
                "ScheduleStatus": { "Last": last.map(|t| t.to_rfc3339()), "Next": next.map(|t| t.to_rfc3339()), "LastUpdated": now.to_rfc3339() },
                "IsPastDue": false
            }),
        );
        match s.deliver(&f, data, Map::new()).await {
            Ok(answer) => {
                s.stats
                    .record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer))
            }
            Err(failure) => {
                s.stats
                    .record(&f.name, Outcome::Retried, 1, &for_log(&failure.reason, 300))
            }
        }
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike};

    #[test]
    fn every_ten_minutes() {
        let s = parse_schedule("0 */10 * * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 3, 0).unwrap();
        let next = s.after(&start).next().unwrap();
        assert_eq!((next.minute(), next.second()), (10, 0));
    }

    #[test]
    fn ncrontab_sunday_is_zero() {
        let s = parse_schedule("0 0 9 * * 0").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 11, 18, 0, 0, 0).unwrap(); // a Wednesday
        let next = s.after(&start).next().unwrap();
        assert_eq!(next.weekday(), chrono::Weekday::Sun);
        let weekdays = parse_schedule("0 30 8 * * 1-5").unwrap();
        let n = weekdays
            .after(&Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap())
            .next()
            .unwrap(); // Saturday
        assert_eq!(n.weekday(), chrono::Weekday::Mon);
    }

    #[test]
    fn five_fields_are_rejected() {
        assert!(parse_schedule("*/5 * * * *")
            .unwrap_err()
            .contains("6 fields"));
        assert!(parse_schedule("0 0 0 * * 7").is_err());
    }
}
