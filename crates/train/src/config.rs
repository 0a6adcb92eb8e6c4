//! The run configuration: one TOML file (see configs/), every field
//! optional with a documented default, unknown fields rejected.

use crate::{Error, Result};
use ffwd_layers::config::{FfConfig, LabelMode};
use ffwd_layers::conv::ConvFfConfig;
use ffwd_layers::ffcl::FfclConfig;
use ffwd_layers::probe::ProbeConfig;
use ffwd_layers::uff::UffConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `digits` (embedded), `mnist`, `fashion-mnist`.
    pub dataset: String,
    /// Folder holding `<dataset>/` (else `--data-dir`, `$FFWD_DATA_DIR`, the cache).
    pub dir: Option<PathBuf>,
    /// Train on the first `train_size` images of the train split (0 = all
    /// not held out).
    pub train_size: usize,
    /// Hold out the last `validation` images of the train split for model
    /// selection (0 = none).
    pub validation: usize,
    /// Augmentation and normalisation (conv models).
    pub augment: AugmentConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { dataset: "digits".into(), dir: None, train_size: 0, validation: 0, augment: AugmentConfig::default() }
    }
}

/// Training-time augmentation of conv models (see
/// `ffwd_datasets::augment` for the exact arithmetic).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Zero padding of the random crop (0 = none; the Trifecta uses 4).
    pub crop_padding: usize,
    /// Maximum random rotation in degrees (0 = none; the Trifecta uses 15).
    pub rotation_deg: f32,
    /// Per-channel normalisation with the dataset's usual mean and std.
    pub normalize: bool,
    /// Input dropout: each value of a training image zeroed with this
    /// probability, the others scaled by 1/(1 − p) (0 = none).
    #[serde(skip_serializing_if = "is_zero_rate")]
    pub dropout: f32,
}

fn is_zero_rate(v: &f32) -> bool {
    *v == 0.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Every layer learns on every batch.
    #[default]
    Simultaneous,
    /// Layer 1 learns for all epochs, then layer 2 (layer 1 frozen), …
    LayerByLayer,
}

/// How the learning rate of every optimiser changes over a run (over each
/// layer's phase under the layer-by-layer schedule): constant up to the
/// fraction `train.cooldown_from` of the batches, then down toward zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The configured rate throughout.
    #[default]
    Constant,
    /// Then linearly: the factor `(1 − p) / (1 − from)` at progress p.
    Linear,
    /// Then along a half cosine: `cos²(π/2 · (p − from) / (1 − from))`.
    Cosine,
}

impl LrSchedule {
    /// The factor at batch `b` of `nb` in epoch `epoch` (0-based) of a
    /// phase of `epochs` epochs: [`LrSchedule::factor`] at `p = (epoch·nb +
    /// b) / (epochs·nb)`, the position `ffwd train` and the Python epoch
    /// loop both use.
    pub fn factor_at(self, (epoch, epochs): (usize, usize), (b, nb): (usize, usize), from: f32) -> f32 {
        self.factor((epoch * nb + b) as f64 / (epochs * nb) as f64, from)
    }

    /// The learning-rate factor of the batch that starts at progress `p`
    /// (in [0, 1)) of the phase. Computed on the host from f64 division
    /// and our own f32 polynomials, so the same on every machine and
    /// backend; exactly 1 before the cool-down.
    pub fn factor(self, p: f64, from: f32) -> f32 {
        let from = from as f64;
        if self == LrSchedule::Constant || p < from {
            return 1.0;
        }
        let u = (p - from) / (1.0 - from);
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear => (1.0 - u) as f32,
            LrSchedule::Cosine => {
                use ffwd_datasets::augment::{cos_small, sin_small};
                let t = (u * std::f64::consts::FRAC_PI_2) as f32;
                let quarter = std::f32::consts::FRAC_PI_4;
                let c = if t <= quarter { cos_small(t) } else { sin_small(std::f32::consts::FRAC_PI_2 - t) };
                c * c
            }
        }
    }
}

/// Where the FF MLP's negative labels come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Negatives {
    /// A wrong label drawn uniformly.
    #[default]
    Random,
    /// A wrong label drawn from the model's own readout softmax, computed
    /// for every training image at the start of each epoch (Hinton's
    /// recipe; needs the readout: `model.readout = true`).
    Hard,
}

