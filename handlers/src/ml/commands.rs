//! The `ml-commands` topic's commands: versioned JSON bodies routed by Subject, with defaults
//! and validation that names what to fix. Every command carries `commandId` (the idempotency
//! key) and `schemaVersion` (1).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socwire_trainer::HyperParameters;

/// The only schema version this handler reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The topic commands travel on.
pub const TOPIC: &str = "ml-commands";
/// Most assets one fine-tune may stage.
pub const MAX_ASSETS: usize = 16;

/// The Subjects routed on `ml-commands`.
pub const SUBJECTS: &[&str] = &[
    "ProvisionGpuCluster",
    "RunFineTune",
    "ExportModel",
    "CancelJob",
];

/// A GPU VM family Azure ML can run AmlCompute on, with its sizes.
pub struct GpuFamily {
    /// Family name as Azure documents it.
    pub family: &'static str,
    /// The GPU it carries.
    pub gpu: &'static str,
    /// The GPU's CUDA compute capability × 10 (70 = 7.0).
    pub compute_capability: u32,
    /// VM sizes (without the `Standard_` prefix).
    pub sizes: &'static [&'static str],
}

/// The lowest compute capability socwire's own trainer image builds for. candle-kernels 0.9.2
/// (the candle the trainer uses) compiles bf16 WMMA kernels unconditionally, which nvcc
/// refuses below 8.0 (candle issues #3366 and #3793; the guard arrived in candle 0.10, which
/// also pulls `tokenizers`): the image cannot be built for V100 (7.0) or T4 (7.5). Those
/// clusters run `trainer: "container"` jobs (an NGC PyTorch, MONAI or Clara image).
pub const MIN_SOCWIRE_TRAINER_CAPABILITY: u32 = 80;

impl GpuFamily {
    /// True when socwire's trainer image can run on this family's GPU.
    pub fn runs_socwire_trainer(&self) -> bool {
        self.compute_capability >= MIN_SOCWIRE_TRAINER_CAPABILITY
    }
}

/// The family of a GPU VM size (any spelling accepted by [`gpu_vm_size`]).
pub fn gpu_family(vm_size: &str) -> Option<&'static GpuFamily> {
    let canonical = gpu_vm_size(vm_size).ok()?;
    let bare = canonical.strip_prefix("Standard_")?;
    GPU_FAMILIES.iter().find(|f| f.sizes.contains(&bare))
}

/// Why socwire's trainer cannot run on a cluster of `vm_size`, if it cannot.
pub fn socwire_trainer_refusal(vm_size: &str) -> Option<String> {
    let family = gpu_family(vm_size)?;
    if family.runs_socwire_trainer() {
        return None;
    }
    let supported: Vec<&str> = GPU_FAMILIES
        .iter()
        .filter(|f| f.runs_socwire_trainer())
        .map(|f| f.family)
        .collect();
    Some(format!(
        "socwire's trainer image cannot run on {vm_size} ({} {}, compute capability {}.{}): its CUDA build needs          compute capability 8.0 or newer (candle-kernels 0.9.2 cannot compile for older GPUs). Use a cluster of {}          or run the job with \"trainer\": \"container\" and an NGC image",
        family.family,
        family.gpu,
        family.compute_capability / 10,
        family.compute_capability % 10,
        supported.join(", ")
    ))
}

