//! Transforming HTML: the edits a decision asks for, applied by lol_html
//! while streaming through the page (once per distinct result, then kept
//! in the render cache), the Tera templates they render, and the fragments
//! fetched from upstream APIs.
//!
//! A page that cannot be rewritten (over the memory limit, say) is served as
//! it is: an edit is never worth a broken page.

mod edit;
pub mod fragments;
mod render_cache;
mod templates;

pub use edit::{apply, Edit, Op, Place, Rewritten, Snippet};
pub use fragments::{Fetched, Fragments, Got, Timing};
pub use render_cache::{RenderCache, RenderKey, Rendered};
pub use templates::{sample_context, template_context, Templates, OFFER_TEMPLATE};

use std::sync::Arc;

use crate::store::{Encoding, SiteVersion, StoredFile};

/// The transform stage: `page` with the decision's `edits` applied, from
/// the cache when this page was rendered so before. `None` when there is
/// nothing to do: no page, not HTML, or no edits.
pub fn page(
    cache: &RenderCache,
    site: &SiteVersion,
    rules_generation: u64,
    page: Option<&Arc<StoredFile>>,
    edits: &[Edit],
) -> Option<Arc<Rendered>> {
    let file = page.filter(|f| f.is_html() && !edits.is_empty())?;
    let key = RenderKey::new(&site.site, site.number, rules_generation, file, edits);
    Some(cache.get_or_render(key, || render(file, edits)))
}

/// Applies the decision's edits to a page, compressing the result once.
fn render(file: &Arc<StoredFile>, edits: &[Edit]) -> Rendered {
    // A damaged page is left as it is, for `respond` to refuse.
    let source = file.checked_body(Encoding::Identity).ok();
    let Some(Rewritten { html, matched }) = source.and_then(|s| apply(s, edits)) else {
        return Rendered {
            page: file.clone(),
            matched: Box::default(),
        };
    };
    let hash = crate::store::content_hash(&html);
    // Only HTML is rendered: named so, for its content type and compression.
    let name = "page.html";
    let (gzip, br) = crate::compress::for_storage(name, &html);
    Rendered {
        page: Arc::new(StoredFile::new(
            name,
            hash,
            crate::store::unix_ms(file.last_modified),
            html.into(),
            gzip,
            br,
        )),
        matched: matched.into(),
    }
}
