//! `rewrite` (terminal): serves another path of this site, or of another
//! site (`to_site`), at the requested URL with status 200. The HTML rules
//! that follow still apply, to the page served; no later rewrite, redirect
//! or block does, so a rewrite never loops.
//!
//! `to` is a path, never a URL: a rewrite cannot leave the sites outpost
//! serves (`proxy` is for other origins).

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision, Rewritten};
use super::kind::{ActionKind, Compiling, Firing};
use super::to::To;
use crate::context::SitePath;

#[derive(Debug)]
pub struct Rewrite {
    to: To,
    /// Another site's name; `None`: the request's own.
    to_site: Option<Arc<str>>,
}

#[derive(Debug, Deserialize)]
pub struct RawRewrite {
    pub(super) to: Option<Spanned<String>>,
    pub(super) to_site: Option<Spanned<String>>,
}

impl ActionKind for Rewrite {
    const NAME: &'static str = "rewrite";
    const TERMINAL: bool = true;
    type Raw = RawRewrite;

    fn compile(raw: RawRewrite, cx: &mut Compiling<'_>) -> Option<Rewrite> {
        let Some(written) = raw.to else {
            cx.missing::<Self>("`to`, a path on the site");
            return None;
        };
        let to = match To::parse(written.get_ref(), &cx.when.capture_names()) {
            Ok(to) if to.host().is_some() => {
                cx.error(
                    written.span(),
                    "a rewrite serves a path of a site outpost serves: `to` is a path starting with `/` (name another site with `to_site`; `proxy` forwards to other origins)",
                );
                return None;
            }
            Ok(_) if written.get_ref().contains(['?', '#']) => {
                cx.error(
                    written.span(),
                    "a rewrite serves a file: `to` is a path without a query (the request's query is kept)",
                );
                return None;
            }
            Ok(to) => to,
            Err(e) => {
                cx.error(written.span(), e);
                return None;
            }
        };
        let to_site = raw.to_site.map(|site| {
            if !cx.sites.contains(site.get_ref()) {
                cx.error(site.span(), format!("no site named `{}`", site.get_ref()));
            }
            Arc::from(site.into_inner())
        });
        Some(Rewrite { to, to_site })
    }

    /// A rewrite answers for whatever file the path names.
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let ctx = firing.request.ctx;
        let filled = match self.to.fill(ctx, &firing.captures()) {
            Ok(filled) => filled,
            Err(why) => return Applied::Skipped(why),
        };
        let Ok(path) = SitePath::parse(&filled) else {
            return Applied::Skipped(format!("`{filled}` is not a path on a site"));
        };
        decision.rewrite = Some(Rewritten {
            site: self.to_site.clone(),
            path,
        });
        Applied::Fired
    }
}
