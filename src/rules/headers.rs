//! `headers`: set and remove response headers.

use http::{HeaderName, HeaderValue};

use super::decision::{Applied, Decision};

#[derive(Debug)]
pub struct Headers {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl Headers {
    /// Headers go on any response.
    pub fn changes_any_file(&self) -> bool {
        true
    }

    pub fn apply(&self, decision: &mut Decision) -> Applied {
        decision.set_headers.extend(self.set.iter().cloned());
        decision.remove_headers.extend(self.remove.iter().cloned());
        Applied::Fired
    }
}
