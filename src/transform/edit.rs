//! HTML edits and their application with lol_html.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use lol_html::html_content::ContentType;
use lol_html::{
    element, end, ElementContentHandlers, HtmlRewriter, MemorySettings, Selector, Settings,
};

use crate::config::PathGlobs;

/// Most memory lol_html may use on one page; past it the page goes out as is.
const MEMORY_LIMIT: usize = 16 * 1024 * 1024;

/// Where an edit applies.
#[derive(Debug, Clone)]
pub enum Place {
    /// Elements matching a selector compiled at load.
    Selector(Arc<Selector>),
    /// The start of `<body>`, or the end of the document when there is none.
    BodyStart,
    /// The end of `<head>`.
    HeadEnd,
    /// Every `<a href>` pointing at one of `paths` on this site.
    LinksTo(Arc<PathGlobs>),
}

/// What an edit does there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Prepend(Snippet),
    Append(Snippet),
    Before(Snippet),
    After(Snippet),
    Replace(Snippet),
    SetText(Snippet),
    SetHtml(Snippet),
    SetAttr(Snippet, Snippet),
    Remove,
    /// Adds `name=value` to the query of matching links.
    KeepParam(Snippet, Snippet),
}

/// Text or HTML an edit puts into a page, shared (an edit from the rules is
/// copied into every request's decision), with a digest that stands for it
/// in the rendered page's key, so a banner is not hashed on every request.
#[derive(Debug, Clone)]
pub struct Snippet {
    digest: u64,
    text: Arc<str>,
}

impl Snippet {
    /// A template's output, whose memo key already stands for it: equal
    /// keys mean equal outputs.
    pub fn rendered(memo_key: u64, text: Arc<str>) -> Snippet {
        Snippet {
            digest: memo_key,
            text,
        }
    }
}

impl From<&str> for Snippet {
    fn from(text: &str) -> Snippet {
        Snippet {
            digest: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
            text: text.into(),
        }
    }
}

impl std::ops::Deref for Snippet {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Snippet {
    fn eq(&self, other: &Snippet) -> bool {
        self.digest == other.digest && self.text == other.text
    }
}

impl Eq for Snippet {}

impl Hash for Snippet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

/// One change to a page. `slot` names the rule and edit it came from, so
/// that two edits with equal content at different places differ in the key.
#[derive(Debug, Clone)]
pub struct Edit {
    pub slot: (usize, usize),
    pub place: Place,
    pub op: Op,
}

impl Hash for Edit {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.slot.hash(state);
        self.op.hash(state);
    }
}

/// A page with edits applied.
#[derive(Debug)]
pub struct Rewritten {
    pub html: Vec<u8>,
    /// Per edit, in order: whether it found its place in the page (for a
    /// selector, whether any element matched).
    pub matched: Vec<bool>,
}

