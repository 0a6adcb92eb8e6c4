//! safetensors I/O. Writes go to `<path>.tmp` and are renamed into place, so
//! an interrupted write never destroys an existing file.

use crate::{Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Write named f32 tensors and string metadata to `path`, atomically.
/// Tensors are stored in the given order's sorted-by-name layout (safetensors
/// sorts by dtype then name), so equal contents give equal bytes.
pub fn save_safetensors(path: &Path, tensors: &[(String, &Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, t)| {
            let v = TensorView::new(Dtype::F32, t.shape().to_vec(), t.as_bytes())
                .map_err(|e| Error::Safetensors { path: path.to_path_buf(), reason: e.to_string() })?;
            Ok((n.clone(), v))
        })
        .collect::<Result<_>>()?;
    let meta = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    let bytes = safetensors::tensor::serialize(views, &meta)
        .map_err(|e| Error::Safetensors { path: path.to_path_buf(), reason: e.to_string() })?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` atomically: into `<path>.tmp`, then renamed
/// into place. A failed write or rename leaves no temporary file behind
/// and the old file, if any, as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    let written = std::fs::write(&tmp, bytes)
        .map_err(|source| Error::Io { path: tmp.clone(), source })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A loaded safetensors file: tensors by name, and the metadata.
#[derive(Debug)]
pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
    path: std::path::PathBuf,
}

impl Loaded {
    /// Take a tensor out by name, with an error naming the file if absent.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensor { path: self.path.clone(), name: name.to_string() })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a safetensors parse error means, in words, for a file of `len`
/// bytes (the library's variants name only the check that failed).
fn describe(e: safetensors::SafeTensorError, bytes: &[u8]) -> String {
    use safetensors::SafeTensorError as E;
    let len = bytes.len();
    let header = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    match e {
        E::HeaderTooSmall => format!("truncated: {len} bytes, too short for the 8-byte header length"),
        E::HeaderTooLarge | E::InvalidHeaderLength => match header {
            Some(h) => format!("the header length says {h} bytes, the file has {len}"),
            None => format!("truncated: {len} bytes"),
        },
        E::InvalidHeader | E::InvalidHeaderStart => "the header is not UTF-8 JSON text starting with `{`".into(),
        E::InvalidHeaderDeserialization | E::JsonError(_) => "the header is not a valid JSON table of tensors".into(),
        E::MetadataIncompleteBuffer => {
            format!("truncated: the header describes more tensor data than the {len}-byte file holds")
        }
        E::TensorInvalidInfo | E::InvalidOffset(_) => {
            "a tensor's shape or byte offsets do not fit its data (overlapping, out of order, or the wrong size)".into()
        }
        E::ValidationOverflow => "a tensor's shape is too large to describe any real tensor".into(),
        E::InvalidTensorView(dtype, shape, n) => format!("a {dtype:?} tensor of shape {shape:?} cannot hold {n} bytes"),
        E::TensorNotFound(name) => format!("no tensor `{name}`"),
        E::IoError(e) => e.to_string(),
    }
}

/// Read every tensor of a safetensors file (all must be F32).
pub fn load_safetensors(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let bad = |reason: String| Error::Safetensors { path: path.to_path_buf(), reason };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(describe(e, &bytes)))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(describe(e, &bytes)))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::WrongDType { path: path.to_path_buf(), name, dtype: format!("{:?}", view.dtype()) });
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.insert(name, Tensor::from_vec(view.shape(), data)?);
    }
    Ok(Loaded { tensors, metadata, path: path.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_bits_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        let a = Tensor::from_vec(&[2, 2], vec![1.0, -0.0, f32::MIN_POSITIVE / 4.0, 3.5]).unwrap();
        let mut meta = HashMap::new();
        meta.insert("k".to_string(), "v".to_string());
        save_safetensors(&p, &[("a".into(), &a)], &meta).unwrap();
        assert!(!dir.path().join("x.safetensors.tmp").exists());
        let mut l = load_safetensors(&p).unwrap();
        let b = l.take("a").unwrap();
        let bits = |t: &Tensor| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(l.metadata["k"], "v");
        assert!(matches!(l.take("missing"), Err(Error::MissingTensor { .. })));
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, b"not a safetensors file at all").unwrap();
        let e = load_safetensors(&p).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
    }
}
