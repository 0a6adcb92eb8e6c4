//! Self-supervised pretext tasks (Brenig & Timofte 2023): each image is
//! transformed by one of k transformations and the class of the
//! transformation becomes its label. All of them permute pixels (no
//! arithmetic), so they are exact on any machine and commute with the
//! per-pixel scaling of the input.
//!
//! * rotation: 0°, 90°, 180°, 270° counter-clockwise (4 classes; square
//!   images);
//! * flip: none / horizontal (2 classes), or none / horizontal / vertical /
//!   both (4 classes);
//! * jigsaw: the image cut into 2×2 tiles of ⌊H/2⌋×⌊W/2⌋ (an odd last
//!   row or column stays in place), rearranged by one of the 24
//!   permutations in lexicographic order: output tile t (row-major) is
//!   input tile `perm[t]`.
//!
//! The label is written one-hot into the first k pixels (the first colour
//! channel for RGB) by the FF network's label embedding; negatives carry a
//! uniformly drawn wrong pretext label. Draws: the class of the sample at
//! position p of epoch e is `below(k)` of word p of the Philox stream
//! `pretext(e)`; evaluation sets use `pretext(u32::MAX)` by image index.

use crate::{Dataset, Error, Result};
use ffwd_tensor::{stream, Philox};

/// A pretext task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pretext {
    Rotation,
    /// none / horizontal
    Flip2,
    /// none / horizontal / vertical / both
    Flip4,
    Jigsaw,
}

/// The 24 permutations of 4 tiles, lexicographic.
fn jigsaw_perm(k: usize) -> [usize; 4] {
    let mut left: Vec<usize> = (0..4).collect();
    let mut out = [0; 4];
    let mut k = k;
    for (i, o) in out.iter_mut().enumerate() {
        let f = [6, 2, 1, 1][i];
        *o = left.remove(k / f);
        k %= f;
    }
    out
}

