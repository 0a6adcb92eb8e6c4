//! Configuration of FF networks (serde: TOML in configs/, JSON in checkpoints).

use serde::{Deserialize, Serialize};

/// Length normalisation of each layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    /// x / (√mean(x²) + ε) (default)
    #[default]
    Rms,
    /// x / (‖x‖₂ + ε)
    L2,
    None,
}

impl From<NormKind> for ffwd_kernels::Norm {
    fn from(n: NormKind) -> Self {
        match n {
            NormKind::Rms => ffwd_kernels::Norm::Rms,
            NormKind::L2 => ffwd_kernels::Norm::L2,
            NormKind::None => ffwd_kernels::Norm::None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Hinton: softplus(θ − G⁺) + softplus(G⁻ − θ)
    #[default]
    Threshold,
    /// SymBa: softplus(−α (G⁺ − G⁻))
    Symba,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GoodnessKind {
    /// G = Σ h²
    #[default]
    Sum,
    /// G = Σ h² / D
    Mean,
}

/// How the label enters the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// Overwrite the first `classes` pixels with the one-hot label (Hinton).
    #[default]
    Overwrite,
    /// Prepend `classes` label inputs to the image (for small images whose
    /// first pixels carry content, such as the 8×8 digits).
    Concat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimKind {
    #[default]
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub kind: OptimKind,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Weight decay of the biases and batch-norm γ, β (absent: as
    /// `weight_decay`; Hinton's recipe decays the weights only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_weight_decay: Option<f32>,
    pub momentum: f32,
    pub nesterov: bool,
}

impl OptimConfig {
    /// The optimiser of the biases and batch-norm parameters.
    pub fn for_biases(&self) -> Self {
        Self { weight_decay: self.bias_weight_decay.unwrap_or(self.weight_decay), ..self.clone() }
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimKind::Adam,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            bias_weight_decay: None,
            momentum: 0.9,
            nesterov: false,
        }
    }
}

/// Which prediction the network reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PredictKind {
    /// A: goodness accumulated over layers for every candidate label.
    #[default]
    Goodness,
    /// B: one pass with a neutral label and a linear softmax readout.
    Readout,
    /// A and B together: per image, each layer's goodness of the candidate
    /// labels and the readout's logits, each standardised over the
    /// candidates (as [`Combine::Standardized`] does, whatever `combine`
    /// says), summed over the layers of A and the readout; the first
    /// maximum wins. Needs the readout.
    Ensemble,
}

/// How prediction A adds up the layers' goodness of a candidate label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// The goodness itself, summed over the layers (Hinton).
    #[default]
    Sum,
    /// Per image and layer, the goodness of each candidate label minus
    /// its mean over the candidates, divided by their standard deviation
    /// (a layer whose candidates all score alike adds nothing); summed
    /// over the layers, so that every layer has the same say whatever the
    /// scale of its goodness.
    Standardized,
}

/// How the MLP learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MlpTraining {
    /// Forward-Forward: each layer by its own goodness loss.
    #[default]
    Local,
    /// The same net and the same per-layer goodness losses, their sum
    /// trained end to end by backprop (the SSL paper's ablation).
    GoodnessBackprop,
    /// Backprop with a linear softmax head and cross-entropy on the label,
    /// the image fed without a label (`crate::backprop::BpMlp`).
    CrossEntropy,
}

/// A supervised FF network (Hinton 2022, §3.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FfConfig {
    /// FF (default) or one of the backprop baselines on the same layers.
    pub training: MlpTraining,
    /// Hidden layer widths.
    pub sizes: Vec<usize>,
    pub norm: NormKind,
    /// ε of the normalisation.
    pub norm_eps: f32,
    pub loss: LossKind,
    pub goodness: GoodnessKind,
    /// Threshold θ; absent = the layer width (sum form) or 1 (mean form),
    /// the natural value for RMS-normalised inputs.
    pub theta: Option<f32>,
    /// SymBa's α.
    pub alpha: f32,
    pub label: LabelMode,
    /// Number of first layers left out of prediction (A and B). Absent:
    /// Hinton's 1 for nets of 3 or more layers, 0 for 1 or 2 layers (whose
    /// first layer is half the net or all of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_layers: Option<usize>,
    pub predict: PredictKind,
    /// How prediction A adds the layers' goodness (default: summed).
    #[serde(skip_serializing_if = "is_sum")]
    pub combine: Combine,
    /// Train the linear readout (prediction B) beside prediction by
    /// goodness, to report both or to draw hard negatives from it (the
    /// readout is always trained when `predict` is `"readout"` or
    /// `"ensemble"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readout: bool,
    pub optim: OptimConfig,
    /// The readout's optimiser (prediction B).
    pub readout_optim: OptimConfig,
    /// Peer normalisation (`[model.peer]`; absent: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerConfig>,
}

