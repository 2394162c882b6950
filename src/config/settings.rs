//! `outpost.toml`: the server's own settings. Every key has a default and the
//! command line overrides the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::{parse_toml, Diagnostic, Origin};

/// Files above this many bytes are stored uncompressed unless configured:
/// the work and memory a compressor needs grow with the file, and large
/// files are mostly media that do not shrink.
pub const DEFAULT_COMPRESS_MAX: u64 = 16 << 20;

/// Bytes of pages rendered by rules kept for the next visitor like the
/// last, unless configured: the only bodies on outpost's heap.
pub const DEFAULT_RENDER_CACHE_SIZE: u64 = 64 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    admin_token: Option<Spanned<String>>,
    geoip: Option<Spanned<PathBuf>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    store: Option<PathBuf>,
    access_log: Option<String>,
    rules_header: Option<bool>,
    demo_upstream: Option<Spanned<String>>,
    metrics: Option<bool>,
    tls: Option<RawTls>,
    header_timeout: Option<Spanned<String>>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    compress_max_size: Option<Spanned<String>>,
    render_cache_size: Option<Spanned<String>>,
    proxy_max_request_size: Option<Spanned<String>>,
    proxy_max_response_size: Option<Spanned<String>>,
    proxy_cache_size: Option<Spanned<String>>,
    fleet: Option<RawFleet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    url: Option<Spanned<String>>,
    box_id: Option<Spanned<String>>,
    stale_after: Option<Spanned<String>>,
    logs: Option<bool>,
    logs_max_size: Option<Spanned<String>>,
    logs_max_age: Option<Spanned<String>>,
    logs_buffer: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    listen: Option<Spanned<String>>,
    redirect_http: Option<bool>,
}

/// HTTPS: PEM files and the listener for them.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub listen: SocketAddr,
    /// The plain listener redirects to HTTPS instead of serving.
    pub redirect_http: bool,
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

/// How a box takes part in a fleet (`[fleet]`); it follows one only with
/// a `url`.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    /// The NATS server the fleet shares.
    pub url: Option<String>,
    /// This box's name in the fleet: its key in the buckets and the
    /// subject of its log lines.
    pub box_id: String,
    /// A box that has not reported for this long is shown as stale.
    pub stale_after: Duration,
    /// Access-log lines go to the fleet's log stream.
    pub logs: bool,
    /// The log stream keeps at most this many bytes, oldest dropped first.
    pub logs_max_size: u64,
    /// The log stream drops lines older than this.
    pub logs_max_age: Duration,
    /// Bytes of lines a box holds while the hub is unreachable; beyond
    /// this the oldest are dropped and counted.
    pub logs_buffer: u64,
}

impl Default for FleetSettings {
    fn default() -> FleetSettings {
        FleetSettings {
            url: None,
            box_id: host_name(),
            stale_after: Duration::from_secs(30),
            logs: true,
            logs_max_size: 1 << 30,
            logs_max_age: Duration::from_secs(7 * 24 * 3600),
            logs_buffer: 16 << 20,
        }
    }
}

/// The machine's name, the default box id: its first label, with what a
/// box id cannot hold made `-`.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let label: String = name
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if label.is_empty() {
        "box".into()
    } else {
        label
    }
}

/// Whether `id` can name a box: a key of a NATS bucket and a token of a
/// subject, so letters, digits, `-` and `_`.
pub fn valid_box_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validated server settings, with paths resolved against the root folder.
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub geoip: Option<PathBuf>,
    /// Where outpost.toml names `geoip`, for `check` to point at.
    pub geoip_origin: Option<Origin>,
    pub trusted_proxies: Vec<IpNet>,
    pub store: PathBuf,
    pub access_log: AccessLogTarget,
    /// Name the rules that fired in an `X-Outpost-Rules` response header.
    pub rules_header: bool,
    /// Start the demo's live-scores API on this address.
    pub demo_upstream: Option<SocketAddr>,
    /// Count requests for /metrics (on by default).
    pub metrics: bool,
    pub tls: Option<TlsSettings>,
    /// Time allowed for a request head (and for idle keep-alive).
    pub header_timeout: std::time::Duration,
    /// Open connections at most, over all listeners.
    pub max_connections: usize,
    /// Open connections at most from one address (trusted proxies aside).
    pub max_connections_per_client: usize,
    /// Files larger than this are stored as they are, not compressed.
    pub compress_max_size: u64,
    /// Bytes of rendered pages kept.
    pub render_cache_size: u64,
    pub proxy: ProxyLimits,
    pub fleet: FleetSettings,
}

