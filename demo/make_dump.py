#!/usr/bin/env python3
"""Build demo/sample-dump.ndjson.gz from demo/posts.jsonl.

The output is an elasticdump NDJSON file (one Elasticsearch hit per line) of
WordPress.com-shaped posts, as a blog search index would hold them. Everything
is chosen deterministically from the post's position and a SHA-256 of its
title, and the gzip header carries no file name and mtime=0, so running this
script twice gives byte-for-byte identical output.

Besides the clean posts the dump deliberately holds the messes a real dump
has: reposted duplicates, empty posts, posts under another tag, a truncated
line and a stray log line.

Usage: python3 demo/make_dump.py [--out PATH]
Standard library only.
"""
import argparse
import gzip
import hashlib
import html
import io
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
INDEX = "wpcom-poetry-demo"

# (blog_id, blog slug, author display name)
BLOGS = [
    (10234871, "saltandkettle", "Maren Holt"),
    (20458812, "thenightbuspoems", "Dev Ashworth"),
    (31177406, "allotmentverse", "June Okoro"),
    (40912255, "tidelinenotes", "Ffion Marsh"),
    (52203917, "smallhoursblog", "Tomasz Reed"),
    (63340128, "kitchenwindowpoetry", "Ada Lindqvist"),
]

EXTRA_TAGS = [
    ("sea", ["sea", "tide", "harbour", "shore", "beach", "ferry", "boats", "pier", "shells"]),
    ("family", ["grandmother", "grandfather", "grandad", "mother", "father", "aunt", "son", "daughter", "sister", "brother"]),
    ("weather", ["rain", "snow", "fog", "frost", "thunder", "wind", "weather", "clouds"]),
    ("garden", ["garden", "allotment", "seed", "tomato", "greenhouse", "orchard", "apple"]),
    ("city", ["city", "bus", "street", "train", "station", "tram", "estate", "bridge"]),
    ("kitchen", ["kitchen", "bread", "kettle", "jam", "soup", "pancakes", "tea", "colander", "recipe"]),
    ("night", ["night", "moon", "stars", "dark", "insomnia", "lullaby"]),
]
POETRY_TAG_NAMES = ["poetry", "Poetry", "POETRY", "poetry", "Poetry"]
POEM_CATEGORIES = [("Poems", "poems"), ("Poetry", "poetry"), ("Verse", "verse"), ("Uncategorized", "uncategorized")]
PROSE_CATEGORIES = [("Notes", "notes"), ("Life", "life"), ("Uncategorized", "uncategorized")]
# Prose posts that are published under "cooking" only (no poetry tag).
COOKING_ONLY = ["Leek and Potato Soup for Grey Days", "The Best Banana Bread I Know", "Slow-Cooked Chickpea Stew"]


def h(s):
    """A stable integer from a string."""
    return int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:8], "big")


def slugify(title):
    s = re.sub(r"[^a-z0-9]+", "-", title.lower().replace("'", "")).strip("-")
    return s or "untitled"


# ---------------------------------------------------------------- escaping

def texturize(s):
    """HTML-escape and apply WordPress-style typography as numeric entities."""
    s = html.escape(s, quote=False)  # & < >
    s = re.sub(r'(^|[\s(\[])"', r"\1&#8220;", s)
    s = s.replace('"', "&#8221;")
    s = re.sub(r"(^|[\s(\[])'", r"\1&#8216;", s)
    s = s.replace("'", "&#8217;")
    s = s.replace(" -- ", " &#8212; ").replace("...", "&#8230;")
    return s


def curly(s):
    """HTML-escape, with typography as literal Unicode characters."""
    s = html.escape(s, quote=False)
    s = re.sub(r"(^|\s)'", "\\1\u2018", s)
    return s.replace("'", "\u2019")


def plain(s):
    """Plain text as the classic editor stores it: only & < > escaped."""
    return html.escape(s, quote=False)


def stanzas(text):
    return [st.split("\n") for st in text.split("\n\n") if st.strip()]


# ---------------------------------------------------------------- renderers

def r_p_br(text, esc=texturize):
    return "\n\n".join("<p>" + "<br />\n".join(esc(l) for l in st) + "</p>" for st in stanzas(text))


