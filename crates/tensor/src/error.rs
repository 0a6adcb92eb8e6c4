use std::path::PathBuf;

/// Errors of the tensor crate. Each names the tensor, file or shapes involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shape {shape:?} needs {expected} elements, the buffer has {actual}")]
    ShapeMismatch { shape: Vec<usize>, expected: usize, actual: usize },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected F32")]
    WrongDType { path: PathBuf, name: String, dtype: String },
    #[error("CUDA: {what}: {detail}")]
    Cuda { what: String, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;
