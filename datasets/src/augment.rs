//! Deterministic data augmentation: random crop with zero padding, random
//! rotation (bilinear, zero fill), and per-channel normalisation, with
//! every draw taken from a Philox stream by sample position, so a run's
//! augmented images depend on the seed alone (not on threads or device).
//!
//! **Spec** for one image (C×H×W bytes) and the draws `[w0, w1, w2, _] =
//! Philox(seed, noise(epoch)).block(index)`:
//! * crop offsets `dy = w0 mod (2p+1)`, `dx = w1 mod (2p+1)` (p = padding):
//!   the cropped image at (y, x) is the original at (y + dy − p, x + dx − p),
//!   zero outside the original;
//! * angle `θ = (2u − 1) · r · (π/180)` with `u = (w2 >> 8) · 2⁻²⁴` and r
//!   the maximum rotation in degrees; `s, c` = our polynomial sin/cos of θ
//!   ([`sin_small`], [`cos_small`]; |θ| ≤ 45°);
//! * for output (y, x), with `cx = (W−1)/2`, `cy = (H−1)/2`, `ex = x − cx`,
//!   `ey = y − cy`: source `sx = (c·ex + s·ey) + cx`, `sy = (c·ey − s·ex) +
//!   cy`; `x0 = ⌊sx⌋`, `fx = sx − x0` (same for y); the value is
//!   `(1−fy)·((1−fx)·p00 + fx·p01) + fy·((1−fx)·p10 + fx·p11)` with taps
//!   of the cropped image (zero outside it), each pixel `byte / 255`;
//! * then `(v − mean[ch]) / std[ch]`;
//! * input dropout (rate q > 0): value j of sample `index` (d values per
//!   image) is zeroed where `u < q`, `u` = word `index·d + j` of
//!   `Philox(seed, dropout(epoch))` as `(word >> 8) · 2⁻²⁴`, and the
//!   others multiplied by `1 / (1 − q)` (that factor rounded to f32 once).
//!
//! All operations are single correctly rounded f32 ops in the order
//! written (no fma), so the result is the same on every machine.

use crate::Dataset;
use ffwd_tensor::Philox;

/// `sin θ` for |θ| ≤ π/4: Taylor to θ⁹, Horner in θ², plain f32 ops.
pub fn sin_small(t: f32) -> f32 {
    let t2 = t * t;
    let p = ((((t2 * (1.0 / 362_880.0) - 1.0 / 5_040.0) * t2 + 1.0 / 120.0) * t2 - 1.0 / 6.0) * t2) + 1.0;
    t * p
}

/// `cos θ` for |θ| ≤ π/4: Taylor to θ⁸, Horner in θ², plain f32 ops.
pub fn cos_small(t: f32) -> f32 {
    let t2 = t * t;
    (((t2 * (1.0 / 40_320.0) - 1.0 / 720.0) * t2 + 1.0 / 24.0) * t2 - 0.5) * t2 + 1.0
}

/// The augmentation of one run (see the module spec).
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Zero padding p of the random crop (0 = no crop).
    pub crop_padding: usize,
    /// Maximum rotation in degrees (0 = none; at most 45).
    pub rotation_deg: f32,
    /// Per-channel mean and standard deviation.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Input dropout rate q in [0, 1) (0 = none).
    pub dropout: f32,
}

/// The usual per-channel statistics of a dataset, if known.
pub fn channel_stats(dataset: &str) -> Option<(Vec<f32>, Vec<f32>)> {
    match dataset {
        "cifar-10" => Some((vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010])),
        "mnist" => Some((vec![0.1307], vec![0.3081])),
        "fashion-mnist" => Some((vec![0.2860], vec![0.3530])),
        "svhn" => Some((vec![0.4377, 0.4438, 0.4728], vec![0.1980, 0.2010, 0.1970])),
        _ => None,
    }
}

impl Augment {
    /// Normalisation only (evaluation).
    pub fn eval_only(&self) -> Self {
        Self { crop_padding: 0, rotation_deg: 0.0, dropout: 0.0, ..self.clone() }
    }