/// What `proxy` rules may move and keep, over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyLimits {
    /// A request body larger than this is refused with 413.
    pub max_request: u64,
    /// An upstream body larger than this is cut off.
    pub max_response: u64,
    /// Bytes of upstream answers kept by rules with `cache`.
    pub cache_size: u64,
}

impl Default for ProxyLimits {
    fn default() -> ProxyLimits {
        ProxyLimits {
            max_request: 10 << 20,
            max_response: 1 << 30,
            cache_size: 64 << 20,
        }
    }
}

/// Command-line values that win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub geoip: Option<PathBuf>,
    pub fleet: Option<String>,
    pub box_id: Option<String>,
}

impl Settings {
    /// Reads `<root>/outpost.toml` if it exists, then applies `overrides`.
    pub fn load(root: &Path, overrides: &Overrides) -> Result<Settings, Vec<Diagnostic>> {
        let file = root.join("outpost.toml");
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(vec![Diagnostic::whole_file(&file, e.to_string())]),
        };
        let raw: RawSettings = parse_toml(&file, &source).map_err(|d| vec![d])?;
        let mut read = Reader {
            file: &file,
            source: &source,
            errors: Vec::new(),
        };
        let listen = read.addr(&raw.listen, "127.0.0.1:8080");
        let admin_listen = read.addr(&raw.admin_listen, "127.0.0.1:9180");
        let demo_upstream = raw
            .demo_upstream
            .is_some()
            .then(|| read.addr(&raw.demo_upstream, "127.0.0.1:9181"));
        let tls = raw.tls.as_ref().map(|t| TlsSettings {
            cert: root.join(&t.cert),
            key: root.join(&t.key),
            listen: read.addr(&t.listen, "127.0.0.1:8443"),
            redirect_http: t.redirect_http.unwrap_or(false),
        });
        let trusted_proxies = read.nets(&raw.trusted_proxies);
        let header_timeout = read.duration(&raw.header_timeout, Duration::from_secs(15));
        let compress_max_size = read.size(&raw.compress_max_size, DEFAULT_COMPRESS_MAX);
        let render_cache_size = read.size(&raw.render_cache_size, DEFAULT_RENDER_CACHE_SIZE);
        let defaults = ProxyLimits::default();
        let proxy = ProxyLimits {
            max_request: read.size(&raw.proxy_max_request_size, defaults.max_request),
            max_response: read.size(&raw.proxy_max_response_size, defaults.max_response),
            cache_size: read.size(&raw.proxy_cache_size, defaults.cache_size),
        };
        let fleet = read.fleet(raw.fleet.unwrap_or_default(), overrides);
        let admin_token = read.admin_token(&raw.admin_token);
        if admin_token.is_none() && !admin_listen.ip().is_loopback() {
            let at = raw.admin_listen.as_ref().map_or(0, |v| v.span().start);
            read.error(at, format!("admin listener on {admin_listen} is reachable from other hosts; set `admin_token` or listen on 127.0.0.1"));
        }
        if !read.errors.is_empty() {
            return Err(read.errors);
        }
        let access_log = match raw.access_log.as_deref() {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("off") => AccessLogTarget::Off,
            Some(path) => AccessLogTarget::File(root.join(path)),
        };
        Ok(Settings {
            root: root.to_path_buf(),
            listen: overrides.listen.unwrap_or(listen),
            admin_listen,
            admin_token,
            geoip: overrides
                .geoip
                .clone()
                .or(raw.geoip.as_ref().map(|p| p.get_ref().clone()))
                .map(|p| root.join(p)),
            geoip_origin: raw
                .geoip
                .as_ref()
                .filter(|_| overrides.geoip.is_none())
                .map(|p| Origin::new(&file, &source, p.span().start)),
            trusted_proxies,
            store: root.join(raw.store.unwrap_or_else(|| "cache/outpost.redb".into())),
            access_log,
            rules_header: raw.rules_header.unwrap_or(false),
            demo_upstream,
            metrics: raw.metrics.unwrap_or(true),
            tls,
            header_timeout,
            max_connections: raw.max_connections.unwrap_or(16_384).max(1),
            max_connections_per_client: raw.max_connections_per_client.unwrap_or(256).max(1),
            compress_max_size,
            render_cache_size,
            proxy,
            fleet,
        })
    }
}