/// Every GPU family accepted for `vmSize` (a list, not a pattern: a size outside it is refused
/// with the families named, so a typo never reaches ARM as a quota or SKU error). Compute
/// capabilities from NVIDIA's CUDA GPU list.
pub const GPU_FAMILIES: &[GpuFamily] = &[
    GpuFamily {
        family: "NC",
        gpu: "K80 (retired)",
        compute_capability: 37,
        sizes: &["NC6", "NC12", "NC24", "NC24r"],
    },
    GpuFamily {
        family: "NCv2",
        gpu: "P100",
        compute_capability: 60,
        sizes: &["NC6s_v2", "NC12s_v2", "NC24s_v2", "NC24rs_v2"],
    },
    GpuFamily {
        family: "NCv3",
        gpu: "V100",
        compute_capability: 70,
        sizes: &["NC6s_v3", "NC12s_v3", "NC24s_v3", "NC24rs_v3"],
    },
    GpuFamily {
        family: "NCasT4_v3",
        gpu: "T4",
        compute_capability: 75,
        sizes: &["NC4as_T4_v3", "NC8as_T4_v3", "NC16as_T4_v3", "NC64as_T4_v3"],
    },
    GpuFamily {
        family: "NCads_A100_v4",
        gpu: "A100 PCIe",
        compute_capability: 80,
        sizes: &["NC24ads_A100_v4", "NC48ads_A100_v4", "NC96ads_A100_v4"],
    },
    GpuFamily {
        family: "NCadsH100_v5",
        gpu: "H100 NVL",
        compute_capability: 90,
        sizes: &["NC40ads_H100_v5", "NC80adis_H100_v5"],
    },
    GpuFamily {
        family: "ND",
        gpu: "P40",
        compute_capability: 61,
        sizes: &["ND6s", "ND12s", "ND24s", "ND24rs"],
    },
    GpuFamily {
        family: "NDv2",
        gpu: "V100 NVLink",
        compute_capability: 70,
        sizes: &["ND40rs_v2"],
    },
    GpuFamily {
        family: "ND A100 v4",
        gpu: "A100 SXM",
        compute_capability: 80,
        sizes: &["ND96asr_v4", "ND96amsr_A100_v4"],
    },
    GpuFamily {
        family: "ND H100 v5",
        gpu: "H100 SXM",
        compute_capability: 90,
        sizes: &["ND96isr_H100_v5"],
    },
    GpuFamily {
        family: "NV",
        gpu: "M60 (retired)",
        compute_capability: 52,
        sizes: &["NV6", "NV12", "NV24"],
    },
    GpuFamily {
        family: "NVv3",
        gpu: "M60",
        compute_capability: 52,
        sizes: &["NV12s_v3", "NV24s_v3", "NV48s_v3"],
    },
    GpuFamily {
        family: "NVadsA10_v5",
        gpu: "A10",
        compute_capability: 86,
        sizes: &[
            "NV6ads_A10_v5",
            "NV12ads_A10_v5",
            "NV18ads_A10_v5",
            "NV36ads_A10_v5",
            "NV36adms_A10_v5",
            "NV72ads_A10_v5",
        ],
    },
];

/// The canonical `Standard_…` spelling of a GPU VM size, or a reason naming the families.
pub fn gpu_vm_size(text: &str) -> Result<String, String> {
    let bare = text.trim();
    let bare = bare
        .strip_prefix("Standard_")
        .or_else(|| bare.strip_prefix("standard_"))
        .or_else(|| bare.strip_prefix("STANDARD_"))
        .unwrap_or(bare);
    for f in GPU_FAMILIES {
        if let Some(size) = f.sizes.iter().find(|s| s.eq_ignore_ascii_case(bare)) {
            return Ok(format!("Standard_{size}"));
        }
    }
    let families: Vec<String> = GPU_FAMILIES
        .iter()
        .map(|f| format!("{} ({}, e.g. Standard_{})", f.family, f.gpu, f.sizes[0]))
        .collect();
    Err(format!(
        "vmSize {:?} is not a GPU VM size Azure ML can use; choose one of these families: {}",
        socwire_common::text::for_log(text, 64),
        families.join("; ")
    ))
}

/// Node priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Priority {
    /// Dedicated nodes.
    #[default]
    Dedicated,
    /// Low-priority (spot) nodes: cheaper, preemptible.
    LowPriority,
}

