//! A test-only reader of the `.npz` files numpy's `savez` writes: a zip of `.npy`
//! entries stored uncompressed (numpy forces zip64 headers, so each entry's size is read
//! from its `.npy` header, not from the zip's). Supports little-endian `f4`, `i4` and
//! `u1` arrays and unicode strings (`<U n`, in [`Array::text`]).

use std::collections::HashMap;
use std::path::Path;

/// One array: its shape and values as `f64` (strings: in `text`, `values` empty).
#[derive(Debug, Clone)]
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
    pub text: Vec<String>,
}

impl Array {
    pub fn f32s(&self) -> Vec<f32> {
        self.values.iter().map(|&v| v as f32).collect()
    }
}

fn u16_at(b: &[u8], i: usize) -> usize {
    u16::from_le_bytes([b[i], b[i + 1]]) as usize
}

/// Every numeric array of the `.npz` at `path`, by name (without `.npy`).
pub fn read_npz(path: &Path) -> HashMap<String, Array> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut arrays = HashMap::new();
    let mut pos = 0;
    while pos + 30 <= bytes.len() && bytes[pos..pos + 4] == [0x50, 0x4b, 0x03, 0x04] {
        assert_eq!(u16_at(&bytes, pos + 8), 0, "{}: compressed entry (use numpy.savez)", path.display());
        let (name_len, extra_len) = (u16_at(&bytes, pos + 26), u16_at(&bytes, pos + 28));
        let name = String::from_utf8_lossy(&bytes[pos + 30..pos + 30 + name_len]).into_owned();
        let data = pos + 30 + name_len + extra_len;
        assert_eq!(&bytes[data..data + 6], b"\x93NUMPY", "{}: {name} is not a .npy", path.display());
        let (header_len, header_start) = match bytes[data + 6] {
            1 => (u16_at(&bytes, data + 8), data + 10),
            _ => (u32::from_le_bytes(bytes[data + 8..data + 12].try_into().unwrap()) as usize, data + 12),
        };
        let header = String::from_utf8_lossy(&bytes[header_start..header_start + header_len]).into_owned();
        let descr = header.split("'descr': '").nth(1).and_then(|s| s.split('\'').next()).unwrap_or_default();
        assert!(header.contains("'fortran_order': False"), "{name}: Fortran order");
        let shape_text =
            header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or_default();
        let shape: Vec<usize> = shape_text.split(',').filter_map(|d| d.trim().parse().ok()).collect();
        let count: usize = shape.iter().product();
        let start = header_start + header_len;
        if let Some(chars) = descr.strip_prefix("<U").and_then(|n| n.parse::<usize>().ok()) {
            let text = bytes[start..start + 4 * chars * count]
                .chunks(4 * chars)
                .map(|item| {
                    item.chunks(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                        .take_while(|&c| c != 0)
                        .filter_map(char::from_u32)
                        .collect()
                })
                .collect();
            arrays
                .insert(name.trim_end_matches(".npy").to_string(), Array { shape, values: Vec::new(), text });
            pos = start + 4 * chars * count;
            continue;
        }
        let (width, values): (usize, Option<Vec<f64>>) = match descr {
            "<f4" => (
                4,
                Some(
                    bytes[start..start + 4 * count]
                        .chunks(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                        .collect(),
                ),
            ),
            "<i4" => (
                4,
                Some(
                    bytes[start..start + 4 * count]
                        .chunks(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                        .collect(),
                ),
            ),
            "|u1" => (1, Some(bytes[start..start + count].iter().map(|&b| b as f64).collect())),
            d => (
                d.trim_start_matches(['<', '|'])
                    .trim_start_matches('U')
                    .parse::<usize>()
                    .map_or(0, |n| 4 * n),
                None,
            ),
        };
        if let Some(values) = values {
            arrays
                .insert(name.trim_end_matches(".npy").to_string(), Array { shape, values, text: Vec::new() });
        }
        pos = start + width * count;
    }
    arrays
}
