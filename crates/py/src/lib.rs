//! The compiled core of the `ffwd` Python package. The Python layer
//! (`python/ffwd/__init__.py`) converts and checks numpy arguments and
//! calls into these classes; everything here works on the engine's one
//! network interface (`ffwd_layers::Network`), so every network kind and
//! every backend the command line has is reachable from Python with the
//! same bits.
//!
//! The GIL is released while the engine computes; long loops over batches
//! check for signals between batches, so Ctrl-C raises `KeyboardInterrupt`
//! with the model in the state after its last whole batch.

use ffwd_layers::ff::negative_labels;
use ffwd_layers::probe::{FeatureForm, FeatureView};
use ffwd_layers::uff::SamplePos;
use ffwd_layers::{Batch, BatchStats};
use ffwd_tensor::{stream, Philox};
use ffwd_train::config::{Device, LrSchedule, Negatives, RunConfig, Schedule};
use ffwd_train::model::{build_on_device, Model};
use ffwd_train::trainer::{hard_negatives_of, Trainer};
use ffwd_train::{checkpoint, Error};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

create_exception!(ffwd, FfwdError, PyRuntimeError, "An error of the ffwd engine; the message names what failed.");

/// An engine error as the Python exception a user would expect, with the
/// engine's message: bad configs and inputs are `ValueError`, missing
/// files `FileNotFoundError`, other I/O `OSError`, the rest `FfwdError`.
fn py_err(e: Error) -> PyErr {
    use ffwd_datasets::Error as D;
    use ffwd_layers::Error as L;
    let msg = e.to_string();
    match &e {
        Error::Config { .. } | Error::Invalid(_) => PyValueError::new_err(msg),
        Error::Layers(L::Config(_) | L::Batch(_)) => PyValueError::new_err(msg),
        Error::Data(D::NotFound { .. } | D::UnknownDataset(_)) => match &e {
            Error::Data(D::UnknownDataset(_)) => PyValueError::new_err(msg),
            _ => PyFileNotFoundError::new_err(msg),
        },
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        _ => FfwdError::new_err(msg),
    }
}

fn layers_err(e: ffwd_layers::Error) -> PyErr {
    py_err(Error::Layers(e))
}

fn parse_device(device: &str) -> PyResult<Device> {
    device.parse::<Device>().map_err(PyValueError::new_err)
}

fn pool(threads: usize) -> PyResult<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| FfwdError::new_err(format!("thread pool of {threads} threads: {e}")))
}

/// A run configuration: the same fields as the command line's TOML files.
#[pyclass(name = "RunConfig", module = "ffwd")]
#[derive(Clone)]
struct PyRunConfig {
    inner: RunConfig,
}

#[pymethods]
impl PyRunConfig {
    /// The default configuration for a dataset (`digits` trains offline).
    #[new]
    #[pyo3(signature = (dataset = "digits"))]
    fn new(dataset: &str) -> PyResult<Self> {
        let inner = RunConfig::default_for(dataset);
        inner.validate().map_err(PyValueError::new_err)?;
        Ok(Self { inner })
    }

    /// Read a TOML run configuration.
    #[staticmethod]
    fn from_toml(path: PathBuf) -> PyResult<Self> {
        Ok(Self { inner: RunConfig::from_file(&path).map_err(py_err)? })
    }

    /// Parse TOML text.
    #[staticmethod]
    fn from_toml_str(text: &str) -> PyResult<Self> {
        Ok(Self { inner: RunConfig::from_toml_str(text, "<string>".as_ref()).map_err(py_err)? })
    }

    /// A configuration from a dict with the TOML file's structure (missing
    /// fields take their defaults; unknown ones are errors naming them).
    #[staticmethod]
    fn from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> PyResult<Self> {
        let text: String = py.import("json")?.call_method1("dumps", (d,))?.extract()?;
        // serde_json's " at line 1 column N" points into text the user never saw.
        let inner: RunConfig = serde_json::from_str(&text).map_err(|e| {
            let m = e.to_string();
            let m = m.split(" at line ").next().unwrap_or(&m).to_string();
            PyValueError::new_err(format!("config: {m}"))
        })?;
        inner.validate().map_err(|e| PyValueError::new_err(format!("config: {e}")))?;
        Ok(Self { inner })
    }