/// Which trainer a fine-tune runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trainer {
    /// socwire's own trainer (`socwire ml fine-tune` in the job image built from
    /// `infra/job-image/Dockerfile`).
    #[default]
    Socwire,
    /// The container's own training entry (`image` + `command`), see [`super::container`].
    Container,
}

impl Trainer {
    /// The spelling commands and tags use.
    pub fn as_str(self) -> &'static str {
        match self {
            Trainer::Socwire => "socwire",
            Trainer::Container => "container",
        }
    }
}

/// One asset to stage: an NGC catalogue URL (or an allow-listed `file://` URL offline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Asset {
    /// Where to fetch it.
    pub url: String,
    /// Expected sha-256 (hex) of the downloaded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Internal: marks a message as a follow-up a function scheduled for itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowUp {
    /// Which check.
    pub kind: FollowUpKind,
    /// 1, 2, … (part of the MessageId).
    pub attempt: u32,
    /// The operation to poll, when the service gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When the first attempt was made (unix ms), for the deadline.
    pub started_ms: i64,
    /// The job being watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The job was seen finished: one last round so its status event is out, then stop.
    #[serde(default)]
    pub last: bool,
}

/// Follow-up kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FollowUpKind {
    /// Poll a cluster's provisioning.
    ProvisionPoll,
    /// Watch a submitted job for its queue deadline.
    JobWatch,
    /// Wait for the cluster a fine-tune names to be ready.
    ClusterWait,
}

/// The fine-tune part shared by `RunFineTune` and the `pipeline` option.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FineTuneSpec {
    /// Registered model name to produce.
    pub model: String,
    /// NGC assets (a base model archive first).
    pub assets: Vec<Asset>,
    /// Training settings.
    #[serde(default)]
    pub hyper_parameters: HyperParameters,
    /// Path of the base model inside the staged assets (default: the first `*.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Container image of the environment (default: the `SOCWIRE_ML_IMAGE` setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Data seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Minutes a job may stay Queued/Preparing before it is cancelled.
    #[serde(default = "default_queue_deadline")]
    pub queue_deadline_minutes: u32,
    /// Send `ExportModel` when the job completes.
    #[serde(default = "yes")]
    pub auto_export: bool,
    /// `socwire` (default) or `container`.
    #[serde(default)]
    pub trainer: Trainer,
    /// The container's training entry with placeholders (`trainer: "container"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Where a container job's AP comes from: `evalJson` (default) or `mlflow`.
    #[serde(default)]
    pub evaluation: super::container::Evaluation,
    /// Stage assets that carry no sha256 (each is reported as unverified).
    #[serde(default)]
    pub allow_unverified: bool,
}

fn default_seed() -> u64 {
    42
}
fn default_queue_deadline() -> u32 {
    60
}
fn yes() -> bool {
    true
}
fn default_max_nodes() -> u32 {
    1
}
fn default_idle() -> u64 {
    300
}
fn default_provision_deadline() -> u32 {
    30
}

/// `ProvisionGpuCluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionGpuCluster {
    /// Idempotency key.
    pub command_id: String,
    /// Always 1.
    pub schema_version: u32,
    /// Compute name.
    pub cluster_name: String,
    /// GPU VM size.
    pub vm_size: String,
    /// Nodes kept when idle (default 0).
    #[serde(default)]
    pub min_nodes: u32,
    /// Most nodes (default 1).
    #[serde(default = "default_max_nodes")]
    pub max_nodes: u32,
    /// Dedicated (default) or LowPriority.
    #[serde(default)]
    pub priority: Priority,
    /// Idle seconds before scale-down (default 300).
    #[serde(default = "default_idle")]
    pub idle_seconds_before_scale_down: u64,
    /// Minutes provisioning may take before it counts as failed (default 30).
    #[serde(default = "default_provision_deadline")]
    pub deadline_minutes: u32,
    /// When set: once the cluster is ready, run this fine-tune on it (then export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<FineTuneSpec>,
    /// Internal (scheduled follow-ups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
}