def r_p_per_line(text, esc=curly):
    out = []
    for st in stanzas(text):
        if out:
            out.append("<p>&nbsp;</p>")
        out.extend("<p>" + esc(l) + "</p>" for l in st)
    return "\n".join(out)


def r_gutenberg(text, esc=texturize):
    return "\n\n".join(
        "<!-- wp:paragraph -->\n<p>" + "<br>".join(esc(l) for l in st) + "</p>\n<!-- /wp:paragraph -->"
        for st in stanzas(text)
    )


def r_verse(text, esc=texturize):
    body = "\n\n".join("\n".join(esc(l) for l in st) for st in stanzas(text))
    return '<!-- wp:verse -->\n<pre class="wp-block-verse">' + body + "</pre>\n<!-- /wp:verse -->"


def r_plain(text, esc=plain):
    return "\n\n".join("\n".join(esc(l) for l in st) for st in stanzas(text))


POEM_RENDERERS = [r_p_br, r_p_per_line, r_gutenberg, r_verse, r_plain]


def render_prose(text, style):
    paras = [p.replace("\n", " ") for p in text.split("\n\n") if p.strip()]
    if style == 0:
        return "\n\n".join("<p>" + texturize(p) + "</p>" for p in paras)
    if style == 1:
        return "\n\n".join("<!-- wp:paragraph -->\n<p>" + texturize(p) + "</p>\n<!-- /wp:paragraph -->" for p in paras)
    return "\n\n".join(plain(p) for p in paras)  # classic editor, wpautop at display time


# ---------------------------------------------------------------- posts

class Builder:
    def __init__(self):
        self.next_post_id = {b[0]: 100 + 7 * i for i, b in enumerate(BLOGS)}
        self.n = 0

    def date(self, key):
        # Spread over 2024; stable per key.
        x = h("date:" + key)
        month = 1 + x % 12
        day = 1 + (x >> 8) % 28
        hh, mm, ss = (x >> 16) % 24, (x >> 24) % 60, (x >> 32) % 60
        return "2024-%02d-%02d %02d:%02d:%02d" % (month, day, hh, mm, ss)

    def hit(self, blog, title, content, tags, category, key, esc_title=texturize):
        blog_id, blog_slug, author = blog
        post_id = self.next_post_id[blog_id]
        self.next_post_id[blog_id] += 1 + h("gap:" + key) % 5
        date = self.date(key)
        slug = slugify(title) if title else str(post_id)
        url = "https://%s.wordpress.com/%s/%s/%s/%s/" % (blog_slug, date[0:4], date[5:7], date[8:10], slug)
        self.n += 1
        source = {
            "blog_id": blog_id,
            "post_id": post_id,
            "lang": "en",
            "url": url,
            "slug": slug,
            "date": date,
            "date_gmt": date,
            "title": esc_title(title),
            "content": content,
            "author": author,
            "tag": [{"name": n, "slug": s} for n, s in tags],
            "category": [{"name": category[0], "slug": category[1]}],
        }
        return {
            "_index": INDEX,
            "_type": "post",
            "_id": "%d-p-%d" % (blog_id, post_id),
            "_score": 1,
            "_source": source,
        }


def topic_tags(text, limit):
    low = text.lower()
    found = [name for name, words in EXTRA_TAGS if any(re.search(r"\b" + w, low) for w in words)]
    return [(t, t) for t in found[:limit]]


def poetry_tags(key, text):
    x = h("tags:" + key)
    name = POETRY_TAG_NAMES[x % len(POETRY_TAG_NAMES)]
    tags = [(name, "poetry")]
    extra = topic_tags(text, (x >> 4) % 3)
    if (x >> 8) % 3 == 0:
        extra.append(("poems", "poems"))
    if (x >> 12) % 5 == 0:
        extra.insert(0, ("free verse", "free-verse"))
    return tags + extra


