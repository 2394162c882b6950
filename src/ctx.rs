//! One request on its way through the pipeline (pingora's CTX idea): what
//! each stage found, filled in as the stages run. The log reads it last;
//! `explain` keeps its decision.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::context::{Head, RequestContext};
use crate::rules::Decision;
use crate::store::{Lookup, SiteVersion};
use crate::transform::Rendered;

pub struct Ctx<'r> {
    /// When the request came in.
    pub started: Instant,
    pub head: Head<'r>,
    /// The connection's peer (a proxy, when behind one).
    pub peer: SocketAddr,
    /// The site that answers, once the host resolved.
    pub site: Option<&'r SiteVersion>,
    /// Built only when a rule may apply to the site and path.
    pub context: Option<RequestContext<'r>>,
    /// What the path found in the site, for the rules and the body.
    pub lookup: Option<Lookup<'r>>,
    pub decision: Option<Decision>,
    /// The page with the decision's edits, when it had any.
    pub rendered: Option<Arc<Rendered>>,
}

impl<'r> Ctx<'r> {
    pub fn new(head: Head<'r>, peer: SocketAddr) -> Ctx<'r> {
        Ctx {
            started: Instant::now(),
            head,
            peer,
            site: None,
            context: None,
            lookup: None,
            decision: None,
            rendered: None,
        }
    }
}
