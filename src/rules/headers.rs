//! `headers`: set and remove response headers.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision};
use super::kind::{ActionKind, Compiling, Firing};

#[derive(Debug)]
pub struct Headers {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

#[derive(Debug, Deserialize)]
pub struct RawHeaders {
    set: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    remove: Option<Spanned<Vec<Spanned<String>>>>,
}

impl ActionKind for Headers {
    const NAME: &'static str = "headers";
    type Raw = RawHeaders;

    fn compile(raw: RawHeaders, cx: &mut Compiling<'_>) -> Option<Headers> {
        let mut set = Vec::new();
        for (k, v) in raw.set.iter().flat_map(|m| m.get_ref().iter()) {
            match (
                HeaderName::try_from(k.get_ref().as_str()),
                HeaderValue::try_from(v.get_ref().as_str()),
            ) {
                (Ok(n), Ok(v)) => set.push((n, v)),
                (Err(_), _) => {
                    cx.error(k.span(), format!("`{}` is not a header name", k.get_ref()))
                }
                (_, Err(_)) => cx.error(v.span(), "not a valid header value"),
            }
        }
        let mut remove = Vec::new();
        for k in raw.remove.iter().flat_map(|v| v.get_ref().iter()) {
            match HeaderName::try_from(k.get_ref().as_str()) {
                Ok(n) => remove.push(n),
                Err(_) => cx.error(k.span(), format!("`{}` is not a header name", k.get_ref())),
            }
        }
        Some(Headers { set, remove })
    }

    /// Headers go on any response.
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, _: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        decision.set_headers.extend(self.set.iter().cloned());
        decision.remove_headers.extend(self.remove.iter().cloned());
        Applied::Fired
    }
}