    /// Input dropout of one augmented sample (see the spec): `out` holds
    /// sample `index`'s values, `rng` is `Philox(seed, dropout(epoch))`.
    pub fn drop_values(&self, rng: &Philox, index: u64, out: &mut [f32]) {
        if self.dropout <= 0.0 {
            return;
        }
        let keep = 1.0 / (1.0 - self.dropout);
        let first = index * out.len() as u64;
        for (j, v) in out.iter_mut().enumerate() {
            let u = (rng.u32_at(first + j as u64) >> 8) as f32 * (1.0 / 16_777_216.0);
            *v = if u < self.dropout { 0.0 } else { *v * keep };
        }
    }

    /// Image `i` of `ds`, transformed with the draws `block` (see the spec).
    pub fn apply(&self, ds: &Dataset, i: usize, block: [u32; 4], out: &mut [f32]) {
        let d = ds.dim();
        let src = &ds.pixels[i * d..(i + 1) * d];
        let m = 2 * self.crop_padding as u32 + 1;
        let (dy, dx) = ((block[0] % m) as isize, (block[1] % m) as isize);
        let u = (block[2] >> 8) as f32 * (1.0 / 16_777_216.0);
        let theta = (2.0 * u - 1.0) * self.rotation_deg * (std::f32::consts::PI / 180.0);
        self.transform(src, ds.shape, (dy, dx), theta, out);
    }

