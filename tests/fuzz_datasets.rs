//! Every dataset parser on random bytes and on damaged valid files
//! (truncations, bit flips, header fields set to extremes, gzip around
//! them): each returns an error or a valid result — never a panic, an
//! abort, or unbounded work. Stable Rust: proptest drives the inputs.

mod common;

use common::damage::{apply, damage, Header};
use ffwd::data::{cifar, idx, mat, svhn};
use flate2::{write::GzEncoder, Compression};
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

const P: &str = "fuzzed";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// A valid IDX image file of n r×c images and its label file.
fn idx_pair(n: u32, r: u32, c: u32) -> (Vec<u8>, Vec<u8>) {
    let mut img = Vec::new();
    for v in [0x0803, n, r, c] {
        img.extend_from_slice(&be32(v));
    }
    img.extend((0..n * r * c).map(|i| i as u8));
    let mut lab = Vec::new();
    for v in [0x0801, n] {
        lab.extend_from_slice(&be32(v));
    }
    lab.extend((0..n).map(|i| (i % 10) as u8));
    (img, lab)
}

/// A valid SVHN-layout MAT file with n images.
fn svhn_file(n: usize, compress: bool) -> Vec<u8> {
    let x = mat::Array {
        name: "X".into(),
        class: mat::Class::Uint8,
        dims: vec![32, 32, 3, n],
        data: mat::Storage::from_u8((0..32 * 32 * 3 * n).map(|i| i as u8).collect()),
    };
    let labels: Vec<f64> = (0..n).map(|i| (i % 10 + 1) as f64).collect();
    let y = mat::Array {
        name: "y".into(),
        class: mat::Class::Double,
        dims: vec![n, 1],
        data: mat::Storage::from_f64(&labels),
    };
    mat::write(&[x, y], compress)
}

/// IDX, CIFAR-10 and MAT headers: 32-bit sizes (big-endian in IDX) in the
/// first 160 bytes.
const HDR: Header = Header { len: 160, width: 4, big_endian: true };

/// Whatever the bytes, parsing them (decompressed first where they are
/// gzip) returns; a result is checked for consistency.
fn parse_idx(img: &[u8], lab: &[u8]) {
    let p = Path::new(P);
    let img = idx::decompress(p, img).and_then(|b| idx::parse_images(p, &b));
    let lab = idx::decompress(p, lab).and_then(|b| idx::parse_labels(p, &b));
    if let Ok((n, r, c, px)) = &img {
        assert_eq!(px.len(), n * r * c);
    }
    if let (Ok(i), Ok(l)) = (img, lab) {
        if let Ok(ds) = idx::pair(p, p, i, l, "fuzz") {
            assert_eq!(ds.pixels.len(), ds.len() * ds.dim());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn idx_parsers_return_an_error_or_a_valid_set_on_random_bytes(a in proptest::collection::vec(any::<u8>(), 0..600),
                                                                  b in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_idx(&a, &b);
        parse_idx(&gzip(&a), &gzip(&b));
    }

    #[test]
    fn idx_parsers_return_an_error_or_a_valid_set_on_damaged_files(n in 0u32..20, r in 0u32..6, c in 0u32..6,
                                                                   di in proptest::collection::vec(damage(), 1..4),
                                                                   dl in proptest::collection::vec(damage(), 0..3),
                                                                   zip in any::<bool>()) {
        let (img, lab) = idx_pair(n, r, c);
        let (img, lab) = (apply(img, &di, HDR), apply(lab, &dl, HDR));
        if zip {
            // a damaged gzip stream around a damaged file
            parse_idx(&apply(gzip(&img), &di, HDR), &gzip(&lab));
        } else {
            parse_idx(&img, &lab);
        }
    }

    #[test]
    fn cifar_batches_return_an_error_or_valid_records(bytes in proptest::collection::vec(any::<u8>(), 0..10_000),
                                                      d in proptest::collection::vec(damage(), 0..3)) {
        let (mut px, mut lab) = (Vec::new(), Vec::new());
        let bytes = apply(bytes, &d, HDR);
        if cifar::parse_batch(Path::new(P), &bytes, &mut px, &mut lab).is_ok() {
            prop_assert_eq!(px.len(), lab.len() * 3072);
            prop_assert!(lab.iter().all(|&l| l < 10));
        }
    }

    #[test]
    fn mat_and_svhn_readers_return_an_error_or_a_valid_set(n in 1usize..3, compress in any::<bool>(),
                                                           d in proptest::collection::vec(damage(), 1..4),
                                                           noise in proptest::collection::vec(any::<u8>(), 0..400)) {
        let p = Path::new(P);
        for bytes in [apply(svhn_file(n, compress), &d, HDR), noise.clone()] {
            let _ = mat::read(p, &bytes, &[]);
            if let Ok(ds) = svhn::parse(p, &bytes) {
                prop_assert_eq!(ds.pixels.len(), ds.len() * 3 * 32 * 32);
                prop_assert!(ds.labels.iter().all(|&l| l < 10));
            }
        }
    }
}

#[test]
fn a_gzip_bomb_is_refused_before_it_fills_memory() {
    // 2 GiB of zeros compress to about 2 MB; decompressing must stop at
    // the size limit with an error naming the file.
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    let err = idx::decompress(Path::new("bomb.gz"), &bomb).unwrap_err().to_string();
    assert!(err.contains("bomb.gz") && err.contains("larger than"), "{err}");
}
