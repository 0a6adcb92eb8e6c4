//! Shared helpers of the workspace tests.
#![allow(dead_code)]

pub mod damage;
pub mod kinds;

use std::path::PathBuf;

/// A config of `configs/`: its file, text, parsed value and the image
/// shape of its dataset.
pub struct Shipped {
    pub path: PathBuf,
    pub text: String,
    pub cfg: ffwd::train::config::RunConfig,
    pub shape: (usize, usize, usize),
}

/// Every config in `configs/`, sorted by path.
pub fn shipped_configs() -> Vec<Shipped> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let cfg =
            ffwd::train::config::RunConfig::from_toml_str(&text, &p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let shape = match cfg.data.dataset.as_str() {
            "cifar-10" | "svhn" => (3, 32, 32),
            "digits" => (1, 8, 8),
            _ => (1, 28, 28),
        };
        out.push(Shipped { path: p, text, cfg, shape });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(out.len() >= 10, "only {} configs found in {}", out.len(), dir.display());
    out
}

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
