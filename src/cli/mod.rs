//! Commands that read a root offline, above the request path (they load it
//! through `offline`, which runs the handler), so that nothing on the path
//! imports them.

pub mod preview_link;
pub mod publish;
pub mod status;
