//! `poet ingest` killed mid-dump and re-run: the final dataset (content hash, poem count)
//! equals an uninterrupted ingest's of the same dump, and no half-written dataset is ever
//! visible to another session while the killed run was loading.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use poet_reliability::procs::poet_bin;
use sqlx::PgPool;

/// An elasticdump-style NDJSON of `n` distinct tagged poems.
fn write_dump(path: &std::path::Path, n: usize) -> Result<()> {
    let words = poet_reliability::fixtures::poems(64);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let a = &words[i % words.len()];
        let b = &words[(i * 7 + 3) % words.len()];
        let content = format!(
            "<p>{}<br />\nnumber {i} of the night</p>\n<p>{}</p>",
            a.replace('\n', "<br />\n"),
            b.replace('\n', "<br />\n")
        );
        let doc = serde_json::json!({
            "_index": "wpcom", "_type": "post", "_id": format!("{i}-p"), "_score": 1,
            "_source": {"blog_id": i % 97, "post_type": "post", "lang": "en", "date_gmt": "2017-03-08 18:00:00",
                        "title": format!("Poem {i}"), "author": "Fixture Writer",
                        "tag": [{"name": "Poetry", "slug": "poetry"}], "content": content}
        });
        writeln!(f, "{doc}")?;
    }
    Ok(())
}

fn ingest_cmd(
    url: &str,
    dump: &std::path::Path,
    log: &std::path::Path,
) -> Result<tokio::process::Command> {
    let mut c = tokio::process::Command::new(poet_bin()?);
    c.arg("ingest")
        .arg(dump)
        .args(["--name", "big", "--tag", "poetry", "--progress", "false"])
        .env("POET_DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out"))?)
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true);
    Ok(c)
}

async fn dataset(pool: &PgPool) -> Result<Option<(String, i64)>> {
    Ok(sqlx::query_as(
        "select content_hash, poems from datasets where name = 'big' and state = 'ready'",
    )
    .fetch_optional(pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_leaves_nothing_and_a_rerun_equals_a_clean_run() -> Result<()> {
    let run = async {
        let dir = tempfile::tempdir()?;
        let dump = dir.path().join("dump.ndjson");
        let n: usize = std::env::var("POET_INGEST_POSTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60_000);
        write_dump(&dump, n)?;
        // The reference: an uninterrupted ingest into its own database.
        let clean = poet_sql::testing::fresh_db().await;
        let t = Instant::now();
        let st = ingest_cmd(&clean.url, &dump, &dir.path().join("clean.log"))?
            .status()
            .await?;
        let clean_secs = t.elapsed().as_secs_f64();
        ensure!(
            st.success(),
            "clean ingest failed: {}",
            poet_reliability::procs::tail(&dir.path().join("clean.log"), 20)
        );
        let want = dataset(&clean.pool)
            .await?
            .context("clean ingest stored no dataset")?;

        // Killed half-way, while another session watches for anything half-written.
        let db = poet_sql::testing::fresh_db().await;
        let mut child = ingest_cmd(&db.url, &dump, &dir.path().join("killed.log"))?.spawn()?;
        let kill_at = Instant::now() + Duration::from_secs_f64(clean_secs * 0.5);
        let mut observations = 0;
        while Instant::now() < kill_at {
            let visible: (i64, i64) = sqlx::query_as(
                "select (select count(*) from datasets), (select count(*) from poems)",
            )
            .fetch_one(&db.pool)
            .await?;
            ensure!(
                visible == (0, 0),
                "half-written dataset visible mid-ingest: {visible:?}"
            );
            observations += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(
            child.try_wait()?.is_none(),
            "the ingest finished before it could be killed; raise POET_INGEST_POSTS"
        );
        child.kill().await?;
        let after: (i64, i64) =
            sqlx::query_as("select (select count(*) from datasets), (select count(*) from poems)")
                .fetch_one(&db.pool)
                .await?;
        ensure!(
            after == (0, 0),
            "a killed ingest left {after:?} (datasets, poems)"
        );

        let st = ingest_cmd(&db.url, &dump, &dir.path().join("rerun.log"))?
            .status()
            .await?;
        ensure!(
            st.success(),
            "re-run failed: {}",
            poet_reliability::procs::tail(&dir.path().join("rerun.log"), 20)
        );
        let got = dataset(&db.pool)
            .await?
            .context("re-run stored no dataset")?;
        ensure!(
            got == want,
            "re-run {got:?} differs from the clean ingest {want:?}"
        );
        let datasets: i64 = sqlx::query_scalar("select count(*) from datasets")
            .fetch_one(&db.pool)
            .await?;
        ensure!(datasets == 1, "{datasets} dataset rows after the re-run");
        eprintln!(
            "[ingest-interrupt] posts={n} clean={clean_secs:.1}s killed_at={:.1}s observations={observations} poems={} hash={} lost=0",
            clean_secs * 0.5,
            got.1,
            &got.0[..12]
        );
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .context("ingest test timed out")?
}
