//! # ffwd-datasets
//!
//! Loaders for the benchmark datasets, all returning a [`Dataset`] (u8
//! pixels, u8 labels, a C×H×W shape): the IDX reader for MNIST and
//! Fashion-MNIST (gzip or raw), the CIFAR-10 binary batches ([`cifar`]),
//! SVHN's MATLAB files ([`svhn`] on [`mat`]), and the UCI optical digits (8×8, 1,797
//! images, CC BY 4.0) embedded in the binary so that `ffwd train` works
//! offline. Every malformed file gives an [`Error`] naming the file and
//! what is wrong. [`fetch`] downloads into a cache directory and checks
//! SHA-256. Where the files live: [`data_root`] (a flag, else
//! `$FFWD_DATA_DIR`, else the cache directory).

pub mod augment;
pub mod cifar;
mod error;
pub mod fetch;
pub mod idx;
pub mod mat;
pub mod pretext;
pub mod svhn;

pub use error::{Error, Result};
use std::path::{Path, PathBuf};

/// Images with labels. Pixels are row-major per image, `n × (c·h·w)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    /// (channels, height, width)
    pub shape: (usize, usize, usize),
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Values per image.
    pub fn dim(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }
    /// Write image `i` as f32 in [0, 1] (`byte / 255`, correctly rounded).
    pub fn image_f32(&self, i: usize, out: &mut [f32]) {
        let d = self.dim();
        for (o, &p) in out.iter_mut().zip(&self.pixels[i * d..(i + 1) * d]) {
            *o = p as f32 / 255.0;
        }
    }
    /// Images `idx` as an f32 batch (`idx.len() × dim`) and their labels.
    pub fn gather(&self, idx: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u8>) {
        let d = self.dim();
        images.resize(idx.len() * d, 0.0);
        labels.clear();
        for (k, &i) in idx.iter().enumerate() {
            self.image_f32(i as usize, &mut images[k * d..(k + 1) * d]);
            labels.push(self.labels[i as usize]);
        }
    }
    /// The sub-dataset of images `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        let d = self.dim();
        Dataset {
            name: self.name.clone(),
            pixels: self.pixels[range.start * d..range.end * d].to_vec(),
            labels: self.labels[range.clone()].to_vec(),
            shape: self.shape,
            classes: self.classes,
        }
    }
}

/// A train and a test split.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// The datasets ffwd knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Digits,
    Mnist,
    FashionMnist,
    Cifar10,
    Svhn,
}

impl Name {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "digits" | "uci-digits" => Ok(Name::Digits),
            "mnist" => Ok(Name::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(Name::FashionMnist),
            "cifar-10" | "cifar10" => Ok(Name::Cifar10),
            "svhn" => Ok(Name::Svhn),
            other => Err(Error::UnknownDataset(shown(other))),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Name::Digits => "digits",
            Name::Mnist => "mnist",
            Name::FashionMnist => "fashion-mnist",
            Name::Cifar10 => "cifar-10",
            Name::Svhn => "svhn",
        }
    }
}

/// A user's string for an error message: as given, cut to 64 characters.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// Where dataset folders live: `flag`, else `$FFWD_DATA_DIR`, else the
/// download cache ([`fetch::cache_dir`]).
pub fn data_root(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("FFWD_DATA_DIR") {
        return PathBuf::from(p);
    }
    fetch::cache_dir()
}

const DIGITS_IMAGES: &[u8] = include_bytes!("../embedded/digits-images-idx3-ubyte.gz");
const DIGITS_LABELS: &[u8] = include_bytes!("../embedded/digits-labels-idx1-ubyte.gz");

/// Test images of the embedded digits: the last 297 (the first 1,500 train).
pub const DIGITS_TEST: usize = 297;

/// The embedded UCI optical digits (pixel counts 0..16 scaled to 0..255).
pub fn digits() -> Result<Splits> {
    let name = Path::new("<embedded digits>");
    let images = idx::parse_images(name, &idx::decompress(name, DIGITS_IMAGES)?)?;
    let labels = idx::parse_labels(name, &idx::decompress(name, DIGITS_LABELS)?)?;
    let all = idx::pair(name, name, images, labels, "digits")?;
    let n = all.len();
    Ok(Splits { train: all.slice(0..n - DIGITS_TEST), test: all.slice(n - DIGITS_TEST..n) })
}

/// Load a dataset by name from `root` (see [`data_root`]).
pub fn load(name: Name, root: &Path) -> Result<Splits> {
    match name {
        Name::Digits => digits(),
        Name::Cifar10 => cifar::load(root),
        Name::Svhn => svhn::load(root),
        Name::Mnist | Name::FashionMnist => {
            let dir = root.join(name.as_str());
            let part = |split: &str| -> Result<Dataset> {
                let img = idx::find(&dir, &format!("{split}-images-idx3-ubyte"))?;
                let lab = idx::find(&dir, &format!("{split}-labels-idx1-ubyte"))?;
                idx::load_pair(&img, &lab, name.as_str())
            };
            Ok(Splits { train: part("train")?, test: part("t10k")? })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_load_with_all_classes() {
        let s = digits().unwrap();
        assert_eq!(s.train.len() + s.test.len(), 1797);
        assert_eq!(s.train.shape, (1, 8, 8));
        let mut seen = [0usize; 10];
        for &y in &s.train.labels {
            seen[y as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 130), "{seen:?}");
        let mut img = vec![0.0; 64];
        s.train.image_f32(0, &mut img);
        assert!(img.iter().all(|v| (0.0..=1.0).contains(v)) && img.iter().any(|&v| v > 0.5));
    }

    #[test]
    fn unknown_dataset_name_is_an_error() {
        assert!(Name::parse("imagenet").unwrap_err().to_string().contains("imagenet"));
        assert_eq!(Name::parse("MNIST").unwrap(), Name::Mnist);
    }
}
