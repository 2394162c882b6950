//! The built-in words of the `offer-local` banner, one entry per language
//! (or regional variant) a site can be written in. The banner is in the
//! language of the site it offers, so these are chosen by that site's
//! locale: see [`built_in`].
//!
//! Keep them short and polite, and in the form native speakers expect on a
//! website; `go` names the language rather than a country where the
//! language is spoken in several.

/// One language's banner words.
#[derive(Debug, PartialEq, Eq)]
pub struct Words {
    /// The tag these words are for: a language (`sv`), or a language with a
    /// region or script where its written form differs (`pt-BR`, `zh-Hant`).
    pub tag: &'static str,
    /// The sentence offering the other site.
    pub message: &'static str,
    /// The button to the equivalent page there.
    pub go: &'static str,
    /// The link that keeps the visitor here.
    pub stay: &'static str,
    /// A short name for the banner (its `aria-label`).
    pub label: &'static str,
}

const fn w(
    tag: &'static str,
    message: &'static str,
    go: &'static str,
    stay: &'static str,
    label: &'static str,
) -> Words {
    Words {
        tag,
        message,
        go,
        stay,
        label,
    }
}

/// English, also for every locale without words of its own.
pub const ENGLISH: Words = w(
    "en",
    "This page is also available on our site for your country.",
    "Go to the local site",
    "Stay here",
    "Local site",
);