/// Peer normalisation, as in Hinton's released FF code: a running mean of
/// each unit's activity on the positive data, and a gradient term that
/// pulls every unit's mean toward the layer's mean over units (see
/// [`ffwd_kernels::LinearOps::peer_grad`] for the formula).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// The penalty's weight λ (Hinton: 0.03).
    pub lambda: f32,
    /// Momentum of the running means (Hinton: 0.9).
    pub momentum: f32,
    /// The running means' first value (Hinton: 0.5).
    pub init: f32,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self { lambda: 0.03, momentum: 0.9, init: 0.5 }
    }
}

impl PeerConfig {
    /// The settings the kernels take.
    pub fn norm(&self) -> ffwd_kernels::PeerNorm {
        ffwd_kernels::PeerNorm { lambda: self.lambda, momentum: self.momentum }
    }

    /// Check the values: λ and the first means finite and ≥ 0, the
    /// momentum in [0, 1).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(format!("model.peer.lambda must be a finite number ≥ 0, got {}", self.lambda));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("model.peer.momentum must lie in [0, 1), got {}", self.momentum));
        }
        if !(self.init.is_finite() && self.init >= 0.0) {
            return Err(format!("model.peer.init must be a finite number ≥ 0, got {}", self.init));
        }
        Ok(())
    }
}

impl Default for FfConfig {
    fn default() -> Self {
        Self {
            training: MlpTraining::Local,
            sizes: vec![1000, 1000, 1000],
            norm: NormKind::Rms,
            norm_eps: 1e-8,
            loss: LossKind::Threshold,
            goodness: GoodnessKind::Sum,
            theta: None,
            alpha: 4.0,
            label: LabelMode::Overwrite,
            skip_layers: None,
            predict: PredictKind::Goodness,
            combine: Combine::Sum,
            readout: false,
            optim: OptimConfig::default(),
            readout_optim: OptimConfig::default(),
            peer: None,
        }
    }
}

fn is_sum(c: &Combine) -> bool {
    *c == Combine::Sum
}

impl FfConfig {
    /// Whether the net trains a readout.
    pub fn has_readout(&self) -> bool {
        self.readout || self.predict != PredictKind::Goodness
    }

    /// The first layers left out of prediction (see [`FfConfig::skip_layers`]).
    pub fn skip(&self) -> usize {
        self.skip_layers.unwrap_or(if self.sizes.len() >= 3 { 1 } else { 0 })
    }

    /// Check the config for values that cannot train.
    pub fn validate(&self) -> Result<(), String> {
        if self.sizes.is_empty() {
            return Err("model.sizes: at least one hidden layer is needed".into());
        }
        if let Some(i) = self.sizes.iter().position(|&s| s == 0) {
            return Err(format!("model.sizes[{i}]: a layer needs at least one unit"));
        }
        if self.skip() >= self.sizes.len() {
            return Err(format!(
                "model.skip_layers = {} leaves no layer to predict with ({} layers)",
                self.skip(),
                self.sizes.len()
            ));
        }
        for (name, o) in [("optim", &self.optim), ("readout_optim", &self.readout_optim)] {
            if !(o.lr.is_finite() && o.lr > 0.0) {
                return Err(format!("model.{name}.lr must be a positive number, got {}", o.lr));
            }
            if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
                return Err(format!("model.{name}: beta1 and beta2 must lie in [0, 1)"));
            }
        }
        if self.training != MlpTraining::Local && self.norm == NormKind::L2 {
            return Err("model.norm = \"l2\": backprop through the L2 norm is not implemented; use rms or none".into());
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err("model.norm_eps must be ≥ 0".into());
        }
        if let Some(p) = &self.peer {
            p.validate()?;
            if self.training != MlpTraining::Local {
                return Err("model.peer: peer normalisation is a term of the layer-local FF update; \
                            model.training here backpropagates a loss instead (remove [model.peer])"
                    .into());
            }
        }
        Ok(())
    }
}