/// Applies `edits` to `html`. `None` when lol_html gave up (memory limit or
/// a parser error): the caller serves the page unchanged.
pub fn apply(html: &[u8], edits: &[Edit]) -> Option<Rewritten> {
    use std::cell::Cell;
    let body_seen = Cell::new(false);
    let matched: Vec<Cell<bool>> = edits.iter().map(|_| Cell::new(false)).collect();
    let fallback: Vec<(&Edit, &Cell<bool>)> = edits
        .iter()
        .zip(&matched)
        .filter(|(e, _)| matches!(e.place, Place::BodyStart))
        .collect();
    let mut handlers: Vec<(Cow<'_, Selector>, ElementContentHandlers<'_>)> = Vec::new();
    for (edit, hit) in edits.iter().zip(&matched) {
        let op = &edit.op;
        match &edit.place {
            Place::Selector(sel) => handlers.push((
                Cow::Borrowed(sel.as_ref()),
                ElementContentHandlers::default().element(
                    move |el: &mut lol_html::html_content::Element<'_, '_>| {
                        hit.set(true);
                        apply_op(el, op);
                        Ok(())
                    },
                ),
            )),
            Place::BodyStart => handlers.push(element!("body", |el| {
                body_seen.set(true);
                hit.set(true);
                apply_op(el, op);
                Ok(())
            })),
            Place::HeadEnd => handlers.push(element!("head", |el| {
                hit.set(true);
                apply_op(el, op);
                Ok(())
            })),
            Place::LinksTo(paths) => handlers.push(element!("a[href]", move |el| {
                hit.set(true);
                if let Op::KeepParam(name, value) = op {
                    if let Some(href) = el.get_attribute("href") {
                        if let Some(new) = keep_param(&href, paths, name, value) {
                            let _ = el.set_attribute("href", &new);
                        }
                    }
                }
                Ok(())
            })),
        }
    }
    let mut out = Vec::with_capacity(html.len() + 1024);
    let settings = Settings {
        element_content_handlers: handlers,
        document_content_handlers: vec![end!(|end| {
            // No <body>: the banner goes at the end, where it can.
            if !body_seen.get() {
                for (e, hit) in &fallback {
                    if let Op::Prepend(h) | Op::Append(h) = &e.op {
                        hit.set(true);
                        end.append(h, ContentType::Html);
                    }
                }
            }
            Ok(())
        })],
        memory_settings: MemorySettings {
            max_allowed_memory_usage: MEMORY_LIMIT,
            ..MemorySettings::default()
        },
        ..Settings::new()
    };
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
    let result = rewriter.write(html).and_then(|()| rewriter.end());
    match result {
        Ok(()) => Some(Rewritten {
            html: out,
            matched: matched.into_iter().map(Cell::into_inner).collect(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "page could not be rewritten; serving it unchanged");
            None
        }
    }
}

fn apply_op(el: &mut lol_html::html_content::Element<'_, '_>, op: &Op) {
    match op {
        Op::Prepend(h) => el.prepend(h, ContentType::Html),
        Op::Append(h) => el.append(h, ContentType::Html),
        Op::Before(h) => el.before(h, ContentType::Html),
        Op::After(h) => el.after(h, ContentType::Html),
        Op::Replace(h) => el.replace(h, ContentType::Html),
        Op::SetText(t) => el.set_inner_content(t, ContentType::Text),
        Op::SetHtml(h) => el.set_inner_content(h, ContentType::Html),
        Op::SetAttr(name, value) => {
            let _ = el.set_attribute(name, value);
        }
        Op::Remove => el.remove(),
        Op::KeepParam(..) => {}
    }
}

/// `href` with `name=value` added when it is a same-site link to a gated
/// path and does not carry the parameter already.
fn keep_param(href: &str, paths: &PathGlobs, name: &str, value: &str) -> Option<String> {
    if !href.starts_with('/') || href.starts_with("//") {
        return None;
    }
    let (before_fragment, fragment) = match href.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (href, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    if !paths.is_match(path) {
        return None;
    }
    if query.is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == name)) {
        return None;
    }
    let pair: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    let mut out = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}&{pair}"),
        _ => format!("{path}?{pair}"),
    };
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(place: Place, op: Op) -> Edit {
        Edit {
            slot: (0, 0),
            place,
            op,
        }
    }

    fn sel(s: &str) -> Place {
        Place::Selector(Arc::new(s.parse().unwrap()))
    }

    #[test]
    fn edits_in_place() {
        let html = b"<html><head><title>t</title></head><body><h1 class=x>Old</h1><p id=p>p</p></body></html>";
        let out = apply(
            html,
            &[
                edit(Place::BodyStart, Op::Prepend("<aside>offer</aside>".into())),
                edit(
                    Place::HeadEnd,
                    Op::Append("<meta name=robots content=noindex>".into()),
                ),
                edit(sel("h1.x"), Op::SetText("New <b>".into())),
                edit(sel("#p"), Op::Remove),
            ],
        )
        .unwrap()
        .html;
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "<html><head><title>t</title><meta name=robots content=noindex></head><body><aside>offer</aside><h1 class=x>New &lt;b&gt;</h1></body></html>"
        );
    }

    #[test]
    fn pages_without_body_get_the_banner_at_the_end() {
        let out = apply(
            b"<p>fragment only",
            &[edit(
                Place::BodyStart,
                Op::Prepend("<aside>o</aside>".into()),
            )],
        )
        .unwrap()
        .html;
        assert_eq!(out, b"<p>fragment only<aside>o</aside>");
    }

    #[test]
    fn malformed_and_non_utf8_html_stay_whole() {
        let html =
            b"<html><body><div><p>unclosed <b>bold \xff\xfe latin1 caf\xe9</div></span></body>";
        let out = apply(
            html,
            &[edit(
                Place::BodyStart,
                Op::Prepend("<aside>o</aside>".into()),
            )],
        )
        .unwrap()
        .html;
        let expected = [&b"<html><body><aside>o</aside>"[..], &html[12..]].concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn chunked_input_gives_the_same_output() {
        let html: Vec<u8> = format!(
            "<html><body>{}</body></html>",
            "<p class=a>text</p>".repeat(500)
        )
        .into_bytes();
        let edits = [edit(sel("p.a"), Op::SetAttr("data-x".into(), "1".into()))];
        let whole = apply(&html, &edits).unwrap().html;
        // Feed the same page through a rewriter in odd-sized chunks.
        let mut out = Vec::new();
        let mut rw = HtmlRewriter::new(
            Settings {
                element_content_handlers: vec![element!("p.a", |el| {
                    el.set_attribute("data-x", "1").unwrap();
                    Ok(())
                })],
                ..Settings::new()
            },
            |c: &[u8]| out.extend_from_slice(c),
        );
        let mut i = 0;
        let mut step = 1;
        while i < html.len() {
            let end = (i + step).min(html.len());
            rw.write(&html[i..end]).unwrap();
            i = end;
            step = step * 7 % 61 + 1;
        }
        rw.end().unwrap();
        assert_eq!(out, whole);
    }

    #[test]
    fn links_to_gated_pages_keep_the_parameter() {
        let paths = Arc::new(
            PathGlobs::new(vec![crate::config::path_glob("/drafts/**").unwrap()]).unwrap(),
        );
        let html = br##"<a href="/drafts/a.html">a</a><a href="/drafts/b?x=1#top">b</a><a href="/public.html">c</a><a href="//evil/drafts/x">d</a><a href="/drafts/c?preview=true">e</a>"##;
        let out = apply(
            html,
            &[edit(
                Place::LinksTo(paths),
                Op::KeepParam("preview".into(), "true".into()),
            )],
        )
        .unwrap()
        .html;
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(r#"href="/drafts/a.html?preview=true""#),
            "{out}"
        );
        assert!(
            out.contains(r##"href="/drafts/b?x=1&preview=true#top""##),
            "{out}"
        );
        assert!(out.contains(r#"href="/public.html""#));
        assert!(out.contains(r#"href="//evil/drafts/x""#));
        assert!(out.contains(r#"href="/drafts/c?preview=true""#));
    }

    #[test]
    fn each_edit_says_whether_it_found_its_place() {
        let html = b"<html><body><h1 class=hero>Hi</h1><a class=cta>Go</a></body></html>";
        let edits = [
            edit(sel("h1.hero"), Op::SetText("Bold".into())),
            // A renamed class: the selector matches nothing.
            edit(sel("a.button"), Op::SetText("Now".into())),
            edit(Place::HeadEnd, Op::Append("<meta>".into())),
            edit(Place::BodyStart, Op::Prepend("<aside>o</aside>".into())),
        ];
        let out = apply(html, &edits).unwrap();
        assert_eq!(out.matched, [true, false, false, true]);
        // Without a <body>, the banner still lands at the end.
        let out = apply(b"<p>no body", &edits[3..]).unwrap();
        assert_eq!(out.matched, [true]);
    }
}
