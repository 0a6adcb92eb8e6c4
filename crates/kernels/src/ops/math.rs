//! Elementwise ops: our transcendentals (see [`crate::numerics`]), and the
//! selects and sums networks need between kernels.
//!
//! **Spec.** `unary(f)` applies the scalar function of [`Unary`] to each
//! value. `relu(x) = x if x > 0 else +0.0`. `relu_backward(y, dy) = dy if
//! y > 0 else +0.0` (the ReLU's derivative mask taken from its output: `y
//! > 0` exactly where the input was). `add_assign: acc = acc + x`.

use super::Storage;
use crate::error::Result;
use crate::numerics;

/// Which elementwise function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Exp,
    Log1p,
    Ln,
    Softplus,
    Sigmoid,
}

impl Unary {
    /// The scalar specification.
    pub fn scalar(self) -> fn(f32) -> f32 {
        match self {
            Unary::Exp => numerics::exp,
            Unary::Log1p => numerics::log1p,
            Unary::Ln => numerics::ln,
            Unary::Softplus => numerics::softplus,
            Unary::Sigmoid => numerics::sigmoid,
        }
    }
}

/// The elementwise family.
pub trait MathOps: Storage {
    /// `out = f(x)` elementwise (resized).
    fn unary(&self, f: Unary, x: &Self::Buf, out: &mut Self::Buf) -> Result<()>;
    /// `x = relu(x)` in place.
    fn relu(&self, x: &mut Self::Buf) -> Result<()>;
    /// `dx = dy where y > 0, else +0.0` (resized).
    fn relu_backward(&self, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// `acc = acc + x` elementwise.
    fn add_assign(&self, acc: &mut Self::Buf, x: &Self::Buf) -> Result<()>;
}
