//! Transforming HTML: the edits a decision asks for, applied by lol_html
//! while streaming through the page, the Tera templates they render, and
//! the fragments fetched from upstream APIs.
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
