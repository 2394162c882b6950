//! A site version held for serving: the hot path is one hash-map lookup and
//! a reference-counted `Bytes` clone of a slice of a mapped pack, with no
//! copy and no system call.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use http::HeaderValue;

use super::error::StoreError;
use super::schema::{Encoding, Manifest};
use crate::config::{parse_headers, parse_redirects, Diagnostic, SiteConfig};

/// One file of a version, with its headers computed once.
#[derive(Debug)]
pub struct StoredFile {
    pub hash: String,
    pub content_type: HeaderValue,
    pub last_modified: SystemTime,
    pub last_modified_header: HeaderValue,
    /// `(hreflang, href)` of the page's alternate links.
    pub alternates: Vec<(String, String)>,
    bodies: [Option<Bytes>; 3],
    etags: [HeaderValue; 3],
    /// BLAKE3 digests of the stored bodies, checked before each is first
    /// sent: the bytes are on disk, where they can be damaged.
    digests: [Option<[u8; 32]>; 3],
    /// One bit per encoding whose body matched its digest.
    checked: AtomicU8,
}

/// A stored body whose bytes no longer match their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The content hash of the file whose body is damaged.
    pub hash: String,
}

impl StoredFile {
    pub fn new(
        path: &str,
        hash: String,
        mtime_ms: u64,
        identity: Bytes,
        gzip: Option<Bytes>,
        br: Option<Bytes>,
    ) -> StoredFile {
        // HTTP dates have whole seconds; comparing at that precision keeps
        // If-Modified-Since exact.
        let last_modified = UNIX_EPOCH + Duration::from_secs(mtime_ms / 1000);
        let tag = &hash[..20.min(hash.len())];
        let etag = |suffix: &str| {
            HeaderValue::try_from(format!("\"{tag}{suffix}\"")).expect("hex is a valid header")
        };
        StoredFile {
            content_type: content_type(path),
            last_modified,
            last_modified_header: HeaderValue::try_from(httpdate::fmt_http_date(last_modified))
                .expect("dates are valid headers"),
            etags: [etag(""), etag("-gz"), etag("-br")],
            alternates: Vec::new(),
            bodies: [Some(identity), gzip, br],
            hash,
            digests: [None; 3],
            checked: AtomicU8::new(0b111),
        }
    }

    /// The body in `enc` (identity when not stored that way), once its
    /// bytes are checked against their digest.
    pub fn checked_body(&self, enc: Encoding) -> Result<&Bytes, Damaged> {
        let enc = if self.body(enc).is_some() {
            enc
        } else {
            Encoding::Identity
        };
        let bit = 1 << enc as u8;
        let body = self.bodies[enc as usize]
            .as_ref()
            .expect("identity is always stored");
        if self.checked.load(Ordering::Relaxed) & bit != 0 {
            return Ok(body);
        }
        match self.digests[enc as usize] {
            Some(digest) if digest_of(body) != digest => Err(Damaged {
                hash: self.hash.clone(),
            }),
            _ => {
                self.checked.fetch_or(bit, Ordering::Relaxed);
                Ok(body)
            }
        }
    }

    /// The body in `enc`, if stored that way.
    pub fn body(&self, enc: Encoding) -> Option<&Bytes> {
        self.bodies[enc as usize].as_ref()
    }

    pub fn identity(&self) -> &Bytes {
        self.bodies[0].as_ref().expect("identity is always stored")
    }

    /// Strong ETag of the representation in `enc`.
    pub fn etag(&self, enc: Encoding) -> &HeaderValue {
        &self.etags[enc as usize]
    }

    /// Whether an ETag a client sent names this content in any encoding:
    /// the bytes differ but the resource is the same, so a 304 is right.
    pub fn etag_matches(&self, tag: &str) -> bool {
        let named = |tag: &str| self.etags.iter().any(|e| e.as_bytes() == tag.as_bytes());
        // Most clients send back exactly a tag they were given: no trimming.
        named(tag) || named(tag.trim().trim_start_matches("W/"))
    }

    pub fn is_html(&self) -> bool {
        self.content_type.as_bytes().starts_with(b"text/html")
    }

    /// Whether compressed copies exist, so responses must say `Vary`.
    pub fn compressed(&self) -> bool {
        self.bodies[1].is_some() || self.bodies[2].is_some()
    }
}

/// The BLAKE3 digest of a body. A large one is read through its pack file,
/// not its mapping: a mapped page once touched counts as the process's
/// memory, and sendfile sends the body without touching it.
fn digest_of(body: &Bytes) -> [u8; 32] {
    if let Some((file, offset)) = crate::zero_copy::source(body) {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0; 256 * 1024];
        let mut done = 0;
        while done < body.len() {
            let want = buf.len().min(body.len() - done);
            match rustix::io::pread(&*file, &mut buf[..want], offset + done as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    done += n;
                }
            }
        }
        if done == body.len() {
            return *hasher.finalize().as_bytes();
        }
    }
    *blake3::hash(body).as_bytes()
}

/// Content-Type by extension, with a charset for text.
fn content_type(path: &str) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    let value = if text {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };
    HeaderValue::try_from(value).expect("mime types are valid headers")
}

/// The files of public/ that say how the site is served (Netlify's
/// formats), not served themselves.
pub const REDIRECTS_FILE: &str = "_redirects";
pub const HEADERS_FILE: &str = "_headers";

