//! MATLAB level-5 MAT-files (what `save -v6` and `save -v7` write; the
//! SVHN cropped digits are v7), numeric arrays only.
//!
//! Layout: a 128-byte header (text starting `MATLAB`, a subsystem offset,
//! version 0x0100, the endian indicator `IM` for little- or `MI` for
//! big-endian), then data elements. Each element has an 8-byte tag (type,
//! byte count) — or a 4-byte "small element" tag when the count fits in
//! 16 bits and the data in 4 bytes — and its data padded to 8 bytes.
//! A variable is an `miMATRIX` element holding array flags (class,
//! complex bit), dimensions, its name and the real (then imaginary) part;
//! the part's storage type may be narrower than the class (MATLAB stores
//! an integral double array as `miUINT8` when it can). In v7 files each
//! variable is wrapped in an `miCOMPRESSED` element: a zlib stream of one
//! `miMATRIX` element, without padding.
//!
//! There are crates for this format (`matfile`); ours is small, streams
//! nothing it does not need to keep, and gives errors that name the file,
//! the variable and the byte offset. [`write()`] produces the same layout
//! (little-endian, optionally compressed) for tests and fixtures.

use crate::{Error, Result};
use std::path::Path;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// Byte size of one value of a numeric storage type.
fn storage_size(ty: u32) -> Option<usize> {
    Some(match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

/// The numeric array classes (`mxCLASS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Double = 6,
    Single = 7,
    Int8 = 8,
    Uint8 = 9,
    Int16 = 10,
    Uint16 = 11,
    Int32 = 12,
    Uint32 = 13,
    Int64 = 14,
    Uint64 = 15,
}

impl Class {
    fn from_code(c: u8) -> Option<Self> {
        use Class::*;
        Some(match c {
            6 => Double,
            7 => Single,
            8 => Int8,
            9 => Uint8,
            10 => Int16,
            11 => Uint16,
            12 => Int32,
            13 => Uint32,
            14 => Int64,
            15 => Uint64,
            _ => return None,
        })
    }
}

/// Values as stored: the storage type, its bytes, their byte order.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    pub ty: u32,
    pub bytes: Vec<u8>,
    pub big_endian: bool,
}

impl Storage {
    /// Little-endian `u8` values (`miUINT8`).
    pub fn from_u8(v: Vec<u8>) -> Self {
        Self { ty: MI_UINT8, bytes: v, big_endian: false }
    }
    /// Little-endian `f64` values (`miDOUBLE`).
    pub fn from_f64(v: &[f64]) -> Self {
        Self { ty: MI_DOUBLE, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(), big_endian: false }
    }
    pub fn len(&self) -> usize {
        self.bytes.len() / storage_size(self.ty).unwrap_or(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `u8` bytes when stored as `miUINT8`.
    pub fn as_u8(&self) -> Option<&[u8]> {
        (self.ty == MI_UINT8).then_some(&self.bytes[..])
    }
    /// Value `i` as f64 (exact for every type but 64-bit integers beyond 2⁵³).
    pub fn get(&self, i: usize) -> f64 {
        let s = storage_size(self.ty).expect("checked at parse");
        let mut b = [0u8; 8];
        b[..s].copy_from_slice(&self.bytes[i * s..(i + 1) * s]);
        if self.big_endian {
            b[..s].reverse();
        }
        let u = u64::from_le_bytes(b);
        match self.ty {
            MI_INT8 => u as u8 as i8 as f64,
            MI_UINT8 => u as u8 as f64,
            MI_INT16 => u as u16 as i16 as f64,
            MI_UINT16 => u as u16 as f64,
            MI_INT32 => u as u32 as i32 as f64,
            MI_UINT32 => u as u32 as f64,
            MI_SINGLE => f32::from_bits(u as u32) as f64,
            MI_DOUBLE => f64::from_bits(u),
            MI_INT64 => u as i64 as f64,
            _ => u as f64,
        }
    }
}

/// A real numeric array. Dimensions are MATLAB's (column-major: the first
/// index varies fastest).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub name: String,
    pub class: Class,
    pub dims: Vec<usize>,
    pub data: Storage,
}

struct Cursor<'a> {
    path: &'a Path,
    b: &'a [u8],
    big: bool,
    /// Offset of `b` in the file (0 inside a decompressed element).
    base: usize,
    what: &'a str,
}