    /// The configuration as a dict (the TOML file's structure).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.inner).map_err(|e| FfwdError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// The configuration as TOML text.
    fn to_toml(&self) -> String {
        self.inner.to_toml()
    }

    fn __repr__(&self) -> String {
        format!("RunConfig(<{} on {}>)", self.inner.data.dataset, self.inner.train.device)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

/// A network on a backend, with what it needs to train by batches.
#[pyclass(name = "Model", module = "ffwd")]
struct PyModel {
    /// (A `Mutex` makes the object `Sync`, as Python objects must be; the
    /// mutating methods reach it through `&mut self` without locking.)
    net: Mutex<Model>,
    cfg: RunConfig,
    shape: (usize, usize, usize),
    /// Epochs completed (names the Philox streams of the next one).
    epoch: usize,
    /// Samples seen in the current epoch.
    pos: u64,
    pool: rayon::ThreadPool,
}

/// One batch's statistics as a dict.
fn stats_dict<'py>(py: Python<'py>, s: &BatchStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let layers: Vec<Option<Bound<'py, PyDict>>> = s
        .layers
        .iter()
        .map(|l| {
            l.as_ref()
                .map(|l| -> PyResult<_> {
                    let e = PyDict::new(py);
                    e.set_item("loss", l.loss)?;
                    for (k, v) in [("g_pos", l.g_pos), ("g_neg", l.g_neg), ("aux_loss", l.aux)] {
                        if !v.is_nan() {
                            e.set_item(k, v)?;
                        }
                    }
                    Ok(e)
                })
                .transpose()
        })
        .collect::<PyResult<_>>()?;
    d.set_item("layers", layers)?;
    d.set_item("readout_loss", s.readout_loss)?;
    Ok(d)
}

impl PyModel {
    fn with(net: Model, cfg: RunConfig, shape: (usize, usize, usize), epoch: usize) -> PyResult<Self> {
        let pool = pool(cfg.train.threads)?;
        Ok(Self { net: Mutex::new(net), cfg, shape, epoch, pos: 0, pool })
    }

