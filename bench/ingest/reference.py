#!/usr/bin/env python3
"""Straightforward Python reference for the ingest benchmark: the same work as poet-ingest on
an NDJSON dump (plain or gzip), single-threaded, the obvious way.

    reference.py --database-url URL DUMP

json.loads per line, HTML to text with regexes + html.unescape, the seed's density filter rule
(min lines 2, mean words/line <= 10.5, longest line <= 120; CJK chars count half; poet-ingest
runs its default `verse` filter, which measures more per document, and stores each left-out
document with its reason: the comparison is against the cheaper rule), dedupe by
sha256 of the lowercased, whitespace-folded text (smallest _id kept, via a dict), framed text
COPYed into a table with psycopg's COPY (copy.write_row), one transaction.
"""
import argparse, gzip, hashlib, html, json, re, sys, time, unicodedata

import psycopg

TAG_BR = re.compile(r"<br\s*/?>\n?", re.I)
TAG_BLOCK = re.compile(r"</?(p|div|pre|blockquote|h[1-6]|ul|ol|li)\b[^>]*>", re.I)
COMMENT = re.compile(r"<!--.*?-->", re.S)
TAG = re.compile(r"<[^>]+>")
SPACES = re.compile(r"[ \t\u00a0]+")
BLANKS = re.compile(r"\n{3,}")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def to_text(content):
    s = content.replace("\r\n", "\n").replace("\r", "\n")
    s = COMMENT.sub("", s)
    s = TAG_BR.sub("\n", s)
    s = TAG_BLOCK.sub("\n\n", s)
    s = TAG.sub("", s)
    s = html.unescape(s)
    lines = [SPACES.sub(" ", l).strip() for l in s.split("\n")]
    s = BLANKS.sub("\n\n", "\n".join(lines)).strip("\n")
    return unicodedata.normalize("NFC", s)


def is_poem(text):
    lines = [l for l in text.split("\n") if l.strip()]
    if len(lines) < 2:
        return False
    words = sum(len(l.split()) for l in lines) + len(CJK.findall(text)) / 2
    return words / len(lines) <= 10.5 and max(len(l) for l in lines) <= 120


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("dump")
    a = ap.parse_args()
    t0 = time.time()
    raw = open(a.dump, "rb")
    magic = raw.read(2)
    raw.seek(0)
    f = gzip.open(raw) if magic == b"\x1f\x8b" else raw
    counts = dict(read=0, malformed=0, empty=0, not_poems=0, duplicates=0, kept=0)
    winners = {}  # key -> (source_id, row)   (the reference keeps rows of winners until the end
    # only for keys seen twice; first copies go straight to COPY like the Rust side)
    with psycopg.connect(a.database_url) as conn:
        # The same table shape and index as poet's poems table (minus the dataset id).
        conn.execute('create table if not exists ref_poems (dedupe_key text collate "C", shard int, source_id text, text text, meta jsonb)')
        conn.execute("create index if not exists ref_poems_key on ref_poems (dedupe_key)")
        conn.execute("truncate ref_poems")
        with conn.cursor() as cur:
            with cur.copy("copy ref_poems (dedupe_key, shard, source_id, text, meta) from stdin") as copy:
                for line in f:
                    if not line.strip():
                        continue
                    counts["read"] += 1
                    try:
                        doc = json.loads(line.lstrip(b"\xef\xbb\xbf"))
                        src = doc["_source"]
                    except Exception:
                        counts["malformed"] += 1
                        continue
                    content = src.get("content")
                    if isinstance(content, dict):
                        content = content.get("default")
                    if not content:
                        counts["empty"] += 1
                        continue
                    text = to_text(content)
                    if not text:
                        counts["empty"] += 1
                        continue
                    if not is_poem(text):
                        counts["not_poems"] += 1
                        continue
                    norm = " ".join(text.lower().split())
                    key = hashlib.sha256(norm.encode()).hexdigest()
                    sid = str(doc.get("_id"))
                    prev = winners.get(key)
                    if prev is not None:
                        counts["duplicates"] += 1
                        if sid >= prev:
                            continue
                    winners[key] = sid
                    title = src.get("title")
                    meta = json.dumps({"title": title.get("default") if isinstance(title, dict) else title,
                                       "author": src.get("author"), "date": src.get("date_gmt"),
                                       "tags": [t.get("name") if isinstance(t, dict) else t for t in src.get("tag") or []],
                                       "lang": src.get("lang")}, ensure_ascii=False)
                    copy.write_row((key, int(key[:16], 16) % 64, sid, "++++\n" + text + "\n", meta))
        # drop the copies that lost to a smaller id
        conn.execute("delete from ref_poems p using ref_poems q where p.dedupe_key = q.dedupe_key and p.source_id > q.source_id")
        counts["kept"] = conn.execute("select count(*) from ref_poems").fetchone()[0]
    dt = time.time() - t0
    size = raw.tell() if not hasattr(f, "fileobj") else raw.tell()
    print(json.dumps({"counts": counts, "seconds": round(dt, 2), "input_bytes": size}))


if __name__ == "__main__":
    main()