/// Where a run computes: `"cpu"` (the AVX2 backend where the CPU has it,
/// else the scalar one), `"cpu-scalar"` (the scalar specification, single
/// threaded: slow, for checking) or `"cuda"` / `"cuda:0"` (the CUDA backend
/// on device 0). All give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    #[default]
    Cpu,
    /// The scalar specification on the CPU.
    CpuScalar,
    /// A CUDA device by index.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cpu-scalar" => Ok(Device::CpuScalar),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s.strip_prefix("cuda:").and_then(|i| i.parse().ok()).map(Device::Cuda).ok_or_else(|| {
                let s = ffwd_datasets::shown(s);
                format!("device \"{s}\": expected \"cpu\", \"cpu-scalar\", \"cuda\" or \"cuda:N\"")
            }),
        }
    }
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::CpuScalar => write!(f, "cpu-scalar"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs (per layer under the layer-by-layer schedule).
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// `"cpu"` or `"cuda"` (the FF MLP with local training).
    pub device: Device,
    pub schedule: Schedule,
    /// Images per chunk during evaluation.
    pub eval_chunk: usize,
    /// Evaluate every `eval_every` epochs and after the last (0 = never:
    /// for timing runs).
    pub eval_every: usize,
    /// Write the training state (`train-state.safetensors`, see
    /// [`crate::resume`]) every N epochs (0: only when interrupted).
    #[serde(skip_serializing_if = "is_one")]
    pub checkpoint_every: usize,
    /// Also write it every N batches within an epoch (0: never; for long
    /// epochs).
    #[serde(skip_serializing_if = "is_zero")]
    pub checkpoint_every_batches: usize,
    /// The learning-rate schedule of every optimiser (see [`LrSchedule`]).
    #[serde(skip_serializing_if = "is_constant")]
    pub lr_schedule: LrSchedule,
    /// Where the cool-down of `lr_schedule` starts, as a fraction of the
    /// run (of each phase), in [0, 1). Hinton's recipe: 0.5, linear.
    #[serde(skip_serializing_if = "is_half")]
    pub cooldown_from: f32,
    /// Where the negative labels come from (see [`Negatives`]).
    #[serde(skip_serializing_if = "is_random")]
    pub negatives: Negatives,
}

fn is_random(v: &Negatives) -> bool {
    *v == Negatives::Random
}

fn is_constant(v: &LrSchedule) -> bool {
    *v == LrSchedule::Constant
}
fn is_half(v: &f32) -> bool {
    *v == 0.5
}

fn is_one(v: &usize) -> bool {
    *v == 1
}
fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch: 50,
            seed: 0,
            threads: 0,
            device: Device::Cpu,
            schedule: Schedule::Simultaneous,
            eval_chunk: 500,
            eval_every: 1,
            checkpoint_every: 1,
            checkpoint_every_batches: 0,
            lr_schedule: LrSchedule::Constant,
            cooldown_from: 0.5,
            negatives: Negatives::Random,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Run folder: `metrics.jsonl` and `model.safetensors` go here.
    pub dir: PathBuf,
    /// Write a checkpoint after every evaluated epoch (else only at the end).
    pub checkpoint_every_eval: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("runs/latest"), checkpoint_every_eval: true }
    }
}

/// Everything one `ffwd train` run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub model: FfConfig,
    /// A convolutional FF network (the Trifecta) instead of the MLP of
    /// `[model]`.
    pub conv: Option<ConvFfConfig>,
    /// FF contrastive twins instead of the MLP of `[model]`.
    pub ffcl: Option<FfclConfig>,
    /// An unsupervised-FF stack of cells instead of the MLP of `[model]`.
    pub uff: Option<UffConfig>,
    /// Self-supervised pretext training instead of the labels.
    pub ssl: Option<SslConfig>,
    /// A linear probe on the real labels after training.
    pub probe: Option<ProbeConfig>,
    pub train: TrainConfig,
    pub output: OutputConfig,
}

/// Self-supervised pretext training (see `ffwd_datasets::pretext`): the
/// network learns which transformation an image went through; its
/// accuracy is reported on the test set transformed by fixed draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslConfig {
    /// rotation | flip2 | flip4 | jigsaw
    pub task: String,
}