    fn net_mut(&mut self) -> &mut Model {
        self.net.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn net(&self) -> MutexGuard<'_, Model> {
        self.net.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dim(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// Check an (n × dim) image array and n labels; return n.
    fn check(&self, x: &PyReadonlyArray2<'_, f32>, y: Option<&PyReadonlyArray1<'_, u8>>) -> PyResult<usize> {
        let (n, d) = (x.shape()[0], x.shape()[1]);
        if d != self.dim() {
            return Err(PyValueError::new_err(format!(
                "x: images of {d} values, but the model takes {:?} = {} values per image",
                self.shape,
                self.dim()
            )));
        }
        if let Some(y) = y {
            if y.len() != n {
                return Err(PyValueError::new_err(format!("y: {} labels for {n} images", y.len())));
            }
        }
        Ok(n)
    }

    /// One batch at (epoch, first): returns the statistics read back.
    fn step(
        &mut self,
        py: Python<'_>,
        (x, y): (&[f32], &[u8]),
        layers: std::ops::Range<usize>,
        (first, hard): (u64, Option<&[u8]>),
    ) -> PyResult<Vec<BatchStats>> {
        let seed = self.cfg.train.seed;
        let epoch = self.epoch as u32;
        let classes = self.net_mut().classes();
        let pool = &self.pool;
        let net = self.net.get_mut().unwrap_or_else(PoisonError::into_inner);
        py.allow_threads(|| {
            let mut neg = Vec::new();
            match hard {
                Some(h) => neg.extend_from_slice(h),
                None => negative_labels(seed, epoch, first, y, classes, &mut neg),
            }
            let pos = SamplePos { seed, epoch, first, cell: 0 };
            let batch = Batch { images: x, labels: y, neg: &neg, layers, pos };
            pool.install(|| net.train_batch(&batch))
        })
        .map_err(layers_err)
    }

    fn layers(&self, layers: Option<(usize, usize)>) -> PyResult<std::ops::Range<usize>> {
        let net = self.net();
        let depth = net.depth();
        match layers {
            None => Ok(0..depth),
            Some((a, b)) if a < b && b <= depth => {
                if !net.layer_by_layer() && (a, b) != (0, depth) {
                    return Err(PyValueError::new_err(format!(
                        "layers: the {} trains all its layers together",
                        net.kind_name()
                    )));
                }
                Ok(a..b)
            }
            Some((a, b)) => Err(PyValueError::new_err(format!("layers: ({a}, {b}) is not a range within 0..{depth}"))),
        }
    }
}

#[pymethods]
impl PyModel {
    /// A fresh network for `config` (its `[model]`, `[conv]`, `[ffcl]` or
    /// `[uff]` table, its seed, device and threads) on images of
    /// `image_shape` = (channels, height, width) with `classes` classes.
    #[new]
    fn new(config: &PyRunConfig, image_shape: (usize, usize, usize), classes: usize) -> PyResult<Self> {
        let cfg = config.inner.clone();
        let net = build_on_device(cfg.train.device, &cfg, image_shape, classes).map_err(py_err)?;
        Self::with(net, cfg, image_shape, 0)
    }

    /// A network saved by `save` or by `ffwd train`, built on `device`.
    #[staticmethod]
    #[pyo3(signature = (path, device = "cpu", threads = 0))]
    fn load(path: PathBuf, device: &str, threads: usize) -> PyResult<Self> {
        let device = parse_device(device)?;
        if !path.is_file() {
            return Err(PyFileNotFoundError::new_err(format!("{}: no such checkpoint file", path.display())));
        }
        let (meta, net) = checkpoint::load(&path, device).map_err(py_err)?;
        let mut cfg = meta.config;
        cfg.train.device = device;
        cfg.train.threads = threads;
        let shape = if meta.shape.0 == 0 { (1, 1, meta.image_dim) } else { meta.shape };
        Self::with(net, cfg, shape, meta.epoch)
    }

    /// One training step on a batch (x: n × values, float32; y: n labels).
    /// The negative labels and random draws come from the Philox streams of
    /// the current epoch at the current position, as in `ffwd train`.
    #[pyo3(signature = (x, y, layers = None))]
    fn fit_batch<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: PyReadonlyArray1<'py, u8>,
        layers: Option<(usize, usize)>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let n = self.check(&x, Some(&y))?;
        let layers = self.layers(layers)?;
        let first = self.pos;
        let stats = self.step(py, (x.as_slice()?, y.as_slice()?), layers, (first, None))?;
        self.pos += n as u64;
        stats.iter().map(|s| stats_dict(py, s)).collect()
    }

    /// One epoch over (x, y) as `ffwd train` runs it: shuffled by the
    /// epoch's Philox permutation, in batches of `batch` (default: the
    /// config's), with the config's learning-rate schedule (the epoch's
    /// place among `train.epochs`, per layer phase under the layer-by-layer
    /// schedule) and negatives (hard ones drawn from the readout's scores of
    /// all of x at the start), then the epoch counter advances. Returns
    /// every batch's statistics. Ctrl-C stops after the current batch.
    /// Augmentation (`[data.augment]` on an MLP) is `ffwd.train`'s only.
    #[pyo3(signature = (x, y, batch = None, layers = None))]
    fn train_epoch<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: PyReadonlyArray1<'py, u8>,
        batch: Option<usize>,
        layers: Option<(usize, usize)>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let n = self.check(&x, Some(&y))?;
        let layers = self.layers(layers)?;
        let bs = batch.unwrap_or(self.cfg.train.batch);
        if bs == 0 {
            return Err(PyValueError::new_err("batch: must be at least 1"));
        }
        let (xs, ys) = (x.as_slice()?, y.as_slice()?);
        let d = self.dim();
        let t = self.cfg.train.clone();
        let a = &self.cfg.data.augment;
        if self.cfg.conv.is_none() && (a.crop_padding > 0 || a.rotation_deg > 0.0 || a.normalize || a.dropout > 0.0) {
            return Err(PyValueError::new_err(
                "train_epoch does not augment: [data.augment] of an MLP is applied by ffwd.train only",
            ));
        }
        // the epoch's place in its phase, for the learning-rate schedule
        let in_phase = match t.schedule {
            Schedule::LayerByLayer => self.epoch % t.epochs,
            Schedule::Simultaneous => self.epoch,
        };
        if t.lr_schedule != LrSchedule::Constant && in_phase >= t.epochs {
            return Err(PyValueError::new_err(format!(
                "train.lr_schedule = {:?} spans train.epochs = {} epochs; this would be epoch {} of them \
                 (raise train.epochs or use a constant schedule)",
                t.lr_schedule,
                t.epochs,
                in_phase + 1
            )));
        }
        let perm = Philox::new(t.seed, stream::shuffle(self.epoch as u32)).permutation(n);
        let hard = match t.negatives {
            Negatives::Random => None,
            Negatives::Hard => {
                let (pool, epoch) = (&self.pool, self.epoch as u32);
                let net = self.net.get_mut().unwrap_or_else(PoisonError::into_inner);
                let (seed, chunk, perm) = (t.seed, t.eval_chunk, &perm);
                Some(
                    py.allow_threads(|| {
                        pool.install(|| hard_negatives_of(&mut **net, (xs, ys), perm, (seed, epoch), chunk))
                    })
                    .map_err(py_err)?,
                )
            }
        };
        let nb = n.div_ceil(bs);
        let (mut xb, mut yb) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        for (b, idx) in perm.chunks(bs).enumerate() {
            xb.clear();
            yb.clear();
            for &i in idx {
                xb.extend_from_slice(&xs[i as usize * d..(i as usize + 1) * d]);
                yb.push(ys[i as usize]);
            }
            if t.lr_schedule != LrSchedule::Constant {
                let f = t.lr_schedule.factor_at((in_phase, t.epochs), (b, nb), t.cooldown_from);
                self.net_mut().set_lr_scale(f).map_err(layers_err)?;
            }
            let first = (b * bs) as u64;
            let neg = hard.as_ref().map(|h| &h[b * bs..b * bs + idx.len()]);
            for s in self.step(py, (&xb, &yb), layers.clone(), (first, neg))? {
                out.push(stats_dict(py, &s)?);
            }
            self.pos = first + idx.len() as u64;
            if let Err(e) = py.check_signals() {
                for s in self.net_mut().flush_stats().map_err(layers_err)? {
                    out.push(stats_dict(py, &s)?);
                }
                return Err(e);
            }
        }
        let pool = &self.pool;
        let net = self.net.get_mut().unwrap_or_else(PoisonError::into_inner);
        for s in py.allow_threads(|| pool.install(|| net.flush_stats())).map_err(layers_err)? {
            out.push(stats_dict(py, &s)?);
        }
        self.epoch += 1;
        self.pos = 0;
        Ok(out)
    }

