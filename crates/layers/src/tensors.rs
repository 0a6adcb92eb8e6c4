//! Parameters in and out of the networks as named host tensors (what a
//! checkpoint holds), checked against the architecture by name and shape.

use crate::{Error, Result};
use ffwd_kernels::Backend;
use ffwd_tensor::Tensor;

/// Something that hands out a checkpoint's tensors by name.
pub type TensorSource<'a> = dyn FnMut(&str) -> Result<Tensor> + 'a;

/// A host tensor of `shape` from backend buffer `v`.
pub(crate) fn to_tensor<B: Backend>(be: &B, shape: &[usize], v: &B::Buf) -> Result<Tensor> {
    Ok(Tensor::from_vec(shape, be.download(v)?)?)
}

/// The values of tensor `name` from `get`, checked against the shape this
/// architecture needs.
pub(crate) fn fetch(get: &mut TensorSource<'_>, name: &str, want: &[usize]) -> Result<Vec<f32>> {
    let t = get(name)?;
    if t.shape() != want {
        return Err(Error::Checkpoint {
            what: name.to_string(),
            detail: format!("shape {:?}, this architecture needs {want:?}", t.shape()),
        });
    }
    Ok(t.into_vec())
}

/// Tensor `name` from `get` (checked as [`fetch`]) into backend buffer `into`.
pub(crate) fn fetch_into<B: Backend>(
    be: &B,
    get: &mut TensorSource<'_>,
    name: &str,
    want: &[usize],
    into: &mut B::Buf,
) -> Result<()> {
    let v = fetch(get, name, want)?;
    be.upload(&v, into)?;
    Ok(())
}
