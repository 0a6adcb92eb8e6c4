//! The training loop. Every random choice comes from a named Philox stream
//! of the run's seed: the shuffle of epoch e is `shuffle(e)`, the negative
//! label of the sample at position p of epoch e is word p of
//! `negative_labels(e)`. The same seed therefore gives the same bits at any
//! thread count.

use crate::checkpoint;
use crate::config::{Device, LrSchedule, Negatives, RunConfig, Schedule};
use crate::model::{Model, Prep};
use crate::resume::{Partial, Position, STATE_FILE};
use crate::{Error, Result};
use ffwd_datasets::pretext::Pretext;
use ffwd_datasets::{Dataset, Name};
use ffwd_kernels::StepsRun;
use ffwd_layers::ff::{hard_negative_labels, negative_labels, Predictions};
use ffwd_layers::probe::ProbeReport;
use ffwd_layers::uff::SamplePos;
use ffwd_layers::{Batch, BatchStats, Network};
use ffwd_tensor::{stream, Philox};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub layer: usize,
    pub loss: Option<f32>,
    pub g_pos: Option<f32>,
    pub g_neg: Option<f32>,
    /// A second loss (a UFF GAN cell: the generator's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux_loss: Option<f32>,
    /// Accuracy of this layer's goodness alone on the evaluation set.
    pub acc: Option<f32>,
    /// The share of the forward's and of the fused dW's multiply-add steps
    /// that ran this epoch (the CPU FF MLP leaves out the k steps at which
    /// six rows of a product's A are all zero; see `ffwd_kernels::StepsRun`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fwd_steps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dw_steps: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// By the configured prediction.
    pub acc: f32,
    /// By goodness per label (FF networks only).
    pub goodness_acc: Option<f32>,
    pub readout_acc: Option<f32>,
    pub per_layer: Vec<f32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    /// Under the layer-by-layer schedule: the layer that learned.
    pub training_layer: Option<usize>,
    pub layers: Vec<LayerReport>,
    pub readout_loss: Option<f32>,
    pub train_seconds: f64,
    pub samples_per_s: f64,
    pub val: Option<EvalReport>,
    pub test: Option<EvalReport>,
    pub backend: &'static str,
    pub threads: usize,
    pub seed: u64,
}

pub struct Trainer {
    pub cfg: RunConfig,
    /// The network, on the run's device.
    pub net: Model,
    /// How dataset bytes become network input.
    pub prep: Prep,
    pub train: Dataset,
    pub val: Option<Dataset>,
    /// The evaluation set: under a pretext task, the test images
    /// transformed by fixed draws and labelled with the transformation.
    pub test: Dataset,
    /// The pretext task of `[ssl]`.
    pub pretext: Option<Pretext>,
    /// The test set with its real labels, kept for the probe when `test`
    /// holds the pretext task.
    pub real_test: Option<Dataset>,
    pool: rayon::ThreadPool,
    /// Draw an indicatif progress bar (stderr) during epochs.
    pub progress: bool,
    /// Asked after every batch; `true` stops the run with
    /// [`Error::Interrupted`] (the network holds every batch up to then).
    pub interrupt: Option<Box<dyn FnMut() -> bool + Send>>,
    /// Where the last [`Trainer::probe`] wrote its report.
    pub probe_written: Option<PathBuf>,
    /// Where [`Trainer::run`] starts (a resumed run: where it stopped).
    start: Position,
    /// The lines of `metrics.jsonl` so far.
    metrics: Vec<String>,
    /// The interrupt hook asked to stop.
    stopping: bool,
}

/// One epoch's statistics, summed in batch order.
struct EpochSums {
    /// Per layer: loss, G⁺, G⁻, second loss.
    sums: Vec<(f64, f64, f64, f64)>,
    /// Batches in which each layer trained (under OLU, every other one).
    counts: Vec<usize>,
    readout: f64,
    steps: Vec<(StepsRun, StepsRun)>,
    /// Training seconds of the batches before this process took over.
    seconds: f64,
}

impl EpochSums {
    fn new(layers: usize) -> Self {
        Self {
            sums: vec![(0.0, 0.0, 0.0, 0.0); layers],
            counts: vec![0; layers],
            readout: 0.0,
            steps: vec![(StepsRun::default(), StepsRun::default()); layers],
            seconds: 0.0,
        }
    }

