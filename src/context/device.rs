//! The visitor's device class from the User-Agent, and `Sec-CH-UA-Mobile`
//! where a browser sends it. Following MDN's advice on user agent
//! sniffing: `Mobi` marks phones, `iPad`, `Tablet` and Android without
//! `Mobile` mark tablets, anything else is a desktop. iPads since iPadOS 13
//! present themselves as Macs and count as desktops.

/// What `device` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Mobile,
    Tablet,
    Desktop,
}

impl Device {
    pub const NAMES: [&str; 3] = ["mobile", "tablet", "desktop"];

    pub fn parse(name: &str) -> Option<Device> {
        match name {
            "mobile" => Some(Device::Mobile),
            "tablet" => Some(Device::Tablet),
            "desktop" => Some(Device::Desktop),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
        }
    }

    /// Classifies a request by its `User-Agent` and `Sec-CH-UA-Mobile`.
    pub fn of(user_agent: Option<&[u8]>, ch_mobile: Option<&[u8]>) -> Device {
        // Chromium says outright whether it runs on a phone.
        if ch_mobile == Some(b"?1") {
            return Device::Mobile;
        }
        let ua = user_agent.unwrap_or_default();
        let has = |needle: &[u8]| ua.windows(needle.len()).any(|w| w == needle);
        let android = has(b"Android");
        if has(b"iPad") || has(b"Tablet") || has(b"Kindle") || has(b"Silk/") {
            Device::Tablet
        } else if ch_mobile != Some(b"?0") && (has(b"Mobi") || has(b"iPhone") || has(b"iPod")) {
            Device::Mobile
        } else if android {
            // Android phones say `Mobile`; tablets do not.
            Device::Tablet
        } else {
            Device::Desktop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ua: &str) -> &'static str {
        Device::of(Some(ua.as_bytes()), None).name()
    }

    #[test]
    fn typical_user_agents() {
        assert_eq!(of("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"), "mobile");
        assert_eq!(of("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"), "mobile");
        assert_eq!(
            of("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0"),
            "mobile"
        );
        assert_eq!(of("Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"), "tablet");
        assert_eq!(of("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), "tablet");
        assert_eq!(
            of("Mozilla/5.0 (Android 13; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0"),
            "tablet"
        );
        assert_eq!(of("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), "desktop");
        assert_eq!(of("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"), "desktop");
        assert_eq!(of(""), "desktop");
        assert_eq!(Device::of(None, None), Device::Desktop);
    }

    #[test]
    fn client_hints_win() {
        let desktop_ua = b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(Device::of(Some(desktop_ua), Some(b"?1")), Device::Mobile);
        let phone_ua =
            b"Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120.0.0.0 Mobile Safari/537.36";
        // `?0` from Android Chrome: a tablet or a desktop-site request.
        assert_eq!(Device::of(Some(phone_ua), Some(b"?0")), Device::Tablet);
    }
}
