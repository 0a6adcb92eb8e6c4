/// Errors of the layers crate; each names the layer, field, batch or
/// checkpoint tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] ffwd_kernels::Error),
    #[error(transparent)]
    Tensor(#[from] ffwd_tensor::Error),
    #[error("config: {0}")]
    Config(String),
    /// A batch (or a set of images) that does not fit the network.
    #[error("batch: {0}")]
    Batch(String),
    #[error("layer {layer}: {detail}")]
    Layer { layer: usize, detail: String },
    /// A loss that is not finite; `what` names the layer, head or probe.
    #[error("{what}: training diverged (loss is {loss}); lower the learning rate")]
    NonFinite { what: String, loss: f32 },
    #[error("checkpoint {what}: {detail}")]
    Checkpoint { what: String, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;
