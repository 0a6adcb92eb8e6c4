//! What every network's `predict` returns, in one place for all of them.

/// Predictions for a set of images, one label per image. The FF nets fill
/// every field; the others fill `overall` (and `per_layer` where their
/// blocks predict).
#[derive(Clone, Debug, Default)]
pub struct Predictions {
    /// By the configured method (A or B).
    pub overall: Vec<u8>,
    /// Method A with each layer's goodness alone.
    pub per_layer: Vec<Vec<u8>>,
    /// Method A (goodness summed over layers ≥ skip_layers).
    pub goodness: Vec<u8>,
    /// Method B, when the network has a readout.
    pub readout: Option<Vec<u8>>,
}
