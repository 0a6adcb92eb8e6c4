//! `ffwd bench`: FF training batches timed on this machine, against its
//! measured FMA peak and, from a side-by-side results file, against PyTorch.
//!
//! Each workload is an MLP of `layers` × `width` on 784-value inputs (an
//! MNIST image with its label written in), trained as `ffwd train` trains
//! it: [`FfNet::train_batch`] on `batch` positives and `batch` negatives,
//! the layers pipelined, Adam. The images are synthetic (Philox uniform,
//! fresh every batch). The work of a batch is that of real data except for
//! one thing: rows whose loss gradient is exactly zero are left out of dW,
//! and how many there are depends on the data and on how far training has
//! gone (on MNIST 17–42 %), so `ffwd train` on real data can run faster
//! than this. FLOP per sample count the nominal 8 · Σ in·out: the forward
//! and the dW product, each for a positive and a negative row.

use crate::{Error, Result};
use ffwd_kernels::{Backend, StepsRun};
use ffwd_layers::config::FfConfig;
use ffwd_layers::ff::{negative_labels, FfNet};
use ffwd_tensor::{stream, Philox};
use std::path::Path;
use std::time::Instant;

/// Input values per sample (an MNIST image).
const INPUT: usize = 784;

/// One benchmark workload: `layers` hidden layers of `width`, `batch`
/// positives (and as many negatives) per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub width: usize,
    pub layers: usize,
    pub batch: usize,
}

impl Workload {
    /// Parse `WIDTHxLAYERS:BATCH`, e.g. `2000x4:100`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad =
            |why: &str| Error::Invalid(format!("workload {s:?}: {why} (expected WIDTHxLAYERS:BATCH, e.g. 2000x4:100)"));
        let (shape, batch) = s.trim().split_once(':').ok_or_else(|| bad("no ':'"))?;
        let (width, layers) = shape.split_once('x').ok_or_else(|| bad("no 'x'"))?;
        let num = |v: &str, what: &str| -> Result<usize> {
            match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(&format!("{what} {v:?} is not a positive whole number"))),
            }
        };
        Ok(Self { width: num(width, "width")?, layers: num(layers, "layers")?, batch: num(batch, "batch")? })
    }

    /// `layers×width`, the name the side-by-side results use.
    pub fn name(&self) -> String {
        format!("{}×{}", self.layers, self.width)
    }

    /// FLOP of one training sample (a positive and its negative).
    pub fn flop_per_sample(&self) -> f64 {
        let dims: Vec<usize> = std::iter::once(INPUT).chain(std::iter::repeat_n(self.width, self.layers)).collect();
        8.0 * dims.windows(2).map(|d| (d[0] * d[1]) as f64).sum::<f64>()
    }
}

/// What one workload measured.
#[derive(Clone, Debug)]
pub struct Timing {
    pub workload: Workload,
    /// Timed batches (after two untimed ones).
    pub batches: usize,
    /// Median and fastest seconds per batch.
    pub median_s: f64,
    pub best_s: f64,
    /// The share of rows the timed batches kept in dW (the others had a
    /// loss gradient of exactly zero and were left out), over all layers.
    pub kept: f64,
    /// How much of the forward and of the dW products ran, over all layers
    /// (the k steps at which six rows of a product's A are all zero are
    /// left out; see `ffwd_kernels::StepsRun`).
    pub steps: (StepsRun, StepsRun),
}

impl Timing {
    pub fn samples_per_s(&self) -> f64 {
        self.workload.batch as f64 / self.median_s
    }
    pub fn gflops(&self) -> f64 {
        self.samples_per_s() * self.workload.flop_per_sample() / 1e9
    }
}

/// Train `w` on synthetic data for two untimed batches, then for
/// `batches` timed ones (0: as many as fit in about two seconds, at least
/// five), in the current rayon pool, on the backend `be` (a batch's time
/// ends when the backend has finished its work).
pub fn time_workload<B: Backend>(be: &B, w: Workload, batches: usize) -> Result<Timing> {
    // Prediction is not timed, so every layer may be a single one.
    let cfg = FfConfig { sizes: vec![w.width; w.layers], skip_layers: Some(0), ..FfConfig::default() };
    let mut net = FfNet::new(be.clone(), cfg, INPUT, 10, 0)?;
    let mut images = vec![0.0f32; w.batch * INPUT];
    let labels: Vec<u8> = (0..w.batch).map(|i| (i % 10) as u8).collect();
    let mut negs = Vec::with_capacity(w.batch);
    let mut secs = Vec::new();
    let (mut kept, mut seen) = (0usize, 0usize);
    let mut steps = (StepsRun::default(), StepsRun::default());
    let start = Instant::now();
    for i in 0.. {
        let timed = i >= 2;
        if timed
            && if batches > 0 { secs.len() >= batches } else { secs.len() >= 5 && start.elapsed().as_secs_f64() > 2.0 }
        {
            break;
        }
        // Fresh images every batch (untimed), so the network cannot fit one
        // batch and saturate its loss, which would leave more rows out of dW
        // than real data does.
        Philox::new(i as u64, stream::noise(0)).fill_uniform(&mut images, 0.0, 1.0);
        negative_labels(0, 0, (i * w.batch) as u64, &labels, 10, &mut negs);
        let t = Instant::now();
        net.train_batch(&images, &labels, &negs, 0..w.layers)?;
        be.synchronize()?;
        if timed {
            secs.push(t.elapsed().as_secs_f64());
            for l in &net.layers {
                kept += l.rows_kept(be)?;
            }
            for l in &net.layers {
                let (f, d) = l.steps_run();
                steps.0 += f;
                steps.1 += d;
            }
            seen += 2 * w.batch * w.layers;
        }
    }
    secs.sort_by(f64::total_cmp);
    Ok(Timing {
        workload: w,
        batches: secs.len(),
        median_s: secs[secs.len() / 2],
        best_s: secs[0],
        kept: kept as f64 / seen.max(1) as f64,
        steps,
    })
}

