//! Analysts' verdicts on rows, by shape: what a row of the same shape scores next time. A
//! shape is what a row looks like without its times: whether it is a campaign (and then its
//! source, a scanner being one host), and the rules and stages it holds. Marked benign twice, a
//! shape ranks well below what it would; marked a true positive, above.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most shapes kept (the least recently marked leave first).
pub const MAX_SHAPES: usize = 10_000;

/// An analyst's verdict on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing to act on (routine, a false positive, a benign positive).
    Benign,
    /// A real attack.
    TruePositive,
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "benign" | "benign-positive" | "false-positive" => Ok(Verdict::Benign),
            "true-positive" | "truepositive" => Ok(Verdict::TruePositive),
            _ => Err(format!("{s:?}: the verdict is benign or true-positive")),
        }
    }
}

/// Verdicts on one shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdicts {
    /// Times marked benign.
    pub benign: u32,
    /// Times marked a true positive.
    pub true_positive: u32,
    /// When last marked (RFC 3339), for pruning.
    pub updated: String,
}

/// Verdicts by shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Shape → verdicts.
    pub shapes: BTreeMap<String, Verdicts>,
}

/// Score change (nats) per net verdict, and its bounds.
const PER_BENIGN: f64 = 4.0;
const PER_TRUE_POSITIVE: f64 = 2.0;
const MOST_DAMPED: f64 = -8.0;
const MOST_BOOSTED: f64 = 4.0;

impl Feedback {
    /// Records a verdict on `shape` at `now` (RFC 3339); the oldest shapes leave past
    /// [`MAX_SHAPES`].
    pub fn record(&mut self, shape: &str, verdict: Verdict, now: &str) {
        let v = self.shapes.entry(shape.to_string()).or_default();
        match verdict {
            Verdict::Benign => v.benign = v.benign.saturating_add(1),
            Verdict::TruePositive => v.true_positive = v.true_positive.saturating_add(1),
        }
        v.updated = now.to_string();
        while self.shapes.len() > MAX_SHAPES {
            let oldest = self
                .shapes
                .iter()
                .min_by(|a, b| a.1.updated.cmp(&b.1.updated))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.shapes.remove(&k),
                None => break,
            };
        }
    }

    /// The score change for rows of `shape`, and the reason to give, when analysts marked it.
    pub fn adjustment(&self, shape: &str) -> Option<(f64, String)> {
        let v = self.shapes.get(shape)?;
        let change = (PER_TRUE_POSITIVE * f64::from(v.true_positive)
            - PER_BENIGN * f64::from(v.benign))
        .clamp(MOST_DAMPED, MOST_BOOSTED);
        Some((
            change,
            format!(
                "analysts marked rows of this shape {} time(s) benign, {} time(s) a true positive ({:+.1})",
                v.benign, v.true_positive, change
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_damp_and_boost_within_bounds() {
        let mut f = Feedback::default();
        assert!(f.adjustment("s").is_none());
        f.record("s", Verdict::Benign, "2026-12-01T00:00:00Z");
        assert_eq!(f.adjustment("s").unwrap().0, -4.0);
        for _ in 0..5 {
            f.record("s", Verdict::Benign, "2026-12-01T00:00:00Z");
        }
        assert_eq!(f.adjustment("s").unwrap().0, MOST_DAMPED);
        f.record("t", Verdict::TruePositive, "2026-12-01T00:00:00Z");
        assert_eq!(f.adjustment("t").unwrap().0, 2.0);
        assert_eq!("true-positive".parse(), Ok(Verdict::TruePositive));
        assert!("maybe".parse::<Verdict>().is_err());
    }
}