/// Every built-in language but English, by tag.
#[rustfmt::skip]
pub const BUILT_IN: &[Words] = &[
    w("ar", "هذه الصفحة متاحة أيضًا على موقعنا المخصص لبلدك.", "الانتقال إلى الموقع العربي", "البقاء هنا", "الموقع المحلي"),
    w("bg", "Тази страница е достъпна и на нашия сайт за вашата страна.", "Към българския сайт", "Останете тук", "Местен сайт"),
    w("cs", "Tato stránka je k dispozici i na našem webu pro vaši zemi.", "Přejít na český web", "Zůstat zde", "Místní web"),
    w("da", "Denne side findes også på vores websted for dit land.", "Gå til det danske websted", "Bliv her", "Lokalt websted"),
    w("de", "Diese Seite gibt es auch auf unserer Website für dein Land.", "Zur deutschen Website", "Hier bleiben", "Lokale Website"),
    w("el", "Αυτή η σελίδα είναι διαθέσιμη και στον ιστότοπό μας για τη χώρα σας.", "Μετάβαση στον ελληνικό ιστότοπο", "Παραμονή εδώ", "Τοπικός ιστότοπος"),
    // Spain says "web"; Latin America says "sitio".
    w("es", "Esta página también está disponible en nuestra web para tu país.", "Ir a la web en español", "Quedarme aquí", "Web local"),
    w("es-419", "Esta página también está disponible en nuestro sitio para tu país.", "Ir al sitio en español", "Quedarme aquí", "Sitio local"),
    w("et", "See leht on saadaval ka meie veebisaidil teie riigi jaoks.", "Ava eestikeelne sait", "Jään siia", "Kohalik sait"),
    w("fa", "این صفحه در سایت ما برای کشور شما نیز در دسترس است.", "رفتن به سایت فارسی", "ماندن در همین صفحه", "سایت محلی"),
    w("fi", "Tämä sivu löytyy myös maasi sivustoltamme.", "Siirry suomenkieliselle sivustolle", "Pysy täällä", "Paikallinen sivusto"),
    w("fr", "Cette page existe aussi sur notre site pour votre pays.", "Aller au site en français", "Rester ici", "Site local"),
    w("ga", "Tá an leathanach seo ar fáil freisin ar ár suíomh do do thír.", "Téigh chuig an suíomh Gaeilge", "Fan anseo", "Suíomh áitiúil"),
    w("he", "הדף הזה זמין גם באתר שלנו למדינה שלך.", "מעבר לאתר בעברית", "להישאר כאן", "אתר מקומי"),
    w("hi", "यह पेज आपके देश के लिए हमारी साइट पर भी उपलब्ध है।", "हिंदी साइट पर जाएँ", "यहीं रहें", "स्थानीय साइट"),
    w("hr", "Ova je stranica dostupna i na našem web-mjestu za vašu zemlju.", "Idite na hrvatsko web-mjesto", "Ostanite ovdje", "Lokalno web-mjesto"),
    w("hu", "Ez az oldal az Ön országának szóló webhelyünkön is elérhető.", "Tovább a magyar webhelyre", "Maradok itt", "Helyi webhely"),
    w("it", "Questa pagina è disponibile anche sul nostro sito per il tuo paese.", "Vai al sito italiano", "Resta qui", "Sito locale"),
    w("ja", "このページは、お住まいの国向けのサイトでもご覧いただけます。", "日本語サイトへ移動", "このまま見る", "地域サイト"),
    w("ko", "이 페이지는 귀하의 국가용 사이트에서도 보실 수 있습니다.", "한국어 사이트로 이동", "여기에 머물기", "지역 사이트"),
    w("lt", "Šis puslapis taip pat pasiekiamas mūsų svetainėje jūsų šaliai.", "Eiti į lietuvišką svetainę", "Likti čia", "Vietinė svetainė"),
    w("lv", "Šī lapa ir pieejama arī mūsu vietnē jūsu valstij.", "Doties uz latviešu vietni", "Palikt šeit", "Vietējā vietne"),
    w("mt", "Din il-paġna tinsab ukoll fuq is-sit tagħna għal pajjiżek.", "Mur fuq is-sit Malti", "Ibqa' hawn", "Sit lokali"),
    w("nl", "Deze pagina staat ook op onze site voor jouw land.", "Naar de Nederlandstalige site", "Hier blijven", "Lokale site"),
    w("pl", "Ta strona jest dostępna także w naszym serwisie dla Twojego kraju.", "Przejdź do polskiej strony", "Zostań tutaj", "Strona lokalna"),
    w("pt", "Esta página também está disponível no nosso site para o seu país.", "Ir para o site em português", "Ficar aqui", "Site local"),
    w("pt-BR", "Esta página também está disponível em nosso site para o seu país.", "Ir para o site em português", "Continuar aqui", "Site local"),
    w("ro", "Această pagină este disponibilă și pe site-ul nostru pentru țara dumneavoastră.", "Mergeți la site-ul în limba română", "Rămâneți aici", "Site local"),
    w("ru", "Эта страница есть и на нашем сайте для вашей страны.", "Перейти на русский сайт", "Остаться здесь", "Местный сайт"),
    w("sk", "Táto stránka je dostupná aj na našom webe pre vašu krajinu.", "Prejsť na slovenský web", "Zostať tu", "Miestny web"),
    w("sl", "Ta stran je na voljo tudi na našem spletnem mestu za vašo državo.", "Na slovensko spletno mesto", "Ostanite tukaj", "Lokalno spletno mesto"),
    w("sv", "Den här sidan finns också på vår webbplats för ditt land.", "Till webbplatsen på svenska", "Stanna här", "Lokal webbplats"),
    w("tr", "Bu sayfa, ülkenize yönelik sitemizde de mevcut.", "Türkçe siteye git", "Burada kal", "Yerel site"),
    w("uk", "Ця сторінка є також на нашому сайті для вашої країни.", "Перейти на український сайт", "Залишитися тут", "Місцевий сайт"),
    w("ur", "یہ صفحہ آپ کے ملک کے لیے ہماری ویب سائٹ پر بھی دستیاب ہے۔", "اردو ویب سائٹ پر جائیں", "یہیں رہیں", "مقامی ویب سائٹ"),
    w("zh", "此页面也可在我们面向您所在国家/地区的网站上查看。", "前往中文网站", "留在此页", "本地网站"),
    w("zh-Hant", "此頁面也可在我們為您所在國家/地區提供的網站上瀏覽。", "前往中文網站", "留在此頁", "當地網站"),
];

/// Regions of Latin America (and `419`, the region itself), whose sites
/// get Latin American Spanish.
const LATIN_AMERICA: [&str; 20] = [
    "419", "AR", "BO", "CL", "CO", "CR", "CU", "DO", "EC", "GT", "HN", "MX", "NI", "PA", "PE",
    "PR", "PY", "SV", "UY", "VE",
];

