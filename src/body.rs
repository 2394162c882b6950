//! The body stage: which stored file a decided request sends (the page, a
//! variant's file in its place, a block's page), and the fragments its
//! edits need, fetched and rendered into edits.

use std::sync::Arc;

use http::Method;

use crate::context::SitePath;
use crate::rules::fragment::{Needed, OnError};
use crate::rules::{self, Decision, Outcome, Rules};
use crate::store::{Lookup, SiteVersion, StoredFile};
use crate::transform::{Edit, Fragments, Got, Op, Place};

/// What the response carries, as far as the decision chose a file.
pub enum Content<'s> {
    /// The page for a served GET or HEAD: the file the path found, or a
    /// variant's file in its place (`variant`).
    Page {
        file: &'s Arc<StoredFile>,
        variant: bool,
    },
    /// A block's page, when it names one that exists.
    Blocked(Option<&'s Arc<StoredFile>>),
    /// A rewrite's target, which its site does not have.
    Missing,
    /// No file chosen: a redirect, a hidden page, or what the static path
    /// answers (a missing page, another method).
    Other,
}

impl<'s> Content<'s> {
    /// The page to send, when there is one.
    pub fn page(&self) -> Option<&'s Arc<StoredFile>> {
        match self {
            Content::Page { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// The page the path found, as the rules see it.
pub fn page<'s>(lookup: &Lookup<'s>) -> Option<&'s StoredFile> {
    match *lookup {
        Lookup::Found(f) => Some(f.as_ref()),
        _ => None,
    }
}

/// Chooses the file the decision sends, and fills the decision's
/// fragments into edits when the page is served.
pub async fn choose<'s>(
    fragments: &Arc<Fragments>,
    request: &rules::Request<'s>,
    rules: &Rules,
    lookup: &Lookup<'s>,
    decision: &mut Decision,
) -> Content<'s> {
    let site = request.site;
    if !decision.fragments.is_empty() && matches!(decision.outcome, Outcome::Serve) {
        let mut render = rules::Render::new(request, &rules.templates);
        let filled = fill_fragments(fragments, &decision.fragments, &mut render).await;
        decision.edits.extend(filled);
    }
    let method = request.ctx.method;
    let get = method == Method::GET || method == Method::HEAD;
    let page = match (&decision.rewrite, lookup) {
        (Some(to), _) => to.page(request).ok_or(Content::Missing),
        (None, Lookup::Found(page)) => Ok(*page),
        (None, _) => Err(Content::Other),
    };
    match (&decision.outcome, page) {
        (Outcome::Block { page, .. }, _) => {
            Content::Blocked(page.as_deref().and_then(|p| found(site, p)))
        }
        (Outcome::Serve, Ok(page)) if get => {
            let variant = variant_file(site, decision);
            Content::Page {
                file: variant.unwrap_or(page),
                variant: variant.is_some(),
            }
        }
        (Outcome::Serve, Err(missing)) if get => missing,
        _ => Content::Other,
    }
}

/// A variant served as another file; the control when that file is gone.
fn variant_file<'s>(site: &'s SiteVersion, decision: &Decision) -> Option<&'s Arc<StoredFile>> {
    let serve = decision.serve.as_ref()?;
    let file = found(site, serve);
    if file.is_none() {
        tracing::error!(site = %site.site, file = %serve.path, "variant file missing; serving the control");
    }
    file
}

/// The file at `path` in the site, if there is one.
fn found<'s>(site: &'s SiteVersion, path: &SitePath) -> Option<&'s Arc<StoredFile>> {
    match site.lookup(path) {
        Lookup::Found(f) => Some(f),
        _ => None,
    }
}

/// Fetches every fragment at once (each within its own timeout) and turns
/// them into edits.
async fn fill_fragments(
    fragments: &Arc<Fragments>,
    needed: &[Needed],
    render: &mut rules::Render<'_>,
) -> Vec<Edit> {
    let got =
        futures_util::future::join_all(needed.iter().map(|n| fragments.get(&n.url, &n.timing)))
            .await;
    let mut edits = Vec::new();
    for (n, got) in needed.iter().zip(got) {
        let data = match got {
            Got::Fresh(f) | Got::Stale(f) => Some(f),
            Got::Failed { stale, .. } if n.on_error == OnError::Stale => stale,
            Got::Failed { .. } => None,
        };
        // The same copy of the data (same allocation, same fetch time) is the
        // same data.
        let rendered = data.map(|f| {
            let fetched = f
                .fetched_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let identity = (Arc::as_ptr(&f) as u64).rotate_left(17) ^ fetched;
            render.render(
                &n.template,
                &n.params,
                Some(("data", identity, &|| f.data.clone())),
            )
        });
        let html = match rendered {
            Some(Ok(html)) => Some(html),
            Some(Err(e)) => {
                fragments.template_failed(&n.rule, &e);
                None
            }
            None => None,
        };
        let op = match (html, n.on_error) {
            (Some(html), _) => Op::SetHtml(html),
            (None, OnError::Keep) => continue,
            (None, OnError::Stale | OnError::Empty) => Op::SetHtml("".into()),
        };
        edits.push(Edit {
            slot: n.slot,
            place: Place::Selector(n.selector.clone()),
            op,
        });
    }
    edits
}