impl Default for RunConfig {
    /// The offline default's settings: FF on the embedded 8×8 digits,
    /// 3×400 with the label concatenated, SymBa (α = 2), peer
    /// normalisation (λ = 0.03), Adam 3e-3 cooled down linearly over the
    /// second half of 60 epochs of batch 50, with uniform wrong labels as
    /// negatives, which every network kind takes. The run `ffwd train`
    /// makes with no arguments is [`RunConfig::default_for`]`("digits")`:
    /// these settings with hard negatives. See
    /// `benches/results/hinton-recipe-2026-12-06.md`.
    fn default() -> Self {
        let mut model = FfConfig {
            sizes: vec![400, 400, 400],
            label: LabelMode::Concat,
            loss: ffwd_layers::config::LossKind::Symba,
            alpha: 2.0,
            peer: Some(ffwd_layers::config::PeerConfig::default()),
            ..FfConfig::default()
        };
        model.optim.lr = 3e-3;
        Self {
            data: DataConfig::default(),
            model,
            conv: None,
            ffcl: None,
            uff: None,
            ssl: None,
            probe: None,
            train: TrainConfig { epochs: 60, lr_schedule: LrSchedule::Linear, ..TrainConfig::default() },
            output: OutputConfig::default(),
        }
    }
}

impl RunConfig {
    /// The default for a dataset named on the command line without a
    /// config file. For the digits, the run `ffwd train` makes with no
    /// arguments (about 5 s on 2 cores, 95.62 % on the held-out digits):
    /// the settings of [`RunConfig::default`] with hard negatives, each
    /// wrong label drawn from the softmax of a linear readout trained
    /// beside the layers (never the true one), chosen by five-fold
    /// cross-validation on the 1,500 training digits. For MNIST-sized data
    /// the engine's reference setting (3×1000, batch 100, Adam 1e-3, label
    /// written over the first pixels, 10 epochs).
    pub fn default_for(dataset: &str) -> Self {
        let mut c = Self::default();
        c.data.dataset = dataset.to_string();
        if dataset == "digits" {
            c.model.readout = true;
            c.train.negatives = Negatives::Hard;
        } else {
            c.model = FfConfig::default();
            c.train = TrainConfig { batch: 100, epochs: 10, ..TrainConfig::default() };
        }
        c
    }

    /// The optimiser of the network this config chooses: `conv.optim`,
    /// `ffcl.optim` or `uff.optim` where that table is present, else
    /// `model.optim`.
    pub fn optim_mut(&mut self) -> &mut ffwd_layers::config::OptimConfig {
        if let Some(c) = &mut self.conv {
            &mut c.optim
        } else if let Some(f) = &mut self.ffcl {
            &mut f.optim
        } else if let Some(u) = &mut self.uff {
            &mut u.optim
        } else {
            &mut self.model.optim
        }
    }

    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let cfg: RunConfig =
            toml::from_str(text).map_err(|e| Error::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        cfg.validate().map_err(|reason| Error::Config { path: path.to_path_buf(), reason })?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, path)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.model.validate()?;
        self.check_hyperparameters()?;
        if self.train.batch == 0 {
            return Err("train.batch must be at least 1".into());
        }
        if self.train.epochs == 0 {
            return Err("train.epochs must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.train.cooldown_from) {
            return Err(format!("train.cooldown_from must lie in [0, 1), got {}", self.train.cooldown_from));
        }
        if self.train.negatives == Negatives::Hard {
            let mlp = self.conv.is_none() && self.ffcl.is_none() && self.uff.is_none() && self.ssl.is_none();
            if !(mlp && self.model.training == ffwd_layers::config::MlpTraining::Local) {
                return Err("train.negatives = \"hard\" applies to the supervised FF MLP (local training) only".into());
            }
            if !self.model.has_readout() {
                return Err("train.negatives = \"hard\" samples from the readout: set model.readout = true \
                            (or model.predict = \"readout\")"
                    .into());
            }
        }
        if self.train.eval_chunk == 0 {
            return Err("train.eval_chunk must be at least 1".into());
        }
        for (field, v, max) in [
            ("train.batch", self.train.batch, 1 << 20),
            ("train.eval_chunk", self.train.eval_chunk, 1 << 20),
            ("train.epochs", self.train.epochs, 1 << 24),
            ("train.checkpoint_every", self.train.checkpoint_every, 1 << 24),
            ("train.checkpoint_every_batches", self.train.checkpoint_every_batches, 1 << 30),
            ("train.threads", self.train.threads, 1024),
            ("model.sizes (layers)", self.model.sizes.len(), 1024),
        ] {
            if v > max {
                return Err(format!("{field} = {v} is more than the {max} this build allows"));
            }
        }
        ffwd_datasets::Name::parse(&self.data.dataset).map_err(|e| format!("data.dataset: {e}"))?;
        if [self.ffcl.is_some(), self.conv.is_some(), self.uff.is_some()].iter().filter(|&&b| b).count() > 1 {
            return Err("[ffcl], [conv] and [uff] each choose the network; give one".into());
        }
        if let Some(s) = &self.ssl {
            ffwd_datasets::pretext::Pretext::parse(&s.task).map_err(|_| {
                format!(
                    "ssl.task: unknown pretext task `{}` (rotation, flip2, flip4, jigsaw)",
                    ffwd_datasets::shown(&s.task)
                )
            })?;
            if self.conv.is_some() {
                return Err("ssl: pretext training is implemented for the MLP of [model], not for [conv]".into());
            }
        }
        if let Some(p) = &self.probe {
            if p.epochs == 0 || p.batch == 0 {
                return Err("probe.epochs and probe.batch must be at least 1".into());
            }
            if !(p.optim.lr.is_finite() && p.optim.lr > 0.0) {
                return Err(format!("probe.optim.lr must be a positive number, got {}", p.optim.lr));
            }
        }
        let a = &self.data.augment;
        if !(0.0..1.0).contains(&a.dropout) {
            return Err(format!("data.augment.dropout must lie in [0, 1), got {}", a.dropout));
        }
        if !(0.0..=45.0).contains(&a.rotation_deg) {
            return Err(format!("data.augment.rotation_deg must lie in [0, 45], got {}", a.rotation_deg));
        }
        if a.normalize && ffwd_datasets::augment::channel_stats(&self.data.dataset).is_none() {
            return Err(format!("data.augment.normalize: no channel statistics for `{}`", self.data.dataset));
        }
        Ok(())
    }

