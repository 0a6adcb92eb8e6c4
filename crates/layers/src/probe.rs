//! The linear probe: freeze a trained network, read its features, and
//! train a linear softmax classifier on the real labels — on each layer's
//! features alone and on their concatenation. The standard measure of how
//! well a (self-)supervised representation transfers.
//!
//! Any network that implements [`Features`] can be probed: the FF MLP
//! ([`crate::ff::FfNet`]: the length-normalised activity of every layer
//! with the label inputs neutral), and the backprop nets.
//!
//! Training: zero-initialised weights and bias, mean cross-entropy, the
//! configured optimiser, `epochs` passes over the training features in
//! minibatches of `batch`, shuffled by the Philox stream `shuffle(e)` of
//! the probe's seed. Features are computed once (the network is frozen), so
//! the probe costs one forward of the network and then only the linear
//! classifier.

use crate::config::OptimConfig;
use crate::readout::Readout;
use crate::{Error, Result};
use ffwd_kernels::Backend;
use ffwd_tensor::{stream, Philox};
use serde::{Deserialize, Serialize};

/// A frozen network seen as a feature extractor.
pub trait Features: Send {
    /// Width of each feature group (one per layer), in row order.
    fn feature_dims(&self) -> Vec<usize>;
    /// Features of `n` images (n × input values): `n × Σ dims`, the groups
    /// concatenated per row, in the given view. A view the net does not
    /// have is an error naming it.
    /// The features are computed on the network's own backend and handed
    /// back on the host.
    fn features(&mut self, images: &[f32], n: usize, view: FeatureView, out: &mut Vec<f32>) -> Result<()>;
}

/// Which activity of each layer the probe reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureForm {
    /// Each net's own view (its `Features` docs): for the FF and BP MLPs,
    /// every layer's length-normalised activity, as the next layer sees it.
    #[default]
    Standard,
    /// FF and BP MLPs: the ReLU activity before the length normalisation,
    /// so its length (the goodness) is part of the features.
    Raw,
}

/// What the probe feeds the net and reads from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureView {
    pub form: FeatureForm,
    /// Nets with label inputs (the FF MLP): this label written into them
    /// instead of the neutral value (for a pretext net, e.g. rotation 0 for
    /// upright images).
    pub label: Option<u8>,
}

impl FeatureView {
    /// An error for a view `net` does not have.
    pub fn unsupported(&self, net: &str, what: &str) -> Error {
        let form = match self.form {
            FeatureForm::Standard => "standard",
            FeatureForm::Raw => "raw",
        };
        let label = self.label.map_or("the neutral label".to_string(), |l| format!("label {l}"));
        Error::Config(format!("probe: the {net} {what} (asked: {form} features with {label})"))
    }

    /// For nets with one view: Ok for the default view, else the error.
    pub fn only_default(&self, net: &str, what: &str) -> Result<()> {
        if *self == Self::default() {
            Ok(())
        } else {
            Err(self.unsupported(net, what))
        }
    }
}

/// Settings of the probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    pub epochs: usize,
    pub batch: usize,
    pub optim: OptimConfig,
    pub seed: u64,
    /// Probe each layer alone as well as the concatenation.
    pub per_layer: bool,
    /// Which activity of each layer is read.
    pub features: FeatureForm,
    /// Nets with label inputs: the label written into them while features
    /// are read (default: the neutral value).
    pub label: Option<u8>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch: 100,
            optim: OptimConfig::default(),
            seed: 0,
            per_layer: true,
            features: FeatureForm::Standard,
            label: None,
        }
    }
}

/// Test accuracy of the probes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// One per layer (empty unless `per_layer`).
    pub per_layer: Vec<f32>,
    /// On the concatenation of every layer's features.
    pub concat: f32,
    /// Final-epoch mean training loss of the concatenation probe.
    pub concat_train_loss: f32,
    pub train_images: usize,
    pub test_images: usize,
    pub epochs: usize,
    /// The view the features were read in.
    #[serde(default)]
    pub features: FeatureForm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
}

/// Features of all `n` images, in chunks of `chunk`.
pub fn extract(
    net: &mut dyn Features,
    images: &[f32],
    n: usize,
    chunk: usize,
    view: FeatureView,
    out: &mut Vec<f32>,
) -> Result<()> {
    let f: usize = net.feature_dims().iter().sum();
    if n == 0 {
        out.clear();
        return Ok(());
    }
    let di = images.len() / n;
    out.resize(n * f, 0.0);
    let mut part = Vec::new();
    for s in (0..n).step_by(chunk.max(1)) {
        let m = chunk.max(1).min(n - s);
        net.features(&images[s * di..(s + m) * di], m, view, &mut part)?;
        out[s * f..(s + m) * f].copy_from_slice(&part[..m * f]);
    }
    Ok(())
}

/// Columns `off..off + d` of an `n × f` matrix.
fn columns(x: &[f32], f: usize, off: usize, d: usize) -> Vec<f32> {
    x.chunks_exact(f).flat_map(|r| r[off..off + d].iter().copied()).collect()
}

