//! hreflang alternates of a page, read once at ingest so that `offer-local`
//! finds the equivalent page without parsing HTML per request.

use lol_html::{element, HtmlRewriter, Settings};

/// `(hreflang lowercased, href)` of each `<link rel="alternate" hreflang>`.
pub fn hreflang_links(html: &[u8]) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut rewriter = HtmlRewriter::new(
        Settings {
            element_content_handlers: vec![element!(
                "link[rel~=alternate][hreflang][href]",
                |el| {
                    if let (Some(lang), Some(href)) =
                        (el.get_attribute("hreflang"), el.get_attribute("href"))
                    {
                        if links.len() < 64 {
                            links.push((lang.trim().to_ascii_lowercase(), href.trim().to_string()));
                        }
                    }
                    Ok(())
                }
            )],
            ..Settings::new()
        },
        |_: &[u8]| {},
    );
    // A page lol_html cannot parse simply has no alternates.
    if rewriter.write(html).and_then(|()| rewriter.end()).is_err() {
        return Vec::new();
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alternates() {
        let html = br#"<head><link rel="alternate" hreflang="it-IT" href="http://it.localhost/a">
            <link rel="stylesheet" href="/x.css"><link rel="alternate" hreflang="x-default" href="/"></head>"#;
        assert_eq!(
            hreflang_links(html),
            vec![
                ("it-it".into(), "http://it.localhost/a".into()),
                ("x-default".into(), "/".into())
            ]
        );
    }
}