    /// The spec's transform with explicit crop offsets and angle.
    pub fn transform(
        &self,
        src: &[u8],
        (ch, h, w): (usize, usize, usize),
        crop: (isize, isize),
        theta: f32,
        out: &mut [f32],
    ) {
        let p = self.crop_padding as isize;
        let hw = h * w;
        let stat = |c: usize| (self.mean.get(c).copied().unwrap_or(0.0), self.std.get(c).copied().unwrap_or(1.0));
        if p == 0 && self.rotation_deg == 0.0 {
            for c in 0..ch {
                let (mu, sd) = stat(c);
                for k in 0..hw {
                    out[c * hw + k] = (src[c * hw + k] as f32 / 255.0 - mu) / sd;
                }
            }
            return;
        }
        let (s, co) = (sin_small(theta), cos_small(theta));
        let (cx, cy) = ((w as f32 - 1.0) * 0.5, (h as f32 - 1.0) * 0.5);
        let stats: Vec<(f32, f32)> = (0..ch).map(stat).collect();
        // The cropped image's pixel (yy, xx) of channel c, zero outside it
        // and outside the original.
        let tap = |c: usize, yy: isize, xx: isize| -> f32 {
            if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                return 0.0;
            }
            let (oy, ox) = (yy + crop.0 - p, xx + crop.1 - p);
            if oy < 0 || ox < 0 || oy >= h as isize || ox >= w as isize {
                return 0.0;
            }
            src[c * hw + oy as usize * w + ox as usize] as f32 / 255.0
        };
        // The source point of each output pixel, once for all channels.
        for y in 0..h {
            for x in 0..w {
                let (ex, ey) = (x as f32 - cx, y as f32 - cy);
                let sx = (co * ex + s * ey) + cx;
                let sy = (co * ey - s * ex) + cy;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (xi, yi) = (x0 as isize, y0 as isize);
                for (c, &(mu, sd)) in stats.iter().enumerate() {
                    let top = (1.0 - fx) * tap(c, yi, xi) + fx * tap(c, yi, xi + 1);
                    let bot = (1.0 - fx) * tap(c, yi + 1, xi) + fx * tap(c, yi + 1, xi + 1);
                    let v = (1.0 - fy) * top + fy * bot;
                    out[c * hw + y * w + x] = (v - mu) / sd;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_sin_and_cos_are_accurate_to_an_ulp_or_two_up_to_45_degrees() {
        for i in -1000..=1000 {
            let t = i as f32 * (std::f32::consts::FRAC_PI_4 / 1000.0);
            assert!((sin_small(t) as f64 - (t as f64).sin()).abs() < 2e-7, "sin {t}");
            assert!((cos_small(t) as f64 - (t as f64).cos()).abs() < 2e-7, "cos {t}");
        }
        assert_eq!(sin_small(0.0), 0.0);
        assert_eq!(cos_small(0.0), 1.0);
    }

    fn img() -> Vec<u8> {
        (0..2 * 6 * 6).map(|i| (i * 37 % 251) as u8).collect()
    }

    #[test]
    fn centred_crop_and_zero_angle_is_the_normalised_image() {
        let a =
            Augment { crop_padding: 2, rotation_deg: 15.0, mean: vec![0.5, 0.25], std: vec![0.5, 2.0], dropout: 0.0 };
        let mut got = vec![0.0; 72];
        a.transform(&img(), (2, 6, 6), (2, 2), 0.0, &mut got);
        let mut want = vec![0.0; 72];
        a.eval_only().transform(&img(), (2, 6, 6), (0, 0), 0.0, &mut want);
        assert_eq!(got, want);
    }

    #[test]
    fn crop_shifts_the_image_and_fills_zeros() {
        let a = Augment { crop_padding: 1, rotation_deg: 0.0, mean: vec![], std: vec![], dropout: 0.0 };
        let src = img();
        let mut got = vec![0.0; 72];
        a.transform(&src, (2, 6, 6), (0, 2), 0.0, &mut got);
        // out(y, x) = orig(y − 1, x + 1)
        assert_eq!(got[0], 0.0);
        assert_eq!(got[6 + 5], 0.0);
        assert_eq!(got[6 + 2], src[3] as f32 / 255.0);
    }

    #[test]
    fn a_small_rotation_keeps_a_constant_image_constant_inside() {
        // θ = 45° twice is not allowed, but 0 < θ keeps pixel mass near the
        // centre: a small rotation of a constant image is constant inside.
        let a = Augment { crop_padding: 0, rotation_deg: 15.0, mean: vec![], std: vec![], dropout: 0.0 };
        let src = vec![200u8; 36];
        let mut got = vec![0.0; 36];
        a.transform(&src, (1, 6, 6), (0, 0), 0.2, &mut got);
        let v = 200.0 / 255.0;
        for (y, x) in [(2, 2), (2, 3), (3, 2), (3, 3)] {
            assert!((got[y * 6 + x] - v).abs() < 1e-6, "({y},{x}) {}", got[y * 6 + x]);
        }
        assert!(got[0] < v, "a corner samples outside the image");
    }

    #[test]
    fn input_dropout_zeroes_about_its_rate_and_scales_the_rest_by_sample_position() {
        let a = Augment { crop_padding: 0, rotation_deg: 0.0, mean: vec![], std: vec![], dropout: 0.25 };
        let rng = Philox::new(7, ffwd_tensor::stream::dropout(3));
        let run = |index: u64| {
            let mut v = vec![0.5f32; 10_000];
            a.drop_values(&rng, index, &mut v);
            v
        };
        let (x, y) = (run(5), run(6));
        let zeros = x.iter().filter(|&&v| v == 0.0).count();
        assert!((2_300..2_700).contains(&zeros), "{zeros} of 10,000 zeroed at rate 0.25");
        let kept = 0.5 * (1.0f32 / 0.75);
        assert!(x.iter().all(|&v| v == 0.0 || v.to_bits() == kept.to_bits()), "survivors scaled by 1/(1 − q)");
        assert_eq!(x, run(5), "the mask is a function of the sample position");
        assert_ne!(x, y, "another sample draws another mask");
        // sample 6's mask starts at word 6·d of the stream
        let u = |i: u64| (rng.u32_at(i) >> 8) as f32 * (1.0 / 16_777_216.0);
        assert_eq!(y[3] == 0.0, u(6 * 10_000 + 3) < 0.25);
        let mut none = vec![0.5f32; 16];
        Augment { dropout: 0.0, ..a.clone() }.drop_values(&rng, 0, &mut none);
        assert!(none.iter().all(|&v| v == 0.5), "rate 0 leaves the values alone");
    }
}
