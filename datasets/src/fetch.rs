//! `ffwd data fetch`: download a dataset's files from its canonical
//! mirrors into the cache directory, verifying SHA-256 before a file is
//! moved into place (a failed or corrupt download never replaces a good
//! file).

use crate::{Error, Name, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One file of a dataset.
pub struct Remote {
    pub file: &'static str,
    pub sha256: &'static str,
}

/// Mirrors tried in order, and the files with their SHA-256 sums (of the
/// official files as served).
pub fn manifest(name: Name) -> (&'static [&'static str], &'static [Remote]) {
    const MNIST_MIRRORS: &[&str] =
        &["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];
    const MNIST: &[Remote] = &[
        Remote {
            file: "train-images-idx3-ubyte.gz",
            sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        },
        Remote {
            file: "train-labels-idx1-ubyte.gz",
            sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        },
        Remote {
            file: "t10k-images-idx3-ubyte.gz",
            sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        },
        Remote {
            file: "t10k-labels-idx1-ubyte.gz",
            sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ];
    const FASHION_MIRRORS: &[&str] = &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];
    const FASHION: &[Remote] = &[
        Remote {
            file: "train-images-idx3-ubyte.gz",
            sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        },
        Remote {
            file: "train-labels-idx1-ubyte.gz",
            sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        },
        Remote {
            file: "t10k-images-idx3-ubyte.gz",
            sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        },
        Remote {
            file: "t10k-labels-idx1-ubyte.gz",
            sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ];
    // The SVHN site publishes no checksums; these SHA-256 sums (and sizes
    // 182,040,794 and 64,275,384 bytes) are the ones TensorFlow Datasets
    // records for the same URLs (url_checksums/svhn_cropped.txt).
    const SVHN_MIRRORS: &[&str] = &["http://ufldl.stanford.edu/housenumbers/"];
    const SVHN: &[Remote] = &[
        Remote { file: "train_32x32.mat", sha256: "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8" },
        Remote { file: "test_32x32.mat", sha256: "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b" },
    ];
    match name {
        Name::Mnist => (MNIST_MIRRORS, MNIST),
        Name::Svhn => (SVHN_MIRRORS, SVHN),
        Name::FashionMnist => (FASHION_MIRRORS, FASHION),
        Name::Digits | Name::Cifar10 => (&[], &[]),
    }
}

/// `$FFWD_CACHE`, else `$XDG_CACHE_HOME/ffwd`, else `~/.cache/ffwd`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FFWD_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("ffwd");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("ffwd")
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Check a file against an expected SHA-256.
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(Error::Checksum { path: path.to_path_buf(), expected: expected.to_string(), actual });
    }
    Ok(())
}

