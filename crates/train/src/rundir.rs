//! The run folder: a run never writes into a folder that holds another
//! run's results. A folder that holds `metrics.jsonl`, `model.safetensors`,
//! `probe.json` or a training state (`train-state.safetensors`) is left as
//! it is and the run goes to the first free numbered sibling (`runs/x` →
//! `runs/x-2`, `runs/x-3`, …); the folder is created and checked for
//! writing before any training starts. `ffwd train --resume DIR` is the
//! one way to continue writing into a run's folder.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The files a run leaves in its folder.
pub const RUN_FILES: [&str; 4] = ["metrics.jsonl", "model.safetensors", "probe.json", crate::resume::STATE_FILE];

/// Whether `dir` holds a run's results.
pub fn holds_a_run(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists())
}

/// The folder this run writes to: `dir` if it is new or holds no run, else
/// the first `dir-N` (N ≥ 2) that does not. Created and checked for
/// writing; errors name the folder.
pub fn claim(dir: &Path) -> Result<PathBuf> {
    let mut at = dir.to_path_buf();
    let mut n = 2usize;
    loop {
        if at.exists() && !at.is_dir() {
            return Err(Error::Invalid(format!("output.dir {}: exists and is not a folder", at.display())));
        }
        if !at.is_dir() || !holds_a_run(&at) {
            break;
        }
        let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        at = dir.with_file_name(format!("{name}-{n}"));
        n += 1;
        if n > 10_000 {
            return Err(Error::Invalid(format!(
                "output.dir {}: 10,000 numbered runs beside it already",
                dir.display()
            )));
        }
    }
    let io =
        |what: &str, source| Error::Io { path: at.clone(), source: std::io::Error::other(format!("{what}: {source}")) };
    std::fs::create_dir_all(&at).map_err(|e| io("cannot create the run folder", e))?;
    let probe = at.join(".ffwd-write-check");
    std::fs::write(&probe, b"").map_err(|e| io("cannot write in the run folder", e))?;
    std::fs::remove_file(&probe).map_err(|e| io("cannot write in the run folder", e))?;
    Ok(at)
}

/// `dir/stem.ext`, or the first `dir/stem-N.ext` (N ≥ 2) that does not
/// exist: a report never replaces an earlier one.
pub fn free_file(dir: &Path, stem: &str, ext: &str) -> Result<PathBuf> {
    let mut p = dir.join(format!("{stem}.{ext}"));
    let mut n = 2usize;
    while p.exists() {
        if n > 10_000 {
            return Err(Error::Invalid(format!("{}: 10,000 {stem} files already", dir.display())));
        }
        p = dir.join(format!("{stem}-{n}.{ext}"));
        n += 1;
    }
    Ok(p)
}

/// The kinds of picture a command writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Picture {
    Png,
    Svg,
}

impl Picture {
    fn name(self) -> &'static str {
        match self {
            Picture::Png => "a PNG image",
            Picture::Svg => "an SVG picture",
        }
    }
    /// Whether a file starting with `head` (up to 256 bytes) is one.
    fn starts(self, head: &[u8]) -> bool {
        match self {
            Picture::Png => head.starts_with(b"\x89PNG\r\n\x1a\n"),
            Picture::Svg => head.windows(4).any(|w| w == b"<svg"),
        }
    }
}

/// Check that `path` may receive a new picture of `kind`: a new file, or
/// an earlier picture of that kind (one the same command can make again).
/// Anything else there — a checkpoint, a dataset file, a folder — is an
/// error naming it.
pub fn picture_target(path: &Path, kind: Picture) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut head = Vec::with_capacity(256);
    let read =
        std::fs::File::open(path).and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 256), &mut head));
    if path.is_file() && read.is_ok() && kind.starts(&head) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{}: exists and is not {}; refusing to replace it (give another path)",
            path.display(),
            kind.name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_holding_a_run_is_left_alone_and_the_next_number_is_taken() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("exp");
        assert_eq!(claim(&run).unwrap(), run);
        assert_eq!(claim(&run).unwrap(), run, "an empty folder is reused");
        std::fs::write(run.join("metrics.jsonl"), b"{}\n").unwrap();
        let second = claim(&run).unwrap();
        assert_eq!(second, d.path().join("exp-2"));
        std::fs::write(second.join("model.safetensors"), b"x").unwrap();
        assert_eq!(claim(&run).unwrap(), d.path().join("exp-3"));
        assert_eq!(std::fs::read(run.join("metrics.jsonl")).unwrap(), b"{}\n");
        assert!(!run.join(".ffwd-write-check").exists());
    }

    #[test]
    fn reports_and_pictures_never_replace_other_files() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(free_file(d.path(), "probe", "json").unwrap(), d.path().join("probe.json"));
        std::fs::write(d.path().join("probe.json"), b"{}").unwrap();
        assert_eq!(free_file(d.path(), "probe", "json").unwrap(), d.path().join("probe-2.json"));
        let ck = d.path().join("model.safetensors");
        std::fs::write(&ck, b"\x10\0\0\0\0\0\0\0{}").unwrap();
        let e = picture_target(&ck, Picture::Png).unwrap_err().to_string();
        assert!(e.contains("model.safetensors") && e.contains("not a PNG"), "{e}");
        assert!(picture_target(d.path(), Picture::Png).is_err());
        let png = d.path().join("old.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nrest").unwrap();
        assert!(
            picture_target(&png, Picture::Png).is_ok()
                && picture_target(&d.path().join("new.png"), Picture::Png).is_ok()
        );
    }

    #[test]
    fn a_file_where_the_folder_should_be_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("notadir");
        std::fs::write(&f, b"data").unwrap();
        let e = claim(&f).unwrap_err().to_string();
        assert!(e.contains("notadir") && e.contains("not a folder"), "{e}");
        assert_eq!(std::fs::read(&f).unwrap(), b"data");
    }
}