    /// Add one batch's statistics (in batch order, so the f64 sums are the
    /// same on every backend).
    fn add(&mut self, s: &BatchStats) {
        for ((acc, cnt), st) in self.sums.iter_mut().zip(self.counts.iter_mut()).zip(&s.layers) {
            if let Some(st) = st {
                *cnt += 1;
                acc.0 += st.loss as f64;
                acc.1 += st.g_pos as f64;
                acc.2 += st.g_neg as f64;
                acc.3 += st.aux as f64;
            }
        }
        self.readout += s.readout_loss.unwrap_or(0.0) as f64;
    }

    /// The sums as saved in a training state, with `seconds` of training.
    fn to_partial(&self, seconds: f64) -> Partial {
        Partial {
            negatives: Vec::new(),
            sums: self.sums.iter().map(|s| [s.0.to_bits(), s.1.to_bits(), s.2.to_bits(), s.3.to_bits()]).collect(),
            counts: self.counts.clone(),
            readout: self.readout.to_bits(),
            steps: self.steps.iter().map(|(f, d)| [f.ran, f.all, d.ran, d.all]).collect(),
            seconds,
        }
    }

    /// The sums a training state saved, for a network of `layers` layers.
    fn from_partial(p: &Partial, layers: usize) -> Result<Self> {
        if [p.sums.len(), p.counts.len(), p.steps.len()] != [layers; 3] {
            return Err(Error::Invalid(format!(
                "training state: epoch statistics of {} layers for a network of {layers}",
                p.sums.len()
            )));
        }
        let f = f64::from_bits;
        Ok(Self {
            sums: p.sums.iter().map(|s| (f(s[0]), f(s[1]), f(s[2]), f(s[3]))).collect(),
            counts: p.counts.clone(),
            readout: f(p.readout),
            steps: p
                .steps
                .iter()
                .map(|s| (StepsRun { ran: s[0], all: s[1] }, StepsRun { ran: s[2], all: s[3] }))
                .collect(),
            seconds: p.seconds,
        })
    }
}

fn accuracy(pred: &[u8], labels: &[u8]) -> f32 {
    if labels.is_empty() {
        return 0.0;
    }
    pred.iter().zip(labels).filter(|(a, b)| a == b).count() as f32 / labels.len() as f32
}

/// Predictions of `net` for every image of `ds` (prepared by `prep`), in
/// chunks of `chunk` images, in the thread pool `pool`.
pub fn predict(
    net: &mut dyn Network,
    prep: &Prep,
    pool: &rayon::ThreadPool,
    chunk: usize,
    ds: &Dataset,
) -> Result<Predictions> {
    let mut images = Vec::new();
    prep.eval_images(ds, &mut images);
    Ok(pool.install(|| net.predict(&images, ds.len(), chunk))?)
}

/// Accuracy of `net` on `ds`: overall, by goodness, by readout, per layer.
pub fn evaluate(
    net: &mut dyn Network,
    prep: &Prep,
    pool: &rayon::ThreadPool,
    chunk: usize,
    ds: &Dataset,
) -> Result<EvalReport> {
    let _p = ffwd_kernels::profile::scope("trainer: evaluation (all its ops)");
    Ok(report(&predict(net, prep, pool, chunk, ds)?, &ds.labels))
}

/// Hard negative labels of an epoch (0-based `epoch`), one per position
/// of the shuffle `perm`: the network's label scores of every image (`n`
/// images, evaluated in chunks of `chunk`), then a wrong label drawn from
/// their softmax for each position ([`hard_negative_labels`]). Shared by
/// `ffwd train` and the Python epoch loop.
pub fn hard_negatives_of(
    net: &mut dyn Network,
    (images, labels): (&[f32], &[u8]),
    perm: &[u32],
    (seed, epoch): (u64, u32),
    chunk: usize,
) -> Result<Vec<u8>> {
    let (n, classes) = (labels.len(), net.classes());
    let scores = net.label_scores(images, n, chunk)?;
    let (mut ordered, mut rows) = (Vec::with_capacity(n), Vec::with_capacity(scores.len()));
    for &i in perm {
        let i = i as usize;
        ordered.push(labels[i]);
        rows.extend_from_slice(&scores[i * classes..(i + 1) * classes]);
    }
    let mut out = Vec::with_capacity(n);
    hard_negative_labels((seed, epoch, 0), &ordered, &rows, classes, &mut out);
    Ok(out)
}

