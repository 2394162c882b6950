//! Rendered pages, kept by everything they depend on: the site version, the
//! rules generation, the source file and the edits (with their rendered
//! content). A site or rules change gives new keys; old entries age out.

use std::hash::Hash;
use std::sync::Arc;

use moka::sync::Cache;
use xxhash_rust::xxh3::Xxh3;

use super::Edit;
use crate::store::StoredFile;

/// Memory the cache may hold, in bytes of rendered bodies.
const CAPACITY: u64 = 256 * 1024 * 1024;

/// A 128-bit hash of everything a rendered page depends on: wide enough
/// that two different pages never share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenderKey(u128);

impl RenderKey {
    pub fn new(
        site: &str,
        version: u64,
        rules_generation: u64,
        file: &StoredFile,
        edits: &[Edit],
    ) -> RenderKey {
        let mut h = Xxh3::new();
        (site, version, rules_generation, &file.hash, edits).hash(&mut h);
        RenderKey(h.digest128())
    }
}

pub struct RenderCache {
    pages: Cache<RenderKey, Arc<StoredFile>>,
}

impl Default for RenderCache {
    fn default() -> Self {
        RenderCache {
            pages: Cache::builder()
                .max_capacity(CAPACITY)
                .weigher(|_, page: &Arc<StoredFile>| {
                    let size = page.identity().len() * 2;
                    size.try_into().unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

impl RenderCache {
    pub fn get_or_render(
        &self,
        key: RenderKey,
        render: impl FnOnce() -> Arc<StoredFile>,
    ) -> Arc<StoredFile> {
        self.pages.get_with(key, render)
    }

    pub fn clear(&self) {
        self.pages.invalidate_all();
    }
}
