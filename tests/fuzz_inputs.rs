//! Checkpoints and run configurations on random and damaged input: loading
//! a damaged checkpoint (bit flips, truncations, header bytes set to
//! extremes) or parsing damaged TOML returns an error or a usable value —
//! never a panic or an abort.

mod common;

use common::damage::{apply, damage, Damage, Header};
use ffwd::train::checkpoint;
use ffwd::train::config::{Device, RunConfig};
use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// A valid checkpoint of a small FF MLP (built once).
fn valid_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut cfg = RunConfig::default();
        cfg.model.sizes = vec![12, 8];
        let net = ffwd::train::model::build(&cfg, (1, 8, 8), 10).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        checkpoint::save(&p, &*net, (1, 8, 8), &cfg, 1).unwrap();
        std::fs::read(&p).unwrap()
    })
}

/// safetensors: a little-endian 64-bit header length, then the JSON header.
const CKPT: Header = Header { len: 600, width: 8, big_endian: false };

/// TOML text: no binary sizes; damage lands in the first 600 bytes.
const TOML: Header = Header { len: 600, width: 4, big_endian: false };

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_checkpoint_loads_or_is_an_error_naming_the_file(d in proptest::collection::vec(damage(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("damaged.safetensors");
        std::fs::write(&p, apply(valid_checkpoint().to_vec(), &d, CKPT)).unwrap();
        match checkpoint::load(&p, Device::Cpu) {
            Ok((meta, net)) => {
                prop_assert_eq!(meta.classes, net.classes());
            }
            Err(e) => prop_assert!(e.to_string().contains("damaged.safetensors"), "{}", e),
        }
    }

    #[test]
    fn random_bytes_are_not_a_checkpoint(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise.safetensors");
        std::fs::write(&p, &b).unwrap();
        prop_assert!(checkpoint::load(&p, Device::Cpu).is_err());
    }

    #[test]
    fn a_damaged_run_config_parses_or_is_an_error_naming_the_file(k in any::<usize>(),
                                                                 d in proptest::collection::vec(damage(), 1..3)) {
        let configs = common::shipped_configs();
        let common::Shipped { path, text, .. } = &configs[k % configs.len()];
        let bytes = apply(text.clone().into_bytes(), &d, TOML);
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = RunConfig::from_toml_str(&text, path) {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            prop_assert!(e.to_string().contains(&name), "{}", e);
        }
    }

    #[test]
    fn random_text_is_a_config_error_or_a_config(s in "\\PC{0,200}") {
        let _ = RunConfig::from_toml_str(&s, Path::new("noise.toml"));
    }
}

#[test]
fn absurd_sizes_are_errors_naming_the_field_before_anything_is_allocated() {
    use ffwd::train::model::build_on_device;
    let mut cfg = RunConfig::default();
    cfg.model.sizes = vec![1 << 40, 10];
    let e = build_on_device(Device::Cpu, &cfg, (1, 28, 28), 10).err().expect("refused").to_string();
    assert!(e.contains("model.sizes") && e.contains("limit"), "{e}");
    let conv = ffwd::layers::conv::ConvFfConfig { channels: vec![1 << 20; 6], ..Default::default() };
    let cfg = RunConfig { conv: Some(conv), ..Default::default() };
    let e = build_on_device(Device::Cuda(0), &cfg, (3, 32, 32), 10).err().expect("refused").to_string();
    assert!(e.contains("conv.channels"), "{e}");
    let ffcl = ffwd::layers::ffcl::FfclConfig { sizes: vec![usize::MAX, 3], ..Default::default() };
    let cfg = RunConfig { ffcl: Some(ffcl), ..Default::default() };
    let e = build_on_device(Device::Cpu, &cfg, (1, 28, 28), 10).err().expect("refused").to_string();
    assert!(e.contains("ffcl.sizes"), "{e}");
    let mut cfg = RunConfig::default();
    cfg.model.sizes = vec![60_000, 60_000];
    cfg.train.batch = 1 << 20;
    let e = build_on_device(Device::Cpu, &cfg, (1, 28, 28), 10).err().expect("refused").to_string();
    assert!(e.contains("weights") || e.contains("activation"), "{e}");
    // a config file with an absurd batch is refused when it is read
    let e = RunConfig::from_toml_str("[train]\nbatch = 99999999999\n", Path::new("big.toml")).unwrap_err().to_string();
    assert!(e.contains("big.toml") && e.contains("train.batch"), "{e}");
}

#[test]
fn a_checkpoint_with_a_nan_weight_or_cut_short_is_an_error_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = valid_checkpoint().to_vec();
    let n = b.len();
    b[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = dir.path().join("nan.safetensors");
    std::fs::write(&p, &b).unwrap();
    let e = checkpoint::load(&p, Device::Cpu).err().expect("refused").to_string();
    assert!(e.contains("nan.safetensors") && e.contains("NaN"), "{e}");
    let p = dir.path().join("cut.safetensors");
    std::fs::write(&p, &valid_checkpoint()[..n - 100]).unwrap();
    let e = checkpoint::load(&p, Device::Cpu).err().expect("refused").to_string();
    assert!(e.contains("truncated") && !e.contains("MetadataIncompleteBuffer"), "{e}");
    let p = dir.path().join("tiny.safetensors");
    std::fs::write(&p, b"abc").unwrap();
    let e = checkpoint::load(&p, Device::Cpu).err().expect("refused").to_string();
    assert!(e.contains("truncated: 3 bytes"), "{e}");
}

/// A damaged byte that leaves valid metadata whose configuration the
/// network refuses (here the learning rate becomes 0) is an error naming
/// the file, not a bare configuration error (found by the property above).
#[test]
fn a_checkpoint_whose_configuration_the_network_refuses_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lr0.safetensors");
    std::fs::write(&p, apply(valid_checkpoint().to_vec(), &[Damage::Flip(15549678634315055399, 3)], CKPT)).unwrap();
    let e = checkpoint::load(&p, Device::Cpu).err().expect("refused").to_string();
    assert!(e.contains("lr0.safetensors") && e.contains("lr must be a positive number"), "{e}");
}
