//! Per-function delivery counters, the live terminal lines, and the end-of-run summary.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Counters for one function.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FunctionStats {
    /// Invocations that succeeded and whose outputs were routed.
    pub delivered: u64,
    /// Failed attempts that will be (or were) tried again.
    pub retried: u64,
    /// Messages moved to a `-poison` queue.
    pub poisoned: u64,
    /// Messages or events moved to a dead-letter store.
    pub dead_lettered: u64,
    /// Event Hubs events whose batch failed after the retry policy was spent (the checkpoint
    /// moved on, as in Azure).
    pub lost_after_retries: u64,
    /// Inputs the function acknowledged and set aside on its `rejects` output (counted within
    /// `delivered`: the host saw success).
    pub set_aside: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Counters per function.
    pub functions: BTreeMap<String, FunctionStats>,
    /// How long the handler took to answer its first `GET /`.
    pub handler_ready_ms: f64,
    /// Handler restarts after a crash.
    pub handler_restarts: u64,
    /// Wall time of the run.
    pub elapsed_secs: f64,
}

impl Summary {
    /// Sum over all functions.
    pub fn total(&self) -> FunctionStats {
        let mut t = FunctionStats::default();
        for s in self.functions.values() {
            t += s;
        }
        t
    }
}

impl std::ops::AddAssign<&FunctionStats> for FunctionStats {
    /// Adds another function's counters to these.
    fn add_assign(&mut self, s: &FunctionStats) {
        self.delivered += s.delivered;
        self.retried += s.retried;
        self.poisoned += s.poisoned;
        self.dead_lettered += s.dead_lettered;
        self.lost_after_retries += s.lost_after_retries;
        self.set_aside += s.set_aside;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>10} {:>8} {:>9} {:>14} {:>6}",
            "function", "delivered", "retried", "poisoned", "dead-lettered", "lost"
        )?;
        for (name, s) in &self.functions {
            writeln!(
                f,
                "{name:<24} {:>10} {:>8} {:>9} {:>14} {:>6}",
                s.delivered, s.retried, s.poisoned, s.dead_lettered, s.lost_after_retries
            )?;
        }
        let set_aside = self.total().set_aside;
        if set_aside > 0 {
            writeln!(
                f,
                "set aside by the functions with a reason: {set_aside} input(s) (socwire dlq list)"
            )?;
        }
        write!(
            f,
            "handler ready in {:.1} ms, {} restart(s); run took {:.2} s",
            self.handler_ready_ms, self.handler_restarts, self.elapsed_secs
        )
    }
}

/// Which counter an outcome bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Delivered,
    /// Failed, will retry.
    Retried,
    /// Moved to a poison queue.
    Poisoned,
    /// Dead-lettered.
    DeadLettered,
    /// Dropped after the retry policy (Event Hubs).
    Lost,
}

/// Shared counters plus the live line printer.
#[derive(Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<String, FunctionStats>>,
    quiet: bool,
}

impl Stats {
    /// Counters that print a line per outcome unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            counters: Mutex::default(),
            quiet,
        }
    }

    /// Makes sure `function` shows in the summary even if nothing reached it.
    pub fn register(&self, function: &str) {
        self.lock().entry(function.to_string()).or_default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FunctionStats>> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts inputs `function` set aside on its `rejects` output.
    pub fn set_aside(&self, function: &str, count: u64) {
        self.lock()
            .entry(function.to_string())
            .or_default()
            .set_aside += count;
    }

    /// Records `count` outcomes for `function`; prints `detail` (already escaped) unless quiet.
    pub fn record(&self, function: &str, outcome: Outcome, count: u64, detail: &str) {
        {
            let mut map = self.lock();
            let s = map.entry(function.to_string()).or_default();
            match outcome {
                Outcome::Delivered => s.delivered += count,
                Outcome::Retried => s.retried += count,
                Outcome::Poisoned => s.poisoned += count,
                Outcome::DeadLettered => s.dead_lettered += count,
                Outcome::Lost => s.lost_after_retries += count,
            }
        }
        if !self.quiet {
            let tag = match outcome {
                Outcome::Delivered => "ok",
                Outcome::Retried => "retry",
                Outcome::Poisoned => "POISON",
                Outcome::DeadLettered => "DEAD-LETTER",
                Outcome::Lost => "LOST",
            };
            let time = chrono::Utc::now().format("%H:%M:%S%.3f");
            println!("{time} {function:<20} {tag:<11} {detail}");
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<String, FunctionStats> {
        self.lock().clone()
    }
}

/// Formats a duration in milliseconds with one decimal.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up() {
        let stats = Stats::new(true);
        stats.record("a", Outcome::Delivered, 2, "");
        stats.record("b", Outcome::Poisoned, 1, "");
        let summary = Summary {
            functions: stats.snapshot(),
            ..Default::default()
        };
        assert_eq!(
            (summary.total().delivered, summary.total().poisoned),
            (2, 1)
        );
    }

    #[test]
    fn every_counter_is_summed() {
        let stats = Stats::new(true);
        for (n, (function, outcome)) in [
            ("a", Outcome::Delivered),
            ("b", Outcome::Retried),
            ("a", Outcome::Poisoned),
            ("b", Outcome::DeadLettered),
            ("a", Outcome::Lost),
        ]
        .into_iter()
        .enumerate()
        {
            stats.record(function, outcome, n as u64 + 1, "");
        }
        stats.set_aside("b", 6);
        let summary = Summary {
            functions: stats.snapshot(),
            ..Default::default()
        };
        let expected = FunctionStats {
            delivered: 1,
            retried: 2,
            poisoned: 3,
            dead_lettered: 4,
            lost_after_retries: 5,
            set_aside: 6,
        };
        assert_eq!(summary.total(), expected);
    }
}
