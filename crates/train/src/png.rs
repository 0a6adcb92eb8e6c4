//! A minimal PNG writer (8-bit grayscale or RGB, one zlib IDAT chunk, no
//! filtering) and the image grids the CLI saves: originals above their
//! reconstructions.

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// PNG bytes of a `width × height` image with `channels` (1 or 3) bytes
/// per pixel, rows top to bottom.
pub fn encode(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Vec<u8> {
    assert!(channels == 1 || channels == 3, "grayscale or RGB");
    assert_eq!(pixels.len(), width * height * channels, "pixel count");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, if channels == 3 { 2 } else { 0 }, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut raw = Vec::with_capacity(height * (1 + width * channels));
    for row in pixels.chunks(width * channels) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("in-memory write");
    chunk(&mut out, b"IDAT", &z.finish().expect("in-memory write"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A grid of `n` C×H×W images (`top`) above their counterparts (`bottom`),
/// `cols` per row, 1-pixel gaps. Each pair is mapped to bytes with the top
/// image's range (min → 0, max → 255; values outside are clipped), so a
/// reconstruction shows on its original's scale.
pub fn pair_grid(
    top: &[f32],
    bottom: &[f32],
    n: usize,
    (c, h, w): (usize, usize, usize),
    cols: usize,
) -> (usize, usize, Vec<u8>) {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + 1) + 1, rows * 2 * (h + 1) + 1);
    let ch = if c == 3 { 3 } else { 1 };
    let mut px = vec![40u8; gw * gh * ch];
    let d = c * h * w;
    for i in 0..n {
        let (r, k) = (i / cols, i % cols);
        let t = &top[i * d..(i + 1) * d];
        let lo = t.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = t.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        for (which, img) in [t, &bottom[i * d..(i + 1) * d]].into_iter().enumerate() {
            let (y0, x0) = ((2 * r + which) * (h + 1) + 1, k * (w + 1) + 1);
            for y in 0..h {
                for x in 0..w {
                    for q in 0..ch {
                        let v = img[(q.min(c - 1)) * h * w + y * w + x];
                        let b = (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
                        px[((y0 + y) * gw + x0 + x) * ch + q] = b;
                    }
                }
            }
        }
    }
    (gw, gh, px)
}

/// Write `bytes` to `path` (creating its folder).
pub fn save(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    }
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn a_png_round_trips_through_zlib_with_filter_bytes() {
        let px: Vec<u8> = (0..6 * 4 * 3).map(|i| i as u8).collect();
        let png = encode(6, 4, 3, &px);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let at = png.windows(4).position(|w| w == b"IDAT").unwrap();
        let len = u32::from_be_bytes(png[at - 4..at].try_into().unwrap()) as usize;
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&png[at + 4..at + 4 + len]), &mut raw).unwrap();
        assert_eq!(raw.len(), 4 * (1 + 18));
        assert_eq!(&raw[1..19], &px[..18]);
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND CRC");
    }

    #[test]
    fn the_grid_puts_each_reconstruction_under_its_original_on_the_same_scale() {
        let top = vec![0.0, 1.0, 2.0, 3.0];
        let bottom = vec![3.0, 2.0, 1.0, 10.0];
        let (w, h, px) = pair_grid(&top, &bottom, 1, (1, 2, 2), 4);
        assert_eq!((w, h), (4, 7));
        assert_eq!((px[w + 1], px[w + 2], px[2 * w + 2]), (0, 85, 255));
        assert_eq!((px[4 * w + 1], px[5 * w + 2]), (255, 255));
        assert_eq!(px[0], 40);
    }
}
