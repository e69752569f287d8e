//! Integration tests of poet-ingest against a real Postgres (poet_sql::testing: a private
//! cluster per machine, a fresh database per test). Fixtures: `tests/fixtures/` (written for
//! these tests by `make_fixtures.py`; `posts.ndjson.notes` says what each line is).

use std::path::PathBuf;

use poet_ingest::{DumpFormat, FilterParams, IngestError, IngestOptions, explain, ingest};
use poet_sql::datasets::{DatasetError, Split, corpus_text, export, find_dataset, list_datasets};
use sqlx::PgPool;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opts(inputs: &[PathBuf]) -> IngestOptions {
    IngestOptions::new(inputs.to_vec(), "poetry")
}

async fn db() -> PgPool {
    poet_sql::testing::fresh_db().await.pool
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// (source_id, text) of a dataset's poems in export order.
async fn poems(pool: &PgPool, dataset_id: i64) -> Vec<(String, String)> {
    sqlx::query_as("select source_id, text from poems where dataset_id = $1 order by dedupe_key")
        .bind(dataset_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The per-dataset poems tables that exist, and those attached to `poems` as partitions.
async fn poem_tables(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let all = sqlx::query_scalar(
        "select relname::text from pg_class where relname ~ '^poems_[0-9]+$' and relkind = 'r' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let attached = sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'poems'::regclass and c.relkind = 'r' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (all, attached)
}

const HARBOUR_UPPER: &str = "++++\nTHE HARBOUR LIGHTS COME ON AT FOUR\nAND LEAN ACROSS THE WATER,\nA FERRY COUGHS BESIDE THE SHORE,\nA GULL COMPLAINS OF SLAUGHTER.\n\nI COUNT THE BOATS THAT DO NOT MOVE\nAND NAME THEM AFTER WEATHER,\nAND EVERY NAME IS ONE FOR LOVE\nAND NONE OF THEM TOGETHER.\n";

#[tokio::test]
async fn ndjson_counts_rejects_and_renderings() {
    let pool = db().await;
    let mut o = opts(&[fixture("posts.ndjson")]);
    let dir = tempfile::tempdir().unwrap();
    o.rejects_file = Some(dir.path().join("rejects.jsonl"));
    let s = ingest(&pool, &o).await.unwrap();
    assert!(s.created);
    assert_eq!((s.name.as_str(), s.version), ("poetry", 1));
    let c = s.counts;
    assert_eq!((c.read, c.blank, c.malformed, c.docs), (30, 1, 5, 25));
    assert_eq!(
        (c.other_tag, c.empty, c.not_poems, c.duplicates, c.kept),
        (0, 4, 3, 9, 9)
    );

    // Every rendering of "Harbour Lights" is one poem; the copy with the smallest id is kept.
    let rows = poems(&pool, s.dataset_id).await;
    assert_eq!(rows.len(), 9);
    let harbour: Vec<_> = rows
        .iter()
        .filter(|(_, t)| t.to_lowercase().contains("harbour lights"))
        .collect();
    assert_eq!(harbour.len(), 1);
    assert_eq!(harbour[0].0, "100-p-1");
    assert_eq!(harbour[0].1, HARBOUR_UPPER);
    let text_of = |id: &str| {
        rows.iter()
            .find(|(i, _)| i == id)
            .map(|(_, t)| t.as_str())
            .unwrap()
    };
    assert_eq!(
        text_of("200-p-2"),
        "++++\nThe kettle knows\nbefore I do\nthat you are late\nand I am blue.\n"
    );
    assert_eq!(
        text_of("200-p-3"),
        "++++\nSeven stairs to the attic room,\nseven to come down,\n\ndust on the trunk like a wedding veil\nand a moth in a paper crown.\n"
    );
    assert!(text_of("200-p-1").contains("my father’s ladder leans on a trunk\n"));
    assert_eq!(
        text_of("300-p-1"),
        "++++\n春雨落在小城上，\n街灯一盏一盏亮。\n\n我把旧信读两遍，\n窗外的风也很忙。\n"
    );
    assert!(text_of("300-p-2").starts_with(
        "++++\nAm Fluss die Weiden schlafen ein,\nder Abend trägt sein graues Kleid,\n\nund"
    ));

    // Rejects: table and file, with file, line and reason.
    let rejects: Vec<(String, i64, String)> = sqlx::query_as(
        "select file, line, reason from ingest_rejects where dataset_id = $1 and kind = 'malformed' order by line",
    )
    .bind(s.dataset_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let lines: Vec<(i64, &str)> = rejects.iter().map(|(_, l, r)| (*l, r.as_str())).collect();
    assert_eq!(
        lines,
        [
            (9, "not a json object"),
            (16, "truncated json"),
            (17, "hit without _source"),
            (18, "invalid utf-8 at byte 19"),
            (19, "invalid utf-8 at byte 346"),
        ]
    );
    assert!(rejects[0].0.ends_with("posts.ndjson"));
    let file = std::fs::read_to_string(dir.path().join("rejects.jsonl")).unwrap();
    // The malformed lines and the 7 documents left out (4 empty, 3 prose).
    assert_eq!(file.lines().count(), 5 + 7);
    assert_eq!(s.rejects.len(), 5);
    let shown = s.to_string();
    assert!(shown.contains("created poetry@1"), "{shown}");
    assert!(shown.contains("posts.ndjson:16: truncated json"), "{shown}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["counts"]["kept"], 9);

    // Metadata travels as JSON.
    let meta: serde_json::Value =
        sqlx::query_scalar("select meta from poems where source_id = '300-p-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(meta["lang"], "zh");
    assert_eq!(meta["tags"], serde_json::json!(["Poetry", "night"]));
    assert_eq!(meta["author"], "Fixture Writer");
}

#[tokio::test]
async fn tag_filter_and_gzip_give_the_same_dataset() {
    let pool = db().await;
    let mut o = opts(&[fixture("posts.ndjson")]);
    o.tag = Some("POETRY".into());
    let plain = ingest(&pool, &o).await.unwrap();
    assert_eq!((plain.counts.other_tag, plain.counts.kept), (1, 8));

    // Same bytes gzipped (and named without .gz): same content, same parameters → same version.
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("dump.data");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    std::io::copy(
        &mut std::fs::File::open(fixture("posts.ndjson")).unwrap(),
        &mut enc,
    )
    .unwrap();
    enc.finish().unwrap();
    o.inputs = vec![gz];
    let again = ingest(&pool, &o).await.unwrap();
    assert!(!again.created);
    assert_eq!((again.dataset_id, again.version), (plain.dataset_id, 1));
    assert_eq!(again.content_hash, plain.content_hash);
    assert!(again.to_string().contains("already exists as poetry@1"));
    assert_eq!(count(&pool, "select count(*) from datasets").await, 1);
    assert_eq!(count(&pool, "select count(*) from poems").await, 8);
    // 5 malformed lines, 7 documents left out (4 empty, 3 prose).
    assert_eq!(
        count(&pool, "select count(*) from ingest_rejects").await,
        12
    );
}

#[tokio::test]
async fn bad_gzip_name_is_an_input_error() {
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("dump.ndjson.gz");
    std::fs::copy(fixture("posts.ndjson"), &fake).unwrap();
    let err = ingest(&pool, &opts(std::slice::from_ref(&fake)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: not a gzip stream", fake.display())
    );
    assert_eq!(count(&pool, "select count(*) from datasets").await, 0);
    let missing = ingest(&pool, &opts(&[dir.path().join("nope.ndjson")]))
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .ends_with("nope.ndjson: no such file or folder"),
        "{missing}"
    );
}

#[tokio::test]
async fn bulk_format() {
    let pool = db().await;
    let s = ingest(&pool, &opts(&[fixture("posts.bulk")]))
        .await
        .unwrap();
    let c = s.counts;
    // 10 index pairs + 1 create whose source is cut off; the delete has no source.
    assert_eq!((c.read, c.malformed, c.docs), (11, 1, 10));
    assert_eq!((c.not_poems, c.kept), (2, 8));
    assert_eq!(s.rejects[0].reason, "truncated json");
    assert_eq!(s.rejects[0].line, 23);
    let ids: Vec<String> = poems(&pool, s.dataset_id)
        .await
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert!(ids.contains(&"100-p-1".to_string()) && ids.contains(&"300-p-2".to_string()));
    // forcing the format on a dump of another format rejects its lines instead of guessing
    let mut forced = opts(&[fixture("posts.bulk")]);
    forced.format = Some(DumpFormat::Ndjson);
    let e = explain(&forced).await.unwrap();
    assert_eq!((e.counts.read, e.counts.malformed), (23, 23), "{e}");
}

#[tokio::test]
async fn scroll_page_file_and_folder() {
    let pool = db().await;
    let one = ingest(&pool, &opts(&[fixture("scroll/page-1.json")]))
        .await
        .unwrap();
    assert_eq!((one.counts.docs, one.counts.kept), (5, 5));
    let mut o = opts(&[fixture("scroll")]);
    o.name = "scrolled".into();
    let all = ingest(&pool, &o).await.unwrap();
    assert_eq!(
        (all.counts.docs, all.counts.not_poems, all.counts.kept),
        (10, 2, 8)
    );
    // The bulk dump holds the same ten posts: same corpus.
    let mut b = opts(&[fixture("posts.bulk")]);
    b.name = "bulked".into();
    let bulk = ingest(&pool, &b).await.unwrap();
    assert_eq!(bulk.content_hash, all.content_hash);
}

#[tokio::test]
async fn dedupe_does_not_depend_on_input_order() {
    let pool = db().await;
    let forward = ingest(&pool, &opts(&[fixture("posts.ndjson")]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reversed = dir.path().join("reversed.ndjson");
    let text = std::fs::read(fixture("posts.ndjson")).unwrap();
    let mut lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines.reverse();
    std::fs::write(&reversed, lines.join(&b'\n')).unwrap();
    let mut o = opts(&[reversed]);
    o.name = "reversed".into();
    let backward = ingest(&pool, &o).await.unwrap();
    assert_eq!(backward.content_hash, forward.content_hash);
    assert_eq!(backward.counts.duplicates, forward.counts.duplicates);
    assert_eq!(backward.chars, forward.chars);
    assert_eq!(backward.vocab_size, forward.vocab_size);
    assert_eq!(
        poems(&pool, backward.dataset_id).await,
        poems(&pool, forward.dataset_id).await
    );
    // the vocabulary is exact: the lowercase copies of the kept upper-case poem were deleted,
    // and every character in the vocabulary occurs in the corpus
    let vocab: String = sqlx::query_scalar("select vocab from datasets where id = $1")
        .bind(backward.dataset_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let corpus: String = poems(&pool, backward.dataset_id)
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut expect: Vec<char> = corpus.chars().collect();
    expect.sort_unstable();
    expect.dedup();
    assert_eq!(vocab, expect.into_iter().collect::<String>());
    assert_eq!(backward.chars as usize, corpus.chars().count());
}

#[tokio::test]
async fn idempotent_reingest_and_new_versions() {
    let pool = db().await;
    let o = opts(&[fixture("posts.ndjson")]);
    let first = ingest(&pool, &o).await.unwrap();
    let again = ingest(&pool, &o).await.unwrap();
    assert!(!again.created);
    assert_eq!(
        (again.dataset_id, again.version, &again.content_hash),
        (first.dataset_id, 1, &first.content_hash)
    );
    assert_eq!(count(&pool, "select count(*) from poems").await, 9);
    assert_eq!(count(&pool, "select count(*) from datasets").await, 1);
    // The dataset's poems are its own table, attached to `poems`, with its primary key built;
    // the identical re-ingest's table went with its rolled-back transaction.
    let own = format!("poems_{}", first.dataset_id);
    assert_eq!(
        poem_tables(&pool).await,
        (vec![own.clone()], vec![own.clone()])
    );
    let key: Vec<String> = sqlx::query_scalar(
        "select a.attname::text from pg_index i
         join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
         where i.indrelid = $1::regclass and i.indisprimary order by a.attnum",
    )
    .bind(&own)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(key, ["dataset_id", "dedupe_key"]);

    // A changed parameter is a new version, even when the corpus is the same.
    let mut changed = o.clone();
    changed.filter = FilterParams {
        max_line_chars: 200,
        ..FilterParams::default()
    };
    let v2 = ingest(&pool, &changed).await.unwrap();
    assert!(v2.created);
    assert_eq!(v2.version, 2);
    assert_eq!(v2.content_hash, first.content_hash);
    // A different dump is a new version too.
    let v3 = ingest(&pool, &opts(&[fixture("scroll")])).await.unwrap();
    assert_eq!((v3.version, v3.created), (3, true));
    let (all, attached) = poem_tables(&pool).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all, attached);

    // Shards are a function of the poem: same (key, shard) pairs across versions.
    let shards = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, i32)>(
                "select dedupe_key, shard from poems where dataset_id = $1 order by 1",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let a = shards(first.dataset_id).await;
    let b = shards(v2.dataset_id).await;
    assert_eq!(a, b);
    let c = shards(v3.dataset_id).await;
    for pair in &c {
        if let Some(same) = a.iter().find(|p| p.0 == pair.0) {
            assert_eq!(same, pair);
        }
    }

    // list and find
    let all = list_datasets(&pool).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.reference()).collect::<Vec<_>>(),
        ["poetry@1", "poetry@2", "poetry@3"]
    );
    assert_eq!(find_dataset(&pool, "poetry").await.unwrap().version, 3);
    let v1 = find_dataset(&pool, "poetry@1").await.unwrap();
    assert_eq!((v1.id, v1.poems), (first.dataset_id, 9));
    assert!(v1.to_string().contains("poetry@1"));
    assert_eq!(
        find_dataset(&pool, "poetry@9")
            .await
            .unwrap_err()
            .to_string(),
        "no such dataset 'poetry@9'"
    );
    assert!(matches!(
        find_dataset(&pool, "poetry@x").await,
        Err(DatasetError::BadReference { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_each_attach_their_own_table() {
    // Each ingest holds its new table until commit and attaches it to `poems` at the end:
    // loads of different datasets run side by side and both land.
    let pool = db().await;
    let mut a = opts(&[fixture("posts.ndjson")]);
    a.name = "left".into();
    let mut b = opts(&[fixture("scroll")]);
    b.name = "right".into();
    let (ra, rb) = tokio::join!(ingest(&pool, &a), ingest(&pool, &b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.created && rb.created);
    let (all, attached) = poem_tables(&pool).await;
    let mut want = vec![
        format!("poems_{}", ra.dataset_id),
        format!("poems_{}", rb.dataset_id),
    ];
    want.sort();
    assert_eq!((&all, &attached), (&want, &want));
    for r in [&ra, &rb] {
        assert_eq!(poems(&pool, r.dataset_id).await.len() as u64, r.counts.kept);
    }
}

#[tokio::test]
async fn max_errors_aborts_and_leaves_nothing() {
    let pool = db().await;
    let mut o = opts(&[fixture("posts.ndjson")]);
    o.max_errors = Some(4);
    let err = ingest(&pool, &o).await.unwrap_err();
    assert!(
        matches!(err, IngestError::TooManyErrors { limit: 4, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("too many malformed lines: more than 4"),
        "{err}"
    );
    for table in ["datasets", "poems", "ingest_rejects"] {
        assert_eq!(
            count(&pool, &format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(poem_tables(&pool).await, (vec![], vec![]));
    // exactly at the limit is fine
    o.max_errors = Some(5);
    assert!(ingest(&pool, &o).await.unwrap().created);
}

#[tokio::test]
async fn export_and_split() {
    let pool = db().await;
    let s = ingest(&pool, &opts(&[fixture("posts.ndjson")]))
        .await
        .unwrap();
    let mut out = Vec::new();
    let e = export(&pool, s.dataset_id, &mut out).await.unwrap();
    assert_eq!(e.content_hash, s.content_hash);
    assert_eq!(e.poems, 9);
    let corpus = String::from_utf8(out).unwrap();
    assert_eq!(corpus.matches("++++\n").count(), 9);
    assert!(corpus.starts_with("++++\n") && corpus.ends_with('\n') && !corpus.ends_with("\n\n"));
    assert_eq!(corpus.chars().count() as u64, s.chars);

    let train = corpus_text(&pool, s.dataset_id, Split::Train)
        .await
        .unwrap();
    let valid = corpus_text(&pool, s.dataset_id, Split::Validation)
        .await
        .unwrap();
    assert!(!train.is_empty() && !valid.is_empty());
    assert_eq!(train.len() + valid.len(), corpus.len());
    assert_eq!(
        (s.train_poems, s.validation_poems),
        (
            train.matches("++++\n").count() as u64,
            valid.matches("++++\n").count() as u64
        )
    );
    let poems_of = |s: &str| {
        s.split("++++\n")
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut pieces = poems_of(&train);
    pieces.extend(poems_of(&valid));
    let mut whole = poems_of(&corpus);
    pieces.sort_unstable();
    whole.sort_unstable();
    assert_eq!(pieces, whole);
}

#[tokio::test]
async fn tiny_dataset_has_both_splits() {
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    // Two poems, one shard: hashing alone would put both on one side.
    let posts = [
        ("1-p-1", "one line here\ntwo lines there"),
        ("1-p-2", "another small poem\nin two lines"),
    ];
    let dump: String = posts
        .iter()
        .map(|(id, c)| serde_json::json!({"_id": id, "_source": {"content": c}}).to_string() + "\n")
        .collect();
    std::fs::write(dir.path().join("tiny.ndjson"), dump).unwrap();
    for (shards, fraction) in [(1, 0.5), (64, 0.1), (2, 0.5)] {
        let mut o = opts(&[dir.path().join("tiny.ndjson")]);
        o.name = format!("tiny-{shards}");
        o.shards = shards;
        o.validation_fraction = fraction;
        let s = ingest(&pool, &o).await.unwrap();
        assert_eq!(
            (s.train_poems, s.validation_poems),
            (1, 1),
            "shards {shards}"
        );
        let valid = corpus_text(&pool, s.dataset_id, Split::Validation)
            .await
            .unwrap();
        let train = corpus_text(&pool, s.dataset_id, Split::Train)
            .await
            .unwrap();
        assert_eq!(valid.matches("++++").count(), 1);
        assert_eq!(train.matches("++++").count(), 1);
        assert_ne!(valid, train);
    }
}

#[tokio::test]
async fn explain_prints_the_distribution() {
    let e = explain(&opts(&[fixture("posts.ndjson")])).await.unwrap();
    assert_eq!(e.counts.malformed, 5);
    assert_eq!(e.verdicts.iter().map(|(_, n)| n).sum::<u64>(), 21);
    let text = e.to_string();
    assert!(
        text.contains("mean words per line (poem | other):"),
        "{text}"
    );
    assert!(
        text.contains("kept by the density rule if max words per line were:"),
        "{text}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert!(json["words_per_line"]["poems"].is_array());
}

#[tokio::test]
async fn invalid_options_are_refused_before_work() {
    let mut o = opts(&[fixture("posts.ndjson")]);
    o.name = "no spaces allowed".into();
    assert!(matches!(
        explain(&o).await,
        Err(IngestError::InvalidOptions(_))
    ));
    let mut o = opts(&[fixture("posts.ndjson")]);
    o.validation_fraction = 1.0;
    assert!(
        explain(&o)
            .await
            .unwrap_err()
            .to_string()
            .contains("validation fraction")
    );
}

/// Counts of the tables an ingest writes: (datasets, poems tables, rejects).
async fn stored(pool: &PgPool) -> (i64, usize, i64) {
    (
        count(pool, "select count(*) from datasets").await,
        poem_tables(pool).await.0.len(),
        count(pool, "select count(*) from ingest_rejects").await,
    )
}

#[tokio::test]
async fn inputs_without_poems_are_errors_that_say_what_was_read() {
    // Before: each printed `created poetry@1` and left an empty dataset a sweep could train on.
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    // 20 lines of random bytes (a fixed xorshift stream), an empty file, a JSON array, prose.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut binary = Vec::new();
    for _ in 0..20 {
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            binary.push(((x >> 24) as u8) | 0x80);
        }
        binary.push(b'\n');
    }
    let prose = serde_json::json!({"_id": "1-p-1", "_source": {"content": "<p>It was late when the carrier came up the lane with the parcel. The dog went out to meet him without a sound. Nobody in the house could say afterwards who had ordered it.</p>"}});
    let files = [
        (
            "random.bin",
            binary,
            "looks like binary data, not JSON text",
        ),
        ("empty.ndjson", Vec::new(), "looks like an empty file"),
        (
            "array.json",
            br#"[{"_id": "1", "_source": {"content": "a\nb"}}]"#.to_vec(),
            "looks like a JSON array",
        ),
        (
            "prose.ndjson",
            format!("{prose}\n").into_bytes(),
            "1 documents (0 without the tag, 1 left out by the filter: 1 too_few_lines)",
        ),
    ];
    for (name, bytes, needle) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = ingest(&pool, &opts(std::slice::from_ref(&path)))
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::NoPoems { .. }), "{name}: {err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("no poems in {}: read ", path.display())),
            "{msg}"
        );
        assert!(msg.contains(needle), "{name}: {msg}");
        assert!(msg.ends_with("nothing stored"), "{msg}");
        assert_eq!(stored(&pool).await, (0, 0, 0), "{name}");
    }
    let msg = ingest(&pool, &opts(&[dir.path().join("random.bin")]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("read 4020 bytes, 20 lines: 20 malformed, 0 documents"),
        "{msg}"
    );
}

#[tokio::test]
async fn mostly_malformed_input_warns() {
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    let poem = serde_json::json!({"_id": "1-p-1", "_source": {"content": "one line here\ntwo lines there"}});
    let path = dir.path().join("mixed.ndjson");
    std::fs::write(&path, format!("{poem}\nnot json\n{{\"_id\":\nstill not\n")).unwrap();
    let s = ingest(&pool, &opts(std::slice::from_ref(&path)))
        .await
        .unwrap();
    assert_eq!(
        (s.counts.read, s.counts.malformed, s.counts.kept),
        (4, 3, 1)
    );
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].starts_with("3 of 4 lines (75%) were malformed"),
        "{:?}",
        s.warnings
    );
    // Half is not "mostly".
    std::fs::write(&path, format!("{poem}\nnot json\n")).unwrap();
    let mut o = opts(std::slice::from_ref(&path));
    o.name = "half".into();
    assert!(ingest(&pool, &o).await.unwrap().warnings.is_empty());
}

#[tokio::test]
async fn lines_and_pages_over_the_cap_are_one_reject_each() {
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    let poem = |id: &str| {
        serde_json::json!({"_id": id, "_source": {"content": format!("{id} walks the line\nand back again")}})
            .to_string()
    };
    let long_small = serde_json::json!({"_id": "x", "_source": {"content": "a".repeat(5000)}});
    // Longer than a read chunk: the reader skips it without holding it.
    let long_big = serde_json::json!({"_id": "y", "_source": {"content": "b".repeat(3 << 20)}});
    let nd = dir.path().join("dump.ndjson");
    std::fs::write(
        &nd,
        [
            poem("1-p-1"),
            long_small.to_string(),
            poem("1-p-2"),
            long_big.to_string(),
            poem("1-p-3"),
        ]
        .join("\n"),
    )
    .unwrap();
    let mut o = opts(std::slice::from_ref(&nd));
    o.max_line_bytes = 4096;
    let s = ingest(&pool, &o).await.unwrap();
    assert_eq!(
        (s.counts.read, s.counts.malformed, s.counts.kept),
        (5, 2, 3)
    );
    let rejects: Vec<(u64, &str)> = s
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    let reason = "line longer than 4096 bytes (--max-line-bytes); skipped";
    assert_eq!(rejects, [(2, reason), (4, reason)]);

    // _bulk: the same, on a source line.
    let bulk = dir.path().join("dump.bulk");
    let action = |id: &str| format!("{{\"index\":{{\"_id\":\"{id}\"}}}}");
    let src = |id: &str| {
        serde_json::json!({"content": format!("{id} walks the line\nand back again")}).to_string()
    };
    std::fs::write(
        &bulk,
        [
            action("b1"),
            src("b1"),
            action("b2"),
            long_big["_source"].to_string(),
            action("b3"),
            src("b3"),
        ]
        .join("\n"),
    )
    .unwrap();
    let mut o = opts(std::slice::from_ref(&bulk));
    o.name = "bulk".into();
    o.max_line_bytes = 4096;
    let s = ingest(&pool, &o).await.unwrap();
    assert_eq!((s.counts.malformed, s.counts.kept), (1, 2));
    assert_eq!(
        (s.rejects[0].line, s.rejects[0].reason.as_str()),
        (4, reason)
    );

    // Scroll: a page over the cap is skipped; the pages after it are read.
    let page = |ids: &[&str], pad: usize| {
        let hits: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| serde_json::json!({"_id": id, "_source": {"content": format!("{id} walks the line\nand back again"), "pad": "p".repeat(pad)}}))
            .collect();
        serde_json::json!({"took": 1, "hits": {"hits": hits}}).to_string()
    };
    let scroll = dir.path().join("pages.json");
    std::fs::write(
        &scroll,
        [
            page(&["s1", "s2"], 0),
            page(&["s3"], 10_000),
            page(&["s4"], 0),
        ]
        .join("\n"),
    )
    .unwrap();
    let mut o = opts(std::slice::from_ref(&scroll));
    o.name = "scroll".into();
    o.max_page_bytes = 4096;
    let s = ingest(&pool, &o).await.unwrap();
    assert_eq!((s.counts.malformed, s.counts.kept), (1, 3));
    assert_eq!(
        (s.rejects[0].line, s.rejects[0].reason.as_str()),
        (
            3,
            "scroll page 2 larger than 4096 bytes (--max-page-bytes); skipped"
        )
    );
}

#[tokio::test]
async fn gzip_bomb_is_refused_and_nothing_stored() {
    use std::io::Write;
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&bomb).unwrap(),
        flate2::Compression::best(),
    );
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..80 {
        enc.write_all(&zeros).unwrap();
    }
    enc.finish().unwrap();
    let err = ingest(&pool, &opts(std::slice::from_ref(&bomb)))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IngestError::Input { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!(
            "{}: gzip stream expands more than 200×",
            bomb.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("likely gzip bomb"), "{msg}");
    assert_eq!(stored(&pool).await, (0, 0, 0));
}

#[tokio::test]
async fn left_out_documents_are_stored_with_reason_and_measures() {
    let pool = db().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&[fixture("posts.ndjson")]);
    o.rejects_file = Some(dir.path().join("rejects.jsonl"));
    let s = ingest(&pool, &o).await.unwrap();
    let counts = poet_ingest::reject_counts(&pool, s.dataset_id)
        .await
        .unwrap();
    let by: Vec<(&str, &str, i64)> = counts
        .iter()
        .map(|c| (c.kind.as_str(), c.reason.as_str(), c.count))
        .collect();
    assert_eq!(
        by,
        [
            ("malformed", "malformed", 5),
            ("filtered", "empty", 4),
            ("filtered", "too_few_lines", 2),
            ("filtered", "hard_wrapped", 1),
        ]
    );
    let wrapped = poet_ingest::rejects(&pool, s.dataset_id, Some("hard_wrapped"), 10)
        .await
        .unwrap();
    assert_eq!(wrapped.len(), 1);
    let r = &wrapped[0];
    assert_eq!(
        (r.line, r.kind.as_str(), r.source_id.as_deref()),
        (26, "filtered", Some("400-p-3"))
    );
    let m = r.measures.as_ref().unwrap();
    assert!(
        m["why"].as_str().unwrap().starts_with("hard_wrapped: "),
        "{m}"
    );
    assert!(m["lower_continuations"].as_f64().unwrap() >= 0.4, "{m}");
    let malformed = poet_ingest::rejects(&pool, s.dataset_id, Some("malformed"), 2)
        .await
        .unwrap();
    assert_eq!(
        malformed.iter().map(|r| r.line).collect::<Vec<_>>(),
        [9, 16]
    );
    assert_eq!(
        poet_ingest::rejects(&pool, s.dataset_id, None, 100)
            .await
            .unwrap()
            .len(),
        12
    );
    // The summary and the dataset's counts carry the same breakdown.
    assert_eq!(
        s.not_poems_by_reason,
        [
            ("empty".to_string(), 4),
            ("too_few_lines".to_string(), 2),
            ("hard_wrapped".to_string(), 1)
        ]
    );
    let d = find_dataset(&pool, "poetry@1").await.unwrap();
    assert_eq!(d.counts["not_poems_by_reason"]["hard_wrapped"], 1);
    // The rejects file has both kinds.
    let file = std::fs::read_to_string(dir.path().join("rejects.jsonl")).unwrap();
    let kinds: Vec<String> = file
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "malformed").count(), 5);
    assert_eq!(kinds.iter().filter(|k| *k == "filtered").count(), 7);
}

#[tokio::test]
async fn explain_shows_samples_on_both_sides_with_reasons() {
    let e = explain(&opts(&[fixture("posts.ndjson")])).await.unwrap();
    let kept = e
        .samples
        .iter()
        .filter(|s| s.doc.verdict == poet_ingest::filter::Verdict::Poem)
        .count();
    let out = e.samples.len() - kept;
    assert!(kept >= 3 && out >= 3, "{kept} kept, {out} left out");
    let text = e.to_string();
    assert!(
        text.contains("kept (samples, up to 3 per verdict):"),
        "{text}"
    );
    assert!(
        text.contains("left out (samples, up to 3 per verdict):"),
        "{text}"
    );
    assert!(text.contains("hard_wrapped: "), "{text}");
    assert!(text.contains("400-p-3"), "{text}");
    assert!(text.contains("poem: no prose rule applies"), "{text}");
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    // Explain says so when nothing would be kept.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, b"").unwrap();
    let e = explain(&opts(&[empty])).await.unwrap();
    assert_eq!(
        e.warnings,
        ["no document is a poem: an ingest of these inputs would fail"]
    );
}

#[tokio::test]
async fn density_filter_is_the_seed_rule() {
    let pool = db().await;
    let mut o = opts(&[fixture("posts.ndjson")]);
    o.filter = FilterParams::density();
    let s = ingest(&pool, &o).await.unwrap();
    assert_eq!((s.counts.not_poems, s.counts.kept), (3, 9));
    assert_eq!(
        s.not_poems_by_reason,
        [
            ("empty".to_string(), 4),
            ("too_few_lines".to_string(), 2),
            ("too_dense".to_string(), 1)
        ]
    );
}
