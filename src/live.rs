//! What is served now, and how it changes: each site's current version and
//! the rules in force, one snapshot swapped atomically when ingest produces a
//! new version, a rollback picks an old one, or rules load.
//!
//! A request loads the snapshot once and sees one version of its site and
//! one generation of rules from start to end: never a new site with old
//! rules. Site changes are serialized by one lock, so two ingests never race
//! to switch the same table; a rules load swaps only the rules half.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::Diagnostic;
use crate::rules::{RedirectsFile, Rules};
use crate::site::Sites;
use crate::store::{
    ingest_site, Compressed, Damaged, IngestError, Ingested, Notes, SiteVersion, Store, StoreError,
};
use crate::transform::RenderCache;

/// Sites and rules as one request sees them.
pub struct Served {
    pub sites: Arc<Sites>,
    pub rules: Arc<Rules>,
    /// Each site's `_redirects`, compiled for the version served.
    pub redirects: Arc<Redirects>,
}

/// Compiled `_redirects` by site name (foldhash: looked up per request,
/// with keys no visitor can add).
pub type Redirects = foldhash::HashMap<String, Arc<RedirectsFile>>;

impl Served {
    /// Whether any rule (of rules/ or the site's `_redirects`) could apply
    /// to `path` on `site`; when none does, the request takes the static
    /// path with no context built.
    pub fn any_for(&self, site: &SiteVersion, path: &str) -> bool {
        self.rules.any_for(&site.site, path)
            || self.redirects_for(site).is_some_and(|r| r.any_for(path))
    }

    /// The compiled `_redirects` of `site`'s version, if it has one.
    pub fn redirects_for(&self, site: &SiteVersion) -> Option<&RedirectsFile> {
        self.redirects
            .get(&site.site)
            .filter(|r| r.version == site.number)
            .map(|r| &**r)
    }
}

/// The `_redirects` of every version in `sites`, compiled; those of the
/// versions `before` has are kept, not compiled again. A file that does
/// not compile (it was checked at ingest, so this is outpost's own fault)
/// is logged, and its site served without it.
fn compile_redirects(sites: &Sites, before: &Redirects) -> Redirects {
    let mut out = Redirects::default();
    for version in sites.iter() {
        let name = &version.site;
        if let Some(kept) = before.get(name).filter(|r| r.version == version.number) {
            out.insert(name.clone(), kept.clone());
            continue;
        }
        let started = std::time::Instant::now();
        match RedirectsFile::compile(version) {
            None => {}
            Some(Ok(file)) => {
                tracing::info!(
                    site = %name,
                    version = version.number,
                    lines = file.lines.len(),
                    ms = %format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
                    "_redirects loaded"
                );
                out.insert(name.clone(), Arc::new(file));
            }
            Some(Err(errors)) => {
                for e in errors {
                    tracing::error!(site = %name, "{e}; served without its _redirects");
                }
            }
        }
    }
    out
}

pub struct Live {
    root: PathBuf,
    served: ArcSwap<Served>,
    rules_problems: Mutex<Vec<Diagnostic>>,
    rendered: RenderCache,
    /// Keep a copy of each good rules load for the next start (not for the
    /// one-shot commands, which must not write into the root they read).
    keeps_rules_copy: bool,
    store: Store,
    sites_dir: PathBuf,
    publishing: Mutex<()>,
    problems: Mutex<BTreeMap<String, String>>,
    /// What each site's last scan left out (symlinks, unreadable entries).
    skipped: Mutex<BTreeMap<String, Vec<String>>>,
    ready: AtomicBool,
    /// Content hashes whose damaged bodies are being read again.
    repairing: Mutex<std::collections::HashSet<String>>,
}