/// The accuracies of predictions `p` against `labels`.
fn report(p: &Predictions, labels: &[u8]) -> EvalReport {
    EvalReport {
        acc: accuracy(&p.overall, labels),
        goodness_acc: (!p.goodness.is_empty()).then(|| accuracy(&p.goodness, labels)),
        readout_acc: p.readout.as_ref().map(|r| accuracy(r, labels)),
        per_layer: p.per_layer.iter().map(|l| accuracy(l, labels)).collect(),
    }
}

/// A run's data: the training split (less the held-out images), the
/// validation split, the test split and the class count (a pretext task's,
/// under `[ssl]`).
pub type Splits = (Dataset, Option<Dataset>, Dataset, usize);

/// The run's [`Splits`], loaded from `data_dir` or the configured folder.
fn load_data(cfg: &RunConfig, data_dir: Option<&Path>) -> Result<Splits> {
    let name = Name::parse(&cfg.data.dataset)?;
    let root = ffwd_datasets::data_root(data_dir.or(cfg.data.dir.as_deref()));
    let splits = ffwd_datasets::load(name, &root)?;
    let n = splits.train.len();
    if splits.test.is_empty() || n == 0 {
        return Err(Error::Invalid(format!(
            "data.dataset = \"{}\": {} training and {} test images; both splits need images",
            cfg.data.dataset,
            n,
            splits.test.len()
        )));
    }
    let v = cfg.data.validation;
    if v >= n {
        return Err(Error::Invalid(format!("data.validation = {v} leaves no training images of {n}")));
    }
    let avail = n - v;
    let t = if cfg.data.train_size == 0 { avail } else { cfg.data.train_size };
    if t > avail {
        return Err(Error::Invalid(format!(
            "data.train_size = {t} overlaps the {v} held-out images ({n} in the train split)"
        )));
    }
    let train = splits.train.slice(0..t);
    let val = (v > 0).then(|| splits.train.slice(n - v..n));
    let classes = match &cfg.ssl {
        Some(s) => Pretext::parse(&s.task)?.classes(),
        None => train.classes,
    };
    Ok((train, val, splits.test, classes))
}

impl Trainer {
    /// Load the data and build the network. `data_dir` overrides the
    /// config's folder.
    pub fn new(cfg: RunConfig, data_dir: Option<&Path>) -> Result<Self> {
        cfg.validate().map_err(Error::Invalid)?;
        let (train, val, test, classes) = load_data(&cfg, data_dir)?;
        let net = crate::model::build(&cfg, train.shape, classes)?;
        let mut cfg = cfg;
        cfg.output.dir = crate::rundir::claim(&cfg.output.dir)?;
        Self::with_model(cfg, net, train, val, test)
    }

    /// Continue the run in `dir` from its training state (see
    /// [`crate::resume`]): the same configuration, data and position, on
    /// `threads` and `device` if given (the bits do not depend on either).
    /// [`Trainer::run`] then trains the epochs and batches left.
    pub fn resume(dir: &Path, data_dir: Option<&Path>, threads: Option<usize>, device: Option<Device>) -> Result<Self> {
        Self::resume_with(dir, threads, device, &mut |cfg| {
            let mut cfg = cfg.clone();
            if let Some(d) = data_dir {
                cfg.data.dir = Some(d.to_path_buf());
            }
            load_data(&cfg, None)
        })
    }