/// Train one linear classifier on `train` (n × d) on the backend `be` and
/// return (test accuracy, last epoch's mean loss). An epoch's batch losses
/// are read back at its end and summed in order in f64 (weighted by batch
/// size); a non-finite one is an error.
pub fn fit<B: Backend>(
    be: &B,
    cfg: &ProbeConfig,
    d: usize,
    classes: usize,
    (train, train_labels): (&[f32], &[u8]),
    (test, test_labels): (&[f32], &[u8]),
) -> Result<(f32, f32)> {
    let n = train_labels.len();
    if train.len() != n * d || test.len() != test_labels.len() * d || n == 0 {
        return Err(Error::Config(format!(
            "probe: {n} training labels with {} feature values and {} test labels with {} values do not fit width {d}",
            train.len(),
            test_labels.len(),
            test.len()
        )));
    }
    if let Some(&y) = train_labels.iter().chain(test_labels).find(|&&y| y as usize >= classes) {
        return Err(Error::Config(format!("probe: label {y} is not below the {classes} classes")));
    }
    let mut head = Readout::new(be, d, classes, &cfg.optim)?;
    let bs = cfg.batch.max(1);
    let (mut xb, mut yb) = (Vec::new(), Vec::new());
    let mut feats = B::Buf::default();
    let mut losses = crate::stats::Scalars::new(be, n.div_ceil(bs))?;
    let mut last = 0.0f64;
    for e in 0..cfg.epochs {
        let perm = Philox::new(cfg.seed, stream::shuffle(e as u32)).permutation(n);
        for (k, idx) in perm.chunks(bs).enumerate() {
            xb.clear();
            yb.clear();
            for &i in idx {
                xb.extend_from_slice(&train[i as usize * d..(i as usize + 1) * d]);
                yb.push(train_labels[i as usize]);
            }
            be.upload(&xb, &mut feats)?;
            head.train_step(be, &feats, &yb, losses.slot(k))?;
        }
        let mut total = 0.0f64;
        for (l, idx) in losses.read(be)?.into_iter().zip(perm.chunks(bs)) {
            if !l.is_finite() {
                return Err(Error::NonFinite { what: format!("the linear probe (width {d})"), loss: l });
            }
            total += l as f64 * idx.len() as f64;
        }
        last = total / n as f64;
    }
    let mut pred = Vec::with_capacity(test_labels.len());
    be.upload(test, &mut feats)?;
    head.predict(be, &feats, test_labels.len(), &mut pred)?;
    let right = pred.iter().zip(test_labels).filter(|(a, b)| a == b).count();
    Ok((right as f32 / test_labels.len().max(1) as f32, last as f32))
}

/// Probe `net`: features of both sets, then one classifier per layer (if
/// configured) and one on the concatenation.
pub fn linear_probe<B: Backend>(
    net: &mut dyn Features,
    be: &B,
    cfg: &ProbeConfig,
    classes: usize,
    (train_images, train_labels): (&[f32], &[u8]),
    (test_images, test_labels): (&[f32], &[u8]),
) -> Result<ProbeReport> {
    let dims = net.feature_dims();
    let f: usize = dims.iter().sum();
    let (mut tr, mut te) = (Vec::new(), Vec::new());
    let view = FeatureView { form: cfg.features, label: cfg.label };
    extract(net, train_images, train_labels.len(), 1000, view, &mut tr)?;
    extract(net, test_images, test_labels.len(), 1000, view, &mut te)?;
    let mut report = ProbeReport {
        train_images: train_labels.len(),
        test_images: test_labels.len(),
        epochs: cfg.epochs,
        features: cfg.features,
        label: cfg.label,
        ..Default::default()
    };
    if cfg.per_layer && dims.len() > 1 {
        let mut off = 0;
        for &d in &dims {
            let (a, b) = (columns(&tr, f, off, d), columns(&te, f, off, d));
            report.per_layer.push(fit(be, cfg, d, classes, (&a, train_labels), (&b, test_labels))?.0);
            off += d;
        }
    }
    let (acc, loss) = fit(be, cfg, f, classes, (&tr, train_labels), (&te, test_labels))?;
    report.concat = acc;
    report.concat_train_loss = loss;
    if cfg.per_layer && dims.len() == 1 {
        report.per_layer.push(acc);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffwd_kernels::CpuBackend;

    /// Three classes, each a Gaussian-free blob: class c has feature c
    /// large; the other features are noise from Philox.
    fn blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut noise = vec![0.0f32; n * 5];
        Philox::new(seed, stream::noise(0)).fill_uniform(&mut noise, -0.5, 0.5);
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        for (i, &y) in labels.iter().enumerate() {
            noise[i * 5 + y as usize] += 2.0;
        }
        (noise, labels)
    }

    #[test]
    fn a_linear_probe_separates_linearly_separable_features() {
        let be = CpuBackend::best();
        let (tr, ytr) = blobs(300, 1);
        let (te, yte) = blobs(90, 2);
        let cfg = ProbeConfig { epochs: 20, batch: 32, ..Default::default() };
        let (acc, loss) = fit(&be, &cfg, 5, 3, (&tr, &ytr), (&te, &yte)).unwrap();
        assert!(acc > 0.97 && loss < 0.8, "accuracy {acc}, loss {loss} (ln 3 = 1.10 at the start)");
        // Shuffled labels carry no signal: near chance.
        let mut bad = ytr.clone();
        bad.rotate_left(1);
        let (acc, _) = fit(&be, &cfg, 5, 3, (&tr, &bad), (&te, &yte)).unwrap();
        assert!(acc < 0.6, "accuracy {acc} on rotated labels");
    }

    #[test]
    fn probe_inputs_that_do_not_fit_are_errors() {
        let be = CpuBackend::best();
        let cfg = ProbeConfig::default();
        let e = fit(&be, &cfg, 5, 3, (&[0.0; 9], &[0, 1]), (&[], &[])).unwrap_err().to_string();
        assert!(e.contains("width 5"), "{e}");
        let e = fit(&be, &cfg, 1, 3, (&[0.0; 2], &[0, 3]), (&[], &[])).unwrap_err().to_string();
        assert!(e.contains("label 3"), "{e}");
    }
}
