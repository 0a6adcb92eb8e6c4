//! Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11), the counter-based RNG of
//! ffwd. It uses only 32×32→64 multiplies, xors and wrapping additions, so it
//! gives the same bits on every backend.
//!
//! Layout used throughout ffwd: the key is the 64-bit seed split into two
//! words; the counter is `[index_lo, index_hi, stream_lo, stream_hi]`, where
//! `index` counts 128-bit blocks and `stream` names the purpose (see
//! [`stream`]). A value depends only on `(seed, stream, index)`, never on
//! threads or batch layout.

/// The round multipliers and key increments (public so that the CUDA
/// source can be checked against them).
pub const M0: u32 = 0xD251_1F53;
pub const M1: u32 = 0xCD9E_8D57;
pub const W0: u32 = 0x9E37_79B9;
pub const W1: u32 = 0xBB67_AE85;

/// Named streams. A stream is a 64-bit id; the helpers put a purpose in the
/// high 16 bits and up to 48 bits of sub-ids (layer, epoch) below it.
pub mod stream {
    /// Weight initialisation of layer `layer`.
    pub const fn init(layer: u32) -> u64 {
        (1u64 << 48) | layer as u64
    }
    /// Shuffle order of epoch `epoch`.
    pub const fn shuffle(epoch: u32) -> u64 {
        (2u64 << 48) | epoch as u64
    }
    /// Negative labels drawn in epoch `epoch`.
    pub const fn negative_labels(epoch: u32) -> u64 {
        (3u64 << 48) | epoch as u64
    }
    /// Noise (augmentation, corruption) of epoch `epoch`.
    pub const fn noise(epoch: u32) -> u64 {
        (4u64 << 48) | epoch as u64
    }
    /// Initialisation of a readout / classifier head.
    pub const fn readout_init(head: u32) -> u64 {
        (5u64 << 48) | head as u64
    }
    /// Data split (train/validation subset selection).
    pub const SPLIT: u64 = 6u64 << 48;
    /// Self-supervised pretext labels drawn in epoch `epoch`
    /// (`pretext(u32::MAX)`: the fixed labels of evaluation sets).
    pub const fn pretext(epoch: u32) -> u64 {
        (7u64 << 48) | epoch as u64
    }
    /// Corruption of inputs (denoising) and generator noise in epoch
    /// `epoch`, by sample position.
    pub const fn corruption(epoch: u32) -> u64 {
        (8u64 << 48) | epoch as u64
    }
    /// Input dropout of the training samples of epoch `epoch`, by sample
    /// position and value.
    pub const fn dropout(epoch: u32) -> u64 {
        (9u64 << 48) | epoch as u64
    }
}

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// The raw Philox4x32-10 bijection: 10 rounds on `ctr` under `key`.
pub fn philox4x32_10(mut ctr: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            key[0] = key[0].wrapping_add(W0);
            key[1] = key[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, ctr[0]);
        let (hi1, lo1) = mulhilo(M1, ctr[2]);
        ctr = [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0];
    }
    ctr
}

/// A Philox generator bound to one `(seed, stream)` pair. It has no mutable
/// state: every draw is addressed by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    key: [u32; 2],
    stream: u64,
}

impl Philox {
    pub fn new(seed: u64, stream: u64) -> Self {
        Self { key: [seed as u32, (seed >> 32) as u32], stream }
    }

    /// The 128-bit block number `block`.
    pub fn block(&self, block: u64) -> [u32; 4] {
        philox4x32_10([block as u32, (block >> 32) as u32, self.stream as u32, (self.stream >> 32) as u32], self.key)
    }

    /// The `i`-th 32-bit word of the stream (word `i % 4` of block `i / 4`).
    pub fn u32_at(&self, i: u64) -> u32 {
        self.block(i / 4)[(i % 4) as usize]
    }

    /// Uniform in [0, 1): the top 24 bits of word `i` times 2⁻²⁴ (both exact).
    pub fn uniform_at(&self, i: u64) -> f32 {
        (self.u32_at(i) >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// An integer in `0..n` from word `i`: `(word · n) >> 32` (integer
    /// arithmetic only; bias below 2⁻³² · n, documented and accepted).
    pub fn below_at(&self, i: u64, n: u32) -> u32 {
        ((self.u32_at(i) as u64 * n as u64) >> 32) as u32
    }

    /// Fill `out` with words `0..out.len()` of the stream.
    pub fn fill_u32(&self, out: &mut [u32]) {
        for (b, chunk) in out.chunks_mut(4).enumerate() {
            let w = self.block(b as u64);
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }

    /// Fill `out` with uniforms in `[lo, hi)`: `lo + u·(hi − lo)` with `u`
    /// from [`Philox::uniform_at`], computed as one `mul_add` (fused).
    pub fn fill_uniform(&self, out: &mut [f32], lo: f32, hi: f32) {
        let span = hi - lo;
        for (b, chunk) in out.chunks_mut(4).enumerate() {
            let w = self.block(b as u64);
            for (o, &x) in chunk.iter_mut().zip(w.iter()) {
                let u = (x >> 8) as f32 * (1.0 / 16_777_216.0);
                *o = u.mul_add(span, lo);
            }
        }
    }

    /// A permutation of `0..n` by Fisher–Yates, swap `i` using word `i`.
    pub fn permutation(&self, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.below_at(i as u64, i as u32 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123 `kat_vectors`, philox4x32_10 lines.
    #[test]
    fn philox_matches_random123_known_answers() {
        let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:08x?} key {key:08x?}");
        }
    }

    #[test]
    fn uniform_is_in_unit_interval_and_streams_differ() {
        let a = Philox::new(7, stream::init(0));
        let b = Philox::new(7, stream::init(1));
        let mut same = 0;
        for i in 0..4096 {
            let u = a.uniform_at(i);
            assert!((0.0..1.0).contains(&u));
            if a.u32_at(i) == b.u32_at(i) {
                same += 1;
            }
        }
        assert!(same < 4);
    }

    #[test]
    fn permutation_is_a_permutation_and_depends_on_seed() {
        let p = Philox::new(1, stream::shuffle(0)).permutation(1000);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, Philox::new(2, stream::shuffle(0)).permutation(1000));
    }

    #[test]
    fn below_stays_in_range() {
        let r = Philox::new(3, 9);
        for i in 0..10_000 {
            assert!(r.below_at(i, 9) < 9);
        }
    }
}
