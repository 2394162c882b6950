//! Resolving the site: which site answers a Host header.
//!
//! Exact names first, then `*.domain` patterns (longest suffix wins), then
//! the default site. The table is built once per switch, never per request.

use std::collections::HashMap;
use std::sync::Arc;

use http::Version;

use crate::config::{Diagnostic, HostPattern, SiteConfig};
use crate::context::{request_host, Head, HostError};
use crate::store::SiteVersion;

/// Why no site answers a request.
#[derive(Debug)]
pub enum NoSite {
    BadHost(HostError),
    /// An HTTP/1.1 request without Host, malformed (RFC 9112 §3.2).
    NoHost,
    /// No loaded site claims the host, and the first scan is still running.
    Starting,
    /// No site claims the host, and there is no default site.
    Unknown,
}

/// The site stage: the site that answers `head`, with the Host header as
/// sent (`""` when none). `ready`: whether the first scan of sites/ ended.
pub fn resolve<'s, 'r>(
    sites: &'s Sites,
    head: &Head<'r>,
    ready: bool,
) -> Result<(&'s SiteVersion, &'r str), NoSite> {
    let host = request_host(head.uri, head.headers).map_err(NoSite::BadHost)?;
    if host.is_none() && head.version == Version::HTTP_11 {
        return Err(NoSite::NoHost);
    }
    match sites.resolve(host) {
        // Until the first scan ends, a host no loaded site claims may be
        // a site not loaded yet: neither the default site nor a 404.
        _ if !ready && sites.claimant(host).is_none() => Err(NoSite::Starting),
        None => Err(NoSite::Unknown),
        Some(site) => Ok((site, host.unwrap_or(""))),
    }
}

/// The sites being served, each at its current version, by host.
#[derive(Debug, Default, Clone)]
pub struct Sites {
    // foldhash: looked up per request with keys no visitor can add.
    by_name: foldhash::HashMap<String, Arc<SiteVersion>>,
    exact: foldhash::HashMap<String, Arc<SiteVersion>>,
    /// `(suffix with leading dot, site)`, longest suffix first.
    wildcard: Vec<(String, Arc<SiteVersion>)>,
    default: Option<Arc<SiteVersion>>,
}

impl Sites {
    /// Builds the table. Conflicts (two defaults, one host claimed twice) are
    /// returned as diagnostics; the site first by name keeps what it claims.
    pub fn build(versions: impl IntoIterator<Item = Arc<SiteVersion>>) -> (Sites, Vec<Diagnostic>) {
        let mut versions: Vec<_> = versions.into_iter().collect();
        versions.sort_by(|a, b| a.site.cmp(&b.site));
        let mut sites = Sites::default();
        let mut problems = Vec::new();
        let mut owners: HashMap<String, String> = HashMap::new();
        for v in versions {
            for (pattern, origin) in &v.config.hosts {
                let key = pattern.display();
                if let Some(owner) = owners.get(&key) {
                    if owner != &v.site {
                        problems.push(
                            origin.error(format!(
                                "host `{key}` is already claimed by site `{owner}`"
                            )),
                        );
                    }
                    continue;
                }
                owners.insert(key, v.site.clone());
                match pattern {
                    HostPattern::Exact(h) => {
                        sites.exact.insert(h.clone(), v.clone());
                    }
                    HostPattern::Wildcard(suffix) => {
                        sites.wildcard.push((suffix.clone(), v.clone()))
                    }
                }
            }
            if let Some(origin) = &v.config.default {
                match &sites.default {
                    Some(d) => problems.push(origin.error(format!(
                        "site `{}` is already the default; at most one site may say `default = true`",
                        d.site
                    ))),
                    None => sites.default = Some(v.clone()),
                }
            }
            sites.by_name.insert(v.site.clone(), v);
        }
        sites.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        (sites, problems)
    }

    /// Problems `config` would cause if it became site `name`'s settings.
    pub fn conflicts(&self, name: &str, config: &SiteConfig) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        for (pattern, origin) in &config.hosts {
            let claimed = match pattern {
                HostPattern::Exact(h) => self.exact.get(h),
                HostPattern::Wildcard(s) => {
                    self.wildcard.iter().find(|(w, _)| w == s).map(|(_, v)| v)
                }
            };
            if let Some(other) = claimed.filter(|o| o.site != name) {
                problems.push(origin.error(format!(
                    "host `{}` is already claimed by site `{}`",
                    pattern.display(),
                    other.site
                )));
            }
        }
        if let (Some(origin), Some(d)) = (&config.default, &self.default) {
            if d.site != name {
                problems.push(origin.error(format!(
                    "site `{}` is already the default; at most one site may say `default = true`",
                    d.site
                )));
            }
        }
        problems
    }

    /// The site for a Host header value (any port is ignored).
    pub fn resolve(&self, host: Option<&str>) -> Option<&Arc<SiteVersion>> {
        self.claimant(host).or(self.default.as_ref())
    }

    /// The site that names `host` among its hosts (the default site aside).
    pub fn claimant(&self, host: Option<&str>) -> Option<&Arc<SiteVersion>> {
        let host = host?;
        let name = strip_port(host).trim_end_matches('.');
        let lookup = |name: &str| {
            self.exact.get(name).or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| {
                        name.len() > suffix.len() && name.ends_with(suffix.as_str())
                    })
                    .map(|(_, v)| v)
            })
        };
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lookup(&name.to_ascii_lowercase())
        } else {
            lookup(name)
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<SiteVersion>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<SiteVersion>> {
        self.by_name.values()
    }

    /// A copy with `version` in place of its site's current one.
    pub fn with(&self, version: Arc<SiteVersion>) -> (Sites, Vec<Diagnostic>) {
        let name = version.site.clone();
        let others = self.by_name.values().filter(|v| v.site != name).cloned();
        Sites::build(others.chain(std::iter::once(version)))
    }

    /// A copy without site `name`.
    pub fn without(&self, name: &str) -> Sites {
        Sites::build(self.by_name.values().filter(|v| v.site != name).cloned()).0
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_ignored() {
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("a.com"), "a.com");
    }
}
