//! `trainer: "container"`: a fine-tune that runs a container's own training entry (an NGC
//! Clara, MONAI or PyTorch image) instead of socwire's trainer.
//!
//! The command is one program and its arguments, with placeholders for what socwire stages
//! and collects: `{assets}` (the staged assets folder), `{base_model}` (the command's
//! `baseModel` inside it), `{outputs}` (the folder the job must write its model and
//! `eval.json` to), `{epochs}`, `{learning_rate}`, `{batch_size}` and `{seed}`. Only
//! letters, digits, spaces and `_ - . / = : , @ + %` may appear around them: no quotes,
//! pipes, redirections, substitutions, globs or line breaks, so the same words mean the same
//! thing to Azure ML's shell and to the local back end, which runs them without a shell.
//!
//! The evaluation contract: the job writes `{outputs}/eval.json`
//! (`{"averagePrecisionBefore": …, "averagePrecisionAfter": …}`), or logs the MLflow metrics
//! `average_precision_before` and `average_precision_after`. Per-step MLflow metrics `loss`,
//! `eval_loss` and `average_precision` feed `training-telemetry`'s divergence rule.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use socwire_trainer::HyperParameters;
use std::ffi::OsString;

/// The placeholders a command may use.
pub const PLACEHOLDERS: &[&str] = &[
    "assets",
    "base_model",
    "outputs",
    "epochs",
    "learning_rate",
    "batch_size",
    "seed",
];
/// Longest command accepted.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Largest `eval.json` read.
pub const MAX_EVAL_JSON_BYTES: u64 = 64 * 1024;
/// MLflow metric keys of the contract.
pub const MLFLOW_AP_BEFORE: &str = "average_precision_before";
/// MLflow metric keys of the contract.
pub const MLFLOW_AP_AFTER: &str = "average_precision_after";
/// Per-step MLflow metrics read as telemetry: training loss.
pub const MLFLOW_LOSS: &str = "loss";
/// Per-step MLflow metrics read as telemetry: evaluation loss.
pub const MLFLOW_EVAL_LOSS: &str = "eval_loss";
/// Per-step MLflow metrics read as telemetry: evaluation AP.
pub const MLFLOW_AP: &str = "average_precision";

/// Where a container job's AP before and after comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Evaluation {
    /// `{outputs}/eval.json`.
    #[default]
    EvalJson,
    /// The job's MLflow metrics `average_precision_before` / `_after`.
    Mlflow,
}

impl Evaluation {
    /// The spelling commands and tags use.
    pub fn as_str(self) -> &'static str {
        match self {
            Evaluation::EvalJson => "evalJson",
            Evaluation::Mlflow => "mlflow",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Slot(&'static str),
}

/// A checked command template: words of text and placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerCommand {
    words: Vec<Vec<Part>>,
}

/// The values placeholders stand for.
pub struct Values<'a> {
    /// The staged assets folder.
    pub assets: String,
    /// The outputs folder.
    pub outputs: String,
    /// `baseModel`, relative to the assets folder.
    pub base_model: Option<&'a str>,
    /// Hyper-parameters.
    pub hyper: &'a HyperParameters,
    /// Seed.
    pub seed: u64,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | '/' | '=' | ':' | ',' | '@' | '+' | '%')
}

/// Why `text` may not appear in a command word or a path a placeholder stands for, if it may not.
pub fn unsafe_text(text: &str) -> Option<String> {
    text.char_indices()
        .find(|&(_, c)| !allowed(c))
        .map(|(i, c)| {
            let shown = if c.is_control() || c == ' ' {
                format!("{:?}", c)
            } else {
                format!("'{c}'")
            };
            format!("character {shown} at byte {i}")
        })
}

