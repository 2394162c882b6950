//! The request context: everything later stages need to know about a request,
//! parsed once from its head.

mod path;

pub use path::{PathError, SitePath, MAX_PATH};