/// Checks a site's `_redirects` and `_headers` (their texts, when the
/// site has them), and adds the header rules of `_headers` to `config`'s,
/// after site.toml's. `public` is the folder problems are said to be in.
pub fn read_site_files(
    public: &Path,
    config: &mut SiteConfig,
    redirects: Option<&str>,
    headers: Option<&str>,
) -> Result<(), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    if let Some(text) = headers {
        match parse_headers(&public.join(HEADERS_FILE), text) {
            Ok(rules) => config.headers.extend(rules),
            Err(e) => errors.extend(e),
        }
    }
    if let Some(Err(e)) = redirects.map(|text| parse_redirects(&public.join(REDIRECTS_FILE), text))
    {
        errors.extend(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A site's version, ready to serve.
#[derive(Debug)]
pub struct SiteVersion {
    pub site: String,
    pub number: u64,
    pub config: SiteConfig,
    /// The text of its `public/_redirects` (checked at ingest), for the
    /// rules to compile.
    pub redirects: Option<Arc<str>>,
    pub created: SystemTime,
    // foldhash: looked up per request with keys no visitor can add.
    files: HashMap<String, Arc<StoredFile>>,
    /// `dir/` for `dir/index.html` and `page` for `page.html`, so a lookup
    /// is one map access whatever URL form the link used.
    aliases: HashMap<String, Arc<StoredFile>>,
}

impl SiteVersion {
    /// Builds a version from its manifest, taking each body from `blob`.
    pub fn from_manifest(
        site: &str,
        number: u64,
        manifest: &Manifest,
        mut blob: impl FnMut(&str, Encoding) -> Result<(Bytes, [u8; 32]), StoreError>,
    ) -> Result<SiteVersion, StoreError> {
        let toml_path = Path::new("sites").join(site).join("site.toml");
        let damaged = |errs: Vec<Diagnostic>| {
            StoreError::Damaged(format!("{site} version {number}: {}", errs[0]))
        };
        let mut config = SiteConfig::parse(&toml_path, &manifest.site_toml).map_err(damaged)?;
        let mut texts = [None, None];
        let mut built = Vec::with_capacity(manifest.files.len());
        for f in &manifest.files {
            if let Some(i) = [REDIRECTS_FILE, HEADERS_FILE]
                .iter()
                .position(|n| *n == f.path)
            {
                let body = blob(&f.hash, Encoding::Identity)?.0;
                texts[i] = Some(String::from_utf8_lossy(&body).into_owned());
                continue;
            }
            let identity = blob(&f.hash, Encoding::Identity)?;
            let gzip = f.gzip.then(|| blob(&f.hash, Encoding::Gzip)).transpose()?;
            let br = f.br.then(|| blob(&f.hash, Encoding::Brotli)).transpose()?;
            let digests = [
                Some(identity.1),
                gzip.as_ref().map(|g| g.1),
                br.as_ref().map(|b| b.1),
            ];
            let mut file = StoredFile::new(
                &f.path,
                f.hash.clone(),
                f.mtime_ms,
                identity.0,
                gzip.map(|g| g.0),
                br.map(|b| b.0),
            );
            file.alternates = f.alternates.clone();
            file.digests = digests;
            file.checked = AtomicU8::new(0);
            built.push(file);
        }
        let public = Path::new("sites").join(site).join("public");
        let [redirects, headers] = texts;
        read_site_files(&public, &mut config, None, headers.as_deref()).map_err(damaged)?;
        let redirects = redirects.map(Arc::from);
        let mut files = HashMap::with_capacity(built.len());
        let served = manifest
            .files
            .iter()
            .filter(|f| f.path != REDIRECTS_FILE && f.path != HEADERS_FILE);
        for (f, file) in served.zip(built) {
            files.insert(f.path.clone(), Arc::new(file));
        }
        let mut aliases = HashMap::new();
        for (path, file) in &files {
            if let Some(dir) = path
                .strip_suffix("index.html")
                .filter(|d| d.is_empty() || d.ends_with('/'))
            {
                aliases.insert(dir.to_string(), file.clone());
            } else if let Some(page) = path.strip_suffix(".html") {
                aliases
                    .entry(page.to_string())
                    .or_insert_with(|| file.clone());
            }
        }
        Ok(SiteVersion {
            site: site.to_string(),
            number,
            config,
            redirects,
            created: UNIX_EPOCH + Duration::from_millis(manifest.created_unix_ms),
            files,
            aliases,
        })
    }

    /// The file at `path` (relative to public/, no leading slash).
    pub fn file(&self, path: &str) -> Option<&Arc<StoredFile>> {
        self.files.get(path)
    }

    pub fn files(&self) -> impl Iterator<Item = (&String, &Arc<StoredFile>)> {
        self.files.iter()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// What a request path finds in a version.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a Arc<StoredFile>),
    /// `/dir` where `/dir/index.html` exists: redirect to `/dir/`.
    AddSlash,
    Missing,
}

impl SiteVersion {
    /// Finds the file for a request path: `/dir/` serves `dir/index.html`,
    /// `/page` serves `page.html`, and dotfiles are never found.
    pub fn lookup(&self, path: &crate::context::SitePath) -> Lookup<'_> {
        if path.is_hidden() {
            return Lookup::Missing;
        }
        let rel = path.relative();
        if rel.is_empty() || rel.ends_with('/') {
            return self.aliases.get(rel).map_or(Lookup::Missing, Lookup::Found);
        }
        if let Some(f) = self.file(rel) {
            return Lookup::Found(f);
        }
        if self.aliases.contains_key(&format!("{rel}/")) {
            return Lookup::AddSlash;
        }
        self.aliases.get(rel).map_or(Lookup::Missing, Lookup::Found)
    }

    /// The site's own not-found page, if it has one.
    pub fn not_found_page(&self) -> Option<&Arc<StoredFile>> {
        self.file("404.html")
    }
}