/// `RunFineTune`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFineTune {
    /// Idempotency key.
    pub command_id: String,
    /// Always 1.
    pub schema_version: u32,
    /// Compute to run on.
    pub cluster_name: String,
    /// What to train.
    #[serde(flatten)]
    pub spec: FineTuneSpec,
    /// The `ProvisionGpuCluster` command this came from, for lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_command_id: Option<String>,
    /// Internal (scheduled follow-ups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
}

/// `ExportModel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportModel {
    /// Idempotency key.
    pub command_id: String,
    /// Always 1.
    pub schema_version: u32,
    /// The completed job.
    pub job_id: String,
    /// Model name (default: the job's `model` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
}

/// `CancelJob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelJob {
    /// Idempotency key.
    pub command_id: String,
    /// Always 1.
    pub schema_version: u32,
    /// The job to stop.
    pub job_id: String,
    /// Why (logged and kept with the job's failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Checks a model name against Azure ML's pattern for model containers,
/// `^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$` (Microsoft.MachineLearningServices 2025-12-01,
/// `ModelVersions_CreateOrUpdate`): a name ARM would refuse is refused here, before any GPU
/// time is spent.
pub fn check_model_name(field: &str, value: &str) -> Result<(), String> {
    let ok = (1..=255).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} {:?} is not a model name Azure ML accepts: 1 to 255 characters, a letter or digit first, \
             then letters, digits, '-' or '_' (no '.')",
            socwire_common::text::for_log(value, 64)
        ))
    }
}

/// Checks a name Azure uses in a URL path (compute, job).
fn check_name(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let ok = (min..=max).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} {:?} must be {min} to {max} characters: a letter, then letters, digits, '-', '_' or '.'",
            socwire_common::text::for_log(value, 64)
        ))
    }
}

fn check_command_id(id: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err("commandId must be 1 to 128 characters of letters, digits, '-', '_', '.' or ':'".into())
    }
}

/// Parses a body: a JSON object with `commandId` and `schemaVersion` 1, then the typed fields.
fn parse<T: DeserializeOwned>(subject: &str, body: &str) -> Result<T, String> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| format!("{subject}: the body is not JSON ({e}); send a JSON object"))?;
    let Some(object) = value.as_object() else {
        return Err(format!("{subject}: the body must be a JSON object"));
    };
    match object.get("commandId") {
        Some(Value::String(id)) => check_command_id(id).map_err(|e| format!("{subject}: {e}"))?,
        _ => {
            return Err(format!(
                "{subject}: commandId (a string, the idempotency key) is required"
            ))
        }
    }
    match object.get("schemaVersion").and_then(Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "{subject}: schemaVersion {v} is not supported; this handler reads schemaVersion {SCHEMA_VERSION}"
            ))
        }
        None => {
            return Err(format!(
                "{subject}: schemaVersion is required (set it to {SCHEMA_VERSION})"
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| format!("{subject}: {e}"))
}

fn range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<(), String> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(format!("{field} must be between {lo} and {hi} (got {v})"))
    }
}

