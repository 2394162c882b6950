//! A version's new files in one object, with the compressed copies the
//! publisher made: each box then fetches one object instead of one per
//! file, and compresses nothing.
//!
//! Layout, per file: the hash's length (one byte) and the hash, then the
//! identity, gzip and brotli bodies, each as a little-endian u32 length and
//! the bytes; a copy not worth keeping has the length `u32::MAX`. A file
//! with a gzip copy leaves its identity out (length `u32::MAX`): the box
//! inflates the copy, which costs it far less than fetching the bytes. The
//! object is named by the hash of all of it, so a box checks it whole.

use std::io::Read;

use bytes::{BufMut, Bytes};

const NONE: u32 = u32::MAX;

/// One file in a pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub hash: String,
    pub identity: Bytes,
    pub gzip: Option<Bytes>,
    pub br: Option<Bytes>,
}

pub fn write(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let hash = e.hash.as_bytes();
        out.put_u8(hash.len().try_into().expect("hashes are short"));
        out.put_slice(hash);
        let identity = e.gzip.is_none().then_some(&e.identity);
        for body in [identity, e.gzip.as_ref(), e.br.as_ref()] {
            match body {
                Some(b) => {
                    out.put_u32_le(b.len().try_into().expect("files are under 4 GiB"));
                    out.put_slice(b);
                }
                None => out.put_u32_le(NONE),
            }
        }
    }
    out
}

/// The entries of a pack; `None` when it is malformed.
pub fn read(data: &Bytes) -> Option<Vec<Entry>> {
    let mut at: usize = 0;
    let mut take = |n: usize| -> Option<Bytes> {
        let end = at.checked_add(n).filter(|&end| end <= data.len())?;
        let part = data.slice(at..end);
        at = end;
        Some(part)
    };
    let mut entries = Vec::new();
    loop {
        let Some(len) = take(1) else { break };
        let hash = String::from_utf8(take(usize::from(len[0]))?.to_vec()).ok()?;
        let mut body = || -> Option<Option<Bytes>> {
            let len = u32::from_le_bytes(take(4)?.as_ref().try_into().ok()?);
            if len == NONE {
                return Some(None);
            }
            take(len as usize).map(Some)
        };
        let identity = body()?;
        let (gzip, br) = (body()?, body()?);
        let identity = match (identity, &gzip) {
            (Some(identity), _) => identity,
            (None, Some(gzip)) => inflate(gzip)?,
            (None, None) => return None,
        };
        entries.push(Entry {
            hash,
            identity,
            gzip,
            br,
        });
    }
    Some(entries)
}

/// The content of a gzip copy; `None` when it is not gzip.
fn inflate(gzip: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(gzip.len() * 4);
    flate2::read::GzDecoder::new(gzip)
        .read_to_end(&mut out)
        .ok()?;
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let page = b"<p>hello</p>".repeat(50);
        let (gzip, _) = crate::compress::for_storage("a.html", &page);
        let entries = vec![
            Entry {
                hash: "aa".into(),
                identity: page.into(),
                gzip,
                br: None,
            },
            Entry {
                hash: "bb".into(),
                identity: Bytes::new(),
                gzip: None,
                br: Some(Bytes::from_static(b"br")),
            },
        ];
        let packed = Bytes::from(write(&entries));
        assert_eq!(read(&packed), Some(entries.clone()));
        assert_eq!(read(&Bytes::new()), Some(Vec::new()));
        // A cut pack never reads as the whole (the object's hash catches
        // the cuts that read as a shorter pack).
        for cut in 1..packed.len() {
            assert_ne!(
                read(&packed.slice(..cut)).as_ref(),
                Some(&entries),
                "cut at {cut}"
            );
        }
        assert_eq!(read(&packed.slice(..packed.len() - 1)), None);
        // A gzip copy that is not gzip cannot stand for the identity.
        let bad = Entry {
            hash: "cc".into(),
            identity: Bytes::from_static(b"page"),
            gzip: Some(Bytes::from_static(b"not gzip")),
            br: None,
        };
        assert_eq!(read(&Bytes::from(write(&[bad]))), None);
    }
}
