//! [`DeviceTensor`]: a shape plus a row-major `f32` buffer in CUDA device
//! memory, the device-side twin of [`Tensor`]. Moving values between the two
//! is explicit ([`DeviceTensor::upload`], [`DeviceTensor::download`]) and
//! goes through the stream the caller names, so the order of device work is
//! the stream's order. Creating one needs a CUDA stream, which only exists
//! where a driver and a device were found; nothing here touches the driver
//! otherwise.

use crate::{Error, Result, Tensor};
use cudarc::driver::{CudaSlice, CudaStream};
use std::sync::Arc;

/// A tensor in device memory.
#[derive(Debug)]
pub struct DeviceTensor {
    shape: Vec<usize>,
    len: usize,
    /// At least one element: CUDA cannot allocate zero bytes.
    data: CudaSlice<f32>,
}

fn cuda_err(what: &str, e: impl std::fmt::Display, shape: &[usize]) -> Error {
    Error::Cuda { what: format!("{what} of a {shape:?} tensor"), detail: e.to_string() }
}

impl DeviceTensor {
    /// A zero-filled tensor of `shape`.
    pub fn zeros(stream: &Arc<CudaStream>, shape: &[usize]) -> Result<Self> {
        let len = shape.iter().product::<usize>();
        let data = stream.alloc_zeros::<f32>(len.max(1)).map_err(|e| cuda_err("allocation", e, shape))?;
        Ok(Self { shape: shape.to_vec(), len, data })
    }

    /// A copy of `values` (row-major, `shape`'s element count) on the device.
    pub fn from_slice(stream: &Arc<CudaStream>, shape: &[usize], values: &[f32]) -> Result<Self> {
        let len = shape.iter().product::<usize>();
        if values.len() != len {
            return Err(Error::ShapeMismatch { shape: shape.to_vec(), expected: len, actual: values.len() });
        }
        let src: &[f32] = if values.is_empty() { &[0.0] } else { values };
        let data = stream.clone_htod(src).map_err(|e| cuda_err("upload", e, shape))?;
        Ok(Self { shape: shape.to_vec(), len, data })
    }

    /// A copy of a host tensor on the device.
    pub fn upload(stream: &Arc<CudaStream>, t: &Tensor) -> Result<Self> {
        Self::from_slice(stream, t.shape(), t.data())
    }

    /// Overwrite the values from the host (same element count).
    pub fn write(&mut self, stream: &Arc<CudaStream>, values: &[f32]) -> Result<()> {
        if values.len() != self.len {
            return Err(Error::ShapeMismatch { shape: self.shape.clone(), expected: self.len, actual: values.len() });
        }
        if values.is_empty() {
            return Ok(());
        }
        let mut view = self.data.slice_mut(0..self.len);
        stream.memcpy_htod(values, &mut view).map_err(|e| cuda_err("upload", e, &self.shape))
    }

    /// The values on the host (waits for the stream's earlier work).
    pub fn to_vec(&self, stream: &Arc<CudaStream>) -> Result<Vec<f32>> {
        let mut v = stream.clone_dtoh(&self.data).map_err(|e| cuda_err("download", e, &self.shape))?;
        v.truncate(self.len);
        Ok(v)
    }

    /// A host copy of the tensor (waits for the stream's earlier work).
    pub fn download(&self, stream: &Arc<CudaStream>) -> Result<Tensor> {
        Tensor::from_vec(&self.shape, self.to_vec(stream)?)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device buffer (kernel argument).
    pub fn data(&self) -> &CudaSlice<f32> {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut CudaSlice<f32> {
        &mut self.data
    }
}
