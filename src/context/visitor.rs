//! The visitor id behind `percent`: a random 128-bit number kept in the
//! first-party cookie `outpost_id`. A visitor's share (0 to 9,999 in ten
//! thousandths) follows from the id alone, so raising a rollout from 10%
//! to 50% keeps everyone who was in.
//!
//! Only ids outpost could have drawn count: a cookie that is not 32
//! lowercase hex digits is ignored and a new id drawn, so a mangled or
//! forged value never fails a request. (A visitor can still copy another's
//! id; a share is for rollouts, not for access control.)

use std::sync::OnceLock;

use http::HeaderValue;

/// The cookie that keeps the id.
pub const COOKIE: &str = "outpost_id";

/// The visitor's id: the kept one, or one drawn when first asked for.
#[derive(Debug, Default)]
pub struct Visitor {
    kept: Option<u128>,
    drawn: OnceLock<u128>,
}

impl Visitor {
    /// From the value of the `outpost_id` cookie, if sent.
    pub fn from_cookie(value: Option<&str>) -> Visitor {
        let kept = value
            .filter(|v| v.len() == 32 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|v| u128::from_str_radix(v, 16).ok());
        Visitor {
            kept,
            drawn: OnceLock::new(),
        }
    }

    pub fn id(&self) -> u128 {
        self.kept
            .unwrap_or_else(|| *self.drawn.get_or_init(|| fastrand::u128(..)))
    }

    /// The visitor's share, in ten thousandths: in a rollout of `p` percent
    /// when below `p * 100`.
    pub fn share(&self) -> u32 {
        // The id is uniformly random: its low bits are as good as any hash.
        (self.id() % 10_000) as u32
    }

    /// The Set-Cookie that keeps an id drawn for this request; `None` when
    /// the visitor already had one or none was asked for.
    pub fn keep(&self) -> Option<HeaderValue> {
        let id = self.drawn.get()?;
        HeaderValue::try_from(format!(
            "{COOKIE}={id:032x}; Max-Age=31536000; Path=/; SameSite=Lax; HttpOnly"
        ))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_id_is_used_and_not_set_again() {
        let v = Visitor::from_cookie(Some("0000000000000000000000000000270f"));
        assert_eq!(v.id(), 9_999);
        assert_eq!(v.share(), 9_999);
        assert!(v.keep().is_none());
    }

    #[test]
    fn a_missing_or_forged_id_is_drawn_once_and_kept() {
        for sent in [
            None,
            Some("x"),
            Some("0000000000000000000000000000270F"),
            Some(""),
        ] {
            let v = Visitor::from_cookie(sent);
            assert!(v.keep().is_none(), "nothing drawn before it is asked for");
            let id = v.id();
            assert_eq!(v.id(), id, "one draw per request");
            let cookie = v.keep().unwrap();
            let cookie = cookie.to_str().unwrap();
            assert!(
                cookie.starts_with(&format!("outpost_id={id:032x};")),
                "{cookie}"
            );
            assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
            // The cookie set is one the next request keeps.
            let value = &cookie["outpost_id=".len()..][..32];
            assert_eq!(Visitor::from_cookie(Some(value)).id(), id);
        }
    }
}