def build(posts):
    b = Builder()
    hits = []
    poems = [p for p in posts if p["kind"] == "poem"]

    for i, p in enumerate(posts):
        key = p["title"]
        x = h(key)
        blog = BLOGS[x % len(BLOGS)]
        if p["kind"] == "poem":
            content = POEM_RENDERERS[i % len(POEM_RENDERERS)](p["text"])
            cat = POEM_CATEGORIES[(x >> 20) % len(POEM_CATEGORIES)]
            tags = poetry_tags(key, p["text"])
        else:
            content = render_prose(p["text"], (x >> 20) % 3)
            cat = PROSE_CATEGORIES[(x >> 24) % len(PROSE_CATEGORIES)]
            if p["title"] in COOKING_ONLY:
                tags = [("cooking", "cooking"), ("recipes", "recipes")]
            else:
                # Blogs that tag every post "poetry", prose included.
                tags = poetry_tags(key, p["text"])[:1] + [("writing", "writing")]
        hits.append(b.hit(blog, p["title"], content, tags, cat, key))

    # Reposted duplicates, under other blogs / ids.
    def other_blog(key, shift):
        return BLOGS[(h(key) + shift) % len(BLOGS)]

    dups = [poems[3], poems[11], poems[24], poems[40], poems[57]]
    # 1. exact repost on another blog
    d = dups[0]
    hits.append(b.hit(other_blog(d["title"], 1), d["title"], POEM_RENDERERS[posts.index(d) % 5](d["text"]),
                      [("poetry", "poetry"), ("repost", "repost")], POEM_CATEGORIES[0], "dup1:" + d["title"]))
    # 2. different case and whitespace
    d = dups[1]
    messy = "\n".join("  " + l.upper() + "   " if l.strip() else "" for l in d["text"].split("\n"))
    messy = messy.replace("\n\n", "\n\n\n")
    hits.append(b.hit(other_blog(d["title"], 2), d["title"].upper(), "<p>" + "<br />\n".join(
        texturize(l) for l in messy.split("\n")) + "</p>", [("Poetry", "poetry")], POEM_CATEGORIES[3],
                      "dup2:" + d["title"]))
    # 3. different HTML rendering
    d = dups[2]
    k = (posts.index(d) + 2) % 5
    hits.append(b.hit(other_blog(d["title"], 3), d["title"], POEM_RENDERERS[k](d["text"]),
                      [("poetry", "poetry"), ("old poems", "old-poems")], POEM_CATEGORIES[1], "dup3:" + d["title"]))
    # 4. repost on a third blog, re-saved in the block editor
    d = dups[3]
    hits.append(b.hit(other_blog(d["title"], 4), d["title"], r_gutenberg(d["text"]),
                      [("poetry", "poetry")], POEM_CATEGORIES[0], "dup4:" + d["title"]))
    # 5. exact repost on the same blog, new id
    d = dups[4]
    hits.append(b.hit(BLOGS[h(d["title"]) % len(BLOGS)], d["title"], POEM_RENDERERS[posts.index(d) % 5](d["text"]),
                      poetry_tags(d["title"], d["text"]), POEM_CATEGORIES[0], "dup5:" + d["title"]))

    # Empty posts.
    hits.append(b.hit(BLOGS[0], "Draft", "", [("poetry", "poetry")], POEM_CATEGORIES[3], "empty1"))
    hits.append(b.hit(BLOGS[4], "(untitled)", "<p>&nbsp;</p>", [("Poetry", "poetry")], POEM_CATEGORIES[3], "empty2"))

    # Stable shuffle, so the kinds are mixed through the file.
    hits.sort(key=lambda hit: h("order:" + hit["_id"]))
    return hits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(HERE, "posts.jsonl"))
    ap.add_argument("--out", default=os.path.join(HERE, "sample-dump.ndjson.gz"))
    args = ap.parse_args()

    with open(args.src, encoding="utf-8") as f:
        posts = [json.loads(line) for line in f if line.strip()]
    hits = build(posts)
    lines = [json.dumps(hit, ensure_ascii=False, separators=(",", ":")) for hit in hits]

    # Deliberately broken lines: an elasticdump log line near the top, and a
    # hit cut off mid-way (as when a dump is interrupted) near the end.
    lines.insert(3, "Mon, 04 Nov 2024 09:12:41 GMT | got 100 objects from source elasticsearch (offset: 0)")
    cut = lines[-5]
    lines.insert(len(lines) - 2, cut[: len(cut) // 2])

    data = ("\n".join(lines) + "\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())

    n_poem = sum(p["kind"] == "poem" for p in posts)
    print("%s: %d lines (%d poems, %d prose, 5 duplicates, 2 empty, 2 broken), %d bytes gzipped"
          % (os.path.relpath(args.out), len(lines), n_poem, len(posts) - n_poem, len(buf.getvalue())))


if __name__ == "__main__":
    main()
