//! The reader thread, the worker pool and the channel to the async consumer.
//!
//! One OS thread reads and decompresses the inputs into ~1 MiB chunks; `workers` threads turn
//! chunks into batches ([`crate::process`]); the consumer (ingest or explain) awaits batches
//! on a tokio channel, so COPY to Postgres overlaps with parsing. Both channels hold a few
//! items only, which bounds memory whatever the dump size. Dropping the [`Pipeline`] stops the
//! threads at their next hand-off (a reader blocked on stdin stays until its read returns).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::mpsc as tmpsc;

use crate::IngestError;
use crate::dump::{self, DumpFormat, Head, Input, Limits};
use crate::process::{self, Batch, Settings};

pub(crate) struct Pipeline {
    rx: tmpsc::Receiver<Result<Batch, IngestError>>,
    stop: Arc<AtomicBool>,
    /// Raw input bytes read so far (compressed size for gzip).
    pub bytes: Arc<AtomicU64>,
    /// The first bytes of each input read so far.
    heads: Arc<Mutex<Vec<Head>>>,
}

impl Pipeline {
    pub(crate) fn start(
        inputs: Vec<Input>,
        format: Option<DumpFormat>,
        settings: Settings,
        limits: Limits,
    ) -> Pipeline {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 16);
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<dump::Chunk>(workers * 2);
        let (out_tx, out_rx) = tmpsc::channel(workers * 2);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let settings = Arc::new(settings);
        for i in 0..workers {
            let rx = chunk_rx.clone();
            let tx = out_tx.clone();
            let settings = settings.clone();
            std::thread::Builder::new()
                .name(format!("ingest-worker-{i}"))
                .spawn(move || {
                    loop {
                        let chunk = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(chunk) = chunk else { return };
                        // A panic (a bug) must not silently drop a chunk's poems: it fails the
                        // ingest, which rolls back.
                        let file = chunk.file.clone();
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            process::process(&settings, chunk)
                        }))
                        .map_err(|_| {
                            IngestError::Internal(format!("worker failed on a chunk of {file}"))
                        });
                        let failed = result.is_err();
                        if tx.blocking_send(result).is_err() || failed {
                            return;
                        }
                    }
                })
                .expect("spawn ingest worker");
        }
        {
            let stop = stop.clone();
            let bytes = bytes.clone();
            let heads = heads.clone();
            std::thread::Builder::new()
                .name("ingest-reader".into())
                .spawn(move || {
                    let mut emit =
                        |chunk| !stop.load(Ordering::Relaxed) && chunk_tx.send(chunk).is_ok();
                    if let Err(e) =
                        dump::read_inputs(&inputs, format, &bytes, &limits, &heads, &mut emit)
                    {
                        let _ = out_tx.blocking_send(Err(e));
                    }
                    // Dropping chunk_tx lets the workers drain and exit, which closes out_rx.
                })
                .expect("spawn ingest reader");
        }
        Pipeline {
            rx: out_rx,
            stop,
            bytes,
            heads,
        }
    }

    /// The inputs' heads and sizes (complete once `next` has returned `None`).
    pub(crate) fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next batch; `None` once every input is read and processed.
    pub(crate) async fn next(&mut self) -> Option<Result<Batch, IngestError>> {
        self.rx.recv().await
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
    }
}