/// Regions whose Chinese is written in traditional characters.
const TRADITIONAL_CHINESE: [&str; 3] = ["TW", "HK", "MO"];

/// The words for a site in `locale`, and whether they are in its language
/// (else they are English). In order: the exact tag, the regional written
/// form (`es-MX` takes `es-419`, `zh-TW` and `zh-Hant-*` take `zh-Hant`),
/// the language, English.
pub fn built_in(locale: &str) -> (&'static Words, bool) {
    let find = |tag: &str| {
        std::iter::once(&ENGLISH)
            .chain(BUILT_IN)
            .find(|w| w.tag.eq_ignore_ascii_case(tag))
    };
    if let Some(words) = find(locale) {
        return (words, true);
    }
    let mut subtags = locale.split('-');
    let language = subtags.next().unwrap_or("").to_ascii_lowercase();
    let rest: Vec<&str> = subtags.collect();
    let script = rest
        .iter()
        .find(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic()));
    let region = rest.iter().find(|s| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()))
            || (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
    });
    let in_list =
        |list: &[&str]| region.is_some_and(|r| list.iter().any(|l| l.eq_ignore_ascii_case(r)));
    let variant = match language.as_str() {
        "es" if in_list(&LATIN_AMERICA) => Some("es-419"),
        "pt" if in_list(&["BR"]) => Some("pt-BR"),
        "zh" => match script {
            Some(s) if s.eq_ignore_ascii_case("Hant") => Some("zh-Hant"),
            Some(_) => None,
            None if in_list(&TRADITIONAL_CHINESE) => Some("zh-Hant"),
            None => None,
        },
        _ => None,
    };
    match variant.and_then(find).or_else(|| find(&language)) {
        Some(words) => (words, true),
        None => (&ENGLISH, false),
    }
}

/// A banner text, its placeholders split out once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// The visitor's country code, like `SE`.
    Country,
    /// The offered site's host, like `www.example.se`.
    Host,
}

impl Text {
    /// Splits `text` at its placeholders; an error gives the byte offset in
    /// `text` where the problem starts.
    pub fn parse(text: &str) -> Result<Text, (usize, String)> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let at = text.len() - rest.len() + open;
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err((at, "unclosed `{`".into()));
            };
            pieces.push(match &rest[open + 1..open + close] {
                "country" => Piece::Country,
                "host" => Piece::Host,
                name => {
                    return Err((
                        at,
                        format!("unknown placeholder `{{{name}}}` (use {{country}} or {{host}})"),
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        Ok(Text(pieces))
    }

    /// The text with its placeholders filled in.
    pub fn fill(&self, country: &str, host: &str) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            out.push_str(match piece {
                Piece::Literal(s) => s,
                Piece::Country => country,
                Piece::Host => host,
            });
        }
        out
    }

    /// Built-in words, which have no placeholders.
    fn literal(text: &str) -> Text {
        Text(vec![Piece::Literal(text.to_string())])
    }
}

/// The banner's words for one site, offered to visitors of the other sites
/// of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferText {
    /// The language of the words: the site's locale, or `en` when outpost
    /// has no words in the site's language and the site gives none.
    pub lang: String,
    pub right_to_left: bool,
    pub message: Text,
    pub go: Text,
    pub stay: Text,
    pub label: Text,
}

impl OfferText {
    /// The built-in words for `locale`, each replaced by the site's own
    /// where it gives one.
    pub fn new(locale: &str, own: [Option<Text>; 4]) -> OfferText {
        let (words, in_language) = built_in(locale);
        let given = own.iter().any(Option::is_some);
        let lang = if in_language || given {
            locale.to_string()
        } else {
            ENGLISH.tag.to_string()
        };
        let [message, go, stay, label] = own;
        OfferText {
            right_to_left: right_to_left(&lang),
            lang,
            message: message.unwrap_or_else(|| Text::literal(words.message)),
            go: go.unwrap_or_else(|| Text::literal(words.go)),
            stay: stay.unwrap_or_else(|| Text::literal(words.stay)),
            label: label.unwrap_or_else(|| Text::literal(words.label)),
        }
    }
}