    /// Predicted labels of n images (n × values): the config's method.
    /// With `all=True`, a dict with `overall`, `goodness`, `per_layer` and
    /// `readout` where the network has them.
    #[pyo3(signature = (x, chunk = 1000, all = false))]
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        chunk: usize,
        all: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = self.check(&x, None)?;
        let xs = x.as_slice()?;
        let pool = &self.pool;
        let net = self.net.get_mut().unwrap_or_else(PoisonError::into_inner);
        let p = py.allow_threads(|| pool.install(|| net.predict(xs, n, chunk.max(1)))).map_err(layers_err)?;
        let arr = |v: Vec<u8>| v.into_pyarray(py).into_any();
        if !all {
            return Ok(arr(p.overall));
        }
        let d = PyDict::new(py);
        d.set_item("overall", arr(p.overall))?;
        if !p.goodness.is_empty() {
            d.set_item("goodness", arr(p.goodness))?;
        }
        let per: Vec<_> = p.per_layer.into_iter().map(arr).collect();
        d.set_item("per_layer", per)?;
        if let Some(r) = p.readout {
            d.set_item("readout", arr(r))?;
        }
        Ok(d.into_any())
    }

    /// Each layer's goodness (sum form) of n images with the labels `y`
    /// (n labels; None: the neutral one, FF MLPs only): a list of one
    /// float32 array of n values per layer or block (the FF nets).
    fn goodness<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: Vec<Option<u8>>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<f32>>>> {
        let n = self.check(&x, None)?;
        if y.len() != n {
            return Err(PyValueError::new_err(format!("labels: {} labels for {n} images", y.len())));
        }
        let xs = x.as_slice()?;
        let pool = &self.pool;
        let net = self.net.get_mut().unwrap_or_else(PoisonError::into_inner);
        let g = py.allow_threads(|| pool.install(|| net.goodness(xs, &y))).map_err(layers_err)?;
        Ok(g.into_iter().map(|v| v.into_pyarray(py)).collect())
    }

