#!/usr/bin/env python3
"""Generates the benchmark corpus: an outpost root folder with its sites.

    corpus.py [--pages N] [--group] [--sites FILE] [--every FILE]
              ROOT PORT ADMIN_PORT URLS_FILE UPSTREAM_PORT EXTRA_DIR

writes ROOT/outpost.toml and ROOT/sites/NAME/ (site.toml + public/) for each
site, the rules of the `offer` and `fragment` scenarios (ROOT/rules/),
URLS_FILE, the list of every page as "host path" lines (shuffled, for the
`paths` scenario), and into EXTRA_DIR what only nginx uses:

    EXTRA_DIR/upstream/   scores.json and scores.html, served on UPSTREAM_PORT
                          by a small nginx that stands for a live-scores API
    EXTRA_DIR/ssi/        live-a.html and live-b.html: bench-a's live.html in
                          its two A/B variants, with an SSI include where
                          outpost fills in the scores fragment

The sites: by default the bench corpus, three sites of one group
(bench-{a,b,c}.localhost) of 500 pages each; --pages N makes N pages per site
(--pages 2000 is the "4x" corpus). --group makes the group corpus instead: 55
sites g01..g55 (g01.localhost..g55.localhost), five brands of eleven
countries each, 400 pages per site unless --pages says otherwise. The first
site (bench-a, g01) is the default site and carries what the single-page
scenarios request (big.bin, offer.html, live.html, live-static.html).
--sites FILE writes "name host" per site, the default site first; --every
FILE writes every file of every site as "host path" lines ("/" for
index.html). --redirects N also writes bench-r (bench-r.localhost, in no
list): the default site's home page and a `_redirects` of N lines, for the
`redirects` scenarios. Without options the output is byte-identical to what earlier
versions of this script wrote.

Everything comes from seeded RNGs, so two runs produce byte-identical files
and results stay comparable across machines and commits. Page text is drawn
from a few hundred words with a Zipf-like frequency so it compresses like real
HTML (roughly 3-4x with gzip -9), not like repeated filler (100x), which would
make compressed serving look unrealistically cheap. Standard library only.
"""

import argparse
import os
import random
import struct
import sys
import zlib

PAGES_PER_SITE = 500                 # bench corpus; --pages changes it
GROUP_PAGES_PER_SITE = 400           # group corpus
PAGE_MIN, PAGE_MAX = 20_000, 40_000  # bytes
INDEX_SIZE = 25_000                  # the "small page"
BIG_SIZE = 1 << 20                   # big.bin, bench-a only

SITES = [
    # name,     locale,  country, default
    ("bench-a", "en-GB", "GB", True),
    ("bench-b", "it-IT", "IT", False),
    ("bench-c", "de-DE", "DE", False),
]

# The group corpus: each brand has a site per country. The second country is
# IT, so g01's visitors from IT are offered g02, as bench-a's are offered
# bench-b.
GROUP_BRANDS = 5
GROUP_COUNTRIES = [
    ("en-GB", "GB"), ("it-IT", "IT"), ("de-DE", "DE"), ("fr-FR", "FR"),
    ("es-ES", "ES"), ("pt-PT", "PT"), ("nl-NL", "NL"), ("sv-SE", "SE"),
    ("pl-PL", "PL"), ("da-DK", "DK"), ("fi-FI", "FI"),
]


def group_sites():
    """(name, locale, country, default, group) for the 55 sites."""
    sites = []
    for brand in range(GROUP_BRANDS):
        for locale, country in GROUP_COUNTRIES:
            n = len(sites) + 1
            sites.append((f"g{n:02d}", locale, country, n == 1, f"brand{brand + 1}"))
    return sites

