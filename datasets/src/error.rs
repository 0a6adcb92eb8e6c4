use std::path::PathBuf;

/// Errors of the dataset crate. Each names the file (or URL) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not found (looked for {tried}); run `ffwd data fetch {dataset}` or point --data-dir / FFWD_DATA_DIR at the folder that holds `{dataset}/`")]
    NotFound { path: PathBuf, tried: String, dataset: String },
    #[error("{path}: corrupt gzip stream: {reason}")]
    Gzip { path: PathBuf, reason: String },
    #[error("{path}: bad IDX magic number {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic { path: PathBuf, found: u32, expected: u32, what: &'static str },
    #[error("{path}: truncated: the header promises {expected} bytes, the file has {actual}")]
    Truncated { path: PathBuf, expected: usize, actual: usize },
    #[error("{path}: {extra} trailing bytes after the {expected} the header describes")]
    TrailingBytes { path: PathBuf, expected: usize, extra: usize },
    #[error("{labels}: {n_labels} labels, but {images} has {n_images} images")]
    CountMismatch { images: PathBuf, labels: PathBuf, n_images: usize, n_labels: usize },
    #[error("{path}: label {label} at index {index} is outside 0..{classes}")]
    BadLabel { path: PathBuf, index: usize, label: u8, classes: usize },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: SHA-256 {actual} does not match the expected {expected}")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("unknown dataset `{0}` (known: digits, mnist, fashion-mnist, cifar-10, svhn)")]
    UnknownDataset(String),
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;