impl ContainerCommand {
    /// Parses and checks a command: safe characters only, known placeholders, each at most
    /// once, `{outputs}` present.
    pub fn parse(command: &str) -> Result<Self, String> {
        let what = "command";
        if command.trim().is_empty() {
            return Err(format!(
                "{what} is empty; give the container's training entry"
            ));
        }
        if command.len() > MAX_COMMAND_BYTES {
            return Err(format!(
                "{what} is {} bytes; at most {MAX_COMMAND_BYTES}",
                command.len()
            ));
        }
        let mut words = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut offset = 0;
        for raw in command.split(' ') {
            let start = offset;
            offset += raw.len() + 1;
            if raw.is_empty() {
                continue;
            }
            let mut parts = Vec::new();
            let mut rest = raw;
            let mut at = start;
            while !rest.is_empty() {
                if let Some(inner) = rest.strip_prefix('{') {
                    let Some(end) = inner.find('}') else {
                        return Err(format!(
                            "{what}: '{{' at byte {at} opens no placeholder; placeholders are {}",
                            list()
                        ));
                    };
                    let name = &inner[..end];
                    let Some(&slot) = PLACEHOLDERS.iter().find(|p| **p == name) else {
                        return Err(format!(
                            "{what}: unknown placeholder {{{}}} at byte {at}; placeholders are {}",
                            socwire_common::text::for_log(name, 40),
                            list()
                        ));
                    };
                    if seen.contains(&slot) {
                        return Err(format!(
                            "{what}: placeholder {{{slot}}} appears more than once (byte {at}); use each at most once"
                        ));
                    }
                    seen.push(slot);
                    parts.push(Part::Slot(slot));
                    rest = &inner[end + 1..];
                    at += end + 2;
                } else {
                    let len = rest.find('{').unwrap_or(rest.len());
                    let text = &rest[..len];
                    if let Some(bad) = unsafe_text(text) {
                        return Err(format!(
                            "{what}: {bad} is not allowed (near byte {at}): the command is one program and its arguments, \
                             with no quotes, pipes, redirections, substitutions, globs or line breaks; \
                             pass paths and values through the placeholders {}",
                            list()
                        ));
                    }
                    parts.push(Part::Text(text.to_string()));
                    rest = &rest[len..];
                    at += len;
                }
            }
            words.push(parts);
        }
        if !seen.contains(&"outputs") {
            return Err(format!(
                "{what} must pass {{outputs}}: the folder the job writes its model and eval.json to"
            ));
        }
        if matches!(words.first().and_then(|w| w.first()), Some(Part::Slot(s)) if !matches!(*s, "assets" | "base_model"))
        {
            return Err(format!(
                "{what} must start with a program (or {{assets}}/… inside the staged assets)"
            ));
        }
        Ok(Self { words })
    }

    /// True when the command uses `{name}`.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .flatten()
            .any(|p| matches!(p, Part::Slot(s) if *s == name))
    }

    fn value(slot: &str, v: &Values) -> String {
        match slot {
            "assets" => v.assets.clone(),
            "outputs" => v.outputs.clone(),
            "base_model" => format!("{}/{}", v.assets, v.base_model.unwrap_or_default()),
            "epochs" => v.hyper.epochs.to_string(),
            "learning_rate" => v.hyper.learning_rate.to_string(),
            "batch_size" => v.hyper.batch_size.to_string(),
            "seed" => v.seed.to_string(),
            _ => String::new(),
        }
    }

    /// The words with every placeholder replaced, one argument each (the program first).
    pub fn argv(&self, v: &Values) -> Vec<OsString> {
        self.words
            .iter()
            .map(|w| {
                w.iter()
                    .map(|p| match p {
                        Part::Text(t) => t.clone(),
                        Part::Slot(s) => Self::value(s, v),
                    })
                    .collect::<String>()
                    .into()
            })
            .collect()
    }

    /// The line an Azure ML Command job runs: `{assets}` and `{outputs}` become Azure ML's
    /// own `${{inputs.assets}}` and `${{outputs.model}}`, replaced before its shell sees the
    /// line; everything else is safe text.
    pub fn azure_line(
        &self,
        base_model: Option<&str>,
        hyper: &HyperParameters,
        seed: u64,
    ) -> String {
        let v = Values {
            assets: "${{inputs.assets}}".into(),
            outputs: "${{outputs.model}}".into(),
            base_model,
            hyper,
            seed,
        };
        self.argv(&v)
            .into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn list() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// AP before and after as a container job reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reported {
    /// Before fine-tuning.
    pub before: f64,
    /// After.
    pub after: f64,
}

fn check_ap(field: &str, v: Option<&Value>) -> Result<f64, String> {
    match v {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(format!(
                "{field} is {n}; an average precision lies in [0, 1]"
            )),
        },
        Some(Value::String(s)) => Err(format!(
            "{field} is the text {:?}, not a number (NaN or infinite?)",
            socwire_common::text::for_log(s, 20)
        )),
        Some(other) => Err(format!("{field} must be a number in [0, 1], got {other}")),
        None => Err(format!("{field} is missing")),
    }
}

/// Reads an `eval.json` (at most [`MAX_EVAL_JSON_BYTES`]): a JSON object with
/// `averagePrecisionBefore` and `averagePrecisionAfter` in [0, 1].
pub fn read_eval_json(path: &std::path::Path) -> Result<Reported, String> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(_) => {
            return Err(
                "the job wrote no eval.json to {outputs} (the evaluation contract); \
                 write it, or set \"evaluation\": \"mlflow\" and log the metrics"
                    .into(),
            )
        }
    };
    if len > MAX_EVAL_JSON_BYTES {
        return Err(format!(
            "eval.json is {len} bytes; the evaluation contract allows {MAX_EVAL_JSON_BYTES}"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("eval.json: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        if text.contains("NaN") || text.contains("Infinity") {
            "eval.json holds NaN or Infinity, which is not an average precision (and not JSON)"
                .to_string()
        } else {
            format!("eval.json is not JSON: {e}")
        }
    })?;
    let before = check_ap(
        "eval.json averagePrecisionBefore",
        value.get("averagePrecisionBefore"),
    )?;
    let after = check_ap(
        "eval.json averagePrecisionAfter",
        value.get("averagePrecisionAfter"),
    )?;
    Ok(Reported { before, after })
}

