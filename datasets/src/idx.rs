//! The IDX format (MNIST, Fashion-MNIST): a big-endian header
//! (magic 0x00000803 + count + rows + cols for images, 0x00000801 + count
//! for labels), then raw bytes. Files may be gzipped (detected by the gzip
//! magic, not the name).

use crate::{Dataset, Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The most a compressed dataset file may inflate to (the largest file
/// ffwd reads, SVHN's training set, is about 230 MB).
pub const MAX_INFLATED: u64 = 1 << 30;

/// Read a decompressing reader to its end, refusing more than
/// [`MAX_INFLATED`] bytes (a damaged or hostile file must not fill memory).
pub(crate) fn inflate_bounded(path: &Path, r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Gzip { path: path.to_path_buf(), reason: format!("{what}: {e}") })?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: format!(
                "{what} decompresses to larger than {} MiB, more than any dataset file",
                MAX_INFLATED >> 20
            ),
        });
    }
    Ok(out)
}

/// Decompress if the bytes start with the gzip magic; otherwise return them.
pub fn decompress(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        inflate_bounded(path, GzDecoder::new(bytes), "the gzip stream")
    } else {
        Ok(bytes.to_vec())
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn check_size(path: &Path, bytes: &[u8], expected: usize) -> Result<()> {
    if bytes.len() < expected {
        return Err(Error::Truncated { path: path.to_path_buf(), expected, actual: bytes.len() });
    }
    if bytes.len() > expected {
        return Err(Error::TrailingBytes { path: path.to_path_buf(), expected, extra: bytes.len() - expected });
    }
    Ok(())
}

/// Parse an image file: returns (count, rows, cols, pixels).
pub fn parse_images(path: &Path, b: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    if b.len() < 16 {
        return Err(Error::Truncated { path: path.to_path_buf(), expected: 16, actual: b.len() });
    }
    let magic = be32(b, 0);
    if magic != IMAGES_MAGIC {
        return Err(Error::BadMagic { path: path.to_path_buf(), found: magic, expected: IMAGES_MAGIC, what: "images" });
    }
    let (n, r, c) = (be32(b, 4) as usize, be32(b, 8) as usize, be32(b, 12) as usize);
    let size = n
        .checked_mul(r)
        .and_then(|x| x.checked_mul(c))
        .and_then(|x| x.checked_add(16))
        .ok_or(Error::Truncated { path: path.to_path_buf(), expected: usize::MAX, actual: b.len() })?;
    check_size(path, b, size)?;
    Ok((n, r, c, b[16..].to_vec()))
}

/// Parse a label file.
pub fn parse_labels(path: &Path, b: &[u8]) -> Result<Vec<u8>> {
    if b.len() < 8 {
        return Err(Error::Truncated { path: path.to_path_buf(), expected: 8, actual: b.len() });
    }
    let magic = be32(b, 0);
    if magic != LABELS_MAGIC {
        return Err(Error::BadMagic { path: path.to_path_buf(), found: magic, expected: LABELS_MAGIC, what: "labels" });
    }
    let n = be32(b, 4) as usize;
    check_size(path, b, 8 + n)?;
    Ok(b[8..].to_vec())
}

/// Join parsed images and labels, checking counts and label range (10 classes).
pub fn pair(
    img_path: &Path,
    lab_path: &Path,
    images: (usize, usize, usize, Vec<u8>),
    labels: Vec<u8>,
    name: &str,
) -> Result<Dataset> {
    let (n, r, c, pixels) = images;
    if labels.len() != n {
        return Err(Error::CountMismatch {
            images: img_path.to_path_buf(),
            labels: lab_path.to_path_buf(),
            n_images: n,
            n_labels: labels.len(),
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &y)| y >= 10) {
        return Err(Error::BadLabel { path: lab_path.to_path_buf(), index, label, classes: 10 });
    }
    Ok(Dataset { name: name.to_string(), pixels, labels, shape: (1, r, c), classes: 10 })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    decompress(path, &raw)
}

/// Load an image file and a label file into a [`Dataset`].
pub fn load_pair(img: &Path, lab: &Path, name: &str) -> Result<Dataset> {
    let images = parse_images(img, &read(img)?)?;
    let labels = parse_labels(lab, &read(lab)?)?;
    pair(img, lab, images, labels, name)
}

/// `dir/stem.gz` if present, else `dir/stem`.
pub fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        let dataset = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Err(Error::NotFound { path: dir.to_path_buf(), tried: format!("{stem}.gz, {stem}"), dataset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: u32, r: u32, c: u32, body: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, n, r, c] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, body));
        v
    }

    #[test]
    fn truncated_image_file_names_file_and_sizes() {
        let p = Path::new("train-images-idx3-ubyte");
        let e = parse_images(p, &images(3, 2, 2, 11)).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte") && e.contains("truncated") && e.contains("28"), "{e}");
    }

    #[test]
    fn wrong_magic_and_bad_gzip_are_named() {
        let mut b = images(1, 1, 1, 1);
        b[3] = 0x01;
        let e = parse_images(Path::new("x"), &b).unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
        let e = decompress(Path::new("y.gz"), &[0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("y.gz") && e.contains("gzip"), "{e}");
    }

    #[test]
    fn label_count_mismatch_is_an_error() {
        let img = parse_images(Path::new("i"), &images(3, 1, 1, 3)).unwrap();
        let e = pair(Path::new("i"), Path::new("l"), img, vec![0, 1], "t").unwrap_err().to_string();
        assert!(e.contains("2 labels") && e.contains("3 images"), "{e}");
    }

    #[test]
    fn label_out_of_range_is_an_error() {
        let img = parse_images(Path::new("i"), &images(2, 1, 1, 2)).unwrap();
        let e = pair(Path::new("i"), Path::new("l"), img, vec![0, 12], "t").unwrap_err().to_string();
        assert!(e.contains("label 12"), "{e}");
    }
}