    /// The features a linear probe reads (n × Σ widths): `form` is
    /// "standard" or "raw"; `label` the label written into label inputs
    /// (None: the neutral value).
    #[pyo3(signature = (x, form = "standard", label = None))]
    fn features<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        form: &str,
        label: Option<u8>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let n = self.check(&x, None)?;
        let form = match form {
            "standard" => FeatureForm::Standard,
            "raw" => FeatureForm::Raw,
            other => return Err(PyValueError::new_err(format!("form: {other:?} is not \"standard\" or \"raw\""))),
        };
        let pool = &self.pool;
        let net = self.net.get_mut().unwrap_or_else(PoisonError::into_inner);
        let kind = net.kind_name();
        let Some(f) = net.features() else {
            return Err(PyValueError::new_err(format!("features: the {kind} has no feature extractor")));
        };
        let width: usize = f.feature_dims().iter().sum();
        let xs = x.as_slice()?;
        let out = py
            .allow_threads(|| {
                let mut out = Vec::new();
                pool.install(|| f.features(xs, n, FeatureView { form, label }, &mut out)).map(|()| out)
            })
            .map_err(layers_err)?;
        PyArray1::from_vec(py, out).reshape([n, width])
    }

    /// Every parameter and running statistic as a float32 numpy array,
    /// by its checkpoint name.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, t) in self.net().named_tensors().map_err(layers_err)? {
            let shape = t.shape().to_vec();
            let a = PyArray1::from_vec(py, t.into_vec()).reshape(shape)?;
            d.set_item(name, a)?;
        }
        Ok(d)
    }

    /// Save a checkpoint (the `ffwd train` format: safetensors with the
    /// run configuration as metadata).
    fn save(&self, path: PathBuf) -> PyResult<()> {
        checkpoint::save(&path, &**self.net(), self.shape, &self.cfg, self.epoch).map_err(py_err)
    }

    /// What kind of network this is.
    #[getter]
    fn kind(&self) -> &'static str {
        self.net().kind_name()
    }
    /// The backend it runs on.
    #[getter]
    fn backend(&self) -> &'static str {
        self.net().backend_name()
    }
    /// Layers, blocks or cells (a UFF stack's classifier counted last).
    #[getter]
    fn depth(&self) -> usize {
        self.net().depth()
    }
    #[getter]
    fn classes(&self) -> usize {
        self.net().classes()
    }
    /// (channels, height, width)
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        self.shape
    }
    /// Epochs completed.
    #[getter]
    fn epoch(&self) -> usize {
        self.epoch
    }
    #[getter]
    fn config(&self) -> PyRunConfig {
        PyRunConfig { inner: self.cfg.clone() }
    }

    fn __repr__(&self) -> String {
        let net = self.net();
        format!("Model(<{} on {}, {} layers, epoch {}>)", net.kind_name(), net.backend_name(), net.depth(), self.epoch)
    }
}

/// A whole `ffwd train` run: data, network, epochs, evaluation, metrics,
/// checkpoint and probe in the run folder. `progress`: None, True (the
/// command line's progress bar on stderr) or a callable given each epoch's
/// metrics as a JSON string. Returns (metrics as JSON lines, the model,
/// the run folder, the probe report as JSON or None).
#[pyfunction]
#[pyo3(signature = (config, progress = None, data_dir = None))]
fn train(
    py: Python<'_>,
    config: &PyRunConfig,
    progress: Option<PyObject>,
    data_dir: Option<PathBuf>,
) -> PyResult<(Vec<String>, PyModel, String, Option<String>)> {
    let cfg = config.inner.clone();
    let t = py.allow_threads(|| Trainer::new(cfg, data_dir.as_deref())).map_err(py_err)?;
    run_trainer(py, t, progress)
}

/// Continue the interrupted run in `run_dir` from its training state, to
/// the bits it would have had uninterrupted (`ffwd train --resume`), on
/// `threads` and `device` if given. Returns what [`train`] returns, with
/// the metrics of the epochs this call trained.
#[pyfunction]
#[pyo3(signature = (run_dir, threads = None, device = None, progress = None, data_dir = None))]
fn resume(
    py: Python<'_>,
    run_dir: PathBuf,
    threads: Option<usize>,
    device: Option<String>,
    progress: Option<PyObject>,
    data_dir: Option<PathBuf>,
) -> PyResult<(Vec<String>, PyModel, String, Option<String>)> {
    let device = device.as_deref().map(parse_device).transpose()?;
    let t = py.allow_threads(|| Trainer::resume(&run_dir, data_dir.as_deref(), threads, device)).map_err(py_err)?;
    run_trainer(py, t, progress)
}

