//! Crawlers: user agents of search engines, social previews, SEO and
//! monitoring tools, archivers, AI crawlers and HTTP libraries, from the
//! list in `crawlers.txt` (its source and license are in its header and in
//! `crawlers-LICENSE.txt`). One regular expression of every pattern,
//! compiled once, answers for a user agent in one pass.

use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder};

const LIST: &str = include_str!("crawlers.txt");

/// The patterns of the list, in order.
pub fn patterns() -> impl Iterator<Item = &'static str> {
    LIST.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').next().unwrap_or(l))
}

fn any_crawler() -> &'static Regex {
    static ANY: OnceLock<Regex> = OnceLock::new();
    ANY.get_or_init(|| {
        let all: Vec<String> = patterns().map(|p| format!("(?:{p})")).collect();
        RegexBuilder::new(&all.join("|"))
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            .expect("the crawler list compiles (tested)")
    })
}

/// Whether `user_agent` is a crawler's.
pub fn is_crawler(user_agent: &[u8]) -> bool {
    any_crawler().is_match(user_agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_compiles_and_knows_the_usual_crawlers() {
        assert!(patterns().count() > 1000);
        for bot in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Twitterbot/1.0",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "curl/8.5.0",
        ] {
            assert!(is_crawler(bot.as_bytes()), "{bot}");
        }
        for person in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "",
        ] {
            assert!(!is_crawler(person.as_bytes()), "{person}");
        }
    }
}
