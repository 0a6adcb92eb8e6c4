//! Damage for the fuzz tests: bit flips, truncations, and size fields set
//! to extremes, mostly where a format keeps its header.

use proptest::prelude::*;

/// Where a format keeps its sizes: the first `len` bytes, in fields of
/// `width` bytes (4 or 8) of the given byte order.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub len: usize,
    pub width: usize,
    pub big_endian: bool,
}

#[derive(Clone, Debug)]
pub enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    /// Write this value at a spot chosen from the index: anywhere (index %
    /// 4 == 0), at the start (== 1), else within the header.
    Extreme(usize, u64),
}

pub fn damage() -> impl Strategy<Value = Damage> {
    let extreme = prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7fff_ffff),
        Just(u32::MAX as u64),
        Just(1 << 40),
        Just(u64::MAX),
        any::<u64>()
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, m)| Damage::Flip(i, m)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), extreme).prop_map(|(i, v)| Damage::Extreme(i, v)),
    ]
}

pub fn apply(mut b: Vec<u8>, ds: &[Damage], h: Header) -> Vec<u8> {
    for d in ds {
        if b.is_empty() {
            break;
        }
        match *d {
            Damage::Flip(i, m) => {
                let i = i % b.len();
                b[i] ^= m;
            }
            Damage::Truncate(i) => b.truncate(i % b.len()),
            Damage::Extreme(i, v) => {
                let at = match i % 4 {
                    0 => i % b.len(),
                    1 => 0,
                    _ => (i / 4) % h.len.min(b.len()),
                };
                let bytes = if h.big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
                let field = if h.big_endian { &bytes[8 - h.width..] } else { &bytes[..h.width] };
                let end = (at + h.width).min(b.len());
                b[at..end].copy_from_slice(&field[..end - at]);
            }
        }
    }
    b
}
