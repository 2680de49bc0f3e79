//! Training telemetry as `training-telemetry` reads and keeps it: one event per trainer step
//! or evaluation (`{jobId, kind, step, loss, averagePrecision?, learningRate?}`), folded into
//! per-job metrics with the divergence rule. The local runner and `socwire ml status` read the
//! same records.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Points kept per job.
pub const MAX_POINTS: usize = 2000;

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// `step` or `eval`.
    pub kind: String,
    /// Optimisation step.
    pub step: u64,
    /// Loss; None = not a finite number.
    pub loss: Option<f64>,
    /// Average precision (evaluations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_precision: Option<f64>,
    /// Learning rate (steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
}

/// What is kept per job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMetrics {
    /// Latest points, oldest first.
    pub points: Vec<Point>,
    /// Highest step seen per kind.
    pub last_step: BTreeMap<String, u64>,
    /// Why the job counts as diverged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
    /// A CancelJob was sent.
    #[serde(default)]
    pub cancel_sent: bool,
}

/// The state key of a job's metrics.
pub fn metrics_key(job_id: &str) -> String {
    format!("ml/metrics/{job_id}")
}

fn loss_of(v: Option<&Value>) -> Result<Option<f64>, String> {
    match v {
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|x| x.is_finite())),
        Some(Value::String(s))
            if matches!(
                s.to_ascii_lowercase().as_str(),
                "nan" | "inf" | "infinity" | "-inf" | "-infinity"
            ) =>
        {
            Ok(None)
        }
        Some(Value::Null) => Ok(None),
        None => Err("loss is required".into()),
        Some(other) => Err(format!("loss must be a number (or \"NaN\"), got {other}")),
    }
}

/// Parses one telemetry event: `{jobId, kind, step, loss, averagePrecision?, learningRate?}`.
pub fn parse_event(body: &str) -> Result<(String, Point), String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("telemetry event is not JSON: {e}"))?;
    let job = v
        .get("jobId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or("jobId (a string) is required")?;
    let kind = match v.get("kind").and_then(Value::as_str) {
        Some(k @ ("step" | "eval")) => k.to_string(),
        _ => return Err("kind must be \"step\" or \"eval\"".into()),
    };
    let step = v
        .get("step")
        .and_then(Value::as_u64)
        .ok_or("step (a non-negative integer) is required")?;
    let number = |k: &str| -> Result<Option<f64>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(format!("{k} must be a number, got {other}")),
        }
    };
    Ok((
        job.to_string(),
        Point {
            kind,
            step,
            loss: loss_of(v.get("loss"))?,
            average_precision: number("averagePrecision")?,
            learning_rate: number("learningRate")?,
        },
    ))
}

/// Folds new points in (dropping repeats) and says whether the job diverged with them.
pub fn fold(m: &mut JobMetrics, mut points: Vec<Point>, rising_evals: usize) -> usize {
    points.sort_by_key(|p| p.step);
    let mut added = 0;
    for p in points {
        let last = m.last_step.get(&p.kind).copied();
        if last.is_some_and(|l| p.step <= l) {
            continue;
        }
        m.last_step.insert(p.kind.clone(), p.step);
        if m.diverged.is_none() && p.loss.is_none() {
            m.diverged = Some(format!(
                "{} loss is NaN or infinite at step {}",
                p.kind, p.step
            ));
        }
        m.points.push(p);
        added += 1;
    }
    if m.points.len() > MAX_POINTS {
        let cut = m.points.len() - MAX_POINTS;
        m.points.drain(..cut);
    }
    if m.diverged.is_none() {
        let evals: Vec<f64> = m
            .points
            .iter()
            .filter(|p| p.kind == "eval")
            .filter_map(|p| p.loss)
            .collect();
        if evals.len() > rising_evals {
            let tail = &evals[evals.len() - rising_evals - 1..];
            if tail.windows(2).all(|w| w[1] > w[0]) {
                m.diverged = Some(format!(
                    "evaluation loss rose {rising_evals} times in a row ({:.4} → {:.4})",
                    tail[0],
                    tail[tail.len() - 1]
                ));
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(step: u64, loss: f64) -> Point {
        Point {
            kind: "eval".into(),
            step,
            loss: Some(loss),
            average_precision: Some(0.5),
            learning_rate: None,
        }
    }

    #[test]
    fn rising_eval_loss_and_nan_count_as_divergence_and_repeats_are_dropped() {
        let mut m = JobMetrics::default();
        assert_eq!(
            fold(&mut m, vec![eval(1, 0.5), eval(2, 0.4), eval(3, 0.45)], 3),
            3
        );
        assert!(m.diverged.is_none());
        assert_eq!(
            fold(&mut m, vec![eval(3, 0.45), eval(2, 9.0)], 3),
            0,
            "repeats dropped"
        );
        fold(&mut m, vec![eval(4, 0.5), eval(5, 0.6)], 3);
        assert!(
            m.diverged.as_deref().unwrap().contains("rose 3 times"),
            "{m:?}"
        );

        let mut n = JobMetrics::default();
        let (_, p) = parse_event(r#"{"jobId":"j","kind":"step","step":7,"loss":"NaN"}"#).unwrap();
        fold(&mut n, vec![p], 3);
        assert!(n.diverged.unwrap().contains("step 7"));
    }

    #[test]
    fn bad_events_say_why() {
        for (body, needle) in [
            ("nope", "not JSON"),
            (r#"{"kind":"step","step":1,"loss":1}"#, "jobId"),
            (r#"{"jobId":"j","kind":"x","step":1,"loss":1}"#, "kind"),
            (r#"{"jobId":"j","kind":"step","loss":1}"#, "step"),
            (
                r#"{"jobId":"j","kind":"step","step":1,"loss":[1]}"#,
                "loss must be",
            ),
        ] {
            assert!(parse_event(body).unwrap_err().contains(needle), "{body}");
        }
    }
}
