/// Errors of the kernel crate: every one names the op and the shapes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("CUDA: {what}: {detail}")]
    Cuda { what: String, detail: String },
    #[error("{op}: the AVX2+FMA backend was requested but this CPU lacks avx2/fma")]
    Unsupported { op: &'static str },
    /// The system refused an allocation (sizes are checked against fixed
    /// bounds first; this is a machine with less memory than they allow).
    #[error("out of memory: the system refused {} MiB; use a smaller network or batch", bytes.div_ceil(1 << 20))]
    OutOfMemory { bytes: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn shape_err(op: &'static str, detail: impl Into<String>) -> Error {
    Error::Shape { op, detail: detail.into() }
}

/// Check that a slice has exactly `want` elements.
pub(crate) fn check_len(op: &'static str, what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(shape_err(op, format!("{what} has {got} elements, expected {want}")));
    }
    Ok(())
}