impl Pretext {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "rotation" => Pretext::Rotation,
            "flip" | "flip2" => Pretext::Flip2,
            "flip4" => Pretext::Flip4,
            "jigsaw" => Pretext::Jigsaw,
            o => {
                return Err(Error::Format {
                    path: "pretext".into(),
                    reason: format!("unknown pretext task `{}` (rotation, flip2, flip4, jigsaw)", crate::shown(o)),
                })
            }
        })
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Pretext::Rotation => "rotation",
            Pretext::Flip2 => "flip2",
            Pretext::Flip4 => "flip4",
            Pretext::Jigsaw => "jigsaw",
        }
    }
    /// Number of pretext classes.
    pub fn classes(&self) -> usize {
        match self {
            Pretext::Rotation | Pretext::Flip4 => 4,
            Pretext::Flip2 => 2,
            Pretext::Jigsaw => 24,
        }
    }

    /// Whether images of `shape` (C, H, W) can take this task.
    pub fn check(&self, shape: (usize, usize, usize)) -> std::result::Result<(), String> {
        let (_, h, w) = shape;
        if *self == Pretext::Rotation && h != w {
            return Err(format!("the rotation task needs square images, these are {h}×{w}"));
        }
        if *self == Pretext::Jigsaw && (h < 2 || w < 2) {
            return Err(format!("the jigsaw task needs images of at least 2×2, these are {h}×{w}"));
        }
        if h * w < self.classes() {
            return Err(format!("{} pretext labels do not fit into {h}×{w} pixels", self.classes()));
        }
        Ok(())
    }

    /// Source pixel (row, column) of output pixel (r, c) under `class`.
    fn source(&self, class: usize, h: usize, w: usize, r: usize, c: usize) -> (usize, usize) {
        match self {
            Pretext::Rotation => match class {
                0 => (r, c),
                // 90° counter-clockwise: out[r][c] = in[c][W−1−r].
                1 => (c, w - 1 - r),
                2 => (h - 1 - r, w - 1 - c),
                _ => (h - 1 - c, r),
            },
            Pretext::Flip2 | Pretext::Flip4 => {
                let (fh, fv) = (class & 1 == 1, class & 2 == 2);
                (if fv { h - 1 - r } else { r }, if fh { w - 1 - c } else { c })
            }
            Pretext::Jigsaw => {
                let (th, tw) = (h / 2, w / 2);
                if r >= 2 * th || c >= 2 * tw {
                    return (r, c);
                }
                let t = (r / th) * 2 + c / tw;
                let s = jigsaw_perm(class)[t];
                ((s / 2) * th + r % th, (s % 2) * tw + c % tw)
            }
        }
    }

    /// Transform one C×H×W image by `class`.
    pub fn apply<T: Copy>(&self, class: usize, shape: (usize, usize, usize), img: &[T], out: &mut [T]) {
        let (ch, h, w) = shape;
        for k in 0..ch {
            let (src, dst) = (&img[k * h * w..(k + 1) * h * w], &mut out[k * h * w..(k + 1) * h * w]);
            for r in 0..h {
                for c in 0..w {
                    let (sr, sc) = self.source(class, h, w, r, c);
                    dst[r * w + c] = src[sr * w + sc];
                }
            }
        }
    }

    /// Transform a batch in place (n × C·H·W images) with freshly drawn
    /// classes for the samples at positions `first..` of epoch `epoch`;
    /// the classes are written to `labels`.
    #[allow(clippy::too_many_arguments)]
    pub fn transform_batch(
        &self,
        seed: u64,
        epoch: u32,
        first: u64,
        shape: (usize, usize, usize),
        images: &mut [f32],
        labels: &mut [u8],
        tmp: &mut Vec<f32>,
    ) {
        let d = shape.0 * shape.1 * shape.2;
        let rng = Philox::new(seed, stream::pretext(epoch));
        tmp.resize(d, 0.0);
        for (k, (img, y)) in images.chunks_exact_mut(d).zip(labels.iter_mut()).enumerate() {
            let class = rng.below_at(first + k as u64, self.classes() as u32) as usize;
            tmp.copy_from_slice(img);
            self.apply(class, shape, tmp, img);
            *y = class as u8;
        }
    }

    /// The evaluation set of this task: every image of `ds` transformed by
    /// a fixed class drawn by image index, labelled with that class.
    pub fn eval_set(&self, ds: &Dataset, seed: u64) -> Dataset {
        let d = ds.dim();
        let rng = Philox::new(seed, stream::pretext(u32::MAX));
        let mut out = Dataset {
            name: format!("{}-{}", ds.name, self.as_str()),
            pixels: vec![0; ds.pixels.len()],
            labels: vec![0; ds.len()],
            shape: ds.shape,
            classes: self.classes(),
        };
        for i in 0..ds.len() {
            let class = rng.below_at(i as u64, self.classes() as u32) as usize;
            self.apply(class, ds.shape, &ds.pixels[i * d..(i + 1) * d], &mut out.pixels[i * d..(i + 1) * d]);
            out.labels[i] = class as u8;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(shape: (usize, usize, usize)) -> Vec<u32> {
        (0..(shape.0 * shape.1 * shape.2) as u32).collect()
    }

    #[test]
    fn every_class_is_a_distinct_permutation_of_the_pixels() {
        for (task, shape) in [
            (Pretext::Rotation, (2, 5, 5)),
            (Pretext::Flip2, (1, 4, 6)),
            (Pretext::Flip4, (3, 5, 4)),
            (Pretext::Jigsaw, (1, 6, 8)),
            (Pretext::Jigsaw, (1, 7, 5)),
        ] {
            let x = img(shape);
            let mut seen = Vec::new();
            for k in 0..task.classes() {
                let mut o = vec![0; x.len()];
                task.apply(k, shape, &x, &mut o);
                let mut s = o.clone();
                s.sort();
                assert_eq!(s, x, "{task:?} class {k} is not a permutation");
                // Channels stay in their planes.
                let plane = shape.1 * shape.2;
                assert!(o.iter().enumerate().all(|(i, &v)| i / plane == v as usize / plane));
                assert!(!seen.contains(&o), "{task:?} class {k} repeats an earlier class");
                seen.push(o);
            }
        }
    }

    #[test]
    fn rotation_turns_counter_clockwise_and_four_quarter_turns_are_the_identity() {
        // 2×2: [a b; c d] turned 90° counter-clockwise is [b d; a c].
        let mut o = [0; 4];
        Pretext::Rotation.apply(1, (1, 2, 2), &[1, 2, 3, 4], &mut o);
        assert_eq!(o, [2, 4, 1, 3]);
        let x = img((1, 5, 5));
        let mut a = x.clone();
        for _ in 0..4 {
            let mut b = vec![0; 25];
            Pretext::Rotation.apply(1, (1, 5, 5), &a, &mut b);
            a = b;
        }
        assert_eq!(a, x);
        let (mut r2, mut r11) = (vec![0; 25], vec![0; 25]);
        Pretext::Rotation.apply(2, (1, 5, 5), &x, &mut r2);
        Pretext::Rotation.apply(1, (1, 5, 5), &x, &mut a);
        Pretext::Rotation.apply(1, (1, 5, 5), &a, &mut r11);
        assert_eq!(r2, r11);
    }

    #[test]
    fn flips_mirror_and_jigsaw_moves_whole_tiles() {
        let mut o = [0; 6];
        Pretext::Flip4.apply(1, (1, 2, 3), &[1, 2, 3, 4, 5, 6], &mut o);
        assert_eq!(o, [3, 2, 1, 6, 5, 4]);
        Pretext::Flip4.apply(2, (1, 2, 3), &[1, 2, 3, 4, 5, 6], &mut o);
        assert_eq!(o, [4, 5, 6, 1, 2, 3]);
        assert_eq!(jigsaw_perm(0), [0, 1, 2, 3]);
        assert_eq!(jigsaw_perm(23), [3, 2, 1, 0]);
        assert_eq!(jigsaw_perm(1), [0, 1, 3, 2]);
        // 4×4, class 23: tiles reversed; the top-left tile is the old bottom-right.
        let x = img((1, 4, 4));
        let mut o = vec![0; 16];
        Pretext::Jigsaw.apply(23, (1, 4, 4), &x, &mut o);
        assert_eq!(&o[..2], &[10, 11]);
        assert_eq!(&o[4..6], &[14, 15]);
    }

    #[test]
    fn batch_classes_are_drawn_by_position_and_stay_below_k() {
        let shape = (1, 4, 4);
        let mut a = vec![0.5f32; 16 * 40];
        let mut la = vec![0u8; 40];
        let mut tmp = Vec::new();
        Pretext::Jigsaw.transform_batch(9, 2, 100, shape, &mut a, &mut la, &mut tmp);
        let mut b = vec![0.5f32; 16 * 10];
        let mut lb = vec![0u8; 10];
        Pretext::Jigsaw.transform_batch(9, 2, 130, shape, &mut b, &mut lb, &mut tmp);
        assert_eq!(&la[30..], &lb[..]);
        assert!(la.iter().all(|&y| y < 24));
        let distinct: std::collections::BTreeSet<_> = la.iter().collect();
        assert!(distinct.len() > 10);
    }
}