/// Reads typed values out of outpost.toml's strings, collecting every
/// problem with its place rather than stopping at the first.
struct Reader<'a> {
    file: &'a Path,
    source: &'a str,
    errors: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, at: usize, message: String) {
        self.errors
            .push(Diagnostic::at(self.file, self.source, at, message));
    }

    fn addr(&mut self, value: &Option<Spanned<String>>, default: &str) -> SocketAddr {
        let default = default.parse().expect("default address is valid");
        let Some(v) = value else { return default };
        v.get_ref().parse().unwrap_or_else(|_| {
            let message = format!("`{}` is not an address like 127.0.0.1:8080", v.get_ref());
            self.error(v.span().start, message);
            default
        })
    }

    fn nets(&mut self, value: &Option<Vec<Spanned<String>>>) -> Vec<IpNet> {
        let Some(list) = value else {
            return vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        };
        let mut nets = Vec::new();
        for v in list {
            match parse_net(v.get_ref()) {
                Some(net) => nets.push(net),
                None => {
                    let message = format!(
                        "`{}` is not an address or network like 10.0.0.0/8",
                        v.get_ref()
                    );
                    self.error(v.span().start, message);
                }
            }
        }
        nets
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        humantime::parse_duration(v.get_ref()).unwrap_or_else(|e| {
            let message = format!("`{}` is not a duration like 15s: {e}", v.get_ref());
            self.error(v.span().start, message);
            default
        })
    }

    fn size(&mut self, value: &Option<Spanned<String>>, default: u64) -> u64 {
        let Some(v) = value else { return default };
        match v.get_ref().parse::<bytesize::ByteSize>() {
            Ok(size) => size.as_u64(),
            Err(e) => {
                let message = format!("`{}` is not a size like 16MiB: {e}", v.get_ref());
                self.error(v.span().start, message);
                default
            }
        }
    }

    fn fleet(&mut self, raw: RawFleet, overrides: &Overrides) -> FleetSettings {
        let d = FleetSettings::default();
        let box_id = match (&overrides.box_id, &raw.box_id) {
            (Some(id), _) => id.clone(),
            (None, Some(id)) => {
                if !valid_box_id(id.get_ref()) {
                    let message = format!(
                        "box id `{}` must be 1 to 64 letters, digits, `-` or `_`",
                        id.get_ref()
                    );
                    self.error(id.span().start, message);
                }
                id.get_ref().clone()
            }
            (None, None) => d.box_id,
        };
        let url = raw.url.map(|u| {
            if let Err(e) = u.get_ref().parse::<async_nats::ServerAddr>() {
                let message = format!(
                    "`{}` is not a NATS server URL like nats://hub:4222: {e}",
                    u.get_ref()
                );
                self.error(u.span().start, message);
            }
            u.into_inner()
        });
        FleetSettings {
            url: overrides.fleet.clone().or(url),
            box_id,
            stale_after: self.duration(&raw.stale_after, d.stale_after),
            logs: raw.logs.unwrap_or(d.logs),
            logs_max_size: self.size(&raw.logs_max_size, d.logs_max_size),
            logs_max_age: self.duration(&raw.logs_max_age, d.logs_max_age),
            logs_buffer: self.size(&raw.logs_buffer, d.logs_buffer),
        }
    }

    /// `""` is documented as unset. Other blanks would be a token no
    /// client can send: header values lose their surrounding whitespace.
    fn admin_token(&mut self, value: &Option<Spanned<String>>) -> Option<String> {
        let t = value.as_ref()?;
        let token = t.get_ref();
        if token.is_empty() {
            return None;
        }
        let problem = if token.trim().is_empty() {
            "`admin_token` is only whitespace: use a long random string, or remove the key to refuse mutations"
        } else if token.trim() != token {
            "`admin_token` starts or ends with whitespace, which no client can send"
        } else {
            return Some(token.clone());
        };
        self.error(t.span().start, problem.to_string());
        None
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("outpost.toml"), text).unwrap();
        Settings::load(dir.path(), &Overrides::default())
    }

    #[test]
    fn every_key_has_a_default() {
        let s = load("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.access_log, AccessLogTarget::Stdout);
    }

    #[test]
    fn unknown_key_is_an_error_with_a_suggestion() {
        let errs = load("listen = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(errs[0].line, 2);
        assert!(
            errs[0].message.contains("did you mean `listen`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn a_blank_admin_token_is_refused_where_it_is_written() {
        for token in ["\" \"", "\"\\t \"", "\" s3cret\"", "\"s3cret \""] {
            let errs = load(&format!(
                "listen = \"127.0.0.1:1\"\nadmin_token = {token}\n"
            ))
            .unwrap_err();
            assert_eq!((errs[0].line, errs[0].col), (2, 15), "{token}");
            assert!(errs[0].message.contains("admin_token"), "{}", errs[0]);
        }
        assert_eq!(load("admin_token = \"\"\n").unwrap().admin_token, None);
        assert_eq!(
            load("admin_token = \"s3cret\"\n")
                .unwrap()
                .admin_token
                .as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn the_fleet_table_is_read_and_checked_where_written() {
        let s = load("[fleet]\nurl = \"nats://hub:4222\"\nbox_id = \"edge-1\"\nstale_after = \"10s\"\nlogs_max_size = \"2GiB\"\n").unwrap();
        assert_eq!(s.fleet.url.as_deref(), Some("nats://hub:4222"));
        assert_eq!(s.fleet.box_id, "edge-1");
        assert_eq!(s.fleet.stale_after, Duration::from_secs(10));
        assert_eq!(s.fleet.logs_max_size, 2 << 30);
        assert!(s.fleet.logs);
        assert!(valid_box_id(&load("").unwrap().fleet.box_id));
        let errs = load("[fleet]\nbox_id = \"edge.1\"\nstale_after = \"soon\"\n").unwrap_err();
        assert_eq!((errs[0].line, errs[0].col), (2, 10), "{}", errs[0]);
        assert!(errs[0].message.contains("letters, digits"), "{}", errs[0]);
        assert_eq!((errs[1].line, errs[1].col), (3, 15), "{}", errs[1]);
        let errs = load("[fleet]\nurl = \"nats://a b\"\n").unwrap_err();
        assert_eq!((errs[0].line, errs[0].col), (2, 7), "{}", errs[0]);
        assert!(
            errs[0].message.contains("not a NATS server URL"),
            "{}",
            errs[0]
        );
        let errs = load("[fleet]\nbox = \"x\"\n").unwrap_err();
        assert!(errs[0].message.contains("box_id"), "{}", errs[0]);
        let s = Settings::load(
            Path::new("/nonexistent"),
            &Overrides {
                fleet: Some("nats://other:4222".into()),
                box_id: Some("cli".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            (s.fleet.url.as_deref(), s.fleet.box_id.as_str()),
            (Some("nats://other:4222"), "cli")
        );
    }

    #[test]
    fn bad_address_points_at_the_value() {
        let errs = load("trusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n").unwrap_err();
        assert_eq!((errs[0].line, errs[0].col), (1, 34));
    }

    #[test]
    fn sizes_read_units_and_a_bad_one_points_at_the_value() {
        let s = load("compress_max_size = \"500KB\"\nrender_cache_size = \"1GiB\"\n").unwrap();
        assert_eq!(
            (s.compress_max_size, s.render_cache_size),
            (500_000, 1 << 30)
        );
        let s = load("").unwrap();
        assert_eq!(
            (s.compress_max_size, s.render_cache_size),
            (DEFAULT_COMPRESS_MAX, DEFAULT_RENDER_CACHE_SIZE)
        );
        let errs = load("listen = \"127.0.0.1:1\"\nrender_cache_size = \"lots\"\n").unwrap_err();
        assert_eq!((errs[0].line, errs[0].col), (2, 21));
        assert!(errs[0].message.contains("not a size"), "{}", errs[0]);
    }
}