/// AP before and after from the job's MLflow metrics (the last value of each key).
pub fn from_mlflow(
    before: &[crate::ports::MetricPoint],
    after: &[crate::ports::MetricPoint],
) -> Result<Reported, String> {
    let last = |key: &str, points: &[crate::ports::MetricPoint]| -> Result<f64, String> {
        let p = points
            .iter()
            .max_by_key(|p| (p.step, p.timestamp))
            .ok_or_else(|| format!("the job logged no MLflow metric {key}"))?;
        match p.value {
            Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
            Some(x) => Err(format!(
                "MLflow metric {key} is {x}; an average precision lies in [0, 1]"
            )),
            None => Err(format!("MLflow metric {key} is NaN or infinite")),
        }
    };
    Ok(Reported {
        before: last(MLFLOW_AP_BEFORE, before)?,
        after: last(MLFLOW_AP_AFTER, after)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper() -> HyperParameters {
        HyperParameters {
            epochs: 3,
            learning_rate: 0.001,
            batch_size: 8,
        }
    }

    #[test]
    fn placeholders_expand_for_azure_and_for_a_local_process() {
        let c = ContainerCommand::parse(
            "python3 -m monai.bundle run --config_file {assets}/configs/train.json \
             --ckpt {base_model} --output_dir={outputs} --epochs {epochs} --lr {learning_rate} \
             --batch {batch_size} --seed {seed}",
        )
        .unwrap();
        assert!(c.uses("base_model") && !c.uses("nothing"));
        assert_eq!(
            c.azure_line(Some("models/model.pt"), &hyper(), 7),
            "python3 -m monai.bundle run --config_file ${{inputs.assets}}/configs/train.json \
             --ckpt ${{inputs.assets}}/models/model.pt --output_dir=${{outputs.model}} --epochs 3 \
             --lr 0.001 --batch 8 --seed 7"
        );
        let argv = c.argv(&Values {
            assets: "/data/a b".into(),
            outputs: "/out".into(),
            base_model: Some("m.pt"),
            hyper: &hyper(),
            seed: 1,
        });
        // A path with a space stays one argument: no shell splits it locally.
        assert_eq!(argv[5], OsString::from("/data/a b/configs/train.json"));
        assert_eq!(argv[7], OsString::from("/data/a b/m.pt"));
        assert_eq!(argv[8], OsString::from("--output_dir=/out"));
    }

    #[test]
    fn metacharacters_unknown_and_repeated_placeholders_are_refused() {
        for (command, needle) in [
            ("train.sh {outputs}; rm -rf /", "';'"),
            ("train.sh {outputs} | tee log", "'|'"),
            ("train.sh {outputs} > log", "'>'"),
            ("train.sh $(id) {outputs}", "'$'"),
            ("train.sh `id` {outputs}", "'`'"),
            ("train.sh '{outputs}'", "'''"),
            ("train.sh {outputs} &", "'&'"),
            ("train.sh *.pt {outputs}", "'*'"),
            ("train.sh {outputs}\nid", "'\\n'"),
            ("train.sh {outputs} {data}", "unknown placeholder {data}"),
            ("train.sh {outputs} {outputs}", "more than once"),
            ("train.sh {outputs", "opens no placeholder"),
            ("train.sh --epochs {epochs}", "must pass {outputs}"),
            ("{outputs}/run", "must start with a program"),
            ("", "empty"),
        ] {
            let e = ContainerCommand::parse(command).unwrap_err();
            assert!(e.contains(needle), "{command:?}: {e}");
        }
        assert!(
            ContainerCommand::parse(&format!("a {{outputs}} {}", "x".repeat(5000)))
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn eval_json_must_be_small_finite_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("eval.json");
        assert!(read_eval_json(&p).unwrap_err().contains("no eval.json"));
        std::fs::write(
            &p,
            r#"{"averagePrecisionBefore": 0.7, "averagePrecisionAfter": 0.9}"#,
        )
        .unwrap();
        assert_eq!(
            read_eval_json(&p).unwrap(),
            Reported {
                before: 0.7,
                after: 0.9
            }
        );
        for (text, needle) in [
            (
                r#"{"averagePrecisionBefore": NaN, "averagePrecisionAfter": 0.9}"#.to_string(),
                "NaN",
            ),
            (
                r#"{"averagePrecisionBefore": 0.5}"#.to_string(),
                "averagePrecisionAfter is missing",
            ),
            (
                r#"{"averagePrecisionBefore": 2, "averagePrecisionAfter": 0.9}"#.to_string(),
                "[0, 1]",
            ),
            (
                r#"{"averagePrecisionBefore": "NaN", "averagePrecisionAfter": 0.9}"#.to_string(),
                "not a number",
            ),
            ("[1, 2]".to_string(), "missing"),
            (
                format!("{{\"pad\": \"{}\"}}", "x".repeat(10 << 20)),
                "bytes",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read_eval_json(&p).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
