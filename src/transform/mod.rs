//! Transforming HTML: the edits a decision asks for, applied by lol_html
//! while streaming through the page, and the Tera templates they render.
//!
//! A page that cannot be rewritten (over the memory limit, say) is served as
//! it is: an edit is never worth a broken page.

mod edit;
mod render_cache;
mod templates;

pub use edit::{apply, Edit, Op, Place};
pub use render_cache::{RenderCache, RenderKey};
pub use templates::{template_context, Templates, OFFER_TEMPLATE};