# Common English words plus some domain vocabulary; enough variety that gzip
# has to work for its ratio.
WORDS = """
the of and to in is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their
has would when if so what out up about into than them can only other new some
could time these two may then do first any like my now over such our man me
even most made after also did many before must through back years where much
your way well down should because each just those people how too little state
good very make world still own see men work long get here between both life
being under never day same another know while last might us great old year off
come since against go came right used take three states himself few house use
during without again place american around however home small found thought
went say part once general high upon school every don does got united left
number course war until always away something fact though water less public put
think almost hand enough far took head yet government system better set told
nothing night end why called didn eyes find going look asked later knew point
next program city business give group toward young days let room president side
social given present several order national possible rather second face per
among form important often things looked early white case john become large big
need four within felt children along saw best church ever least power
development light thing seemed family interest want members mind country area
others done turned although open god service certain kind problem began different
door thus help sense means whole matter perhaps itself york times law human line
above name example action company hands local show whether five history gave
today either act feet across taken past quite anything seen having death week
experience body word half really field am car words already themselves information
tell together college shall money period held keep sure probably free seems
political real cannot behind miss question air office making brought whose
special heard major problems ago became federal moment study available known
result street economic boy position reason change south board individual job
society areas west close turn love community true court force full seem am
offer bonus welcome deposit account player games slots table live casino
roulette blackjack poker jackpot spins wagering terms conditions responsible
gambling support withdraw verify identity payment method limit session secure
licensed regulated commission promotion weekly daily reward loyalty points tier
exclusive mobile app download browser desktop experience provider studio
release feature volatility return theoretical minimum maximum stake currency
""".split()

HEADINGS = """Overview Features Getting started Payments Security Rewards
Frequently asked questions Responsible play Mobile experience Our providers
Terms at a glance Customer support Latest news Community Account settings""".split("\n")


def zipf_weights(n, s=1.05):
    return [1.0 / (rank ** s) for rank in range(1, n + 1)]


class Writer:
    """Draws words and builds HTML from one seeded RNG."""

    def __init__(self, seed, site, pages=PAGES_PER_SITE):
        self.rng = random.Random(seed)
        self.site = site
        self.pages = pages  # links point at page-000 .. page-(pages-1)
        words = WORDS[:]
        # Each site gets its own frequency order, like different languages
        # would have different common words.
        self.rng.shuffle(words)
        self.words = words
        self.cum = []
        total = 0.0
        for w in zipf_weights(len(words)):
            total += w
            self.cum.append(total)

    def words_(self, n):
        return self.rng.choices(self.words, cum_weights=self.cum, k=n)

    def sentence(self):
        ws = self.words_(self.rng.randint(6, 22))
        ws[0] = ws[0].capitalize()
        return " ".join(ws) + self.rng.choice(".....?!")

    def title(self, n=None):
        return " ".join(w.capitalize() for w in self.words_(n or self.rng.randint(2, 6)))

    def link(self):
        page = self.rng.randrange(self.pages)
        return f'<a href="/page-{page:03d}.html">{" ".join(self.words_(self.rng.randint(1, 4)))}</a>'

    def paragraph(self):
        parts = []
        for _ in range(self.rng.randint(3, 8)):
            s = self.sentence()
            r = self.rng.random()
            if r < 0.15:
                s = s[:-1] + " " + self.link() + s[-1]
            elif r < 0.25:
                s = f"<strong>{s}</strong>"
            elif r < 0.32:
                s = f"<em>{s}</em>"
            parts.append(s)
        return "<p>" + " ".join(parts) + "</p>\n"

    def block(self):
        r = self.rng.random()
        if r < 0.70:
            return self.paragraph()
        if r < 0.85:
            items = "".join(f"  <li>{self.sentence()}</li>\n" for _ in range(self.rng.randint(3, 7)))
            return f'<ul class="list">\n{items}</ul>\n'
        if r < 0.93:
            rows = "".join(
                "  <tr>" + "".join(f"<td>{self.title(2)}</td>" for _ in range(3))
                + f'<td class="num">{self.rng.randint(1, 99999):,}</td></tr>\n'
                for _ in range(self.rng.randint(3, 8))
            )
            return f'<table class="data">\n  <tr><th>Name</th><th>Type</th><th>Detail</th><th>Value</th></tr>\n{rows}</table>\n'
        n = self.rng.randint(1, 3)
        return (f'<figure><img src="/assets/img-{n}.png" alt="{self.title(3)}" width="64" height="64">'
                f"<figcaption>{self.sentence()}</figcaption></figure>\n")

    def page(self, title, target, locale, body_class, h1_class=None, after_lead=""):
        nav = "".join(f"      <li>{self.link()}</li>\n" for _ in range(10))
        h1_attr = f' class="{h1_class}"' if h1_class else ""
        head = f"""<!doctype html>
<html lang="{locale}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} | {self.site}</title>
  <meta name="description" content="{self.sentence()}">
  <link rel="stylesheet" href="/assets/app.css">
  <script src="/assets/app.js" defer></script>
</head>
<body class="{body_class}">
  <header class="site-header">
    <a class="logo" href="/"><img src="/assets/logo.png" alt="{self.site}" width="32" height="32"></a>
    <nav class="main-nav">
     <ul>
{nav}     </ul>
    </nav>
  </header>
  <main>
  <article>
<h1{h1_attr}>{title}</h1>
<p class="lead">{self.sentence()} {self.sentence()}</p>
{after_lead}"""
        foot_links = "".join(f"    <li>{self.link()}</li>\n" for _ in range(8))
        tail = f"""  </article>
  </main>
  <footer class="site-footer">
   <ul>
{foot_links}   </ul>
   <p class="legal">{self.sentence()} {self.sentence()}</p>
  </footer>
</body>
</html>
"""
        out = [head]
        size = len(head) + len(tail)
        section = 0
        while size < target:
            section += 1
            sec = [f'<section id="s{section}">\n<h2>{self.rng.choice(HEADINGS).strip()} {self.title(2)}</h2>\n']
            for _ in range(self.rng.randint(2, 6)):
                sec.append(self.block())
            sec.append("</section>\n")
            chunk = "".join(sec)
            out.append(chunk)
            size += len(chunk)
        out.append(tail)
        return "".join(out)


