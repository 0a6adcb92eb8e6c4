//! The `ffwd` command line.

use crate::config::{LrSchedule, Negatives, RunConfig, Schedule};
use crate::trainer::{EpochReport, Trainer};
use crate::{checkpoint, Error, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ffwd_kernels::CpuBackend;
use ffwd_layers::config::{
    Combine, GoodnessKind, LabelMode, LossKind, MlpTraining, NormKind, OptimKind, PeerConfig, PredictKind,
};
use ffwd_layers::conv::ConvAlgorithm;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "ffwd", version, about = "Forward-Forward training, bit-exact at any thread count")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Train an FF network (no arguments: the embedded 8×8 digits).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint on a dataset's test split.
    Eval(EvalArgs),
    /// Linear probe of a saved network on the real labels: each layer's
    /// features and their concatenation.
    Probe(ProbeArgs),
    /// Save a UFF network's first-cell reconstructions of test images as a
    /// PNG grid (originals above reconstructions; a GAN cell: generated
    /// samples below).
    Recon(ReconArgs),
    /// Time FF training batches on this machine: ms per batch, GFLOP/s, %
    /// of the measured FMA peak, samples/s (synthetic 784-value inputs, the
    /// trainer's step); with --peers, the ratio to PyTorch's samples/s from
    /// a side-by-side results file.
    Bench(BenchArgs),
    /// Draw the training curves of one or more runs (their metrics.jsonl)
    /// as an SVG picture: per-layer loss, G+ and G-, accuracy per epoch.
    Plot(PlotArgs),
    /// Dataset management.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Download a dataset (mnist, fashion-mnist, cifar-10, svhn) and verify its SHA-256 sums.
    Fetch {
        name: String,
        /// Folder to download into (default: $FFWD_DATA_DIR, else the cache).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workloads, comma-separated WIDTHxLAYERS:BATCH.
    #[arg(long, default_value = "2000x4:100,2000x4:1000,500x2:100,500x2:1000")]
    pub workloads: String,
    /// Threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed batches per workload, after two untimed ones (0: about two
    /// seconds' worth, at least five). The median is reported.
    #[arg(long, default_value_t = 0)]
    pub batches: usize,
    /// A side-by-side results file (benches/results/peers-cpu-*.json) to
    /// take PyTorch's samples/s from, for the ratio column.
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// Only measure the FMA peak and print it as one JSON line.
    #[arg(long)]
    pub peak_only: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CliSchedule {
    Simultaneous,
    LayerByLayer,
}

#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// TOML run configuration (flags below override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its training state
    /// (train-state.safetensors, written every train.checkpoint_every
    /// epochs and on Ctrl-C or SIGTERM) to the bits it would have had
    /// uninterrupted. Only --threads, --device, --data-dir, --quiet and
    /// --recon-png go with it: the run keeps its configuration.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = [
        "config", "dataset", "train_size", "validation", "sizes", "loss", "goodness", "theta", "alpha", "norm",
        "label", "predict", "optim", "schedule", "epochs", "batch", "lr", "seed", "eval_every", "out", "dry_run",
        "lr_schedule", "cooldown_from", "skip_layers", "combine", "negatives", "peer_norm",
        "checkpoint_every", "checkpoint_every_batches",
    ])]
    pub resume: Option<PathBuf>,
    /// digits | mnist | fashion-mnist | cifar-10 | svhn
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder that holds `<dataset>/` (else $FFWD_DATA_DIR, else the cache).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Train on the first N images of the train split.
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Hold out the last N train images for validation.
    #[arg(long)]
    pub validation: Option<usize>,
    /// Hidden layer widths, e.g. 1000,1000,1000.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    #[arg(long, value_enum)]
    pub goodness: Option<GoodnessArg>,
    #[arg(long)]
    pub theta: Option<f32>,
    #[arg(long)]
    pub alpha: Option<f32>,
    #[arg(long, value_enum)]
    pub norm: Option<NormArg>,
    #[arg(long, value_enum)]
    pub label: Option<LabelArg>,
    #[arg(long, value_enum)]
    pub predict: Option<PredictArg>,
    /// The optimiser of the network the config chooses (model.optim, or
    /// conv.optim, ffcl.optim, uff.optim).
    #[arg(long, value_enum)]
    pub optim: Option<OptimArg>,
    #[arg(long, value_enum)]
    pub schedule: Option<CliSchedule>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    /// Its learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// The learning rate over the run: constant, or constant up to
    /// --cooldown-from then down toward zero (linear, cosine).
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrScheduleArg>,
    /// Where the cool-down starts, as a fraction of the run (default 0.5).
    #[arg(long, value_name = "FRACTION")]
    pub cooldown_from: Option<f32>,
    /// Negative labels: random, or hard (drawn from the model's own readout
    /// softmax; needs --predict readout).
    #[arg(long, value_enum)]
    pub negatives: Option<NegativesArg>,
    /// First layers left out of prediction (default: 1 for nets of 3 or
    /// more layers, else 0).
    #[arg(long, value_name = "N")]
    pub skip_layers: Option<usize>,
    /// How prediction by goodness adds up the layers: their goodness
    /// summed (Hinton), or each layer's scores of the candidate labels
    /// standardised per image first, so that every layer has the same say
    #[arg(long, value_enum)]
    pub combine: Option<CombineArg>,
    /// Peer normalisation of the FF MLP with this weight λ (Hinton: 0.03;
    /// momentum and first means from [model.peer], else 0.9 and 0.5);
    /// 0 turns it off.
    #[arg(long, value_name = "LAMBDA")]
    pub peer_norm: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu | cpu-scalar | cuda | cuda:N (every network kind on each).
    #[arg(long)]
    pub device: Option<DeviceArg>,
    /// Evaluate every N epochs (0 = never; for timing runs).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Save the training state every N epochs (0: only on Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Also save it every N batches within an epoch (0: never).
    #[arg(long, value_name = "N")]
    pub checkpoint_every_batches: Option<usize>,
    /// Run folder for metrics.jsonl and model.safetensors.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only print the resolved configuration.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// After training a UFF stack, save its reconstructions of the first 16
    /// test images as a PNG grid here.
    #[arg(long)]
    pub recon_png: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LossArg {
    Threshold,
    Symba,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GoodnessArg {
    Sum,
    Mean,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NormArg {
    Rms,
    L2,
    None,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LabelArg {
    Overwrite,
    Concat,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PredictArg {
    Goodness,
    Readout,
    Ensemble,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CombineArg {
    Sum,
    Standardized,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NegativesArg {
    Random,
    Hard,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LrScheduleArg {
    Constant,
    Linear,
    Cosine,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimArg {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Override the checkpoint's dataset folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu | cpu-scalar | cuda | cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// Evaluate the first N test images only (0 = all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub test_size: usize,
    /// Predict this way instead of the checkpoint's (FF MLP checkpoints;
    /// readout needs one trained beside the layers).
    #[arg(long)]
    pub predict: Option<PredictArg>,
    /// Add up the layers' goodness this way instead of the checkpoint's
    /// (FF MLP checkpoints).
    #[arg(long)]
    pub combine: Option<CombineArg>,
}

impl EvalArgs {
    /// Apply --predict and --combine to a checkpoint's configuration.
    fn edit(&self, cfg: &mut RunConfig) -> Result<()> {
        if self.predict.is_none() && self.combine.is_none() {
            return Ok(());
        }
        if cfg.conv.is_some() || cfg.ffcl.is_some() || cfg.uff.is_some() || cfg.model.training != MlpTraining::Local {
            return Err(Error::Invalid(
                "--predict / --combine: only an FF MLP checkpoint predicts by goodness or its readout".into(),
            ));
        }
        let m = &mut cfg.model;
        if let Some(v) = self.predict {
            let kind = predict_kind(v);
            if kind != PredictKind::Goodness && !m.has_readout() {
                return Err(Error::Invalid(format!(
                    "--predict {}: this checkpoint has no readout (train with model.readout = true)",
                    if kind == PredictKind::Readout { "readout" } else { "ensemble" }
                )));
            }
            m.predict = kind;
        }
        if let Some(v) = self.combine {
            m.combine = combine_kind(v);
        }
        Ok(())
    }
}

fn predict_kind(v: PredictArg) -> PredictKind {
    match v {
        PredictArg::Goodness => PredictKind::Goodness,
        PredictArg::Readout => PredictKind::Readout,
        PredictArg::Ensemble => PredictKind::Ensemble,
    }
}

fn combine_kind(v: CombineArg) -> Combine {
    match v {
        CombineArg::Sum => Combine::Sum,
        CombineArg::Standardized => Combine::Standardized,
    }
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run folders (or metrics.jsonl files), drawn together.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The SVG to write (default: curves.svg in the run's folder for one
    /// run, compare.svg here for several). Replaces only an earlier SVG.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReconArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The PNG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// How many test images (the first ones).
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Override the checkpoint's dataset folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// cpu | cpu-scalar | cuda | cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Override the checkpoint's dataset folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Probe training epochs (default: the run's probe.epochs, else 100).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train the probe on the first N training images (default: the run's).
    #[arg(long)]
    pub train_size: Option<usize>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where probe.json goes (default: the checkpoint's folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Which activity of each layer the probe reads: `standard` (FF and BP
    /// MLPs: length-normalised, as the next layer sees it) or `raw` (the
    /// ReLU activity before the normalisation). Default: the run's.
    #[arg(long, value_parser = parse_feature_form)]
    pub features: Option<ffwd_layers::probe::FeatureForm>,
    /// Nets with label inputs (FF MLPs): write this label into them while
    /// the features are read, instead of the neutral value.
    #[arg(long)]
    pub label: Option<u8>,
    /// cpu | cpu-scalar | cuda | cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
}

fn parse_feature_form(s: &str) -> std::result::Result<ffwd_layers::probe::FeatureForm, String> {
    use ffwd_layers::probe::FeatureForm;
    match s {
        "standard" => Ok(FeatureForm::Standard),
        "raw" => Ok(FeatureForm::Raw),
        _ => Err(format!("`{s}` is not a probe view: standard or raw")),
    }
}

impl TrainArgs {
    /// The configuration this invocation means: file (or default) + flags.
    pub fn resolve(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::from_file(p)?,
            None => RunConfig::default_for(self.dataset.as_deref().unwrap_or("digits")),
        };
        if let Some(d) = &self.dataset {
            c.data.dataset = d.clone();
        }
        let m = &mut c.model;
        if let Some(v) = &self.data_dir {
            c.data.dir = Some(v.clone());
        }
        if let Some(v) = self.train_size {
            c.data.train_size = v;
        }
        if let Some(v) = self.validation {
            c.data.validation = v;
        }
        if let Some(v) = &self.sizes {
            m.sizes = v.clone();
        }
        if let Some(v) = self.loss {
            m.loss = match v {
                LossArg::Threshold => LossKind::Threshold,
                LossArg::Symba => LossKind::Symba,
            };
        }
        if let Some(v) = self.goodness {
            m.goodness = match v {
                GoodnessArg::Sum => GoodnessKind::Sum,
                GoodnessArg::Mean => GoodnessKind::Mean,
            };
        }
        if let Some(v) = self.theta {
            m.theta = Some(v);
        }
        if let Some(v) = self.alpha {
            m.alpha = v;
        }
        if let Some(v) = self.norm {
            m.norm = match v {
                NormArg::Rms => NormKind::Rms,
                NormArg::L2 => NormKind::L2,
                NormArg::None => NormKind::None,
            };
        }
        if let Some(v) = self.label {
            m.label = match v {
                LabelArg::Overwrite => LabelMode::Overwrite,
                LabelArg::Concat => LabelMode::Concat,
            };
        }
        if let Some(v) = self.predict {
            m.predict = predict_kind(v);
        }
        if let Some(v) = self.skip_layers {
            m.skip_layers = Some(v);
        }
        if let Some(v) = self.combine {
            m.combine = combine_kind(v);
        }
        if let Some(v) = self.peer_norm {
            m.peer = (v != 0.0).then(|| PeerConfig { lambda: v, ..m.peer.unwrap_or_default() });
        }
        // the optimiser of the network the config chooses
        if let Some(v) = self.optim {
            c.optim_mut().kind = match v {
                OptimArg::Adam => OptimKind::Adam,
                OptimArg::Adamw => OptimKind::Adamw,
                OptimArg::Sgd => OptimKind::Sgd,
            };
        }
        if let Some(v) = self.lr {
            c.optim_mut().lr = v;
        }
        if let Some(v) = self.lr_schedule {
            c.train.lr_schedule = match v {
                LrScheduleArg::Constant => LrSchedule::Constant,
                LrScheduleArg::Linear => LrSchedule::Linear,
                LrScheduleArg::Cosine => LrSchedule::Cosine,
            };
        }
        if let Some(v) = self.cooldown_from {
            c.train.cooldown_from = v;
        }
        if let Some(v) = self.negatives {
            c.train.negatives = match v {
                NegativesArg::Random => Negatives::Random,
                NegativesArg::Hard => Negatives::Hard,
            };
        }
        if let Some(v) = self.schedule {
            c.train.schedule = match v {
                CliSchedule::Simultaneous => Schedule::Simultaneous,
                CliSchedule::LayerByLayer => Schedule::LayerByLayer,
            };
        }
        if let Some(v) = self.epochs {
            c.train.epochs = v;
        }
        if let Some(v) = self.batch {
            c.train.batch = v;
        }
        if let Some(v) = self.seed {
            c.train.seed = v;
        }
        if let Some(v) = self.threads {
            c.train.threads = v;
        }
        if let Some(v) = &self.device {
            c.train.device = v.device()?;
        }
        if let Some(v) = self.eval_every {
            c.train.eval_every = v;
        }
        if let Some(v) = &self.out {
            c.output.dir = v.clone();
        }
        if let Some(v) = self.checkpoint_every {
            c.train.checkpoint_every = v;
        }
        if let Some(v) = self.checkpoint_every_batches {
            c.train.checkpoint_every_batches = v;
        }
        c.validate().map_err(Error::Invalid)?;
        Ok(c)
    }
}

fn pct(x: f32) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The first `count` images of `ds` and the network's first-cell
/// reconstructions as a PNG grid at `path`.
fn save_recon(
    net: &mut dyn ffwd_layers::Network,
    prep: &crate::model::Prep,
    ds: &ffwd_datasets::Dataset,
    count: usize,
    path: &std::path::Path,
) -> Result<()> {
    crate::rundir::picture_target(path, crate::rundir::Picture::Png)?;
    let n = count.min(ds.len()).max(1).min(ds.len());
    let mut images = Vec::new();
    prep.eval_images(&ds.slice(0..n), &mut images);
    let (recon, target) = net.reconstruct(&images, n)?;
    let (w, h, px) = crate::png::pair_grid(&target, &recon, n, ds.shape, 8);
    crate::png::save(path, &crate::png::encode(w, h, if ds.shape.0 == 3 { 3 } else { 1 }, &px)?)
}

fn probe_line(p: &ffwd_layers::probe::ProbeReport, written: Option<&std::path::Path>) -> String {
    let layers: Vec<String> = p.per_layer.iter().map(|&a| pct(a)).collect();
    format!(
        "linear probe ({} epochs, {} train / {} test images): per layer [{}], concatenation {} | {}",
        p.epochs,
        p.train_images,
        p.test_images,
        layers.join(", "),
        pct(p.concat),
        written.map(|w| w.display().to_string()).unwrap_or_default()
    )
}

fn print_epoch(r: &EpochReport) {
    let mut s = format!("epoch {:>3}", r.epoch);
    if let Some(l) = r.training_layer {
        s += &format!(" (layer {l})");
    }
    s += &format!(" | {:.1}s, {:.0} samples/s", r.train_seconds, r.samples_per_s);
    if let Some(v) = &r.val {
        s += &format!(" | val {}", pct(v.acc));
    }
    if let Some(t) = &r.test {
        s += &format!(" | test {}", pct(t.acc));
        if let (Some(ga), Some(ra)) = (t.goodness_acc, t.readout_acc) {
            s += &format!(" (goodness {}, readout {})", pct(ga), pct(ra));
        }
    }
    println!("{s}");
    for l in &r.layers {
        if l.loss.is_none() && l.acc.is_none() {
            continue;
        }
        let mut line = format!("    layer {}", l.layer);
        match (l.loss, l.g_pos, l.g_neg) {
            (Some(a), Some(p), Some(n)) => line += &format!(": loss {a:.4}  G+ {p:.1}  G- {n:.1}"),
            (Some(a), _, _) => {
                line += &format!(": loss {a:.4}");
                if let Some(g) = l.aux_loss {
                    line += &format!("  generator loss {g:.4}");
                }
            }
            _ => {}
        }
        if let Some(a) = l.acc {
            line += &format!("  acc {}", pct(a));
        }
        println!("{line}");
    }
}

/// `ffwd bench`: the table, or with --peak-only the peak alone.
fn bench(a: &BenchArgs) -> Result<()> {
    use crate::bench::{time_workload, PeerFile, Workload};
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(Error::Invalid("--threads must be at least 1".into()));
    }
    let peak = ffwd_kernels::cpu::peak::fma_peak(threads);
    if a.peak_only {
        let g = |p: Option<f64>| p.map_or("null".to_string(), |p| format!("{:.2}", p / 1e9));
        let p8 = ffwd_kernels::cpu::peak::fma_peak_avx2(threads);
        let wide = ffwd_kernels::cpu::wide_kernels();
        println!(
            "{{\"fma_peak_gflops\": {}, \"fma_peak_avx2_gflops\": {}, \"wide_kernels\": {wide}, \"threads\": {threads}}}",
            g(peak),
            g(p8)
        );
        return Ok(());
    }
    let workloads = a.workloads.split(',').map(Workload::parse).collect::<Result<Vec<_>>>()?;
    let peers = a.peers.as_deref().map(PeerFile::read).transpose()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?;
    let be = CpuBackend::best();
    let width = if ffwd_kernels::cpu::wide_kernels() { "512" } else { "256" };
    println!("ffwd bench: {} backend ({width}-bit microkernels), {threads} thread(s)", be.name());
    match peak {
        Some(p) => println!("measured FMA peak: {:.1} GFLOP/s on {threads} thread(s)", p / 1e9),
        None => println!("measured FMA peak: none (no AVX2 + FMA on this CPU)"),
    }
    let mut head = format!(
        "{:<10} {:>6} {:>22} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "workload",
        "batch",
        "ms/batch median (best)",
        "GFLOP/s",
        "% of peak",
        "samples/s",
        "dW rows",
        "fwd steps",
        "dW steps"
    );
    if peers.is_some() {
        head += &format!(" {:>18} {:>8}", "PyTorch samples/s", "ratio");
    }
    println!("{head}");
    pool.install(ffwd_kernels::warm_up_workers);
    for w in workloads {
        let t = pool.install(|| time_workload(&be, w, a.batches))?;
        let pct = peak.map_or("-".to_string(), |p| format!("{:.1}%", 100.0 * t.gflops() * 1e9 / p));
        let mut line = format!(
            "{:<10} {:>6} {:>22} {:>9.1} {:>10} {:>10.0} {:>9.0}% {:>9.0}% {:>9.0}%",
            w.name(),
            w.batch,
            format!("{:.2} ({:.2})", t.median_s * 1e3, t.best_s * 1e3),
            t.gflops(),
            pct,
            t.samples_per_s(),
            100.0 * t.kept,
            100.0 * t.steps.0.share(),
            100.0 * t.steps.1.share()
        );
        if let Some(f) = &peers {
            match f.torch_samples_per_s(&w) {
                Some(s) => line += &format!(" {:>18.0} {:>7.2}×", s, t.samples_per_s() / s),
                None => line += &format!(" {:>18} {:>8}", "not in the file", "-"),
            }
        }
        println!("{line}");
    }
    println!(
        "GFLOP/s and % of peak count the nominal 8·Σ in·out FLOP per sample; the dW GEMM runs only on the \
         rows kept (\"dW rows\"), the others having a loss gradient of exactly zero, and the GEMMs leave out the \
         k steps at which six rows of A are all zero (\"fwd steps\", \"dW steps\": the share that ran)."
    );
    if let (Some(f), Some(p)) = (&peers, &a.peers) {
        let th = f.threads.map_or(String::new(), |t| format!(", {t} threads"));
        println!(
            "PyTorch: from {} (torch {}, {}{th}), measured then, not in this run; \
             benches/peers/compare.py times both in one run.",
            p.display(),
            f.torch,
            f.date
        );
    }
    Ok(())
}

/// Entry point of the `ffwd` binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprint!("{}", bound_words(&e.render().to_string()));
            return 2;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e @ Error::Interrupted { .. }) => {
            eprintln!("{e}");
            130
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// A hook that turns the first Ctrl-C or SIGTERM into a stop after the
/// current batch, with the training state saved; a second one ends the
/// process at once (exit code 130). None if a handler is already set.
fn stop_on_signal() -> Option<Box<dyn FnMut() -> bool + Send>> {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let seen = flag.clone();
    ctrlc::set_handler(move || {
        if seen.swap(true, SeqCst) {
            eprintln!("\nsecond interrupt: stopping now, without saving");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing this batch and saving the training state (again to stop at once)");
    })
    .ok()?;
    Some(Box::new(move || flag.load(SeqCst)))
}

/// `text` with every word longer than 64 characters cut to 64 and `…`
/// (a value echoed in an error message is shown as given, but bounded).
fn bound_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                if w.chars().count() <= 64 {
                    return w.to_string();
                }
                let mut cut: String = w.chars().take(64).collect();
                cut.push('…');
                cut.extend(w.chars().last().filter(|c| "'\"`:".contains(*c)));
                cut
            })
            .collect();
        out.push_str(&words.join(" "));
    }
    out
}

/// A `--device` value as typed. Parsed by [`DeviceArg::device`] rather than
/// by clap, whose error would echo the whole value however long.
#[derive(Clone, Debug)]
pub struct DeviceArg(String);

impl std::str::FromStr for DeviceArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl DeviceArg {
    pub fn device(&self) -> Result<crate::config::Device> {
        self.0.parse().map_err(|e: String| Error::Invalid(format!("--device: {e}")))
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Train(a) => {
            let cfg = a.resolve()?;
            if a.dry_run {
                print!("{}", cfg.to_toml());
                return Ok(());
            }
            if let Some(p) = &a.recon_png {
                crate::rundir::picture_target(p, crate::rundir::Picture::Png)?;
            }
            let asked = cfg.output.dir.clone();
            let mut t = match &a.resume {
                None => Trainer::new(cfg, None)?,
                Some(dir) => {
                    let device = a.device.as_ref().map(DeviceArg::device).transpose()?;
                    let t = Trainer::resume(dir, a.data_dir.as_deref(), a.threads, device)?;
                    let (epoch, batch) = t.start();
                    println!("resuming {} after epoch {epoch}, batch {batch} of epoch {}", dir.display(), epoch + 1);
                    t
                }
            };
            t.progress = !a.quiet;
            t.interrupt = stop_on_signal();
            if a.resume.is_none() && t.cfg.output.dir != asked {
                println!(
                    "{} holds an earlier run, left as it is; this run goes to {}",
                    asked.display(),
                    t.cfg.output.dir.display()
                );
            }
            println!(
                "ffwd train: {} ({} train{}, {} test), {}, {} on {} thread(s), seed {}",
                t.cfg.data.dataset,
                t.train.len(),
                t.val.as_ref().map(|v| format!(", {} validation", v.len())).unwrap_or_default(),
                t.test.len(),
                match &t.cfg.conv {
                    _ if t.cfg.uff.is_some() => format!(
                        "UFF cells {:?}, {:?} training",
                        t.cfg
                            .uff
                            .as_ref()
                            .map(|u| u.cells.iter().map(|c| c.as_str()).collect::<Vec<_>>())
                            .unwrap_or_default(),
                        t.cfg.train.schedule
                    ),
                    _ if t.cfg.ffcl.is_some() => format!(
                        "FF contrastive twins, hidden {:?}",
                        t.cfg.ffcl.as_ref().map(|f| f.sizes.clone()).unwrap_or_default()
                    ),
                    Some(c) if c.algorithm == ConvAlgorithm::Backprop => format!(
                        "backprop baseline: conv blocks {:?} (pool after {:?}, {:?} norm) + linear head",
                        c.channels, c.pool, c.norm
                    ),
                    Some(c) => format!(
                        "conv blocks {:?} (pool after {:?}, {:?} norm, {:?} loss, OLU {})",
                        c.channels,
                        c.pool,
                        c.norm,
                        c.loss,
                        if c.olu { "on" } else { "off" }
                    ),
                    None => format!("layers {:?} ({:?})", t.cfg.model.sizes, t.cfg.model.training),
                },
                t.backend_name(),
                t.threads(),
                t.cfg.train.seed
            );
            let started = std::time::Instant::now();
            let reports = t.run(&mut |r| print_epoch(r))?;
            print_profile(started.elapsed().as_secs_f64());
            let last = reports.last().and_then(|r| r.test.as_ref()).map(|e| pct(e.acc));
            let what = match t.pretext {
                Some(p) => format!("{} pretext test accuracy", p.as_str()),
                None => "test accuracy".into(),
            };
            println!(
                "done: {what} {} | metrics {} | checkpoint {}",
                last.unwrap_or_else(|| "not evaluated".into()),
                t.metrics_path().display(),
                t.checkpoint_path().display()
            );
            if let Some(p) = t.probe()? {
                println!("{}", probe_line(&p, t.probe_written.as_deref()));
            }
            if let Some(path) = &a.recon_png {
                save_recon(&mut *t.net, &t.prep, &t.test, 16, path)?;
                println!("reconstructions of 16 test images in {}", path.display());
            }
            Ok(())
        }
        Cmd::Eval(a) => {
            let (meta, mut net) = checkpoint::load_with(&a.checkpoint, a.device.device()?, |c| a.edit(c))?;
            let mut cfg = meta.config.clone();
            if let Some(th) = a.threads {
                cfg.train.threads = th;
            }
            let name = ffwd_datasets::Name::parse(&cfg.data.dataset)?;
            let root = ffwd_datasets::data_root(a.data_dir.as_deref().or(cfg.data.dir.as_deref()));
            let splits = ffwd_datasets::load(name, &root)?;
            if splits.test.dim() != meta.image_dim {
                return Err(Error::Checkpoint {
                    path: a.checkpoint.clone(),
                    reason: format!("trained on {}-value images, the data has {}", meta.image_dim, splits.test.dim()),
                });
            }
            let test = match a.test_size {
                0 => splits.test,
                n if n <= splits.test.len() => splits.test.slice(0..n),
                n => {
                    return Err(Error::Invalid(format!(
                        "--test-size {n}: the test split has {} images",
                        splits.test.len()
                    )))
                }
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(cfg.train.threads)
                .build()
                .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?;
            let prep = crate::model::Prep::for_run(&cfg);
            let started = std::time::Instant::now();
            let e = crate::trainer::evaluate(&mut *net, &prep, &pool, cfg.train.eval_chunk, &test)?;
            print_profile(started.elapsed().as_secs_f64());
            println!(
                "{} (epoch {}) on {} test: accuracy {}",
                a.checkpoint.display(),
                meta.epoch,
                test.len(),
                pct(e.acc)
            );
            for (l, acc) in e.per_layer.iter().enumerate() {
                println!("    layer {l}: goodness accuracy {}", pct(*acc));
            }
            Ok(())
        }
        Cmd::Recon(a) => {
            let (meta, mut net) = checkpoint::load(&a.checkpoint, a.device.device()?)?;
            let name = ffwd_datasets::Name::parse(&meta.config.data.dataset)?;
            let root = ffwd_datasets::data_root(a.data_dir.as_deref().or(meta.config.data.dir.as_deref()));
            let test = ffwd_datasets::load(name, &root)?.test;
            let prep = crate::model::Prep::for_run(&meta.config);
            save_recon(&mut *net, &prep, &test, a.count, &a.out)?;
            println!(
                "{} (epoch {}): reconstructions of {} test images in {}",
                a.checkpoint.display(),
                meta.epoch,
                a.count.min(test.len()),
                a.out.display()
            );
            Ok(())
        }
        Cmd::Probe(a) => {
            let (meta, net) = checkpoint::load(&a.checkpoint, a.device.device()?)?;
            let mut cfg = meta.config.clone();
            cfg.train.threads = a.threads.unwrap_or(cfg.train.threads);
            let mut probe = cfg.probe.clone().unwrap_or_default();
            probe.epochs = a.epochs.unwrap_or(probe.epochs);
            probe.features = a.features.unwrap_or(probe.features);
            probe.label = a.label.or(probe.label);
            cfg.probe = Some(probe);
            cfg.validate().map_err(Error::Invalid)?;
            cfg.output.dir = match &a.out {
                Some(o) => o.clone(),
                None => a.checkpoint.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
            };
            let name = ffwd_datasets::Name::parse(&cfg.data.dataset)?;
            let root = ffwd_datasets::data_root(a.data_dir.as_deref().or(cfg.data.dir.as_deref()));
            let splits = ffwd_datasets::load(name, &root)?;
            if splits.test.dim() != meta.image_dim {
                return Err(Error::Checkpoint {
                    path: a.checkpoint.clone(),
                    reason: format!("trained on {}-value images, the data has {}", meta.image_dim, splits.test.dim()),
                });
            }
            let avail = splits.train.len() - cfg.data.validation.min(splits.train.len());
            let n = a.train_size.unwrap_or(cfg.data.train_size);
            let n = if n == 0 { avail } else { n.min(avail) };
            let mut t = Trainer::with_model(cfg, net, splits.train.slice(0..n), None, splits.test)?;
            let p = t.probe()?.expect("probe configured above");
            println!(
                "{} (epoch {}): {}",
                a.checkpoint.display(),
                meta.epoch,
                probe_line(&p, t.probe_written.as_deref())
            );
            Ok(())
        }
        Cmd::Bench(a) => bench(&a),
        Cmd::Plot(a) => {
            let runs = a.runs.iter().map(|r| crate::plot::Curves::read(r)).collect::<Result<Vec<_>>>()?;
            let out = match (&a.out, &a.runs[..]) {
                (Some(o), _) => o.clone(),
                (None, [one]) if one.is_dir() => one.join("curves.svg"),
                _ => PathBuf::from("compare.svg"),
            };
            crate::plot::write(&runs, &out)?;
            println!("curves of {} run(s) in {}", runs.len(), out.display());
            Ok(())
        }
        Cmd::Data { cmd: DataCmd::Fetch { name, data_dir } } => {
            let n = ffwd_datasets::Name::parse(&name)?;
            let root = ffwd_datasets::data_root(data_dir.as_deref());
            let dir = ffwd_datasets::fetch::fetch(n, &root, &mut |m| println!("{m}"))?;
            println!("{name} is in {}", dir.display());
            Ok(())
        }
    }
}

/// With `FFWD_PROFILE` set: the time per op of the command (on stderr, a
/// Markdown table), against `wall` seconds of training or evaluation.
fn print_profile(wall: f64) {
    if !ffwd_kernels::profile::enabled() {
        return;
    }
    eprintln!("\nwhere the time went ({wall:.2} s; an `op: part` is inside its op, `trainer:` rows hold the ops):\n");
    eprintln!("| op | calls | seconds | ms per call | share |");
    eprintln!("| --- | ---: | ---: | ---: | ---: |");
    for (name, calls, secs) in ffwd_kernels::profile::take() {
        let per = 1e3 * secs / calls.max(1) as f64;
        eprintln!("| {name} | {calls} | {secs:.3} | {per:.3} | {:.1} % |", 100.0 * secs / wall.max(1e-9));
    }
}
