//! SVHN, the cropped digits (format 2): `train_32x32.mat` (73,257 images)
//! and `test_32x32.mat` (26,032), MATLAB v7 files (level 5, each variable
//! zlib-compressed; read by [`crate::mat`]). Variable `X` is uint8
//! 32×32×3×N in MATLAB's column-major order (row, column, channel,
//! image); `y` is N×1 with labels 1–10, where 10 stands for the digit 0.
//! Loaded as C×H×W images with labels 0–9 (10 → 0). The files live in
//! `svhn/`. ../shared/datasets holds no SVHN; the reader is tested on
//! files written in the same layout (see `mat::write`).

use crate::idx::find;
use crate::{mat, Dataset, Error, Result, Splits};
use std::path::Path;

const SIDE: usize = 32;
const CLASSES: usize = 10;

/// Parse one SVHN `.mat` file's bytes.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Dataset> {
    let bad = |reason: String| Error::Format { path: path.to_path_buf(), reason };
    let vars = mat::read(path, bytes, &["X", "y"])?;
    let x = vars.iter().find(|a| a.name == "X").expect("read checks wanted names");
    let y = vars.iter().find(|a| a.name == "y").expect("read checks wanted names");
    let n = match x.dims[..] {
        [SIDE, SIDE, 3, n] => n,
        [SIDE, SIDE, 3] => 1,
        ref d => return Err(bad(format!("variable `X` has dimensions {d:?}, SVHN needs 32×32×3×N"))),
    };
    let px = x.data.as_u8().ok_or_else(|| {
        bad(format!("variable `X` is stored as type {} ({:?}); SVHN images are uint8", x.data.ty, x.class))
    })?;
    let ny: usize = y.dims.iter().product();
    if y.dims.iter().filter(|&&d| d != 1).count() > 1 || ny != n {
        return Err(bad(format!("variable `y` has dimensions {:?}; {n} images need {n}×1 labels", y.dims)));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get(i);
        if !(v.fract() == 0.0 && (1.0..=10.0).contains(&v)) {
            return Err(bad(format!("label {v} at index {i} is not an integer in 1..=10")));
        }
        labels.push((v as u8) % 10);
    }
    let plane = SIDE * SIDE;
    let mut pixels = vec![0u8; n * 3 * plane];
    // Column-major (r, c, ch, i) at r + 32c + 1024ch + 3072i → row-major
    // C×H×W per image.
    for (i, img) in pixels.chunks_exact_mut(3 * plane).enumerate() {
        for ch in 0..3 {
            let src = &px[(i * 3 + ch) * plane..][..plane];
            let dst = &mut img[ch * plane..][..plane];
            for c in 0..SIDE {
                for r in 0..SIDE {
                    dst[r * SIDE + c] = src[c * SIDE + r];
                }
            }
        }
    }
    Ok(Dataset { name: "svhn".into(), pixels, labels, shape: (3, SIDE, SIDE), classes: CLASSES })
}

fn load_file(dir: &Path, stem: &str) -> Result<Dataset> {
    let p = find(dir, stem).map_err(|e| match e {
        Error::NotFound { path, tried, .. } => Error::NotFound { path, tried, dataset: "svhn".into() },
        e => e,
    })?;
    let raw = std::fs::read(&p).map_err(|source| Error::Io { path: p.clone(), source })?;
    parse(&p, &crate::idx::decompress(&p, &raw)?)
}