def css(rng):
    props = ["margin", "padding", "color", "background", "border", "font-size",
             "line-height", "display", "gap", "max-width", "border-radius"]
    vals = ["0", "1rem", "0.5rem 1rem", "#1a1a2e", "#f5f5f5", "1px solid #ddd",
            "1.125rem", "1.5", "flex", "grid", "72rem", "4px", "auto", "inherit"]
    rules = []
    for i in range(220):
        sel = rng.choice(["main", "article", "nav", "footer", ".card", ".list", ".data",
                          "h1", "h2", "p", "a", "li", "td", "figure", ".lead", ".legal"])
        if rng.random() < 0.5:
            sel += f" .c{i}"
        decls = "".join(f"  {rng.choice(props)}: {rng.choice(vals)};\n" for _ in range(rng.randint(2, 6)))
        rules.append(f"{sel} {{\n{decls}}}\n")
    return "".join(rules)


def js(rng):
    out = ["'use strict';\n"]
    for i in range(150):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        out.append(
            f"function handler{i}(event) {{\n"
            f"  const el = document.querySelector('.c{i}');\n"
            f"  if (!el) return {a};\n"
            f"  el.dataset.count = String((Number(el.dataset.count) || 0) + {b});\n"
            f"  return el.dataset.count;\n}}\n"
        )
    out.append("document.addEventListener('DOMContentLoaded', () => handler0());\n")
    return "".join(out)


def png(width, height, rgb_at):
    """A valid, tiny, truecolour PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(
        b"\x00" + b"".join(bytes(rgb_at(x, y)) for x in range(width)) for y in range(height)
    )
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": "\n"})) as f:
        f.write(data)

# The `offer` scenario: bench-a's visitors from a country of another site of
# the group (IT: bench-b) get outpost's built-in banner after <body>.
OFFER_RULES = """\
# A visitor of bench-a's /offer.html from IT (bench-b's country) is
# offered bench-b. Other paths have no rule: they stay on the static path.
[[rule]]
name = "offer"
sites = ["bench-a"]
when = { path = "/offer.html" }
action = "offer-local"
"""

# The `fragment` scenario: bench-a's /live.html in an A/B test of its hero
# title, with a live-scores fragment from a local upstream filled in.
LIVE_RULES = """\
# bench-a's /live.html: an A/B test of the hero title...
[[rule]]
name = "hero"
sites = ["bench-a"]
when = {{ path = "/live.html" }}
action = "variant"
experiment = "hero"
variants = [ {{ name = "a", weight = 50 }}, {{ name = "b", weight = 50, transforms = [ {{ selector = "h1.hero", set_text = "Other title" }} ] }} ]

