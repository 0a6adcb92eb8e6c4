//! Where the time goes: wall time and calls per op, collected only when
//! the environment variable `FFWD_PROFILE` is set (read once). Each CPU op
//! opens a [`scope`] named after itself; an op that runs others inside
//! (the conv's im2col and GEMMs) opens nested scopes named `op: part`, so
//! a part's time is also in its op's. Device ops are asynchronous and are
//! not timed. Off, a scope costs one load of a flag.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FFWD_PROFILE").is_some_and(|v| !v.is_empty() && v != "0"))
}

fn table() -> &'static Mutex<BTreeMap<&'static str, (u64, Duration)>> {
    static T: OnceLock<Mutex<BTreeMap<&'static str, (u64, Duration)>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Whether ops are being timed (`FFWD_PROFILE` set to anything but `0`).
pub fn enabled() -> bool {
    on()
}

/// An open timing scope: its time is added to `name` when it is dropped.
#[must_use = "a scope times until it is dropped"]
pub struct Scope {
    name: &'static str,
    start: Option<Instant>,
}

/// Time from now until the returned scope is dropped, under `name`.
#[inline]
pub fn scope(name: &'static str) -> Scope {
    Scope { name, start: on().then(Instant::now) }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(s) = self.start {
            let d = s.elapsed();
            let mut t = table().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let e = t.entry(self.name).or_default();
            e.0 += 1;
            e.1 += d;
        }
    }
}

/// Every op timed so far, `(name, calls, seconds)`, longest first; the
/// table is emptied.
pub fn take() -> Vec<(&'static str, u64, f64)> {
    let mut t = table().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut v: Vec<_> = std::mem::take(&mut *t).into_iter().map(|(k, (n, d))| (k, n, d.as_secs_f64())).collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
    v
}
