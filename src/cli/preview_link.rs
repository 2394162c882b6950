//! `outpost preview-link`: a URL with a token that opens a gated preview.

use crate::offline::Offline;
use crate::rules::{preview, Action};

#[derive(clap::Args)]
pub struct PreviewLinkArgs {
    /// The URL of a gated page.
    url: String,
    #[command(flatten)]
    root: super::RootArg,
    /// How long the link works: 30m, 12h, 7d...
    #[arg(long, default_value = "7d")]
    ttl: humantime::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no site answers {0}")]
    NoSite(String),
    #[error("no `preview` rule with a `secret` gates {0}")]
    NoRule(String),
    #[error(transparent)]
    Url(#[from] crate::offline::OfflineError),
}

/// Loads the root offline and prints the link.
pub fn run(args: PreviewLinkArgs) -> Result<(), LinkError> {
    let offline = Offline::load(&args.root.root)?;
    println!("{}", link(&offline, &args.url, *args.ttl)?);
    Ok(())
}

/// `url` with a token that opens it (and the rule's other gated pages)
/// until `ttl` from now.
pub fn link(offline: &Offline, url: &str, ttl: std::time::Duration) -> Result<String, LinkError> {
    let parsed =
        url::Url::parse(url).map_err(|_| crate::offline::OfflineError::Url(url.to_string()))?;
    let sites = offline.app.live.sites();
    let site = sites
        .resolve(parsed.host_str())
        .ok_or_else(|| LinkError::NoSite(url.to_string()))?;
    let path = crate::context::SitePath::parse(parsed.path())
        .map_err(|_| crate::offline::OfflineError::Url(url.to_string()))?;
    let rules = offline.app.live.rules();
    let (rule, preview) = rules
        .rules
        .iter()
        .filter(|r| r.applies_to(&site.site))
        .find_map(|r| match &r.action {
            Action::Preview(p) if p.secret.is_some() && p.paths.is_match(&path.path) => {
                Some((r, p))
            }
            _ => None,
        })
        .ok_or_else(|| LinkError::NoRule(url.to_string()))?;
    let expires = preview::now() + ttl.as_secs();
    let token = preview::token(
        preview.secret.as_deref().expect("filtered on secret"),
        &rule.name,
        expires,
    );
    let mut out = parsed.clone();
    out.query_pairs_mut().append_pair(&preview.param, &token);
    Ok(out.to_string())
}