/// The training and test splits from `root/svhn/`.
pub fn load(root: &Path) -> Result<Splits> {
    let dir = root.join("svhn");
    Ok(Splits { train: load_file(&dir, "train_32x32.mat")?, test: load_file(&dir, "test_32x32.mat")? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mat::{Array, Class, Storage};

    /// An SVHN-layout file: image i's pixel (r, c, ch) = (i·7 + ch·50 + r·3 + c) mod 256.
    fn svhn_file(labels: &[f64], label_storage_u8: bool, compress: bool) -> Vec<u8> {
        let n = labels.len();
        let mut x = vec![0u8; 3072 * n];
        for i in 0..n {
            for ch in 0..3 {
                for c in 0..32 {
                    for r in 0..32 {
                        x[r + 32 * c + 1024 * ch + 3072 * i] = ((i * 7 + ch * 50 + r * 3 + c) % 256) as u8;
                    }
                }
            }
        }
        let y = if label_storage_u8 {
            Storage::from_u8(labels.iter().map(|&v| v as u8).collect())
        } else {
            Storage::from_f64(labels)
        };
        mat::write(
            &[
                Array { name: "X".into(), class: Class::Uint8, dims: vec![32, 32, 3, n], data: Storage::from_u8(x) },
                Array { name: "y".into(), class: Class::Double, dims: vec![n, 1], data: y },
            ],
            compress,
        )
    }

    #[test]
    fn svhn_files_load_as_chw_images_with_ten_mapped_to_zero() {
        for (u8_labels, compress) in [(true, true), (false, true), (false, false)] {
            let f = svhn_file(&[10.0, 1.0, 9.0], u8_labels, compress);
            let d = parse(Path::new("train_32x32.mat"), &f).unwrap();
            assert_eq!((d.len(), d.shape, d.labels.clone()), (3, (3, 32, 32), vec![0, 1, 9]));
            let at = |i: usize, ch: usize, r: usize, c: usize| d.pixels[i * 3072 + ch * 1024 + r * 32 + c] as usize;
            assert_eq!(at(2, 1, 5, 17), 14 + 50 + 15 + 17);
            assert_eq!(at(0, 2, 31, 0), 100 + 93);
        }
    }

    #[test]
    fn bad_svhn_files_name_the_file_and_the_fault() {
        let p = Path::new("test_32x32.mat");
        let e = parse(p, &svhn_file(&[3.0, 11.0], false, true)).unwrap_err().to_string();
        assert!(e.contains("test_32x32.mat") && e.contains("label 11 at index 1"), "{e}");
        let e = parse(p, &svhn_file(&[0.0], false, true)).unwrap_err().to_string();
        assert!(e.contains("label 0"), "{e}");
        let e = parse(p, &svhn_file(&[2.5], false, true)).unwrap_err().to_string();
        assert!(e.contains("label 2.5"), "{e}");
        let f = mat::write(
            &[
                Array {
                    name: "X".into(),
                    class: Class::Uint8,
                    dims: vec![28, 28, 1, 1],
                    data: Storage::from_u8(vec![0; 784]),
                },
                Array { name: "y".into(), class: Class::Double, dims: vec![1, 1], data: Storage::from_f64(&[1.0]) },
            ],
            true,
        );
        let e = parse(p, &f).unwrap_err().to_string();
        assert!(e.contains("`X`") && e.contains("[28, 28, 1, 1]"), "{e}");
        let f = mat::write(
            &[
                Array {
                    name: "X".into(),
                    class: Class::Uint8,
                    dims: vec![32, 32, 3, 2],
                    data: Storage::from_u8(vec![0; 6144]),
                },
                Array { name: "y".into(), class: Class::Double, dims: vec![3, 1], data: Storage::from_f64(&[1.0; 3]) },
            ],
            false,
        );
        let e = parse(p, &f).unwrap_err().to_string();
        assert!(e.contains("`y`") && e.contains("2 images"), "{e}");
        let f = svhn_file(&[1.0, 2.0], true, true);
        let e = parse(p, &f[..f.len() - 100]).unwrap_err().to_string();
        assert!(e.contains("test_32x32.mat"), "{e}");
    }

    #[test]
    fn a_missing_svhn_folder_says_how_to_fetch() {
        let d = tempfile::tempdir().unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("ffwd data fetch svhn") && e.contains("train_32x32.mat"), "{e}");
        let s = d.path().join("svhn");
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(s.join("train_32x32.mat"), svhn_file(&[4.0, 10.0], false, true)).unwrap();
        std::fs::write(s.join("test_32x32.mat"), svhn_file(&[7.0], true, true)).unwrap();
        let sp = load(d.path()).unwrap();
        assert_eq!((sp.train.labels.clone(), sp.test.labels.clone()), (vec![4, 0], vec![7]));
    }
}