impl Live {
    /// Starts from the versions the store says are current, so a restart
    /// serves at once, before sites/ is scanned.
    pub fn from_store(store: Store, root: PathBuf) -> Result<Live, StoreError> {
        let sites_dir = root.join("sites");
        // Sites load side by side, one per core: a warm restart is mostly
        // this. (A thread per site would leave each its own allocator heap.)
        let current = store.current_versions()?;
        let loads =
            crate::parallel::map(&current, |(site, number)| store.load_version(site, *number));
        let versions: Vec<Arc<crate::store::SiteVersion>> = current
            .iter()
            .zip(loads)
            .filter_map(|((site, _), load)| match load {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::warn!(site, error = %e, "stored version unreadable; it will be ingested again");
                    None
                }
            })
            .collect();
        let (sites, problems) = Sites::build(versions);
        for p in problems {
            tracing::error!("{p}");
        }
        Ok(Live {
            root,
            served: ArcSwap::from_pointee(Served {
                redirects: Arc::new(compile_redirects(&sites, &Redirects::default())),
                sites: Arc::new(sites),
                rules: Arc::new(Rules::empty()),
            }),
            rules_problems: Mutex::new(Vec::new()),
            rendered: RenderCache::new(crate::config::DEFAULT_RENDER_CACHE_SIZE),
            keeps_rules_copy: true,
            store,
            sites_dir,
            publishing: Mutex::new(()),
            problems: Mutex::new(BTreeMap::new()),
            skipped: Mutex::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
            repairing: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Bounds the pages rendered by rules to `bytes`.
    pub fn with_render_cache_size(mut self, bytes: u64) -> Live {
        self.rendered = RenderCache::new(bytes);
        self
    }

    /// For one-shot commands: nothing is written into the root.
    pub fn read_only(mut self) -> Live {
        self.keeps_rules_copy = false;
        self
    }

    /// The sites and rules served now, held for as long as a request
    /// needs them.
    pub fn served(&self) -> Arc<Served> {
        self.served.load_full()
    }

    /// The table of sites being served now.
    pub fn sites(&self) -> Arc<Sites> {
        self.served.load().sites.clone()
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.served.load().rules.clone()
    }

    /// Serves `sites` with the rules in force (a rules load may have
    /// swapped them meanwhile: they are kept).
    fn set_sites(&self, sites: Sites) {
        let redirects = Arc::new(compile_redirects(&sites, &self.served.load().redirects));
        let sites = Arc::new(sites);
        self.served.rcu(|now| Served {
            sites: sites.clone(),
            rules: now.rules.clone(),
            redirects: redirects.clone(),
        });
    }

    /// Puts `rules` in force for the sites served (an ingest may have
    /// swapped them meanwhile: they are kept).
    fn set_rules(&self, rules: Rules) {
        let rules = Arc::new(rules);
        self.served.rcu(|now| Served {
            sites: now.sites.clone(),
            rules: rules.clone(),
            redirects: now.redirects.clone(),
        });
    }

    /// Pages rendered by rules, by everything they depend on.
    pub fn rendered(&self) -> &RenderCache {
        &self.rendered
    }

    /// Problems of the last rules load that failed (empty after a good one).
    pub fn rules_problems(&self) -> Vec<Diagnostic> {
        self.rules_problems.lock().unwrap().clone()
    }

    /// Loads rules/ again. On any problem the rules in force stay, and the
    /// problems are logged and kept for the status page.
    pub fn reload_rules(&self) -> Result<(), crate::rules::LoadError> {
        // A site on disk but not loaded yet (a cold start) is still a site
        // rules may name.
        let mut names: Vec<String> = self.sites().iter().map(|v| v.site.clone()).collect();
        names.extend(
            self.site_folders()
                .into_iter()
                .filter(|n| self.sites_dir.join(n).join("site.toml").is_file()),
        );
        names.sort();
        names.dedup();
        match crate::rules::load(&self.root, &names) {
            Ok(rules) => {
                tracing::info!(
                    rules = rules.rules.len(),
                    generation = rules.generation,
                    "rules loaded"
                );
                self.set_rules(rules);
                self.rules_problems.lock().unwrap().clear();
                self.rendered.clear();
                if self.keeps_rules_copy {
                    if let Err(e) = keep_copy(&self.root.join("rules"), &self.last_good_rules()) {
                        tracing::warn!(error = %e, "cannot keep a copy of the good rules");
                    }
                }
                Ok(())
            }
            Err(e) => {
                for d in &e.0 {
                    tracing::error!("{d}");
                }
                *self.rules_problems.lock().unwrap() = e.0.clone();
                if self.rules().generation > 0 {
                    tracing::error!("rules not loaded; the last good rules keep serving");
                } else {
                    // Starting with broken rules: the copy kept from the
                    // last good load serves until the files are fixed.
                    match crate::rules::load(&self.last_good_rules(), &names) {
                        Ok(rules) => {
                            tracing::error!("rules not loaded; the last good rules keep serving (from cache/last-good)");
                            self.set_rules(rules);
                        }
                        Err(_) => tracing::error!(
                            "rules not loaded, and no good copy is kept: serving without rules"
                        ),
                    }
                }
                Err(e)
            }
        }
    }

    /// Where a copy of the last rules that loaded is kept (as `rules/`).
    fn last_good_rules(&self) -> PathBuf {
        self.root.join("cache").join("last-good")
    }

    /// True once the first scan of sites/ finished.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Each site's last ingest problem, if any.
    pub fn problems(&self) -> BTreeMap<String, String> {
        self.problems.lock().unwrap().clone()
    }

    /// What each site's last scan left out, if anything.
    pub fn skipped(&self) -> BTreeMap<String, Vec<String>> {
        self.skipped.lock().unwrap().clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes the store again when its file was deleted or replaced while
    /// running, and ingests every site into the new one (rules too, for
    /// the copy kept beside it); what is served does not change meanwhile.
    pub fn keep_store(&self) {
        if !self.store.lost() {
            return;
        }
        {
            // No ingest may run half on the old store, half on the new.
            let _one_at_a_time = self.publishing.lock().unwrap();
            if !self.store.reopen() {
                return;
            }
        }
        self.refresh_all();
        tracing::info!("store made again; every site is in it");
    }

    /// The site folders under sites/.
    fn site_folders(&self) -> Vec<String> {
        std::fs::read_dir(&self.sites_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_else(|e| {
                tracing::error!(dir = %self.sites_dir.display(), error = %e, "cannot list sites");
                Vec::new()
            })
    }

    /// Ingests every site folder, and drops stored sites whose folder is gone.
    pub fn refresh_all(&self) {
        let mut names = self.site_folders();
        names.extend(self.sites().iter().map(|v| v.site.clone()));
        names.sort();
        names.dedup();
        for name in names {
            // Busy files are taken up by the watcher once they settle.
            let _ = self.refresh(&name);
        }
        // Rules name sites, so they load once the sites are known.
        let _ = self.reload_rules();
        self.ready.store(true, Ordering::Release);
    }

    /// Ingests one site folder and switches to the result. On a bad
    /// site.toml the old version keeps serving and the problem is recorded.
    pub fn refresh(&self, name: &str) -> Result<Ingested, IngestError> {
        self.refresh_holding(name, Vec::new())
    }

    /// [`Live::refresh`], where the files `held` are still being written:
    /// each keeps the copy taken before (a new one waits until closed).
    pub fn refresh_holding(&self, name: &str, held: Vec<PathBuf>) -> Result<Ingested, IngestError> {
        self.ingest(name, &Compressed::default(), held)
    }

    /// [`Live::refresh`], taking compressed copies already made elsewhere.
    pub fn refresh_with(
        &self,
        name: &str,
        compressed: &Compressed,
    ) -> Result<Ingested, IngestError> {
        self.ingest(name, compressed, Vec::new())
    }

    fn ingest(
        &self,
        name: &str,
        compressed: &Compressed,
        held: Vec<PathBuf>,
    ) -> Result<Ingested, IngestError> {
        let _one_at_a_time = self.publishing.lock().unwrap();
        // Sites whose folders are gone give up their hosts first, so a
        // renamed folder can take them whatever order the events came in.
        let vanished: Vec<String> = self
            .sites()
            .iter()
            .filter(|v| v.site != name && !self.sites_dir.join(&v.site).is_dir())
            .map(|v| v.site.clone())
            .collect();
        for gone in vanished {
            tracing::info!(site = %gone, "site folder gone; no longer served");
            self.set_sites(self.sites().without(&gone));
            if let Err(e) = self.store.remove_site(&gone) {
                tracing::error!(site = %gone, error = %e, "cannot forget site");
            }
            self.skipped.lock().unwrap().remove(&gone);
        }
        let current = self.sites();
        let check = |config: &_| {
            let problems = current.conflicts(name, config);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems)
            }
        };
        let mut notes = Notes {
            held,
            skipped: Vec::new(),
        };
        let result = ingest_site(
            &self.store,
            &self.sites_dir,
            name,
            compressed,
            check,
            &mut notes,
        );
        let skipped = notes.skipped;
        if matches!(result, Ok(Ingested::Changed(_) | Ingested::Unchanged)) {
            let mut all = self.skipped.lock().unwrap();
            if skipped.is_empty() {
                all.remove(name);
            } else {
                all.insert(name.to_string(), skipped);
            }
        }
        match &result {
            Ok(Ingested::Changed(version)) => {
                tracing::info!(
                    site = name,
                    version = version.number,
                    files = version.len(),
                    "serving new version"
                );
                let (sites, _) = current.with(version.clone());
                self.set_sites(sites);
                self.rendered.clear();
                self.problems.lock().unwrap().remove(name);
            }
            Ok(Ingested::Removed) => {
                if current.get(name).is_some() {
                    tracing::info!(site = name, "site folder gone; no longer served");
                    self.set_sites(current.without(name));
                }
                if let Err(e) = self.store.remove_site(name) {
                    tracing::error!(site = name, error = %e, "cannot forget site");
                }
                self.problems.lock().unwrap().remove(name);
                self.skipped.lock().unwrap().remove(name);
            }
            Ok(Ingested::Unchanged) => {
                if current.get(name).is_none() {
                    // Stored but not served (dropped earlier): serve it again.
                    self.serve_stored(name, &current);
                }
                self.problems.lock().unwrap().remove(name);
            }
            Err(IngestError::Busy(path)) => {
                tracing::debug!(site = name, path = %path.display(), "file still being written");
            }
            Err(e) => {
                if current.get(name).is_some() {
                    tracing::error!(site = name, "{e}; still serving the last good version");
                } else if matches!(e, IngestError::NoSiteToml(_)) {
                    // Most often a folder still being created.
                    tracing::warn!(site = name, "{e}; not served");
                } else {
                    tracing::error!(site = name, "{e}; not served");
                }
                self.problems
                    .lock()
                    .unwrap()
                    .insert(name.to_string(), e.to_string());
            }
        }
        result
    }

    /// Serves the version the store says is current for `name`.
    fn serve_stored(&self, name: &str, current: &Sites) {
        let number = match self.store.current_versions() {
            Ok(all) => all.into_iter().find(|(s, _)| s == name).map(|(_, n)| n),
            Err(e) => {
                tracing::error!(site = name, error = %e, "cannot read the store");
                return;
            }
        };
        let Some(number) = number else { return };
        match self.store.load_version(name, number) {
            Ok(version) => {
                tracing::info!(site = name, version = number, "serving stored version");
                let (sites, _) = current.with(Arc::new(version));
                self.set_sites(sites);
                self.rendered.clear();
            }
            Err(e) => tracing::error!(site = name, error = %e, "stored version unreadable"),
        }
    }

    /// Reads again, in the background, the files whose stored body was found
    /// damaged, and serves every site that has them from the result.
    pub fn repair(self: &Arc<Self>, damaged: Damaged) {
        if !self.repairing.lock().unwrap().insert(damaged.hash.clone()) {
            return;
        }
        tracing::error!(hash = %damaged.hash, "stored body damaged; not sent, and read again from sites/");
        let live = self.clone();
        std::thread::spawn(move || {
            live.restore(&damaged.hash);
            live.repairing.lock().unwrap().remove(&damaged.hash);
        });
    }

    fn restore(&self, hash: &str) {
        if let Err(e) = self.store.forget_body(hash) {
            tracing::error!(error = %e, "cannot forget a damaged body");
            return;
        }
        let sites: Vec<String> = self
            .sites()
            .iter()
            .filter(|v| v.files().any(|(_, f)| f.hash == hash))
            .map(|v| v.site.clone())
            .collect();
        for site in sites {
            // The same files, read again: the served version's bodies are
            // still the damaged ones, so it is loaded again.
            match self.refresh(&site) {
                Ok(Ingested::Unchanged) => {
                    let _one_at_a_time = self.publishing.lock().unwrap();
                    self.serve_stored(&site, &self.sites());
                }
                Ok(_) => {}
                // Logged by refresh; the next change of the folder retries.
                Err(_) => continue,
            }
            tracing::info!(site, "damaged file restored from sites/");
        }
    }

    /// Switches a site back to its previous kept version, at once.
    pub fn rollback(&self, name: &str) -> Result<u64, StoreError> {
        let _one_at_a_time = self.publishing.lock().unwrap();
        let number = self.store.rollback(name)?;
        let version = Arc::new(self.store.load_version(name, number)?);
        let (sites, _) = self.sites().with(version);
        self.set_sites(sites);
        self.rendered.clear();
        tracing::info!(site = name, version = number, "rolled back");
        Ok(number)
    }
}

/// Copies `rules` to `<dest>/rules`, replacing the old copy in one rename.
fn keep_copy(rules: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    fn copy(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }
    let fresh = dest.with_extension("new");
    let _ = std::fs::remove_dir_all(&fresh);
    if rules.is_dir() {
        copy(rules, &fresh.join("rules"))?;
    } else {
        std::fs::create_dir_all(&fresh)?;
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(fresh, dest)
}