impl FineTuneSpec {
    /// Validates the fine-tune fields.
    pub fn validate(&self) -> Result<(), String> {
        check_model_name("model", &self.model)?;
        if self.assets.is_empty() || self.assets.len() > MAX_ASSETS {
            return Err(format!(
                "assets must list 1 to {MAX_ASSETS} assets (got {})",
                self.assets.len()
            ));
        }
        for (i, a) in self.assets.iter().enumerate() {
            let url = url::Url::parse(&a.url)
                .map_err(|e| format!("assets[{i}].url is not a URL: {e}"))?;
            if !matches!(url.scheme(), "https" | "http" | "file") {
                return Err(format!(
                    "assets[{i}].url must be https:// (NGC) or file:// (an allow-listed local folder)"
                ));
            }
            match &a.sha256 {
                Some(sha) if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) => {
                    return Err(format!("assets[{i}].sha256 must be 64 hexadecimal digits"));
                }
                Some(_) => {}
                None if self.allow_unverified => {}
                None => {
                    return Err(format!(
                        "assets[{i}].sha256 is required (the download is checked against it); \
                         set \"allowUnverified\": true to stage assets without one, reported as unverified"
                    ))
                }
            }
        }
        if let Some(base) = &self.base_model {
            if base.starts_with('/') || base.split(['/', '\\']).any(|p| p == "..") {
                return Err("baseModel must be a relative path inside the staged assets".into());
            }
        }
        match self.trainer {
            Trainer::Socwire => {
                if self.command.is_some() {
                    return Err(
                        "command is for \"trainer\": \"container\"; socwire's trainer takes none"
                            .into(),
                    );
                }
                if self.evaluation != super::container::Evaluation::EvalJson {
                    return Err("evaluation is for \"trainer\": \"container\"; socwire's trainer writes result.json".into());
                }
            }
            Trainer::Container => {
                if self.image.is_none() {
                    return Err("trainer \"container\" needs image: the container (NGC Clara, MONAI, PyTorch, …) whose training entry runs".into());
                }
                let command = self.command.as_deref().ok_or(
                    "trainer \"container\" needs command: the container's training entry, with placeholders such as {assets} and {outputs}",
                )?;
                let parsed = super::container::ContainerCommand::parse(command)?;
                match &self.base_model {
                    Some(base) => {
                        if let Some(bad) = super::container::unsafe_text(base) {
                            return Err(format!("baseModel: {bad} is not allowed in a path a container command receives"));
                        }
                    }
                    None if parsed.uses("base_model") => {
                        return Err("command uses {base_model}: set baseModel, its path inside the staged assets".into())
                    }
                    None => {}
                }
            }
        }
        let h = &self.hyper_parameters;
        range("hyperParameters.epochs", h.epochs, 1, 1000)?;
        range("hyperParameters.batchSize", h.batch_size, 1, 65_536)?;
        if !(h.learning_rate > 0.0 && h.learning_rate <= 10.0) {
            return Err(format!(
                "hyperParameters.learningRate must be > 0 and ≤ 10 (got {})",
                h.learning_rate
            ));
        }
        range(
            "queueDeadlineMinutes",
            self.queue_deadline_minutes,
            1,
            10_080,
        )?;
        Ok(())
    }
}

impl ProvisionGpuCluster {
    /// Parses and validates; the VM size comes back canonical.
    pub fn parse(body: &str) -> Result<Self, String> {
        let mut c: Self = parse("ProvisionGpuCluster", body)?;
        let at = |e: String| format!("ProvisionGpuCluster: {e}");
        check_name("clusterName", &c.cluster_name, 2, 32).map_err(at)?;
        c.vm_size = gpu_vm_size(&c.vm_size).map_err(at)?;
        range("maxNodes", c.max_nodes, 1, 100).map_err(at)?;
        if c.min_nodes > c.max_nodes {
            return Err(at(format!(
                "minNodes ({}) must not exceed maxNodes ({})",
                c.min_nodes, c.max_nodes
            )));
        }
        range(
            "idleSecondsBeforeScaleDown",
            c.idle_seconds_before_scale_down,
            60,
            86_400,
        )
        .map_err(at)?;
        range("deadlineMinutes", c.deadline_minutes, 1, 1440).map_err(at)?;
        if let Some(p) = &c.pipeline {
            p.validate().map_err(|e| at(format!("pipeline: {e}")))?;
            if p.trainer == Trainer::Socwire {
                if let Some(reason) = socwire_trainer_refusal(&c.vm_size) {
                    return Err(at(format!("pipeline: {reason}")));
                }
            }
        }
        Ok(c)
    }
}

