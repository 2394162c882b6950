//! `preview`: the rule's paths are hidden unless the request carries the
//! preview parameter (exactly once, exactly the value), or, with a `secret`,
//! a signed token that has not expired. Hidden answers like a missing page;
//! allowed answers are private, never indexed, and links to other gated
//! pages keep the parameter.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::Sha256;
use toml::Spanned;

use super::decision::{Applied, Decision, Outcome};
use super::kind::{ActionKind, Compiling, Firing};
use crate::transform::{Edit, Op, Place};

#[derive(Debug)]
pub struct Preview {
    pub param: String,
    pub value: String,
    pub secret: Option<String>,
    /// The gated paths (the rule's `when.path`), for keeping the parameter.
    pub paths: Arc<crate::config::PathGlobs>,
}

#[derive(Debug, Deserialize)]
pub struct RawPreview {
    param: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
}

const NOINDEX_META: &str = r#"<meta name="robots" content="noindex, nofollow">"#;

impl ActionKind for Preview {
    const NAME: &'static str = "preview";
    type Raw = RawPreview;

    fn compile(raw: RawPreview, cx: &mut Compiling<'_>) -> Option<Preview> {
        if cx.when.path.is_empty() {
            cx.missing::<Self>("`when.path`: the paths it hides");
        }
        Some(Preview {
            param: raw.param.map_or("preview".into(), Spanned::into_inner),
            value: raw.value.map_or("true".into(), Spanned::into_inner),
            secret: raw.secret.map(Spanned::into_inner),
            paths: Arc::new(cx.when.path.clone()),
        })
    }

    /// Hiding works on any file.
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let Firing {
            index,
            rule,
            request,
            ..
        } = firing;
        let mut values = request.ctx.query_values(&self.param);
        let (first, second) = (values.next(), values.next());
        let allowed = match (first, second) {
            (Some(v), None) => match &self.secret {
                Some(secret) => verify(secret, rule, v, now()),
                None => v == self.value,
            },
            _ => false,
        };
        if !allowed {
            decision.outcome = Outcome::Hidden;
            return Applied::Fired;
        }
        let presented = first.expect("allowed means present");
        decision.private = true;
        decision.set_headers.push((
            HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex, nofollow"),
        ));
        decision.set_headers.push((
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        ));
        decision.edits.push(Edit {
            slot: (index, 0),
            place: Place::HeadEnd,
            op: Op::Append(NOINDEX_META.into()),
        });
        decision.edits.push(Edit {
            slot: (index, 1),
            place: Place::LinksTo(self.paths.clone()),
            op: Op::KeepParam(self.param.as_str().into(), presented.into()),
        });
        Applied::Fired
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn signature(secret: &str, rule: &str, expires: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{rule}:{expires}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A token for `rule` valid until `expires` (Unix seconds).
pub fn token(secret: &str, rule: &str, expires: u64) -> String {
    format!("{expires}.{}", signature(secret, rule, expires))
}

/// Whether `token` was made with `secret` for `rule` and is still valid.
pub fn verify(secret: &str, rule: &str, token: &str, now: u64) -> bool {
    let Some((expires, sig)) = token.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    if expires < now {
        return false;
    }
    let Ok(given) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{rule}:{expires}").as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = token("s3cret", "drafts", 2_000);
        assert!(verify("s3cret", "drafts", &t, 1_000));
        assert!(!verify("s3cret", "drafts", &t, 2_001), "expired");
        assert!(!verify("other", "drafts", &t, 1_000), "wrong secret");
        assert!(!verify("s3cret", "other-rule", &t, 1_000), "other rule");
        let forged = t.replace("2000.", "9999.");
        assert!(
            !verify("s3cret", "drafts", &forged, 1_000),
            "extended expiry"
        );
        assert!(!verify("s3cret", "drafts", "garbage", 1_000));
        assert!(!verify("s3cret", "drafts", "", 1_000));
    }
}
