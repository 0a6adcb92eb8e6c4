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
/// official gzip files).
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
    match name {
        Name::Mnist => (MNIST_MIRRORS, MNIST),
        Name::FashionMnist => (FASHION_MIRRORS, FASHION),
        Name::Digits => (&[], &[]),
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