    /// [`Trainer::resume`] with the data given by `data` (for the
    /// configuration the state holds) instead of loaded from its files.
    pub fn resume_with(
        dir: &Path,
        threads: Option<usize>,
        device: Option<Device>,
        data: &mut dyn FnMut(&RunConfig) -> Result<Splits>,
    ) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        if !path.is_file() {
            let why = if dir.join("model.safetensors").is_file() {
                "it holds a finished run (the training state is removed when a run ends)"
            } else if dir.is_dir() {
                "it holds no training state"
            } else {
                "no such folder"
            };
            return Err(Error::Invalid(format!("--resume {}: {why}; nothing to resume", dir.display())));
        }
        let (saved, restore) = crate::resume::read(&path)?;
        let mut cfg = saved.config;
        cfg.output.dir = dir.to_path_buf();
        cfg.train.threads = threads.unwrap_or(cfg.train.threads);
        cfg.train.device = device.unwrap_or(cfg.train.device);
        cfg.validate().map_err(Error::Invalid)?;
        let (train, val, test, classes) = data(&cfg)?;
        if (train.shape, classes) != (saved.shape, saved.classes) {
            return Err(Error::Checkpoint {
                path,
                reason: format!(
                    "saved for images {:?} and {} classes; the data now gives {:?} and {classes}",
                    saved.shape, saved.classes, train.shape
                ),
            });
        }
        let mut net = crate::model::build(&cfg, train.shape, classes)?;
        restore(&mut *net)?;
        let mut t = Self::with_model(cfg, net, train, val, test)?;
        t.start = saved.position;
        t.metrics = saved.metrics;
        Ok(t)
    }

    /// Where [`Trainer::run`] starts: epochs finished and batches finished
    /// of the next (non-zero for a resumed run).
    pub fn start(&self) -> (usize, usize) {
        (self.start.epoch, self.start.batch)
    }

    /// A trainer for a network built by the caller, on any backend.
    /// The run folder is claimed as by [`Trainer::new`].
    pub fn with_parts<N: Network + 'static>(
        mut cfg: RunConfig,
        net: N,
        train: Dataset,
        val: Option<Dataset>,
        test: Dataset,
    ) -> Result<Self> {
        cfg.output.dir = crate::rundir::claim(&cfg.output.dir)?;
        Self::with_model(cfg, Box::new(net), train, val, test)
    }

    /// A trainer for any model built by the caller, writing into
    /// `cfg.output.dir` as it is (`new` and `with_parts` first claim a run
    /// folder, see [`crate::rundir`]; this one also serves a re-probe of a
    /// saved run, whose report goes beside its checkpoint).
    pub fn with_model(cfg: RunConfig, net: Model, train: Dataset, val: Option<Dataset>, test: Dataset) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.train.threads)
            .build()
            .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?;
        let prep = Prep::for_run(&cfg);
        let (mut val, mut test, mut real_test) = (val, test, None);
        let pretext = cfg.ssl.as_ref().map(|s| Pretext::parse(&s.task)).transpose()?;
        if let Some(p) = pretext {
            p.check(train.shape).map_err(|e| Error::Invalid(format!("ssl.task: {e}")))?;
            if net.classes() != p.classes() {
                return Err(Error::Invalid(format!(
                    "ssl.task = \"{}\" has {} classes, the network {}",
                    p.as_str(),
                    p.classes(),
                    net.classes()
                )));
            }
            let seed = cfg.train.seed;
            val = val.map(|v| p.eval_set(&v, seed));
            let pre = p.eval_set(&test, seed);
            real_test = Some(std::mem::replace(&mut test, pre));
        }
        Ok(Self {
            cfg,
            net,
            prep,
            train,
            val,
            test,
            pretext,
            real_test,
            pool,
            progress: false,
            interrupt: None,
            probe_written: None,
            start: Position::default(),
            metrics: Vec::new(),
            stopping: false,
        })
    }

    /// The linear probe of `[probe]` on the trained network: features of
    /// the training images and of the test set with its real labels; the
    /// report is also written to `<out>/probe.json`. `None` without a
    /// `[probe]` table.
    pub fn probe(&mut self) -> Result<Option<ProbeReport>> {
        let Some(cfg) = self.cfg.probe.clone() else { return Ok(None) };
        let test = self.real_test.as_ref().unwrap_or(&self.test);
        let (mut tr, mut te) = (Vec::new(), Vec::new());
        self.prep.eval_images(&self.train, &mut tr);
        self.prep.eval_images(test, &mut te);
        let classes = self.train.classes;
        let net = &mut self.net;
        let (train_labels, test_labels) = (&self.train.labels[..], &test.labels[..]);
        let rep = self.pool.install(|| net.linear_probe(&cfg, classes, (&tr, train_labels), (&te, test_labels)))?;
        let dir = &self.cfg.output.dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        // an earlier report stays: probe-2.json, probe-3.json, … beside it
        let p = crate::rundir::free_file(dir, "probe", "json")?;
        let io = |source| Error::Io { path: p.clone(), source };
        std::fs::write(&p, serde_json::to_string_pretty(&rep).expect("report serialises")).map_err(io)?;
        self.probe_written = Some(p);
        Ok(Some(rep))
    }

    /// The network, for use after the run.
    pub fn into_net(self) -> Model {
        self.net
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Predictions for a dataset.
    pub fn predict(&mut self, ds: &Dataset) -> Result<Predictions> {
        predict(&mut *self.net, &self.prep, &self.pool, self.cfg.train.eval_chunk, ds)
    }

    pub fn evaluate(&mut self, ds: &Dataset) -> Result<EvalReport> {
        Ok(report(&self.predict(ds)?, &ds.labels))
    }

    /// The name of the backend that trains (`cpu-avx2`, `cpu-scalar`, `cuda`).
    pub fn backend_name(&self) -> &'static str {
        self.net.backend_name()
    }

    /// Write the checkpoint of epoch `epoch`.
    fn save_checkpoint(&mut self, epoch: usize) -> Result<()> {
        checkpoint::save(&self.checkpoint_path(), &*self.net, self.train.shape, &self.cfg, epoch)
    }

    /// Paths of the run's outputs.
    pub fn metrics_path(&self) -> PathBuf {
        self.cfg.output.dir.join("metrics.jsonl")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.cfg.output.dir.join("model.safetensors")
    }

    pub fn curves_path(&self) -> PathBuf {
        self.cfg.output.dir.join("curves.svg")
    }
    pub fn state_path(&self) -> PathBuf {
        self.cfg.output.dir.join(STATE_FILE)
    }

    /// Append one epoch's line to `metrics.jsonl`.
    fn append_metrics(&mut self, r: &EpochReport) -> Result<()> {
        let line = serde_json::to_string(r).expect("report serialises");
        let p = self.metrics_path();
        let io = |source| Error::Io { path: p.clone(), source };
        std::fs::create_dir_all(&self.cfg.output.dir).map_err(io)?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(io)?;
        writeln!(f, "{line}").map_err(io)?;
        self.metrics.push(line);
        // the curves so far, beside the metrics
        let curves = crate::plot::Curves {
            name: String::new(),
            epochs: self.metrics.iter().filter_map(|l| serde_json::from_str(l).ok()).collect(),
        };
        crate::plot::write(&[curves], &self.curves_path())
    }

    /// Write the training state at `pos` (the statistics read back).
    fn save_state(&mut self, pos: &Position) -> Result<()> {
        let path = self.state_path();
        let shape = self.train.shape;
        crate::resume::save(&path, &mut *self.net, (&self.cfg, shape), pos, &self.metrics)
    }

    /// Whether the interrupt hook asks to stop.
    fn stop_asked(&mut self) -> bool {
        if !self.stopping {
            self.stopping = self.interrupt.as_mut().is_some_and(|stop| stop());
        }
        self.stopping
    }

    /// Write the training state at `pos` and stop with [`Error::Interrupted`].
    fn stop_at(&mut self, pos: Position) -> Result<EpochReport> {
        self.save_state(&pos)?;
        Err(Error::Interrupted { epoch: pos.epoch + 1, batch: pos.batch, resume: self.cfg.output.dir.clone() })
    }

    /// Train for the configured epochs (from where a resumed run stopped);
    /// calls `on_epoch` after each, appends each report to
    /// `metrics.jsonl`, writes checkpoints and the training state.
    pub fn run(&mut self, on_epoch: &mut dyn FnMut(&EpochReport)) -> Result<Vec<EpochReport>> {
        let nl = self.net.depth();
        let phases: Vec<std::ops::Range<usize>> = match self.cfg.train.schedule {
            Schedule::Simultaneous => std::iter::once(0..nl).collect(),
            Schedule::LayerByLayer if self.net.layer_by_layer() => (0..nl).map(|l| l..l + 1).collect(),
            Schedule::LayerByLayer => {
                return Err(Error::Invalid(
                    "train.schedule = \"layer-by-layer\" applies to FF MLPs and UFF stacks only".into(),
                ))
            }
        };
        let epochs = self.cfg.train.epochs;
        let total = phases.len() * epochs;
        let start = std::mem::take(&mut self.start);
        if start.epoch >= total {
            return Err(Error::Invalid(format!(
                "training state: {} of {total} epochs done; nothing to resume",
                start.epoch
            )));
        }
        if start.epoch > 0 || start.batch > 0 {
            // metrics.jsonl as it was when the state was written
            let text: String = self.metrics.iter().map(|l| format!("{l}\n")).collect();
            ffwd_tensor::io::write_atomic(&self.metrics_path(), text.as_bytes())?;
        }
        self.pool.install(ffwd_kernels::warm_up_workers);
        let mut reports = Vec::new();
        let mut from = Some(start);
        for global in from.as_ref().map_or(1, |s| s.epoch + 1)..=total {
            let phase = phases[(global - 1) / epochs].clone();
            // the epoch's place in its phase, for the learning-rate schedule
            let in_phase = ((global - 1) % epochs, epochs);
            let mut r = self.train_epoch(global, phase, in_phase, from.take())?;
            let last = global == total;
            let every = self.cfg.train.eval_every;
            if every == 0 && last {
                self.save_checkpoint(global)?;
            }
            if every > 0 && (last || global.is_multiple_of(every)) {
                let chunk = self.cfg.train.eval_chunk;
                let (net, prep, pool) = (&mut *self.net, &self.prep, &self.pool);
                if let Some(val) = &self.val {
                    r.val = Some(evaluate(net, prep, pool, chunk, val)?);
                }
                r.test = Some(evaluate(net, prep, pool, chunk, &self.test)?);
                let per = r.val.as_ref().or(r.test.as_ref()).map(|e| e.per_layer.clone()).unwrap_or_default();
                for (l, a) in per.into_iter().enumerate() {
                    r.layers[l].acc = Some(a);
                }
                if last || self.cfg.output.checkpoint_every_eval {
                    self.save_checkpoint(global)?;
                }
            }
            self.append_metrics(&r)?;
            on_epoch(&r);
            reports.push(r);
            let done = Position { epoch: global, batch: 0, partial: None };
            if last {
                let p = self.state_path();
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|source| Error::Io { path: p, source })?;
                }
            } else if self.stop_asked() {
                self.stop_at(done)?;
            } else if self.cfg.train.checkpoint_every > 0 && global.is_multiple_of(self.cfg.train.checkpoint_every) {
                self.save_state(&done)?;
            }
        }
        Ok(reports)
    }

    /// Hard negative labels of epoch `e32` (0-based) by position, for the
    /// shuffle `perm`: drawn from the network's label scores of every
    /// training image (evaluation images, no augmentation).
    fn hard_negatives(&mut self, e32: u32, perm: &[u32]) -> Result<Vec<u8>> {
        let chunk = self.cfg.train.eval_chunk;
        let mut images = Vec::new();
        self.prep.eval_images(&self.train, &mut images);
        let net = &mut *self.net;
        let labels = &self.train.labels;
        self.pool.install(|| hard_negatives_of(net, (&images, labels), perm, (self.cfg.train.seed, e32), chunk))
    }

    /// Train epoch `epoch` (counted from 1 over every phase) on `layers`,
    /// from batch `from.batch` with the sums `from.partial` when resuming.
    fn train_epoch(
        &mut self,
        epoch: usize,
        layers: std::ops::Range<usize>,
        (in_phase, phase_epochs): (usize, usize),
        from: Option<Position>,
    ) -> Result<EpochReport> {
        let seed = self.cfg.train.seed;
        let n = self.train.len();
        let bs = self.cfg.train.batch;
        let e32 = (epoch - 1) as u32;
        let perm = Philox::new(seed, stream::shuffle(e32)).permutation(n);
        let nb = n.div_ceil(bs);
        let nl = self.net.depth();
        let (first, mut acc, saved_negs) = match from.and_then(|p| p.partial.map(|q| (p.batch, q))) {
            Some((b, p)) if b <= nb => (b, EpochSums::from_partial(&p, nl)?, p.negatives),
            Some((b, _)) => {
                return Err(Error::Invalid(format!(
                    "training state: batch {b} of epoch {epoch}, which has {nb} batches of {bs}"
                )))
            }
            None => (0, EpochSums::new(nl), Vec::new()),
        };
        // training time includes drawing the epoch's hard negatives
        let t0 = Instant::now();
        let hard = match self.cfg.train.negatives {
            Negatives::Random => None,
            Negatives::Hard if saved_negs.len() == n => Some(saved_negs),
            Negatives::Hard => {
                let _p = ffwd_kernels::profile::scope("trainer: hard negatives");
                Some(self.hard_negatives(e32, &perm)?)
            }
        };
        let bar = if self.progress {
            let b = indicatif::ProgressBar::new(nb as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            b.set_prefix(epoch.to_string());
            b.set_position(first as u64);
            Some(b)
        } else {
            None
        };
        let (mut images, mut labels, mut negs, mut tmp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let classes = self.net.classes();
        let every_batches = self.cfg.train.checkpoint_every_batches;
        let (schedule, cooldown) = (self.cfg.train.lr_schedule, self.cfg.train.cooldown_from);
        for b in first..nb {
            if schedule != LrSchedule::Constant {
                self.net.set_lr_scale(schedule.factor_at((in_phase, phase_epochs), (b, nb), cooldown))?;
            }
            let idx = &perm[b * bs..((b + 1) * bs).min(n)];
            let pos = SamplePos { seed, epoch: e32, first: (b * bs) as u64, cell: 0 };
            {
                let _p = ffwd_kernels::profile::scope("trainer: batch images and augmentation (host)");
                let (prep, train) = (&self.prep, &self.train);
                self.pool.install(|| prep.train_images(train, idx, pos, &mut images, &mut labels));
            }
            if let Some(p) = self.pretext {
                p.transform_batch(seed, e32, (b * bs) as u64, self.train.shape, &mut images, &mut labels, &mut tmp);
            }
            match &hard {
                Some(h) => {
                    negs.clear();
                    negs.extend_from_slice(&h[b * bs..((b + 1) * bs).min(n)]);
                }
                None => negative_labels(seed, e32, (b * bs) as u64, &labels, classes, &mut negs),
            }
            let batch = Batch { images: &images, labels: &labels, neg: &negs, layers: layers.clone(), pos };
            let net = &mut self.net;
            let done = {
                let _p = ffwd_kernels::profile::scope("trainer: training step (all its ops)");
                self.pool.install(|| net.train_batch(&batch))?
            };
            for l in layers.clone() {
                if let Some((f, d)) = net.steps_run(l) {
                    acc.steps[l].0 += f;
                    acc.steps[l].1 += d;
                }
            }
            for s in &done {
                acc.add(s);
            }
            if let Some(bar) = &bar {
                bar.inc(1);
                if b % 10 == 0 || b + 1 == nb {
                    let el = t0.elapsed().as_secs_f64().max(1e-9);
                    let loss = layers.clone().map(|l| acc.sums[l].0 / acc.counts[l].max(1) as f64).sum::<f64>();
                    let rate = ((b + 1 - first) * bs).min(n) as f64 / el;
                    bar.set_message(format!("loss {loss:.4} | {rate:.0} samples/s"));
                }
            }
            let stop = self.stop_asked();
            if b + 1 < nb && (stop || (every_batches > 0 && (b + 1).is_multiple_of(every_batches))) {
                let net = &mut self.net;
                for s in &self.pool.install(|| net.flush_stats())? {
                    acc.add(s);
                }
                let mut partial = acc.to_partial(acc.seconds + t0.elapsed().as_secs_f64());
                partial.negatives = hard.clone().unwrap_or_default();
                let here = Position { epoch: epoch - 1, batch: b + 1, partial: Some(partial) };
                if stop {
                    if let Some(bar) = bar {
                        bar.abandon();
                    }
                    return self.stop_at(here);
                }
                self.save_state(&here)?;
            }
        }
        let net = &mut self.net;
        for s in &self.pool.install(|| net.flush_stats())? {
            acc.add(s);
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let secs = acc.seconds + t0.elapsed().as_secs_f64();
        let per = |x: f64, l: usize| (acc.counts[l] > 0).then_some((x / acc.counts[l] as f64) as f32);
        let layer_reports = (0..nl)
            .map(|l| {
                let on = layers.contains(&l);
                let (sums, steps) = (acc.sums[l], acc.steps[l]);
                LayerReport {
                    layer: l,
                    loss: if on { per(sums.0, l) } else { None },
                    // (NaN: the layer's loss is not a goodness loss.)
                    g_pos: if on { per(sums.1, l).filter(|v| !v.is_nan()) } else { None },
                    g_neg: if on { per(sums.2, l).filter(|v| !v.is_nan()) } else { None },
                    aux_loss: if on { per(sums.3, l).filter(|v| !v.is_nan()) } else { None },
                    acc: None,
                    fwd_steps: (steps.0.all > 0).then(|| steps.0.share()),
                    dw_steps: (steps.1.all > 0).then(|| steps.1.share()),
                }
            })
            .collect();
        Ok(EpochReport {
            epoch,
            training_layer: (self.cfg.train.schedule == Schedule::LayerByLayer).then_some(layers.start),
            layers: layer_reports,
            readout_loss: self.net.has_readout().then_some((acc.readout / nb as f64) as f32),
            train_seconds: secs,
            samples_per_s: n as f64 / secs.max(1e-9),
            val: None,
            test: None,
            backend: self.backend_name(),
            threads: self.threads(),
            seed,
        })
    }
}
