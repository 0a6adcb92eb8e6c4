//! What the CPU benches share: seeded inputs and the timing loop.

use ffwd::tensor::{stream, Philox};
use std::time::Instant;

/// `n` values uniform in [−1, 1) from the Philox noise stream of `seed`.
pub fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; n];
    Philox::new(seed, stream::noise(0)).fill_uniform(&mut v, -1.0, 1.0);
    v
}

/// (median, best) seconds of `reps` runs after one warm-up.
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    (t[reps / 2], t[0])
}