# ...and live scores from the local upstream, cached for 10 s.
[[rule]]
name = "scores"
sites = ["bench-a"]
when = {{ path = "/live.html" }}
action = "fragment"
selector = "#scores"
source = "http://127.0.0.1:{port}/scores.json"
template = "scores.html"
ttl = "10s"
"""

# The `proxy` scenario: bench-a's /api/** forwarded to the local upstream
# (its /odds.json for /api/odds.json), each answer kept 5 s.
PROXY_RULES = """\
[[rule]]
name = "api"
sites = ["bench-a"]
when = {{ path = "/api/**" }}
action = "proxy"
to = "http://127.0.0.1:{port}/{{splat}}"
cache = "5s"
"""

# The `conditions` scenarios: the same page under two paths, each with
# today's kinds of conditions (one rule matching, so both take the rules
# path); /rules-new.html also has a rule for each condition added since
# (unless, continent, eu, region, after, before, hours, bot, device,
# percent), none of which matches the bench's visitor (from US, no region,
# wrk's lack of a User-Agent, a kept outpost_id).
CONDITION_RULES = """\
[[rule]]
name = "today-country"
sites = ["bench-a"]
when = { path = ["/rules-today.html", "/rules-new.html"], country = "JP" }
action = "inject"
html = "<p>JP</p>"
selector = "body"
position = "append"

[[rule]]
name = "today-visitor"
sites = ["bench-a"]
when = { path = ["/rules-today.html", "/rules-new.html"], cookie = { vip = "gold" }, header = { X-Debug = "on" } }
action = "headers"
set = { X-Vip = "1" }

[[rule]]
name = "today-language"
sites = ["bench-a"]
when = { path = ["/rules-today.html", "/rules-new.html"], language = "ja", query = { ref = "x" } }
action = "headers"
set = { X-Ja = "1" }