impl Cursor<'_> {
    fn bad(&self, at: usize, reason: impl std::fmt::Display) -> Error {
        Error::Format {
            path: self.path.to_path_buf(),
            reason: format!("{} at byte {}: {reason}", self.what, self.base + at),
        }
    }
    fn u32(&self, at: usize) -> Result<u32> {
        let s = self.b.get(at..at + 4).ok_or_else(|| self.bad(at, "truncated (the file ends inside a tag)"))?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    /// The element at `at`: (type, data range, offset of the next element).
    fn element(&self, at: usize) -> Result<(u32, std::ops::Range<usize>, usize)> {
        let first = self.u32(at)?;
        if first >> 16 != 0 {
            let (ty, n) = (first & 0xffff, (first >> 16) as usize);
            if n > 4 {
                return Err(self.bad(at, format!("small element claims {n} bytes (at most 4)")));
            }
            return Ok((ty, at + 4..at + 4 + n, at + 8));
        }
        let n = self.u32(at + 4)? as usize;
        let start = at + 8;
        let end = start.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            self.bad(at, format!("element of {n} bytes runs past the end ({} bytes)", self.base + self.b.len()))
        })?;
        let next = if first == MI_COMPRESSED { end } else { start + n.div_ceil(8) * 8 };
        Ok((first, start..end, next.min(self.b.len())))
    }
}

/// Parse the file's header; returns whether it is big-endian.
fn header(path: &Path, b: &[u8]) -> Result<bool> {
    let bad = |reason: String| Error::Format { path: path.to_path_buf(), reason };
    if b.len() < 128 {
        return Err(bad(format!("{} bytes is shorter than the 128-byte MAT-file header", b.len())));
    }
    if !b.starts_with(b"MATLAB") {
        return Err(bad("not a MATLAB MAT-file (the header does not start with `MATLAB`)".into()));
    }
    if b.starts_with(b"MATLAB 7.3") {
        return Err(bad("a MATLAB v7.3 (HDF5) file; only level-5 files (save -v7 or -v6) are read".into()));
    }
    let big = match &b[126..128] {
        b"IM" => false,
        b"MI" => true,
        e => return Err(bad(format!("endian indicator {e:?} is neither `IM` nor `MI`"))),
    };
    let v = if big { u16::from_be_bytes([b[124], b[125]]) } else { u16::from_le_bytes([b[124], b[125]]) };
    if v != 0x0100 {
        return Err(bad(format!("version {v:#06x}; level-5 MAT-files have 0x0100")));
    }
    Ok(big)
}

/// Parse one `miMATRIX` element's contents; `None` when it is not a real
/// numeric array (cells, structs, chars, sparse…), with the reason.
fn matrix(c: &Cursor, r: std::ops::Range<usize>) -> Result<std::result::Result<Array, (String, String)>> {
    let (ty, flags, at) = c.element(r.start)?;
    if ty != MI_UINT32 || flags.len() < 8 {
        return Err(c.bad(r.start, "array flags missing"));
    }
    let word = c.u32(flags.start)?;
    let (code, complex) = ((word & 0xff) as u8, word & 0x0800 != 0);
    let (ty, dr, at) = c.element(at)?;
    if ty != MI_INT32 {
        return Err(c.bad(r.start, format!("dimensions stored as type {ty}, expected miINT32")));
    }
    let dims =
        (dr.start..dr.end).step_by(4).map(|o| c.u32(o).map(|d| d as i32 as usize)).collect::<Result<Vec<_>>>()?;
    let (ty, nr, at) = c.element(at)?;
    if ty != MI_INT8 {
        return Err(c.bad(r.start, format!("array name stored as type {ty}, expected miINT8")));
    }
    let name = String::from_utf8_lossy(&c.b[nr]).into_owned();
    let Some(class) = Class::from_code(code) else {
        return Ok(Err((name, format!("class code {code} is not a numeric array"))));
    };
    if complex {
        return Ok(Err((name, "complex arrays are not supported".into())));
    }
    let (ty, pr, _) = c.element(at)?;
    let size =
        storage_size(ty).ok_or_else(|| c.bad(at, format!("variable `{name}`: data type {ty} is not numeric")))?;
    let count: usize = dims.iter().product();
    if pr.len() != count * size {
        return Err(c.bad(
            at,
            format!(
                "variable `{name}`: dimensions {dims:?} need {} bytes of type {ty}, the element has {}",
                count * size,
                pr.len()
            ),
        ));
    }
    Ok(Ok(Array { name, class, dims, data: Storage { ty, bytes: c.b[pr].to_vec(), big_endian: c.big } }))
}

