#!/usr/bin/env python3
"""Writes a large WordPress-shaped elasticdump NDJSON dump for the ingest benchmark.

    gen_dump.py --size-mb 500 --out /tmp/bench.ndjson [--gzip]

Synthetic text only (random words from a generated lexicon, seeded): ~80% poems in the
renderings WordPress produces (autop, autop_min, p_per_line, blocks, verse, nbsp_indent, raw,
Jetpack multilingual objects), ~12% prose (some hard-wrapped), ~2% empty posts, ~8% reposts of
an earlier poem in another rendering (duplicates), and a broken line every ~5000 lines.
Documents average ~2 KB like the shared sample; `--size-mb` is the uncompressed size.
"""
import argparse, gzip, json, random

def lexicon(rng, n=6000):
    syll = ["ba", "ce", "di", "lo", "mu", "ra", "sen", "tor", "vel", "wy", "an", "est", "or", "ing", "el", "um",
            "sha", "tri", "no", "pe", "qua", "rim", "sol", "ther", "ul", "ven", "ash", "ov", "ly", "gra"]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(syll) for _ in range(rng.choice([1, 1, 2, 2, 2, 3]))))
    return sorted(words)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=500)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    words = lexicon(rng)
    punct = [",", ",", ";", ".", "", "", "", "!", "?", "&#8217;s", "&#8212;"]

    def line(n):
        ws = rng.choices(words, k=n)
        ws[0] = ws[0].capitalize()
        return " ".join(ws) + rng.choice(punct)

    def poem():
        return [[line(rng.randint(3, 9)) for _ in range(rng.randint(2, 6))] for _ in range(rng.randint(1, 5))]

    def prose():
        return [" ".join(line(rng.randint(8, 20)) for _ in range(rng.randint(3, 8))) for _ in range(rng.randint(1, 4))]

    def render(st, fmt):
        if fmt == "autop": return "\n".join("<p>" + "<br />\n".join(s) + "</p>" for s in st)
        if fmt == "autop_min": return "".join("<p>" + "<br>".join(s) + "</p>" for s in st)
        if fmt == "p_per_line": return "\n<p>&nbsp;</p>\n".join("\n".join("<p>" + l + "</p>" for l in s) for s in st)
        if fmt == "blocks": return "\n\n".join("<!-- wp:paragraph -->\n<p>" + "<br>".join(s) + "</p>\n<!-- /wp:paragraph -->" for s in st)
        if fmt == "verse": return '<!-- wp:verse -->\n<pre class="wp-block-verse">' + "\n\n".join("\n".join(s) for s in st) + "</pre>\n<!-- /wp:verse -->"
        if fmt == "nbsp_indent": return "\n".join("<p>" + "<br />\n".join(("&nbsp;&nbsp;&nbsp;&nbsp;" if i % 2 else "") + l for i, l in enumerate(s)) + "</p>" for s in st)
        return "\r\n\r\n".join("\r\n".join(s) for s in st) if rng.random() < 0.3 else "\n\n".join("\n".join(s) for s in st)

    def hardwrap(paras):
        out = []
        for p in paras:
            ws, cur, lines = p.split(), "", []
            for w in ws:
                if cur and len(cur) + len(w) > 72: lines.append(cur); cur = w
                else: cur = (cur + " " + w).strip()
            lines.append(cur)
            out.append("<p>" + "<br />\n".join(lines) + "</p>")
        return "\n".join(out)

    fmts = ["autop"] * 5 + ["autop_min", "p_per_line", "blocks", "verse", "nbsp_indent", "raw", "raw"]
    tags_pool = ["poetry", "Poetry", "POETRY", "love", "life", "nature", "free verse", "writing", "night", "grief"]
    target = int(a.size_mb * 1e6)
    out = gzip.open(a.out, "wb", compresslevel=6) if a.gzip else open(a.out, "wb", buffering=1 << 20)
    written, n, recent = 0, 0, []
    while written < target:
        n += 1
        blog = rng.randint(1_000_000, 200_000_000)
        _id = f"{blog}-p-{n}"
        r = rng.random()
        ml = False
        if r < 0.08 and recent:
            st = rng.choice(recent)
            content = render(st, rng.choice(fmts))
        elif r < 0.20:
            paras = prose()
            content = hardwrap(paras) if rng.random() < 0.2 else "\n".join("<p>" + p + "</p>" for p in paras)
        elif r < 0.22:
            content = rng.choice(["", "   ", "<p>&nbsp;</p>", None])
        else:
            st = poem()
            recent.append(st)
            if len(recent) > 500: recent.pop(0)
            ml = rng.random() < 0.03
            content = render(st, rng.choice(fmts))
        title = line(rng.randint(1, 5))
        tags = [{"name": t, "slug": t.lower().replace(" ", "-"), "term_id": rng.randint(1, 10**7)}
                for t in ["poetry"] + rng.sample(tags_pool, 3)]
        src = {"blog_id": blog, "site_id": 1, "post_id": n, "post_type": "post", "post_format": "standard",
               "post_status": "publish", "public": True, "has_password": False, "lang": "en", "lang_analyzer": "en_analyzer",
               "url": f"blog{blog}.wordpress.com/2017/04/02/post-{n}/", "slug": f"post-{n}",
               "date": "2017-04-02 01:48:04", "date_gmt": "2017-04-02 08:48:04",
               "modified": "2017-04-02 01:48:04", "modified_gmt": "2017-04-02 08:48:04", "sticky": False,
               "title": {"default": title, "en": title} if ml else title,
               "content": {"default": content, "en": content} if ml and content is not None else content,
               "excerpt": "", "author": "Author " + str(blog % 997), "author_login": f"author{blog % 997}",
               "author_id": blog % 99991, "tag": tags, "category": [{"name": "Poems", "slug": "poems", "term_id": 1}],
               "tag_cat_count": 5, "comment_count": rng.randint(0, 9)}
        doc = {"_index": "wpcom-poetry-2017", "_type": "post", "_id": _id, "_score": 1, "_routing": f"{blog}-0", "_source": src}
        b = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if n % 5000 == 0:
            b = b[: len(b) // 2] + b"\n"  # a truncated line
        out.write(b)
        written += len(b)
    out.close()
    print(f"{a.out}: {n} docs, {written / 1e6:.1f} MB uncompressed")

if __name__ == "__main__":
    main()
