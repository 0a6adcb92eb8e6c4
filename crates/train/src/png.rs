//! The image grids the CLI saves as PNG (originals above their
//! reconstructions), encoded by the `png` crate.

use crate::{Error, Result};
use std::path::Path;

/// PNG bytes of a `width × height` image with `channels` (1 or 3) bytes
/// per pixel, rows top to bottom.
pub fn encode(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    let bad = |what: String| Error::Invalid(format!("PNG of {width}×{height}×{channels}: {what}"));
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => return Err(bad("1 (grayscale) or 3 (RGB) channels only".into())),
    };
    if pixels.len() != width * height * channels {
        return Err(bad(format!("{} pixel bytes", pixels.len())));
    }
    let (w, h) = (u32::try_from(width), u32::try_from(height));
    let (Ok(w), Ok(h)) = (w, h) else { return Err(bad("too large".into())) };
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| bad(e.to_string()))?;
    writer.write_image_data(pixels).map_err(|e| bad(e.to_string()))?;
    writer.finish().map_err(|e| bad(e.to_string()))?;
    Ok(out)
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
    fn a_png_decodes_to_the_pixels_it_was_given() {
        for channels in [1, 3] {
            let px: Vec<u8> = (0..6 * 4 * channels).map(|i| (i * 7) as u8).collect();
            let bytes = encode(6, 4, channels, &px).unwrap();
            let mut r = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
            let mut back = vec![0; r.output_buffer_size()];
            let info = r.next_frame(&mut back).unwrap();
            assert_eq!((info.width, info.height, info.color_type.samples()), (6, 4, channels));
            assert_eq!(&back[..info.buffer_size()], &px[..]);
        }
        assert!(encode(2, 2, 2, &[0; 8]).is_err() && encode(2, 2, 1, &[0; 3]).is_err());
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
