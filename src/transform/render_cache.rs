//! Rendered pages, kept by everything they depend on: the site version, the
//! rules generation, the source file and the edits (with their rendered
//! content). A site or rules change gives new keys; old entries age out.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use moka::sync::Cache;

use super::Edit;
use crate::store::StoredFile;

/// Memory the cache may hold, in bytes of rendered bodies.
const CAPACITY: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenderKey(u64, u64);

impl RenderKey {
    pub fn new(
        site: &str,
        version: u64,
        rules_generation: u64,
        file: &StoredFile,
        edits: &[Edit],
    ) -> RenderKey {
        // Two independent hashes make a collision between pages negligible.
        let mut a = std::hash::DefaultHasher::new();
        let mut b = std::hash::DefaultHasher::new();
        0xA5u8.hash(&mut b);
        for h in [&mut a, &mut b] {
            site.hash(h);
            version.hash(h);
            rules_generation.hash(h);
            file.hash.hash(h);
            edits.hash(h);
        }
        RenderKey(a.finish(), b.finish())
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