    /// Every hyperparameter a config sets, in range and finite, named by its
    /// field: nonsense is refused when the config is read, not found later
    /// as a diverged loss.
    fn check_hyperparameters(&self) -> std::result::Result<(), String> {
        use ffwd_layers::config::OptimConfig;
        let finite_pos = |field: &str, v: f32, zero_ok: bool| -> std::result::Result<(), String> {
            if v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) {
                Ok(())
            } else {
                Err(format!("{field} must be a finite number {} 0, got {v}", if zero_ok { "≥" } else { ">" }))
            }
        };
        let unit = |field: &str, v: f32, hi_ok: bool| -> std::result::Result<(), String> {
            if v >= 0.0 && (v < 1.0 || (hi_ok && v == 1.0)) {
                Ok(())
            } else {
                Err(format!("{field} must lie in [0, 1{}, got {v}", if hi_ok { "]" } else { ")" }))
            }
        };
        let optim = |field: &str, o: &OptimConfig| -> std::result::Result<(), String> {
            finite_pos(&format!("{field}.lr"), o.lr, false)?;
            unit(&format!("{field}.beta1"), o.beta1, false)?;
            unit(&format!("{field}.beta2"), o.beta2, false)?;
            finite_pos(&format!("{field}.eps"), o.eps, true)?;
            finite_pos(&format!("{field}.weight_decay"), o.weight_decay, true)?;
            if let Some(d) = o.bias_weight_decay {
                finite_pos(&format!("{field}.bias_weight_decay"), d, true)?;
            }
            unit(&format!("{field}.momentum"), o.momentum, false)
        };
        let m = &self.model;
        optim("model.optim", &m.optim)?;
        optim("model.readout_optim", &m.readout_optim)?;
        if let Some(t) = m.theta {
            finite_pos("model.theta", t, true)?;
        }
        finite_pos("model.alpha", m.alpha, false)?;
        if let Some(c) = &self.conv {
            optim("conv.optim", &c.optim)?;
            finite_pos("conv.theta", c.theta, true)?;
            finite_pos("conv.alpha", c.alpha, false)?;
            finite_pos("conv.bn_eps", c.bn_eps, false)?;
            finite_pos("conv.norm_eps", c.norm_eps, true)?;
            unit("conv.bn_momentum", c.bn_momentum, true)?;
            if let Some(i) = c.channels.iter().position(|&ch| ch == 0) {
                return Err(format!("conv.channels[{i}]: a block needs at least one channel"));
            }
        }
        if let Some(f) = &self.ffcl {
            optim("ffcl.optim", &f.optim)?;
            if let Some(i) = f.sizes.iter().position(|&s| s == 0) {
                return Err(format!("ffcl.sizes[{i}]: a layer needs at least one unit"));
            }
        }
        if let Some(u) = &self.uff {
            optim("uff.optim", &u.optim)?;
            optim("uff.classifier_optim", &u.classifier_optim)?;
            unit("uff.mask_prob", u.mask_prob, true)?;
            finite_pos("uff.noise_std", u.noise_std, true)?;
        }
        if let Some(p) = &self.probe {
            optim("probe.optim", &p.optim)?;
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lr_schedules_hold_then_fall_to_zero_as_their_formulas_say() {
        use approx::assert_abs_diff_eq;
        for p in [0.0, 0.2, 0.49999] {
            for s in [LrSchedule::Constant, LrSchedule::Linear, LrSchedule::Cosine] {
                assert_eq!(s.factor(p, 0.5).to_bits(), 1.0f32.to_bits(), "{s:?} before the cool-down");
            }
        }
        assert_eq!(LrSchedule::Constant.factor(0.99, 0.5), 1.0);
        let mut last = (1.0f32, 1.0f32);
        for k in 0..=1000 {
            let p = 0.5 + 0.5 * k as f64 / 1000.0;
            let u = (p - 0.5) / 0.5;
            let (lin, cos) = (LrSchedule::Linear.factor(p, 0.5), LrSchedule::Cosine.factor(p, 0.5));
            assert_abs_diff_eq!(lin as f64, 1.0 - u, epsilon = 1e-7);
            assert_abs_diff_eq!(cos as f64, (u * std::f64::consts::FRAC_PI_2).cos().powi(2), epsilon = 2e-6);
            assert!(lin <= last.0 && cos <= last.1, "not falling at p = {p}");
            last = (lin, cos);
        }
        assert!(last.0.abs() < 1e-6 && last.1.abs() < 1e-6, "{last:?} at the end");
    }

    use super::*;

    #[test]
    fn nonsense_hyperparameters_are_refused_naming_the_field() {
        let p = Path::new("h.toml");
        for (text, field) in [
            ("[model.optim]\nlr = nan\n", "model.optim.lr"),
            ("[model.optim]\nlr = -1e-3\n", "model.optim.lr"),
            ("[model]\ntheta = -2.0\n", "model.theta"),
            ("[model]\nalpha = inf\n", "model.alpha"),
            ("[model.optim]\nmomentum = 1.5\n", "model.optim.momentum"),
            ("[model.optim]\nweight_decay = nan\n", "model.optim.weight_decay"),
            ("[conv]\nbn_momentum = 2.0\n", "conv.bn_momentum"),
            ("[conv]\nchannels = [4, 0]\n", "conv.channels[1]"),
            ("[uff]\nmask_prob = 1.5\n", "uff.mask_prob"),
            ("[uff]\nnoise_std = -0.1\n", "uff.noise_std"),
            ("[ffcl]\nsizes = [0]\n", "ffcl.sizes[0]"),
            ("[probe.optim]\nbeta2 = 1.0\n", "probe.optim.beta2"),
        ] {
            let e = RunConfig::from_toml_str(text, p).unwrap_err().to_string();
            assert!(e.contains("h.toml") && e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn malformed_config_names_file_and_field() {
        let p = Path::new("configs/bad.toml");
        let e = RunConfig::from_toml_str("[train]\nepochs = \"ten\"\n", p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("epochs"), "{e}");
        let e = RunConfig::from_toml_str("[model]\nsizez = [1]\n", p).unwrap_err().to_string();
        assert!(e.contains("sizez"), "{e}");
        let e = RunConfig::from_toml_str("[model]\nsizes = []\n", p).unwrap_err().to_string();
        assert!(e.contains("model.sizes"), "{e}");
        let e = RunConfig::from_toml_str("[data]\ndataset = \"imagenet\"\n", p).unwrap_err().to_string();
        assert!(e.contains("imagenet"), "{e}");
        let e = RunConfig::from_toml_str("[model.optim]\nlr = -1.0\n", p).unwrap_err().to_string();
        assert!(e.contains("lr"), "{e}");
    }

    #[test]
    fn default_config_round_trips_through_toml() {
        let c = RunConfig::default();
        let back = RunConfig::from_toml_str(&c.to_toml(), Path::new("x.toml")).unwrap();
        assert_eq!(c, back);
    }
}