/// Scripts written right to left.
const RTL_SCRIPTS: [&str; 9] = [
    "Arab", "Hebr", "Syrc", "Thaa", "Nkoo", "Adlm", "Rohg", "Mand", "Samr",
];

/// Languages written right to left when the locale names no script.
const RTL_LANGUAGES: [&str; 11] = [
    "ar", "arc", "ckb", "dv", "fa", "he", "iw", "ps", "sd", "ur", "yi",
];

/// Whether text in `locale` runs right to left: by its script subtag when it
/// has one (`az-Arab`, `sd-Deva`), else by its language.
pub fn right_to_left(locale: &str) -> bool {
    let mut subtags = locale.split('-');
    let language = subtags.next().unwrap_or("");
    let script = subtags.find(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic()));
    match script {
        Some(s) => RTL_SCRIPTS.iter().any(|r| r.eq_ignore_ascii_case(s)),
        None => RTL_LANGUAGES
            .iter()
            .any(|l| l.eq_ignore_ascii_case(language)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(locale: &str) -> (&'static str, bool) {
        let (words, own) = built_in(locale);
        (words.tag, own)
    }

    #[test]
    fn every_language_the_banner_promises() {
        let promised = [
            "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "ga", "hr", "hu", "it",
            "lt", "lv", "mt", "nl", "pl", "pt", "ro", "sk", "sl", "sv", "ja", "ko", "zh", "pt-BR",
            "es-419", "tr", "ru", "uk", "ar", "he", "hi", "fa", "ur", "zh-Hant",
        ];
        for t in promised {
            assert_eq!(tag(t), (t, true), "{t}");
        }
        for w in BUILT_IN {
            assert_ne!(w.message, ENGLISH.message, "{} is not translated", w.tag);
            assert!(
                [w.message, w.go, w.stay, w.label]
                    .iter()
                    .all(|s| !s.is_empty() && !s.contains(['{', '}'])),
                "{}: no empty text, no placeholder",
                w.tag
            );
        }
        let mut tags: Vec<_> = BUILT_IN.iter().map(|w| w.tag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), BUILT_IN.len(), "one entry per tag");
    }

    #[test]
    fn chosen_by_tag_then_regional_form_then_language() {
        assert_eq!(tag("sv-SE"), ("sv", true));
        assert_eq!(tag("ja-JP"), ("ja", true));
        assert_eq!(tag("PT-br"), ("pt-BR", true));
        assert_eq!(tag("pt-PT"), ("pt", true));
        assert_eq!(tag("pt-AO"), ("pt", true));
        assert_eq!(tag("es-MX"), ("es-419", true));
        assert_eq!(tag("es-AR"), ("es-419", true));
        assert_eq!(tag("es-419"), ("es-419", true));
        assert_eq!(tag("es-ES"), ("es", true));
        assert_eq!(tag("es-US"), ("es", true));
        assert_eq!(tag("zh-CN"), ("zh", true));
        assert_eq!(tag("zh-TW"), ("zh-Hant", true));
        assert_eq!(tag("zh-Hant-HK"), ("zh-Hant", true));
        assert_eq!(tag("zh-Hans-HK"), ("zh", true));
        assert_eq!(tag("de-AT"), ("de", true));
        assert_eq!(tag("en-US"), ("en", true));
        assert_eq!(tag("is-IS"), ("en", false), "no Icelandic words: English");
    }

    #[test]
    fn right_to_left_by_script_else_language() {
        for rtl in [
            "ar",
            "ar-EG",
            "he-IL",
            "fa-IR",
            "ur-PK",
            "az-Arab",
            "pa-Arab-PK",
        ] {
            assert!(right_to_left(rtl), "{rtl}");
        }
        for ltr in ["en-GB", "sv-SE", "ja-JP", "sd-Deva", "hi-IN", "arn-CL"] {
            assert!(!right_to_left(ltr), "{ltr}");
        }
    }
}
