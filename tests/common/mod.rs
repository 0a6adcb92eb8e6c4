//! Shared helpers of the workspace tests.
#![allow(dead_code)]

pub mod damage;

use std::path::PathBuf;

/// The folder of the real datasets: `$FFWD_DATA_DIR`, else `../shared/datasets`
/// beside the checkout. `None` (with a SKIP line) when absent, unless
/// `FFWD_REQUIRE_DATA=1`, which turns absence into a failure (CI sets it).
pub fn data_dir() -> Option<PathBuf> {
    let p = std::env::var_os("FFWD_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    if p.join("mnist").is_dir() {
        return Some(p);
    }
    if std::env::var("FFWD_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("FFWD_REQUIRE_DATA=1 but no datasets at {}", p.display());
    }
    eprintln!("SKIP (no datasets at {}; set FFWD_DATA_DIR)", p.display());
    None
}
