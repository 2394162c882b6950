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

/// gzip level for stored copies: 9 takes twice as long as 6 on web pages
/// for well under 1% smaller output.
const STORED_GZIP_LEVEL: u32 = 6;

/// Brotli quality for stored copies: 6 compresses within a few percent of 9
/// at a fraction of the time, which a 500-file publish feels.
const STORED_BROTLI_QUALITY: i32 = 6;

/// Smallest file worth compressing.
const STORED_MIN: usize = 256;

/// The gzip and brotli copies kept of a stored file, each only when worth
/// it. Done once per content: at ingest, or by the publisher for a fleet.
pub fn for_storage(path: &str, data: &[u8]) -> (Option<Bytes>, Option<Bytes>) {
    if !crate::store::compressible(path) || data.len() < STORED_MIN {
        return (None, None);
    }
    (
        worth(data, gzip(data, STORED_GZIP_LEVEL)),
        worth(data, brotli(data, STORED_BROTLI_QUALITY)),
    )
}
