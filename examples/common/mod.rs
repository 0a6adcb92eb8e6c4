//! What the kernel probes share.

use std::time::Instant;

/// The best (least disturbed) seconds of `reps` runs of `f` after one
/// warm-up.
pub fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}
