//! Accept-Language: the primary language tags a visitor accepts (q > 0),
//! best first. Long or garbled headers are read only as far as they make sense.

/// Most tags kept; browsers send a handful.
const MAX_TAGS: usize = 16;

pub fn languages(header: Option<&[u8]>) -> Vec<String> {
    let Some(header) = header else {
        return Vec::new();
    };
    let header = &header[..header.len().min(1024)];
    let text = String::from_utf8_lossy(header);
    let mut tags: Vec<(f32, usize, String)> = Vec::new();
    for (i, item) in text.split(',').take(MAX_TAGS * 2).enumerate() {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split('-').next().unwrap_or("");
        if !(1..=8).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if q > 0.0 && q <= 1.0 {
            let primary = primary.to_ascii_lowercase();
            if !tags.iter().any(|(_, _, t)| *t == primary) {
                tags.push((q, i, primary));
            }
        }
    }
    tags.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    tags.into_iter().take(MAX_TAGS).map(|(_, _, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(h: &str) -> Vec<String> {
        languages(Some(h.as_bytes()))
    }

    #[test]
    fn primary_tags_by_preference() {
        assert_eq!(langs("it-IT,it;q=0.9,en-GB;q=0.8,en;q=0.7"), ["it", "en"]);
        assert_eq!(langs("de;q=0.5, fr"), ["fr", "de"]);
        assert_eq!(langs("en, es;q=0"), ["en"]);
    }

    #[test]
    fn garbage_is_ignored() {
        assert!(langs("\u{0}\u{1};;;,,,q=,=").is_empty());
        assert_eq!(langs("*"), Vec::<String>::new());
        assert!(langs(&"x".repeat(10_000)).is_empty());
        assert!(langs(&"en-GB;q=0.5,".repeat(1000)).len() <= MAX_TAGS);
        assert!(languages(Some(&[0xff, 0xfe, b'e', b'n'])).is_empty());
    }
}