/// The numeric variables named in `wanted` (all numeric ones if empty),
/// in file order. Variables of other kinds are skipped; one of them being
/// wanted is an error.
pub fn read(path: &Path, bytes: &[u8], wanted: &[&str]) -> Result<Vec<Array>> {
    let big = header(path, bytes)?;
    let top = Cursor { path, b: bytes, big, base: 0, what: "data element" };
    let mut out = Vec::new();
    let mut at = 128;
    let mut inflated: Vec<u8>;
    while at < bytes.len() {
        let (ty, r, next) = top.element(at)?;
        let parsed = match ty {
            MI_MATRIX => matrix(&top, r)?,
            MI_COMPRESSED => {
                inflated = crate::idx::inflate_bounded(
                    path,
                    flate2::read::ZlibDecoder::new(&bytes[r]),
                    "a compressed variable",
                )
                .map_err(|e| match e {
                    Error::Gzip { reason, .. } => top.bad(at, format!("corrupt compressed variable: {reason}")),
                    e => e,
                })?;
                let inner = Cursor { path, b: &inflated, big, base: 0, what: "compressed variable's element" };
                let (ty, r2, _) = inner.element(0)?;
                if ty != MI_MATRIX {
                    at = next;
                    continue;
                }
                matrix(&inner, r2)?
            }
            _ => {
                at = next;
                continue;
            }
        };
        match parsed {
            Ok(a) if wanted.is_empty() || wanted.contains(&a.name.as_str()) => out.push(a),
            Err((name, why)) if wanted.contains(&name.as_str()) => {
                return Err(Error::Format { path: path.to_path_buf(), reason: format!("variable `{name}`: {why}") })
            }
            _ => {}
        }
        at = next;
    }
    if let Some(missing) = wanted.iter().find(|w| !out.iter().any(|a| a.name == **w)) {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: format!(
                "no numeric variable `{missing}` (found: {})",
                out.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(out)
}

fn push_element(out: &mut Vec<u8>, ty: u32, data: &[u8]) {
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(8), 0);
}

/// A little-endian level-5 MAT-file holding `arrays` (stored little-endian),
/// each wrapped in `miCOMPRESSED` (zlib) when `compress` — the layout
/// MATLAB's `save -v7` writes. The dimension and name elements use the
/// full 8-byte tag; the small-element form is read but not written.
pub fn write(arrays: &[Array], compress: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let text = b"MATLAB 5.0 MAT-file, Platform: ffwd, Created by: ffwd-datasets";
    out.extend_from_slice(text);
    out.resize(116, b' ');
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for a in arrays {
        let mut body = Vec::new();
        let mut flags = [0u8; 8];
        flags[0] = a.class as u8;
        push_element(&mut body, MI_UINT32, &flags);
        let dims: Vec<u8> = a.dims.iter().flat_map(|&d| (d as i32).to_le_bytes()).collect();
        push_element(&mut body, MI_INT32, &dims);
        push_element(&mut body, MI_INT8, a.name.as_bytes());
        push_element(&mut body, a.data.ty, &a.data.bytes);
        let mut elem = Vec::new();
        push_element(&mut elem, MI_MATRIX, &body);
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut z, &elem).expect("in-memory write");
            let z = z.finish().expect("in-memory write");
            out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            out.extend_from_slice(&(z.len() as u32).to_le_bytes());
            out.extend_from_slice(&z);
        } else {
            out.extend_from_slice(&elem);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrays() -> Vec<Array> {
        vec![
            Array {
                name: "X".into(),
                class: Class::Uint8,
                dims: vec![2, 3],
                data: Storage::from_u8(vec![1, 2, 3, 4, 5, 250]),
            },
            Array {
                name: "y".into(),
                class: Class::Double,
                dims: vec![3, 1],
                data: Storage::from_f64(&[1.0, 10.0, -2.5]),
            },
        ]
    }

    #[test]
    fn written_files_read_back_compressed_or_not() {
        for compress in [false, true] {
            let f = write(&arrays(), compress);
            let got = read(Path::new("t.mat"), &f, &[]).unwrap();
            assert_eq!(got, arrays(), "compress {compress}");
            let y = read(Path::new("t.mat"), &f, &["y"]).unwrap();
            assert_eq!((y.len(), y[0].data.get(1), y[0].data.get(2)), (1, 10.0, -2.5));
        }
    }

    #[test]
    fn small_elements_and_big_endian_files_parse() {
        // A big-endian file by hand: one uint8 1×2 array named "a" whose
        // name and data use the 4-byte small-element tags.
        let mut f = b"MATLAB 5.0 MAT-file".to_vec();
        f.resize(124, b' ');
        f.extend_from_slice(&0x0100u16.to_be_bytes());
        f.extend_from_slice(b"MI");
        let mut body = Vec::new();
        body.extend_from_slice(&MI_UINT32.to_be_bytes());
        body.extend_from_slice(&8u32.to_be_bytes());
        body.extend_from_slice(&(Class::Uint8 as u32).to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&MI_INT32.to_be_bytes());
        body.extend_from_slice(&8u32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(&((1u32 << 16) | MI_INT8).to_be_bytes());
        body.extend_from_slice(&[b'a', 0, 0, 0]);
        body.extend_from_slice(&((2u32 << 16) | MI_UINT8).to_be_bytes());
        body.extend_from_slice(&[7, 9, 0, 0]);
        f.extend_from_slice(&MI_MATRIX.to_be_bytes());
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(&body);
        let a = &read(Path::new("be.mat"), &f, &["a"]).unwrap()[0];
        assert_eq!((a.dims.clone(), a.data.as_u8().unwrap()), (vec![1, 2], &[7u8, 9][..]));
    }

    #[test]
    fn damaged_files_give_errors_naming_the_file_and_the_fault() {
        let p = Path::new("bad.mat");
        let msg = |b: &[u8], want: &[&str]| read(p, b, want).unwrap_err().to_string();
        let good = write(&arrays(), true);
        let e = msg(&good[..60], &[]);
        assert!(e.contains("bad.mat") && e.contains("128-byte"), "{e}");
        let mut hdf5 = b"\x89HDF\r\n\x1a\n".to_vec();
        hdf5.resize(600, 0);
        let e = msg(&hdf5, &[]);
        assert!(e.contains("not a MATLAB MAT-file"), "{e}");
        let mut v73 = good.clone();
        v73[..10].copy_from_slice(b"MATLAB 7.3");
        assert!(msg(&v73, &[]).contains("v7.3"));
        let e = msg(&good[..good.len() - 10], &[]);
        assert!(e.contains("bad.mat") && e.contains("past the end"), "{e}");
        let mut z = good.clone();
        for b in &mut z[140..150] {
            *b ^= 0x5a;
        }
        let e = msg(&z, &[]);
        assert!(e.contains("bad.mat") && e.contains("compressed"), "{e}");
        let e = msg(&good, &["X", "labels"]);
        assert!(e.contains("`labels`") && e.contains("found: X"), "{e}");
        let plain = write(&arrays(), false);
        let mut short = plain.clone();
        // The X array's dimension 3 → 4: more values than its data holds.
        let at = plain.windows(8).position(|w| w == [2, 0, 0, 0, 3, 0, 0, 0]).unwrap();
        short[at + 4] = 4;
        let e = msg(&short, &[]);
        assert!(e.contains("`X`") && e.contains("[2, 4]"), "{e}");
    }
}