/// Train `t` to the end (see [`train`]).
fn run_trainer(
    py: Python<'_>,
    mut t: Trainer,
    progress: Option<PyObject>,
) -> PyResult<(Vec<String>, PyModel, String, Option<String>)> {
    t.progress = progress_bar(py, &progress);
    let callback = progress.filter(|p| p.bind(py).is_callable());
    // Signals (Ctrl-C) are checked after every batch; the run stops there.
    let signal: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let slot = signal.clone();
    t.interrupt = Some(Box::new(move || {
        Python::with_gil(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                true
            }
        })
    }));
    let mut failed: Option<PyErr> = None;
    let mut lines = Vec::new();
    let reports = py.allow_threads(|| {
        t.run(&mut |r| {
            let line = serde_json::to_string(r).unwrap_or_default();
            if let Some(cb) = &callback {
                Python::with_gil(|py| {
                    if failed.is_none() {
                        if let Err(e) = cb.call1(py, (line.clone(),)) {
                            failed = Some(e);
                        }
                    }
                });
            }
            lines.push(line);
        })
    });
    if let Err(e) = reports {
        return Err(match (e, signal.lock().unwrap_or_else(PoisonError::into_inner).take()) {
            (Error::Interrupted { .. }, Some(sig)) => sig,
            (e, _) => py_err(e),
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let probe = py.allow_threads(|| t.probe()).map_err(py_err)?;
    let probe = probe.map(|p| serde_json::to_string(&p).unwrap_or_default());
    let out = t.cfg.output.dir.display().to_string();
    let epoch = t.cfg.train.epochs;
    let (cfg, shape) = (t.cfg.clone(), t.train.shape);
    let model = PyModel::with(t.into_net(), cfg, shape, epoch)?;
    Ok((lines, model, out, probe))
}

/// Whether `progress` asks for the progress bar (True, not a callable).
fn progress_bar(py: Python<'_>, p: &Option<PyObject>) -> bool {
    p.as_ref().is_some_and(|p| !p.bind(py).is_callable() && p.bind(py).is_truthy().unwrap_or(false))
}

/// A dataset by name: (x_train, y_train, x_test, y_test, classes), images
/// as float32 n × channels × height × width in [0, 1] (byte / 255),
/// labels as uint8.
#[pyfunction]
#[pyo3(signature = (name, data_dir = None))]
#[allow(clippy::type_complexity)]
fn load_dataset<'py>(
    py: Python<'py>,
    name: &str,
    data_dir: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<u8>>, Bound<'py, PyAny>, Bound<'py, PyArray1<u8>>, usize)> {
    let n = ffwd_datasets::Name::parse(name).map_err(|e| py_err(e.into()))?;
    let root = ffwd_datasets::data_root(data_dir.as_deref());
    let s = py.allow_threads(|| ffwd_datasets::load(n, &root)).map_err(|e| py_err(e.into()))?;
    let images = |ds: &ffwd_datasets::Dataset| -> PyResult<Bound<'py, PyAny>> {
        let (c, h, w) = ds.shape;
        let mut v = vec![0.0f32; ds.len() * ds.dim()];
        for i in 0..ds.len() {
            ds.image_f32(i, &mut v[i * ds.dim()..(i + 1) * ds.dim()]);
        }
        Ok(PyArray1::from_vec(py, v).reshape([ds.len(), c, h, w])?.into_any())
    };
    let classes = s.train.classes;
    Ok((
        images(&s.train)?,
        s.train.labels.clone().into_pyarray(py),
        images(&s.test)?,
        s.test.labels.clone().into_pyarray(py),
        classes,
    ))
}

#[pymodule]
fn _ffwd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRunConfig>()?;
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(resume, m)?)?;
    m.add_function(wrap_pyfunction!(load_dataset, m)?)?;
    m.add("FfwdError", m.py().get_type::<FfwdError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
