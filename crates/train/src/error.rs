use std::path::PathBuf;

/// Errors of the trainer; each names the file or field involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Layers(#[from] ffwd_layers::Error),
    #[error(transparent)]
    Data(#[from] ffwd_datasets::Error),
    #[error(transparent)]
    Tensor(#[from] ffwd_tensor::Error),
    #[error(transparent)]
    Kernel(#[from] ffwd_kernels::Error),
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an ffwd checkpoint: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// The run was stopped by its `Trainer::interrupt` hook, after
    /// writing its training state into the run folder `resume`.
    #[error(
        "interrupted in epoch {epoch} after batch {batch}; the training state is saved: continue with \
         `ffwd train --resume {}`",
        resume.display()
    )]
    Interrupted { epoch: usize, batch: usize, resume: PathBuf },
    /// The device asked for cannot be used (no driver, NVRTC or device).
    #[error("train.device = \"{device}\": {reason}")]
    Device { device: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;
