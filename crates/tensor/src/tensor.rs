use crate::{Error, Result};
use half::{bf16, f16};

/// A shape plus a contiguous row-major `f32` buffer on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(shape: &[usize]) -> Self {
        Self { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
    }

    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::ShapeMismatch { shape: shape.to_vec(), expected, actual: data.len() });
        }
        Ok(Self { shape: shape.to_vec(), data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
    /// Little-endian bytes of the buffer (a `bytemuck` view, no copy).
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.data)
    }
    /// Rows and columns when the tensor is read as a matrix
    /// (`[r, c]`, or `[c]` as one row).
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [] => (1, 1),
            [c] => (1, *c),
            [r @ .., c] => (r.iter().product(), *c),
        }
    }
}

/// Storage type of a [`HalfTensor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F16,
    BF16,
}

/// 16-bit storage of f32 values. Conversion from f32 rounds to nearest, ties
/// to even (`half`); arithmetic always happens in f32 after widening, which
/// is exact.
#[derive(Clone, Debug, PartialEq)]
pub struct HalfTensor {
    dtype: DType,
    shape: Vec<usize>,
    bits: Vec<u16>,
}

impl HalfTensor {
    pub fn from_f32(t: &Tensor, dtype: DType) -> Self {
        let bits = match dtype {
            DType::F16 => t.data().iter().map(|&x| f16::from_f32(x).to_bits()).collect(),
            DType::BF16 => t.data().iter().map(|&x| bf16::from_f32(x).to_bits()).collect(),
        };
        Self { dtype, shape: t.shape().to_vec(), bits }
    }
    pub fn to_f32(&self) -> Tensor {
        let data = match self.dtype {
            DType::F16 => self.bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect(),
            DType::BF16 => self.bits.iter().map(|&b| bf16::from_bits(b).to_f32()).collect(),
        };
        Tensor { shape: self.shape.clone(), data }
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn bits(&self) -> &[u16] {
        &self.bits
    }
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_rejects_wrong_length() {
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 5]).is_err());
        assert_eq!(Tensor::from_vec(&[2, 3], vec![0.0; 6]).unwrap().rows_cols(), (2, 3));
    }

    #[test]
    fn half_conversion_rounds_to_nearest_even() {
        // 1/3 in f16 is 0x3555; 1 + 2^-11 is a tie in f16 and rounds to even (1.0).
        let t = Tensor::from_vec(&[3], vec![1.0 / 3.0, 1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11)]).unwrap();
        let h = HalfTensor::from_f32(&t, DType::F16);
        assert_eq!(h.bits(), &[0x3555, 0x3c00, 0x3c02]);
        // bf16: 1 + 2^-8 is a tie and rounds to even (1.0); 1 + 3·2^-8 rounds up.
        let t = Tensor::from_vec(&[2], vec![1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8)]).unwrap();
        let b = HalfTensor::from_f32(&t, DType::BF16);
        assert_eq!(b.bits(), &[0x3f80, 0x3f82]);
        assert_eq!(b.to_f32().data(), &[1.0, 1.015625]);
    }
}
