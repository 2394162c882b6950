//! Compression shared by ingest (best ratio, once per file) and rendering
//! (faster levels, once per rendered page).

use std::io::Write;

use bytes::Bytes;

/// gzip at `level` (0-9).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Brotli at `quality` (0-11).
pub fn brotli(data: &[u8], quality: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("writing to memory");
    out
}

/// Keeps a compressed copy only when it saves at least a tenth.
pub fn worth(original: &[u8], compressed: Vec<u8>) -> Option<Bytes> {
    (compressed.len() * 10 < original.len() * 9).then(|| Bytes::from(compressed))
}