/// PyTorch's samples/s per workload from a side-by-side results file
/// (`benches/peers/compare.py` writes them), with the file's date and torch
/// version.
#[derive(Clone, Debug)]
pub struct PeerFile {
    pub date: String,
    pub torch: String,
    pub threads: Option<u64>,
    rows: Vec<(String, usize, f64)>,
}

impl PeerFile {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
        let bad = |reason: String| Error::Config { path: path.into(), reason };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let meta = &v["meta"];
        let text_of = |x: &serde_json::Value| x.as_str().unwrap_or("unknown").to_string();
        let rows =
            v["rows"].as_array().ok_or_else(|| bad("no \"rows\" list (not a compare.py results file)".into()))?;
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let field = |k: &str| bad(format!("rows[{i}].{k} is missing or of the wrong type"));
                Ok((
                    r["workload"].as_str().ok_or_else(|| field("workload"))?.to_string(),
                    r["batch"].as_u64().ok_or_else(|| field("batch"))? as usize,
                    r["torch_samples_per_s"].as_f64().ok_or_else(|| field("torch_samples_per_s"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            date: text_of(&meta["date"]),
            torch: text_of(&meta["torch"]),
            threads: meta["threads"].as_u64().or(v["rows"][0]["threads"].as_u64()),
            rows,
        })
    }

    /// PyTorch's samples/s on `w`, if the file measured it.
    pub fn torch_samples_per_s(&self, w: &Workload) -> Option<f64> {
        let name = w.name();
        self.rows.iter().find(|(n, b, _)| *n == name && *b == w.batch).map(|r| r.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse_and_count_eight_flop_per_weight_and_sample() {
        let w = Workload::parse("2000x4:100").unwrap();
        assert_eq!(w, Workload { width: 2000, layers: 4, batch: 100 });
        assert_eq!(w.name(), "4×2000");
        assert_eq!(w.flop_per_sample(), 8.0 * (784.0 * 2000.0 + 3.0 * 2000.0 * 2000.0));
        for bad in ["2000x4", "2000:100", "0x4:100", "2000x-1:100", "ax4:100", ""] {
            let e = Workload::parse(bad).unwrap_err().to_string();
            assert!(e.contains("WIDTHxLAYERS:BATCH"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_peers_file_gives_torch_samples_per_workload_and_names_its_faults() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.json");
        std::fs::write(
            &p,
            r#"{"meta": {"date": "2026-11-23", "torch": "2.9.1", "threads": 2},
                "rows": [{"workload": "4×2000", "batch": 100, "torch_samples_per_s": 793.5}]}"#,
        )
        .unwrap();
        let f = PeerFile::read(&p).unwrap();
        assert_eq!((f.date.as_str(), f.torch.as_str(), f.threads), ("2026-11-23", "2.9.1", Some(2)));
        let w = |width, layers, batch| Workload { width, layers, batch };
        assert_eq!(f.torch_samples_per_s(&w(2000, 4, 100)), Some(793.5));
        assert_eq!(f.torch_samples_per_s(&w(2000, 4, 1000)), None);
        std::fs::write(&p, r#"{"rows": [{"workload": "4×2000", "batch": 100}]}"#).unwrap();
        let e = PeerFile::read(&p).unwrap_err().to_string();
        assert!(e.contains("peers.json") && e.contains("rows[0].torch_samples_per_s"), "{e}");
        let e = PeerFile::read(&d.path().join("none.json")).unwrap_err().to_string();
        assert!(e.contains("none.json"), "{e}");
    }

    #[test]
    fn a_small_workload_times_its_batches() {
        let t =
            time_workload(&ffwd_kernels::CpuBackend::best(), Workload { width: 32, layers: 2, batch: 8 }, 3).unwrap();
        assert_eq!(t.batches, 3);
        assert!(t.best_s > 0.0 && t.best_s <= t.median_s);
        assert!(t.samples_per_s() > 0.0 && t.gflops() > 0.0);
        assert!(t.kept > 0.0 && t.kept <= 1.0, "{}", t.kept);
        // The forward's A panels: 16 rows make 3 panels, over 784 inputs
        // (layer 1) and 32 (layer 2), in each of the 3 timed batches.
        let (fwd, dw) = t.steps;
        assert_eq!(fwd.all, 3 * 3 * (784 + 32));
        assert!(fwd.ran <= fwd.all && dw.ran <= dw.all && dw.all > 0, "{fwd:?} {dw:?}");
    }
}
