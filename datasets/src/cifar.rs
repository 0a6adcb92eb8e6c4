//! The CIFAR-10 binary format: files of 3,073-byte records, one label byte
//! (0–9) then 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, each
//! row-major 32×32) — already C×H×W. Train: `data_batch_1.bin` …
//! `data_batch_5.bin` (10,000 records each); test: `test_batch.bin`. Files
//! may be gzipped. They are looked up in `cifar-10/cifar-10-batches-bin/`
//! (the official archive's layout) or directly in `cifar-10/`.

use crate::idx::{decompress, find};
use crate::{Dataset, Error, Result, Splits};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
const CLASSES: usize = 10;

/// Parse the bytes of one batch file (already decompressed).
pub fn parse_batch(path: &Path, bytes: &[u8], pixels: &mut Vec<u8>, labels: &mut Vec<u8>) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (a label byte and 3×32×32 pixels)",
                bytes.len()
            ),
        });
    }
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] as usize >= CLASSES {
            return Err(Error::BadLabel { path: path.to_path_buf(), index: i, label: rec[0], classes: CLASSES });
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

fn folder(root: &Path) -> PathBuf {
    let dir = root.join("cifar-10");
    let official = dir.join("cifar-10-batches-bin");
    if official.is_dir() {
        official
    } else {
        dir
    }
}

fn load_files(dir: &Path, stems: &[&str]) -> Result<Dataset> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for stem in stems {
        let p = find(dir, stem).map_err(|e| match e {
            Error::NotFound { path, tried, .. } => Error::NotFound { path, tried, dataset: "cifar-10".into() },
            e => e,
        })?;
        let raw = std::fs::read(&p).map_err(|source| Error::Io { path: p.clone(), source })?;
        parse_batch(&p, &decompress(&p, &raw)?, &mut pixels, &mut labels)?;
    }
    Ok(Dataset { name: "cifar-10".into(), pixels, labels, shape: (3, SIDE, SIDE), classes: CLASSES })
}

/// The 50,000 training and 10,000 test images.
pub fn load(root: &Path) -> Result<Splits> {
    let dir = folder(root);
    let train = load_files(
        &dir,
        &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    )?;
    let test = load_files(&dir, &["test_batch.bin"])?;
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, PIXELS));
        r
    }

    #[test]
    fn records_parse_into_chw_images_with_labels() {
        let mut b = record(3, 7);
        b.extend(record(9, 200));
        let (mut px, mut lb) = (Vec::new(), Vec::new());
        parse_batch(Path::new("x.bin"), &b, &mut px, &mut lb).unwrap();
        assert_eq!(lb, vec![3, 9]);
        assert_eq!(px.len(), 2 * PIXELS);
        assert_eq!((px[0], px[PIXELS]), (7, 200));
    }

    #[test]
    fn corrupt_batches_name_the_file_and_the_fault() {
        let (mut px, mut lb) = (Vec::new(), Vec::new());
        let mut b = record(1, 0);
        b.pop();
        let e = parse_batch(Path::new("data_batch_2.bin"), &b, &mut px, &mut lb).unwrap_err().to_string();
        assert!(e.contains("data_batch_2.bin") && e.contains("3073-byte"), "{e}");
        let e = parse_batch(Path::new("t.bin"), &record(10, 0), &mut px, &mut lb).unwrap_err().to_string();
        assert!(e.contains("t.bin") && e.contains("label 10"), "{e}");
        let e = parse_batch(Path::new("e.bin"), &[], &mut px, &mut lb).unwrap_err().to_string();
        assert!(e.contains("e.bin"), "{e}");
    }

    #[test]
    fn a_truncated_gzip_batch_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cifar-10");
        std::fs::create_dir_all(&d).unwrap();
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
            enc.write_all(&record(1, 5)).unwrap();
        }
        gz.truncate(gz.len() / 2);
        std::fs::write(d.join("data_batch_1.bin.gz"), &gz).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("data_batch_1.bin.gz") && e.contains("gzip"), "{e}");
        std::fs::remove_file(d.join("data_batch_1.bin.gz")).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("data_batch_1.bin") && e.contains("cifar-10"), "{e}");
    }

    #[test]
    fn the_shared_cifar10_loads_with_balanced_classes() {
        let Some(root) = std::env::var_os("FFWD_DATA_DIR") else {
            eprintln!("SKIP (FFWD_DATA_DIR unset)");
            return;
        };
        let s = load(Path::new(&root)).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (50_000, 10_000));
        let mut counts = [0usize; 10];
        for &y in &s.test.labels {
            counts[y as usize] += 1;
        }
        assert_eq!(counts, [1000; 10]);
    }
}
