//! The gzip and brotli copies kept of a file: made once per content, at
//! ingest, by a fleet's publisher, or when a personalized page is rendered.

use std::io::Write;

use bytes::Bytes;

/// gzip at `level` (0-9).
fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Brotli at `quality` (0-11).
fn brotli(data: &[u8], quality: i32) -> Vec<u8> {
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
fn worth(original: &[u8], compressed: Vec<u8>) -> Option<Bytes> {
    (compressed.len() * 10 < original.len() * 9).then(|| Bytes::from(compressed))
}

/// gzip level for stored copies. On the bench corpus's 500 pages (15.7 MB)
/// 5 is 1.1% larger than 6 in three quarters of the time, and 9 takes far
/// longer for well under 1% less.
const STORED_GZIP_LEVEL: u32 = 5;

/// Brotli quality for stored copies. On the same pages 5 is 1.1% larger
/// than 6 in four fifths of the time (1.3 s against 1.6 s on one core),
/// which a 500-file publish feels; 7 takes three times as long for 0.8%.
const STORED_BROTLI_QUALITY: i32 = 5;

/// Smallest file worth compressing.
const STORED_MIN: usize = 256;

/// Whether compressing this file is worth storing.
pub fn compressible(path: &str) -> bool {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.essence_str(),
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
        )
}

/// The gzip and brotli copies kept of a file, each only when worth it.
pub fn for_storage(path: &str, data: &[u8]) -> (Option<Bytes>, Option<Bytes>) {
    if !compressible(path) || data.len() < STORED_MIN {
        return (None, None);
    }
    (
        worth(data, gzip(data, STORED_GZIP_LEVEL)),
        worth(data, brotli(data, STORED_BROTLI_QUALITY)),
    )
}