[[rule]]
name = "today-always"
sites = ["bench-a"]
when = { path = ["/rules-today.html", "/rules-new.html"] }
action = "headers"
set = { X-Bench = "1" }
""" + "".join(f"""
[[rule]]
name = "new-{name}"
sites = ["bench-a"]
when = {{ path = "/rules-new.html"{when} }}{unless}
action = "headers"
set = {{ X-New = "1" }}
""" for name, when, unless in [
    ("unless", "", '\nunless = { method = "GET" }'),
    ("continent", ', continent = "OC"', ""),
    ("eu", ", eu = true", ""),
    ("region", ', region = "US-NJ"', ""),
    ("after", ', after = "2099-01-01T00:00:00Z"', ""),
    ("before", ', before = "2000-01-01T00:00:00Z"', ""),
    ("hours", ', hours = { days = ["sun"], from = "03:00", to = "03:01", tz = "Pacific/Kiritimati" }', ""),
    ("bot", ", bot = true", ""),
    ("device", ', device = "tablet"', ""),
    ("percent", ", percent = 0", ""),
])

# The fragment template (Tera), and the same rendering done here for nginx,
# which includes pre-rendered HTML instead of rendering JSON. Team names and
# scores avoid the characters Tera's autoescaping would change (&<>"'/).
SCORES_TEMPLATE = (
    '<ul class="scores">{% for m in data.matches %}'
    "<li>{{ m.home }} {{ m.score }} {{ m.away }}</li>{% endfor %}</ul>\n"
)
SCORES = {
    "league": "Bench League",
    "matches": [
        {"home": "Rovers", "score": "2-1", "away": "United"},
        {"home": "Athletic", "score": "0-0", "away": "City"},
        {"home": "Wanderers", "score": "1-3", "away": "Albion"},
        {"home": "Rangers", "score": "4-2", "away": "Town"},
    ],
}

HERO = '<h1 class="hero">Title</h1>'
HERO_B = '<h1 class="hero">Other title</h1>'
PLACEHOLDER = '<div id="scores"><p>Loading</p></div>'
SSI_INCLUDE = '<div id="scores"><!--# include virtual="/_frag/scores.html" --></div>'


def render_scores(data):
    items = "".join(f"<li>{m['home']} {m['score']} {m['away']}</li>" for m in data["matches"])
    return f'<ul class="scores">{items}</ul>\n'


def offer_and_fragment(root, upstream_port, extra, home, other):
    """The rules and pages of `offer` and `fragment`, on the default site
    `home` (bench-a), offering `other` (bench-b, the site for IT)."""
    import json

    def on_sites(text):
        return text.replace("bench-b", other).replace("bench-a", home)

    write(os.path.join(root, "rules", "offer.toml"), on_sites(OFFER_RULES))
    write(os.path.join(root, "rules", "live.toml"), on_sites(LIVE_RULES.format(port=upstream_port)))
    write(os.path.join(root, "rules", "templates", "scores.html"), SCORES_TEMPLATE)
    write(os.path.join(root, "rules", "proxy.toml"), on_sites(PROXY_RULES.format(port=upstream_port)))
    write(os.path.join(root, "rules", "conditions.toml"), on_sites(CONDITION_RULES))

    # A page like index.html (its own RNG, so the other pages stay
    # byte-identical) with the hero title and the fragment's placeholder.
    w = Writer(3000, home)
    live = w.page("Title", INDEX_SIZE, "en-GB", "live", h1_class="hero",
                  after_lead=PLACEHOLDER + "\n")
    assert live.count(HERO) == 1 and live.count(PLACEHOLDER) == 1
    public = os.path.join(root, "sites", home, "public")
    write(os.path.join(public, "live.html"), live)
    # The same bytes under a path no rule matches: the static baseline.
    write(os.path.join(public, "live-static.html"), live)
    # The `conditions` pages: the same bytes again, under two rule sets.
    write(os.path.join(public, "rules-today.html"), live)
    write(os.path.join(public, "rules-new.html"), live)

    write(os.path.join(extra, "upstream", "scores.json"), json.dumps(SCORES, indent=1) + "\n")
    write(os.path.join(extra, "upstream", "scores.html"), render_scores(SCORES))
    # What `proxy` fetches: a small JSON API answer (about 1.3 KB).
    odds = {"odds": [{"match": f"{m['home']}-{m['away']}", "home": 1.5 + i / 10, "draw": 3.2,
                      "away": 4.0 + i / 4} for i, m in enumerate(SCORES["matches"] * 4)]}
    write(os.path.join(extra, "upstream", "odds.json"), json.dumps(odds, indent=1) + "\n")
    ssi_a = live.replace(PLACEHOLDER, SSI_INCLUDE)
    write(os.path.join(extra, "ssi", "live-a.html"), ssi_a)
    write(os.path.join(extra, "ssi", "live-b.html"), ssi_a.replace(HERO, HERO_B))


def main():
    parser = argparse.ArgumentParser(description="Generates the benchmark corpus (see the module's doc).")
    parser.add_argument("--pages", type=int, help=f"pages per site (default {PAGES_PER_SITE}, "
                        f"with --group {GROUP_PAGES_PER_SITE})")
    parser.add_argument("--group", action="store_true", help="the 55-site group corpus")
    parser.add_argument("--sites", metavar="FILE", help='write "name host" per site, the default first')
    parser.add_argument("--every", metavar="FILE", help='write every file of every site as "host path"')
    parser.add_argument("--redirects", type=int, metavar="N",
                        help="also write bench-r (bench-r.localhost): the default site's home page and a "
                             "_redirects of N lines (the `redirects` scenarios)")
    for name in ("ROOT", "PORT", "ADMIN_PORT", "URLS_FILE", "UPSTREAM_PORT", "EXTRA_DIR"):
        parser.add_argument(name, type=int if name.endswith("PORT") else str)
    args = parser.parse_args()
    root, port, admin_port, urls_file = args.ROOT, args.PORT, args.ADMIN_PORT, args.URLS_FILE
    upstream_port, extra = args.UPSTREAM_PORT, args.EXTRA_DIR
    if args.group:
        sites, pages, seed = group_sites(), args.pages or GROUP_PAGES_PER_SITE, 5000
    else:
        sites = [(name, locale, country, default, "bench") for name, locale, country, default in SITES]
        pages, seed = args.pages or PAGES_PER_SITE, 1000
    if pages < 1:
        parser.error("--pages must be at least 1")
    home, other = sites[0][0], sites[1][0]

    write(os.path.join(root, "outpost.toml"),
          f'listen = "127.0.0.1:{port}"\n'
          f'admin_listen = "127.0.0.1:{admin_port}"\n'
          'access_log = "off"\n'
          'store = "cache/outpost.redb"\n'
          # OUTPOST_METRICS=off measures what counting for /metrics costs.
          + ('metrics = false\n' if os.environ.get("OUTPOST_METRICS") == "off" else ''))

    urls, every = [], []
    for index, (name, locale, country, default, group) in enumerate(sites):
        site = os.path.join(root, "sites", name)
        public = os.path.join(site, "public")
        host = f"{name}.localhost"
        write(os.path.join(site, "site.toml"),
              f'hosts = ["{host}"]\n'
              f'locale = "{locale}"\n'
              f'countries = ["{country}"]\n'
              f'group = "{group}"\n'
              f'default = {"true" if default else "false"}\n')

        w = Writer(seed + index, name, pages)
        home_page = w.page("Home", INDEX_SIZE, locale, "home")
        write(os.path.join(public, "index.html"), home_page)
        # The same page under the path the offer rule gates, so `offer`
        # and `small` serve identical bytes, with and without the rule.
        write(os.path.join(public, "offer.html"), home_page)
        every += [f"{host} /", f"{host} /offer.html"]
        for n in range(pages):
            size = w.rng.randint(PAGE_MIN, PAGE_MAX)
            write(os.path.join(public, f"page-{n:03d}.html"),
                  w.page(w.title(), size, locale, f"page page-{n:03d}"))
            urls.append(f"{host} /page-{n:03d}.html")

        assets = os.path.join(public, "assets")
        write(os.path.join(assets, "app.css"), css(w.rng))
        write(os.path.join(assets, "app.js"), js(w.rng))
        # Each site's own logo colour (% 256: the group has 55 sites).
        write(os.path.join(assets, "logo.png"),
              png(32, 32, lambda x, y: (x * 8, y * 8, (128 + index * 40) % 256)))
        for n in (1, 2, 3):
            write(os.path.join(assets, f"img-{n}.png"),
                  png(64, 64, lambda x, y, n=n: ((x * n * 4) % 256, (y * 4) % 256, (x ^ y) * n % 256)))
        every += [f"{host} /assets/{f}" for f in ("app.css", "app.js", "logo.png", "img-1.png",
                                                   "img-2.png", "img-3.png")]
        if name == home:
            write(os.path.join(public, "big.bin"), random.Random(42).randbytes(BIG_SIZE))
            every += [f"{host} /big.bin", f"{host} /live.html", f"{host} /live-static.html"]

    # Shuffled (deterministically) so consecutive requests hit different
    # hosts and files, like real traffic, rather than walking the disk order;
    # so the first N lines are N pages drawn at random over all sites.
    random.Random(7).shuffle(urls)
    write(urls_file, "\n".join(urls) + "\n")
    if args.sites:
        write(args.sites, "".join(f"{name} {name}.localhost\n" for name, *_ in sites))
    if args.every:
        write(args.every, "\n".join(every + urls) + "\n")

    offer_and_fragment(root, upstream_port, extra, home, other)
    if args.redirects:
        redirects_site(root, home, sites[0][1], home_page_of(root, home), args.redirects)


def home_page_of(root, home):
    with open(os.path.join(root, "sites", home, "public", "index.html"), "rb") as f:
        return f.read()


def redirects_lines(n):
    """N `_redirects` lines as a site that moved a lot would have: 60% plain
    old paths, 20% `:placeholder` patterns, 10% splats, 10% with query or
    country conditions; the last one is the pattern `redirects-pattern`
    requests, `/team/:slug`, rewriting to the home page."""
    rng = random.Random(14)
    words = ["news", "blog", "docs", "shop", "team", "guide", "review", "promo", "help", "legal"]
    lines = ["# bench-r: a site that moved its pages many times"]
    for i in range(n - 1):
        word = words[rng.randrange(len(words))]
        kind = rng.random()
        if kind < 0.6:
            lines.append(f"/{word}-{i}/old-page-{rng.randrange(1000)}.html  /{word}/page-{i}.html  301")
        elif kind < 0.8:
            lines.append(f"/{word}-{i}/:year/:slug  /{word}/:year/:slug  301")
        elif kind < 0.9:
            lines.append(f"/{word}-{i}/*  /{word}/:splat  302")
        elif kind < 0.95:
            lines.append(f"/{word}-{i} id=:id  /{word}/item/:id  301")
        else:
            lines.append(f"/{word}-{i}  /{word}/it  302  Country=it")
    lines.append("/team/:slug  /index.html  200")
    return "\n".join(lines) + "\n"


def redirects_site(root, home, locale, page, n):
    site = os.path.join(root, "sites", "bench-r")
    write(os.path.join(site, "site.toml"),
          f'hosts = ["bench-r.localhost"]\nlocale = "{locale}"\ngroup = "bench-r"\n')
    # The default site's home page, byte for byte: `small` is this site
    # without the file.
    write(os.path.join(site, "public", "index.html"), page)
    write(os.path.join(site, "public", "_redirects"), redirects_lines(n))


if __name__ == "__main__":
    main()