impl RunFineTune {
    /// Parses and validates.
    pub fn parse(body: &str) -> Result<Self, String> {
        let c: Self = parse("RunFineTune", body)?;
        let at = |e: String| format!("RunFineTune: {e}");
        check_name("clusterName", &c.cluster_name, 2, 32).map_err(at)?;
        c.spec.validate().map_err(at)?;
        Ok(c)
    }
}

impl ExportModel {
    /// Parses and validates.
    pub fn parse(body: &str) -> Result<Self, String> {
        let c: Self = parse("ExportModel", body)?;
        check_name("jobId", &c.job_id, 1, 255).map_err(|e| format!("ExportModel: {e}"))?;
        if let Some(m) = &c.model_name {
            check_model_name("modelName", m).map_err(|e| format!("ExportModel: {e}"))?;
        }
        Ok(c)
    }
}

impl CancelJob {
    /// Parses and validates.
    pub fn parse(body: &str) -> Result<Self, String> {
        let c: Self = parse("CancelJob", body)?;
        check_name("jobId", &c.job_id, 1, 255).map_err(|e| format!("CancelJob: {e}"))?;
        Ok(c)
    }
}

/// Refuses a message that reached a function under another Subject.
pub fn expect_subject(expected: &str, subject: Option<&str>) -> Result<(), String> {
    match subject {
        Some(s) if s == expected => Ok(()),
        Some(s) => Err(format!(
            "Subject {:?} is not {expected}; ml-commands routes by Subject: {}",
            socwire_common::text::for_log(s, 64),
            SUBJECTS.join(", ")
        )),
        None => Err(format!(
            "the message has no Subject; set it to one of {}",
            SUBJECTS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provision(extra: &str) -> String {
        format!(
            r#"{{"commandId":"c-1","schemaVersion":1,"clusterName":"gpu-a","vmSize":"standard_nc6s_v3"{extra}}}"#
        )
    }

    #[test]
    fn defaults_fill_in_and_the_vm_size_is_canonical() {
        let c = ProvisionGpuCluster::parse(&provision("")).unwrap();
        assert_eq!(c.vm_size, "Standard_NC6s_v3");
        assert_eq!((c.min_nodes, c.max_nodes), (0, 1));
        assert_eq!(c.priority, Priority::Dedicated);
        assert_eq!(c.idle_seconds_before_scale_down, 300);
    }

    #[test]
    fn every_listed_family_is_accepted_and_cpu_sizes_are_refused_with_the_families() {
        for f in GPU_FAMILIES {
            for s in f.sizes {
                assert_eq!(
                    gpu_vm_size(&format!("Standard_{s}")).unwrap(),
                    format!("Standard_{s}")
                );
            }
        }
        let e = gpu_vm_size("Standard_D4s_v3").unwrap_err();
        assert!(e.contains("NCasT4_v3") && e.contains("ND H100 v5"), "{e}");
        assert!(gpu_vm_size("Standard_NC6s_v9").is_err());
    }

    #[test]
    fn invalid_commands_say_what_to_fix() {
        let cases = [
            (r#"{"schemaVersion":1}"#.to_string(), "commandId"),
            (
                r#"{"commandId":"c","schemaVersion":2}"#.to_string(),
                "schemaVersion 2",
            ),
            (
                r#"{"commandId":"c"}"#.to_string(),
                "schemaVersion is required",
            ),
            ("not json".to_string(), "not JSON"),
            (
                provision(r#","minNodes":3,"maxNodes":2"#),
                "must not exceed",
            ),
            (provision(r#","priority":"Spot""#), "Spot"),
            (provision(r#","vmSize2":1"#), "unknown field"),
            (provision(r#","maxNodes":0"#), "maxNodes"),
        ];
        for (body, needle) in cases {
            let e = ProvisionGpuCluster::parse(&body).unwrap_err();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn fine_tune_body(extra: &str) -> String {
        format!(
            r#"{{"commandId":"c","schemaVersion":1,"clusterName":"gpu-a","model":"m","assets":[{{"url":"https://api.ngc.nvidia.com/v2/x.zip","sha256":"{SHA}"}}]{extra}}}"#
        )
    }

    #[test]
    fn fine_tune_validation_covers_assets_and_hyper_parameters() {
        let body = |assets: &str, hyper: &str| {
            format!(
                r#"{{"commandId":"c","schemaVersion":1,"clusterName":"gpu-a","model":"m","assets":{assets},"hyperParameters":{hyper}}}"#
            )
        };
        let ok = RunFineTune::parse(&fine_tune_body(r#","hyperParameters":{"epochs":2}"#)).unwrap();
        assert_eq!(ok.spec.hyper_parameters.epochs, 2);
        assert_eq!(
            ok.spec.hyper_parameters.batch_size,
            HyperParameters::default().batch_size
        );
        assert!(ok.spec.auto_export && !ok.spec.allow_unverified);
        assert_eq!(ok.spec.trainer, Trainer::Socwire);
        let sha = format!(r#""sha256":"{SHA}""#);
        let cases = [
            (body("[]", "{}"), "1 to 16"),
            (body(r#"[{"url":"ftp://x/y"}]"#, "{}"), "https://"),
            (
                body(r#"[{"url":"https://a/b","sha256":"abc"}]"#, "{}"),
                "64 hexadecimal",
            ),
            (
                body(
                    &format!(r#"[{{"url":"https://a/b",{sha}}}]"#),
                    r#"{"learningRate":0}"#,
                ),
                "learningRate",
            ),
            (
                body(
                    &format!(r#"[{{"url":"https://a/b",{sha}}}]"#),
                    r#"{"epochs":0}"#,
                ),
                "epochs",
            ),
            (body(r#"[{"url":"https://a/b"}]"#, "{}"), "allowUnverified"),
        ];
        for (b, needle) in cases {
            let e = RunFineTune::parse(&b).unwrap_err();
            assert!(e.contains(needle), "{b}: {e}");
        }
        // Without sha256, only when the command says so.
        let unverified = r#"{"commandId":"c","schemaVersion":1,"clusterName":"gpu-a","model":"m","allowUnverified":true,"assets":[{"url":"https://a/b"}]}"#;
        assert!(
            RunFineTune::parse(unverified)
                .unwrap()
                .spec
                .allow_unverified
        );
    }

    /// Model names follow Azure ML's pattern at command time, not after the GPU run.
    #[test]
    fn model_names_are_checked_against_azure_mls_pattern() {
        for good in ["clara-covid-ct", "m", "3d_ct", &"a".repeat(255)] {
            assert!(check_model_name("model", good).is_ok(), "{good}");
        }
        for bad in [
            "clara.covid",
            "-ct",
            "_ct",
            "ct ",
            "ct/1",
            "",
            &"a".repeat(256),
        ] {
            assert!(check_model_name("model", bad).is_err(), "{bad}");
        }
        let e =
            RunFineTune::parse(&fine_tune_body("").replace(r#""model":"m""#, r#""model":"ct.v2""#))
                .unwrap_err();
        assert!(e.contains("no '.'"), "{e}");
        let e = ExportModel::parse(
            r#"{"commandId":"c","schemaVersion":1,"jobId":"j","modelName":"a.b"}"#,
        )
        .unwrap_err();
        assert!(e.contains("modelName"), "{e}");
    }

    #[test]
    fn container_fine_tunes_need_an_image_and_a_safe_command() {
        let container = |extra: &str| fine_tune_body(&format!(r#","trainer":"container"{extra}"#));
        let ok = RunFineTune::parse(&container(
            r#","image":"nvcr.io/nvidia/clara-train-sdk:v4.1","command":"python3 train.py --out {outputs} --epochs {epochs}","evaluation":"mlflow""#,
        ))
        .unwrap();
        assert_eq!(ok.spec.trainer, Trainer::Container);
        assert_eq!(
            ok.spec.evaluation,
            super::super::container::Evaluation::Mlflow
        );
        for (extra, needle) in [
            (r#","command":"train {outputs}""#.to_string(), "needs image"),
            (r#","image":"i""#.to_string(), "needs command"),
            (
                r#","image":"i","command":"train {outputs} && curl x""#.to_string(),
                "'&'",
            ),
            (
                r#","image":"i","command":"train {outputs} {ckpt}""#.to_string(),
                "unknown placeholder",
            ),
            (
                r#","image":"i","command":"train {outputs} {seed} {seed}""#.to_string(),
                "more than once",
            ),
            (
                r#","image":"i","command":"train --ckpt {base_model} {outputs}""#.to_string(),
                "set baseModel",
            ),
            (
                r#","image":"i","command":"train {outputs}","baseModel":"a b.pt""#.to_string(),
                "baseModel",
            ),
        ] {
            let e = RunFineTune::parse(&container(&extra)).unwrap_err();
            assert!(e.contains(needle), "{extra}: {e}");
        }
        let e = RunFineTune::parse(&fine_tune_body(r#","command":"train {outputs}""#)).unwrap_err();
        assert!(e.contains("trainer"), "{e}");
    }

    /// socwire's trainer image needs compute capability 8.0: a T4 or V100 pipeline with it is
    /// refused at once; a container pipeline on the same cluster is fine.
    #[test]
    fn the_socwire_trainer_is_refused_on_gpus_its_image_cannot_build_for() {
        assert!(socwire_trainer_refusal("Standard_NC24ads_A100_v4").is_none());
        assert!(socwire_trainer_refusal("STANDARD_NC40ADS_H100_V5").is_none());
        for size in [
            "Standard_NC6s_v3",
            "standard_nc4as_t4_v3",
            "Standard_ND40rs_v2",
        ] {
            let e = socwire_trainer_refusal(size).unwrap();
            assert!(
                e.contains("compute capability 7.") && e.contains("container"),
                "{e}"
            );
        }
        let pipeline = |vm: &str, trainer: &str| {
            format!(
                r#"{{"commandId":"p","schemaVersion":1,"clusterName":"gpu-a","vmSize":"{vm}","pipeline":{{"model":"m","trainer":"{trainer}","image":"nvcr.io/x","command":"train {{outputs}}","assets":[{{"url":"https://a/b","sha256":"{SHA}"}}]}}}}"#
            )
        };
        let e = ProvisionGpuCluster::parse(
            &pipeline("Standard_NC4as_T4_v3", "socwire")
                .replace(r#","image":"nvcr.io/x","command":"train {outputs}""#, ""),
        )
        .unwrap_err();
        assert!(e.contains("compute capability 7.5"), "{e}");
        assert!(ProvisionGpuCluster::parse(&pipeline("Standard_NC4as_T4_v3", "container")).is_ok());
        for f in GPU_FAMILIES {
            assert!((30..=120).contains(&f.compute_capability), "{}", f.family);
        }
    }

    /// The job image stops at the same compute capability the commands refuse below.
    #[test]
    fn the_job_image_refuses_the_same_compute_capabilities() {
        let dockerfile = include_str!("../../../infra/job-image/Dockerfile");
        assert!(
            dockerfile.contains(&format!(
                "\"${{CUDA_COMPUTE_CAP}}\" -lt {MIN_SOCWIRE_TRAINER_CAPABILITY} ]"
            )),
            "infra/job-image/Dockerfile must refuse CUDA_COMPUTE_CAP below {MIN_SOCWIRE_TRAINER_CAPABILITY}"
        );
    }

    #[test]
    fn subjects_are_checked() {
        assert!(expect_subject("RunFineTune", Some("RunFineTune")).is_ok());
        assert!(expect_subject("RunFineTune", Some("Train"))
            .unwrap_err()
            .contains("ProvisionGpuCluster"));
        assert!(expect_subject("RunFineTune", None).is_err());
    }
}