/// Download `name` into `root/<name>/`, skipping files already present with
/// the right checksum. Returns the dataset folder.
pub fn fetch(name: Name, root: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    if name == Name::Cifar10 {
        return fetch_cifar10(root, log);
    }
    let dir = root.join(name.as_str());
    let (mirrors, files) = manifest(name);
    if files.is_empty() {
        log("digits is embedded in the binary; nothing to fetch");
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
    for r in files {
        let dst = dir.join(r.file);
        if dst.is_file() && verify(&dst, r.sha256).is_ok() {
            log(&format!("{}: present, checksum ok", dst.display()));
            continue;
        }
        let tmp = dir.join(format!("{}.part", r.file));
        let mut last = None;
        for m in mirrors {
            let url = format!("{m}{}", r.file);
            log(&format!("downloading {url}"));
            match download(&url, &tmp).and_then(|_| verify(&tmp, r.sha256)) {
                Ok(()) => {
                    std::fs::rename(&tmp, &dst).map_err(|source| Error::Io { path: dst.clone(), source })?;
                    last = None;
                    break;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    log(&format!("  failed: {e}"));
                    last = Some(e);
                }
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
    }
    Ok(dir)
}

/// The official CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// SHA-256 of each official CIFAR-10 batch file (uncompressed), as it
/// comes out of the archive.
pub const CIFAR10_FILES: &[Remote] = &[
    Remote { file: "data_batch_1.bin", sha256: "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5" },
    Remote { file: "data_batch_2.bin", sha256: "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed" },
    Remote { file: "data_batch_3.bin", sha256: "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67" },
    Remote { file: "data_batch_4.bin", sha256: "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48" },
    Remote { file: "data_batch_5.bin", sha256: "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add" },
    Remote { file: "test_batch.bin", sha256: "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b" },
];

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Download the CIFAR-10 archive, unpack its batch files, check each
/// against [`CIFAR10_FILES`], and move them into
/// `root/cifar-10/cifar-10-batches-bin/`.
fn fetch_cifar10(root: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = root.join("cifar-10").join("cifar-10-batches-bin");
    let present = CIFAR10_FILES.iter().all(|r| verify(&dir.join(r.file), r.sha256).is_ok());
    if present {
        log(&format!("{}: all batch files present, checksums ok", dir.display()));
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
    let tmp = dir.join("cifar-10-binary.tar.gz.part");
    log(&format!("downloading {CIFAR10_URL}"));
    download(CIFAR10_URL, &tmp)?;
    let gz = std::fs::read(&tmp).map_err(|source| Error::Io { path: tmp.clone(), source })?;
    let _ = std::fs::remove_file(&tmp);
    let tar = crate::idx::decompress(&tmp, &gz)?;
    unpack_cifar10(&tmp, &tar, &dir, log)?;
    Ok(dir)
}

/// Take the batch files out of the (uncompressed) archive, verify them and
/// write each with a rename.
pub fn unpack_cifar10(archive: &Path, tar: &[u8], dir: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    let entries = untar(archive, tar)?;
    for r in CIFAR10_FILES {
        let (_, body) = entries.iter().find(|(n, _)| n.rsplit('/').next() == Some(r.file)).ok_or_else(|| {
            Error::Format { path: archive.to_path_buf(), reason: format!("the archive has no {}", r.file) }
        })?;
        let actual = sha256_hex(body);
        let dst = dir.join(r.file);
        if actual != r.sha256 {
            return Err(Error::Checksum { path: dst, expected: r.sha256.into(), actual });
        }
        let part = dir.join(format!("{}.part", r.file));
        std::fs::write(&part, body).map_err(|source| Error::Io { path: part.clone(), source })?;
        std::fs::rename(&part, &dst).map_err(|source| Error::Io { path: dst.clone(), source })?;
        log(&format!("{}: checksum ok", dst.display()));
    }
    Ok(())
}

/// The regular files of a ustar archive as (path, bytes); header checksums
/// are verified.
pub fn untar<'a>(path: &Path, b: &'a [u8]) -> Result<Vec<(String, &'a [u8])>> {
    let bad = |reason: String| Error::Format { path: path.to_path_buf(), reason };
    let octal = |f: &[u8], what: &str, at: usize| -> Result<usize> {
        let t: String = f.iter().take_while(|&&c| c != 0).map(|&c| c as char).collect();
        let t = t.trim();
        if t.is_empty() {
            return Ok(0);
        }
        usize::from_str_radix(t, 8).map_err(|_| bad(format!("tar header at byte {at}: bad {what} field {t:?}")))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= b.len() {
        let h = &b[at..at + 512];
        if h.iter().all(|&c| c == 0) {
            return Ok(out);
        }
        let want = octal(&h[148..156], "checksum", at)?;
        let sum: usize =
            h.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { 32 } else { c as usize }).sum();
        if sum != want {
            return Err(bad(format!("tar header at byte {at}: checksum {sum} ≠ recorded {want} (corrupt archive)")));
        }
        let cstr = |f: &[u8]| f.iter().take_while(|&&c| c != 0).map(|&c| c as char).collect::<String>();
        let (name, prefix) = (cstr(&h[..100]), cstr(&h[345..500]));
        let size = octal(&h[124..136], "size", at)?;
        let body = at + 512;
        if body + size > b.len() {
            return Err(bad(format!(
                "tar entry {name:?} needs {size} bytes at {body}; the archive ends at {}",
                b.len()
            )));
        }
        if h[156] == b'0' || h[156] == 0 {
            let full = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            out.push((full, &b[body..body + size]));
        }
        at = body + size.div_ceil(512) * 512;
    }
    Err(bad(format!("tar archive ends without its end marker at byte {}", b.len())))
}

fn download(url: &str, dst: &Path) -> Result<()> {
    let err = |reason: String| Error::Download { url: url.to_string(), reason };
    let resp = ureq::get(url).timeout(std::time::Duration::from_secs(120)).call().map_err(|e| err(e.to_string()))?;
    let mut f = std::fs::File::create(dst).map_err(|source| Error::Io { path: dst.to_path_buf(), source })?;
    std::io::copy(&mut resp.into_reader(), &mut f).map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_entry(name: &str, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
        h[156] = b'0';
        h[257..262].copy_from_slice(b"ustar");
        let sum: usize =
            h.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { 32 } else { c as usize }).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h[155] = b' ';
        let mut v = h;
        v.extend_from_slice(body);
        v.resize(512 + body.len().div_ceil(512) * 512, 0);
        v
    }

    #[test]
    fn untar_reads_entries_and_rejects_corrupt_headers_and_bodies() {
        let mut t = tar_entry("cifar-10-batches-bin/a.bin", b"hello");
        t.extend(tar_entry("cifar-10-batches-bin/b.bin", &[7u8; 600]));
        t.extend([0u8; 1024]);
        let p = Path::new("x.tar");
        let e = untar(p, &t).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].0.as_str(), e[0].1), ("cifar-10-batches-bin/a.bin", &b"hello"[..]));
        assert_eq!(e[1].1.len(), 600);
        let mut bad = t.clone();
        bad[3] ^= 1;
        let msg = untar(p, &bad).unwrap_err().to_string();
        assert!(msg.contains("x.tar") && msg.contains("checksum"), "{msg}");
        let msg = untar(p, &t[..700]).unwrap_err().to_string();
        assert!(msg.contains("x.tar"), "{msg}");
    }

    #[test]
    fn unpacking_cifar10_rejects_a_batch_with_the_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Vec::new();
        for r in CIFAR10_FILES {
            t.extend(tar_entry(&format!("cifar-10-batches-bin/{}", r.file), b"not the real bytes"));
        }
        t.extend([0u8; 1024]);
        let msg = unpack_cifar10(Path::new("c.tar"), &t, dir.path(), &mut |_| {}).unwrap_err().to_string();
        assert!(msg.contains("data_batch_1.bin") && msg.contains("SHA-256"), "{msg}");
        assert!(!dir.path().join("data_batch_1.bin").exists(), "a bad file must not be moved into place");
    }

    #[test]
    fn verify_accepts_the_right_sum_and_names_the_file_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"abc").unwrap();
        verify(&p, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap();
        let e = verify(&p, "00").unwrap_err().to_string();
        assert!(e.contains("f.bin") && e.contains("SHA-256"), "{e}");
    }

    #[test]
    fn manifest_sums_match_the_shared_copies_when_present() {
        // The shared datasets are byte-identical to the official files.
        let Some(root) = std::env::var_os("FFWD_DATA_DIR") else {
            eprintln!("SKIP (FFWD_DATA_DIR unset)");
            return;
        };
        for name in [Name::Mnist, Name::FashionMnist] {
            for r in manifest(name).1 {
                let p = Path::new(&root).join(name.as_str()).join(r.file);
                verify(&p, r.sha256).unwrap();
            }
        }
    }
}
