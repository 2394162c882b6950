//! The `offer-local` banner over real HTTP: in the offered site's language,
//! tagged with that language and its direction, or in the words the offered
//! site gives in its site.toml.

mod common;
use std::time::Duration;

use common::{eventually, run_on, Root, Server};

/// A group of four sites; the UK one offers the others to their visitors.
fn root() -> Root {
    let root = Root::new();
    let site = |name: &str, locale: &str, country: &str| {
        root.write(
            &format!("sites/{name}/site.toml"),
            &format!(
                "hosts = [\"{name}.localhost\"]\nlocale = \"{locale}\"\ncountries = [\"{country}\"]\ngroup = \"g\"\n"
            ),
        )
        .write(
            &format!("sites/{name}/public/index.html"),
            "<html><body><main>home</main></body></html>",
        );
    };
    site("uk", "en-GB", "GB");
    site("se", "sv-SE", "SE");
    site("il", "he-IL", "IL");
    site("jp", "ja-JP", "JP");
    root.write(
        "rules/offer.toml",
        "[[rule]]\nname = \"offer\"\nsites = [\"uk\"]\naction = \"offer-local\"\n",
    );
    root
}

/// The banner's opening tag and text that a visitor from `country` gets on
/// the UK home page.
fn banner(s: &Server, country: &str) -> String {
    let body = s
        .request("GET", "uk.localhost", "/", &[("CF-IPCountry", country)])
        .text();
    let start = body
        .find("<aside")
        .unwrap_or_else(|| panic!("no banner: {body}"));
    let end = body.find("</aside>").expect("the banner ends");
    body[start..end].to_string()
}

#[test]
fn banner_in_the_offered_sites_language_and_direction() {
    let root = root();
    let s = Server::start(root.path());

    let sv = banner(&s, "SE");
    assert!(sv.contains("lang=\"sv-SE\" dir=\"ltr\""), "{sv}");
    assert!(sv.contains("aria-label=\"Lokal webbplats\""), "{sv}");
    assert!(
        sv.contains("Den här sidan finns också på vår webbplats för ditt land."),
        "{sv}"
    );
    assert!(sv.contains("Till webbplatsen på svenska"), "{sv}");
    assert!(sv.contains("Stanna här"), "{sv}");
    assert!(!sv.contains("Stay here"), "no English left: {sv}");

    let he = banner(&s, "IL");
    assert!(he.contains("lang=\"he-IL\" dir=\"rtl\""), "{he}");
    assert!(he.contains("מעבר לאתר בעברית"), "{he}");

    let ja = banner(&s, "JP");
    assert!(ja.contains("lang=\"ja-JP\" dir=\"ltr\""), "{ja}");
    assert!(ja.contains("日本語サイトへ移動"), "{ja}");
}

#[test]
fn the_offered_sites_own_words_from_site_toml() {
    let root = root();
    let own = |go: &str| {
        format!(
            "hosts = [\"se.localhost\"]\nlocale = \"sv-SE\"\ncountries = [\"SE\"]\ngroup = \"g\"\n\n[offer]\nmessage = \"Hej, besökare från {{country}}!\"\ngo = \"{go}\"\n"
        )
    };
    root.write("sites/se/site.toml", &own("Till {host}"));
    let s = Server::start(root.path());
    let sv = banner(&s, "SE");
    assert!(sv.contains("Hej, besökare från SE!"), "{sv}");
    assert!(sv.contains("Till se.localhost"), "{sv}");
    assert!(sv.contains("Stanna här"), "the rest is built in: {sv}");
    assert!(sv.contains("lang=\"sv-SE\""), "{sv}");

    // A change to the words goes live like any change to the site.
    root.write("sites/se/site.toml", &own("Gå vidare"));
    assert!(
        eventually(Duration::from_secs(30), || banner(&s, "SE")
            .contains("Gå vidare")),
        "new words served: {}",
        banner(&s, "SE")
    );
}

#[test]
fn check_points_at_unknown_words_and_placeholders() {
    let root = root();
    let check = |offer: &str| {
        root.write(
            "sites/se/site.toml",
            &format!("hosts = [\"se.localhost\"]\nlocale = \"sv-SE\"\n[offer]\n{offer}"),
        );
        let out = run_on(root.path(), &["check"]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let text = check("go = \"Till {site}\"\n");
    assert!(
        text.contains("site.toml:4:12: unknown placeholder `{site}` (use {country} or {host})"),
        "{text}"
    );
    let text = check("lable = \"x\"\n");
    assert!(
        text.contains("site.toml:4:1: unknown key `lable`, did you mean `label`?"),
        "{text}"
    );
}
