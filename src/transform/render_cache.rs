//! Rendered pages, kept by everything they depend on: the site version, the
//! rules generation, the source file and the edits (with their rendered
//! content). A site or rules change gives new keys; old entries age out.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use xxhash_rust::xxh3::Xxh3;

use super::Edit;
use crate::store::StoredFile;

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

/// A page with a decision's edits applied, and which edits matched: a page
/// served from the cache still tells whether a variant was applied.
#[derive(Debug)]
pub struct Rendered {
    pub page: Arc<StoredFile>,
    /// Per edit of the decision, in order; empty when the page could not
    /// be rewritten and goes out unchanged.
    pub matched: Box<[bool]>,
}

/// A rendered page weighs its identity body and, roughly, its compressed
/// copies.
#[derive(Clone)]
struct PageSize;

impl Weighter<RenderKey, Arc<Rendered>> for PageSize {
    fn weight(&self, _: &RenderKey, rendered: &Arc<Rendered>) -> u64 {
        rendered.page.identity().len() as u64 * 2
    }
}

/// The only pages outpost holds on its heap, bounded by bytes: every other
/// body is a slice of a mapped pack.
pub struct RenderCache {
    pages: Cache<RenderKey, Arc<Rendered>, PageSize>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The cache's figures, for /metrics and /status.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RenderCacheStats {
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub pages: u64,
    pub hits: u64,
    pub misses: u64,
}

impl RenderCache {
    /// A cache of at most `capacity` bytes of rendered pages.
    pub fn new(capacity: u64) -> RenderCache {
        RenderCache {
            // The item estimate only sizes the table; memory is what bounds it.
            pages: Cache::with_weighter(4_096, capacity.max(1), PageSize),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn get_or_render(
        &self,
        key: RenderKey,
        render: impl FnOnce() -> Rendered,
    ) -> Arc<Rendered> {
        let mut rendered = false;
        // Concurrent misses on one key render once; the others wait for it.
        let Ok(page) = self.pages.get_or_insert_with(&key, || {
            rendered = true;
            Ok::<_, std::convert::Infallible>(Arc::new(render()))
        });
        let counter = if rendered { &self.misses } else { &self.hits };
        counter.fetch_add(1, Ordering::Relaxed);
        page
    }

    pub fn stats(&self) -> RenderCacheStats {
        RenderCacheStats {
            bytes: self.pages.weight(),
            capacity_bytes: self.capacity,
            pages: self.pages.len() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    pub fn clear(&self) {
        self.pages.clear();
    }
}
