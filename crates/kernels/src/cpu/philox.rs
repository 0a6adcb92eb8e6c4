//! Random draws (see [`crate::ops::philox`] for the spec): Gaussians and
//! the denoising autoencoder's corruption, each value from the Philox block
//! of its position. The draws are integer work and two or three rounded
//! operations per value; the AVX2 backend runs the same per-value code in
//! parallel over rows (no lane version: the bits are the spec's either way).

use super::pages;
use super::{CpuBackend, CpuKind};
use crate::error::Result;
use crate::ops::philox::{gauss, uniform24, PhiloxOps, RngPos};
use crate::ops::reduce::rows_of;
use ffwd_tensor::Philox;
use rayon::prelude::*;

/// The block of value j of row i (see the module spec).
#[inline(always)]
fn block_of(pos: &RngPos, d: usize, i: usize, j: usize, part: u64) -> u64 {
    ((pos.first + i as u64) * d as u64 + j as u64) * 4 + part
}

/// Rows of `d` values of `out`, filled by `f(row index, row)`, on the
/// backend's threads.
fn by_rows(be: &CpuBackend, out: &mut [f32], d: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if d == 0 {
        return;
    }
    match be.kind() {
        CpuKind::Scalar => out.chunks_mut(d).enumerate().for_each(|(i, r)| f(i, r)),
        CpuKind::Avx2 => out.par_chunks_mut(d).enumerate().for_each(|(i, r)| f(i, r)),
    }
}

impl PhiloxOps for CpuBackend {
    fn gaussian(&self, pos: RngPos, rows: usize, d: usize, part: u64, out: &mut Vec<f32>) -> Result<()> {
        pages::grow(out, rows * d)?;
        let r = Philox::new(pos.seed, pos.stream);
        by_rows(self, out, d, |i, row| {
            for (j, o) in row.iter_mut().enumerate() {
                *o = gauss(r.block(block_of(&pos, d, i, j, part)));
            }
        });
        Ok(())
    }
    fn dae_corrupt(
        &self,
        x: &Vec<f32>,
        d: usize,
        pos: RngPos,
        mask_prob: f32,
        noise_std: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        rows_of("dae_corrupt", x.len(), d)?;
        pages::grow(out, x.len())?;
        let r = Philox::new(pos.seed, pos.stream);
        by_rows(self, out, d, |i, row| {
            for (j, o) in row.iter_mut().enumerate() {
                let g = gauss(r.block(block_of(&pos, d, i, j, 0)));
                let u = uniform24(r.block(block_of(&pos, d, i, j, 2))[0]);
                let v = x[i * d + j];
                *o = (if u >= mask_prob { v } else { 0.0 }) + noise_std * g;
            }
        });
        Ok(())
    }
}
