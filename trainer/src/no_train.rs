//! The training entry points of a build without the `train` feature: each refuses with
//! [`TrainerError::NotBuilt`], so callers need no feature switches of their own.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::data::DataConfig;
use crate::{JobResult, JobSpec, Progress, TrainerError};

/// Refuses: this build cannot train.
pub fn pretrain_base_model(_seed: u64, _out: &Path) -> Result<(), TrainerError> {
    Err(TrainerError::NotBuilt)
}

/// Refuses: this build cannot train.
pub fn pretrain_base_model_with(
    _seed: u64,
    _config: &DataConfig,
    _out: &Path,
) -> Result<(), TrainerError> {
    Err(TrainerError::NotBuilt)
}

/// Refuses: this build cannot train.
pub fn fine_tune(
    _spec: &JobSpec,
    _cancel: &AtomicBool,
    _progress: &mut dyn FnMut(Progress),
) -> Result<JobResult, TrainerError> {
    Err(TrainerError::NotBuilt)
}

/// This build has no trainer.
pub fn device_name() -> String {
    "nothing: this build has no trainer".into()
}
