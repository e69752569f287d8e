//! [`Trainer`]: the epoch loop of one run (batches, loss, backward, clipping, Adam,
//! validation, checkpoints), with resume, cancellation and progress reporting. No I/O: the
//! caller decides where checkpoints and reports go (the agent uploads them, `poet-worker
//! train` writes files).
//!
//! Determinism: init draws from `manual_seed(seed)`; epoch `e` reseeds torch with
//! `seed + e` before its first batch and shuffles with ChaCha8(`seed + e`). An epoch therefore
//! depends only on the weights and Adam state it starts from, which a checkpoint restores
//! exactly: on one device, training 4 epochs straight or 2 + resume + 2 gives the same
//! numbers. Torch's generator is process-global (tch exposes no per-object generator), so
//! exactness needs one trainer per process and nothing else drawing from it: sampling uses
//! its own generator and checkpoint loading builds zeroed models for that reason.
//!
//! The learning rate of each update comes from [`LrScheduler`] (the config's `lr_schedule`,
//! warm-up and floor), planned over `epochs` x batches per epoch updates; a `plateau`
//! schedule's state is decided after each epoch's validation and saved in the checkpoint, so
//! resume stays exact with every schedule. Changing `epochs` on resume re-plans a `cosine`
//! decay from that point on.
//!
//! Losses are nats per predicted character. `chars_per_sec` counts input characters pushed
//! through the network (`batch * seq_len` per batch) over the epoch's training time,
//! excluding validation, for both formulations.

use crate::checkpoint::{self, Checkpoint, CheckpointError, EpochRecord, Metadata};
use crate::data::{self, Batch};
use crate::model::PoetModel;
use crate::optim::{Adam, LrScheduler, ScheduleState};
use crate::vocab::Vocab;
use poet_core::config::{ConfigError, TrainConfig};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The config is invalid; retrying cannot help.
    #[error("bad config: {0}")]
    Config(#[from] ConfigError),
    /// The text cannot be trained on with this config (too short, foreign characters).
    #[error("bad data: {0}")]
    Data(String),
    /// The checkpoint to resume from is unusable or belongs to another model.
    #[error("bad checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The loss became NaN or infinite.
    #[error("loss is not finite at epoch {epoch} batch {batch}")]
    NonFinite {
        /// Epoch (1-based).
        epoch: u32,
        /// Batch within the epoch (0-based).
        batch: usize,
    },
}

impl TrainError {
    /// Whether retrying the run elsewhere cannot help (config, data and checkpoint errors).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, TrainError::NonFinite { .. })
    }
}

/// Where an epoch stands, for progress bars and heartbeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Epoch in progress (1-based).
    pub epoch: u32,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// Loss of the last batch, nats per char.
    pub loss: f64,
    /// Input characters per second so far in this epoch.
    pub chars_per_sec: f64,
}

/// The results of one epoch, handed to the caller after it.
#[derive(Debug, Clone)]
pub struct EpochReport {
    /// Epoch just completed (1-based).
    pub epoch: u32,
    /// Mean training loss over the epoch, nats per char.
    pub train_loss: f64,
    /// Validation loss, nats per char, by the measure every run shares
    /// ([`Trainer::validation_loss`]; NaN when the validation text is too short).
    pub val_loss: f64,
    /// The formulation's own validation loss ([`Trainer::formulation_val_loss`]).
    pub formulation_val_loss: f64,
    /// Seconds of training (excluding validation).
    pub duration_s: f64,
    /// Input characters per second of training.
    pub chars_per_sec: f64,
    /// Seconds the validation pass took.
    pub val_duration_s: f64,
    /// Mean global gradient norm before clipping.
    pub grad_norm_mean: f64,
    /// Learning rate of the epoch's last update (after the schedule).
    pub lr: f64,
    /// Batches trained.
    pub batches: usize,
    /// The checkpoint taken after the epoch, encoded ([`Checkpoint::to_bytes`]).
    pub checkpoint: Vec<u8>,
}

/// How [`Trainer::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every configured epoch is done.
    Finished,
    /// The cancel flag was raised; the epoch in progress was abandoned.
    Cancelled,
    /// The epoch callback asked to stop.
    Stopped,
}

/// Trains one run epoch by epoch.
#[derive(Debug)]
pub struct Trainer {
    /// The run's config.
    cfg: TrainConfig,
    /// Its vocabulary (from the texts, or from the checkpoint on resume).
    vocab: Vocab,
    /// Encoded training text.
    train_ids: Vec<i64>,
    /// Encoded validation text.
    val_ids: Vec<i64>,
    /// The model being trained.
    model: PoetModel,
    /// Its optimizer.
    adam: Adam,
    /// The learning rate of every update.
    sched: LrScheduler,
    /// Epochs completed so far.
    epochs_done: u32,
    /// One record per completed epoch, carried into checkpoints.
    history: Vec<EpochRecord>,
}

impl Trainer {
    /// A new run from scratch on `device`: vocabulary from both texts, weights from
    /// `manual_seed(seed)`.
    pub fn new(
        cfg: TrainConfig,
        train: &str,
        validation: &str,
        device: Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let vocab = Vocab::from_texts(&[train, validation]);
        tch::manual_seed(cfg.seed as i64);
        let model = PoetModel::new(&cfg, vocab.len(), device);
        let adam = Adam::new(model.parameters(), cfg.learning_rate);
        Self::assemble(
            cfg,
            vocab,
            train,
            validation,
            model,
            adam,
            Vec::new(),
            ScheduleState::default(),
        )
    }

    /// Continues a run from `ckpt` under `cfg` (the config the run is leased with): the model
    /// shape and seed must equal the checkpoint's; `epochs` may differ. Training goes on at
    /// epoch `ckpt.meta.epoch + 1`.
    pub fn resume(
        cfg: TrainConfig,
        ckpt: &Checkpoint,
        train: &str,
        validation: &str,
        device: Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let old = &ckpt.meta.config;
        let same = (
            old.layers,
            old.units,
            old.embedding,
            old.seq_len,
            old.formulation,
            old.seed,
            old.cell,
        ) == (
            cfg.layers,
            cfg.units,
            cfg.embedding,
            cfg.seq_len,
            cfg.formulation,
            cfg.seed,
            cfg.cell,
        );
        if !same {
            return Err(CheckpointError::Inconsistent(
                "checkpoint was trained with another model config".into(),
            )
            .into());
        }
        let vocab = ckpt.vocab();
        let model = ckpt.model(device)?;
        let mut adam = Adam::new(model.parameters(), cfg.learning_rate);
        adam.load_state(&ckpt.adam)
            .map_err(CheckpointError::Inconsistent)?;
        let mut t = Self::assemble(
            cfg,
            vocab,
            train,
            validation,
            model,
            adam,
            ckpt.meta.history.clone(),
            ckpt.meta.schedule.clone(),
        )?;
        t.epochs_done = ckpt.meta.epoch;
        Ok(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cfg: TrainConfig,
        vocab: Vocab,
        train: &str,
        validation: &str,
        model: PoetModel,
        adam: Adam,
        history: Vec<EpochRecord>,
        schedule: ScheduleState,
    ) -> Result<Self, TrainError> {
        let train_ids = vocab
            .encode(train)
            .map_err(|e| TrainError::Data(format!("training text: {e}")))?;
        let val_ids = vocab
            .encode(validation)
            .map_err(|e| TrainError::Data(format!("validation text: {e}")))?;
        if data::example_starts(train_ids.len(), &cfg).is_empty() {
            return Err(TrainError::Data(format!(
                "training text has {} chars, needs more than seq_len = {}",
                train_ids.len(),
                cfg.seq_len
            )));
        }
        let starts = data::example_starts(train_ids.len(), &cfg);
        let per_epoch =
            data::batch_starts(&starts, cfg.batch_size as usize, cfg.max_batches as usize).len();
        let sched = LrScheduler::new(&cfg, i64::from(cfg.epochs) * per_epoch as i64, schedule);
        Ok(Trainer {
            cfg,
            vocab,
            train_ids,
            val_ids,
            model,
            adam,
            sched,
            epochs_done: 0,
            history,
        })
    }

    /// Epochs completed so far.
    pub fn epochs_done(&self) -> u32 {
        self.epochs_done
    }

    /// The run's config.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The model as trained so far.
    pub fn model(&self) -> &PoetModel {
        &self.model
    }

    /// The run's vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Batches per epoch (after `max_batches`).
    pub fn batches_per_epoch(&self) -> usize {
        let starts = data::example_starts(self.train_ids.len(), &self.cfg);
        data::batch_starts(
            &starts,
            self.cfg.batch_size as usize,
            self.cfg.max_batches as usize,
        )
        .len()
    }

    /// The state after the last completed epoch, as a checkpoint.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            meta: Metadata {
                format: checkpoint::FORMAT.into(),
                version: checkpoint::VERSION,
                epoch: self.epochs_done,
                adam_step: self.adam.step_count(),
                adam: checkpoint::adam_hyper(self.cfg.learning_rate),
                vocab: self.vocab.as_string(),
                config: self.cfg.clone(),
                seed_schedule: checkpoint::SEED_SCHEDULE.into(),
                history: self.history.clone(),
                schedule: self.sched.state().clone(),
                written_by: format!("poet-worker {}", env!("CARGO_PKG_VERSION")),
            },
            weights: self
                .model
                .parameters()
                .into_iter()
                .map(|(n, t)| (n, t.copy()))
                .collect(),
            adam: self.adam.state(),
        }
    }

    /// Trains the remaining epochs. After each, calls `on_epoch`; `Break` stops (e.g. the
    /// lease was lost). `cancel` is checked between batches; `progress` is called after each
    /// batch.
    pub fn run(
        &mut self,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress),
        on_epoch: &mut dyn FnMut(EpochReport) -> ControlFlow<()>,
    ) -> Result<Outcome, TrainError> {
        while self.epochs_done < self.cfg.epochs {
            match self.train_epoch(cancel, progress)? {
                None => return Ok(Outcome::Cancelled),
                Some(report) => {
                    if on_epoch(report).is_break() {
                        return Ok(Outcome::Stopped);
                    }
                }
            }
        }
        Ok(Outcome::Finished)
    }

    /// Trains the next epoch and validates; `None` when `cancel` was raised mid-epoch (the
    /// model is then partly updated and must not be checkpointed).
    pub fn train_epoch(
        &mut self,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<EpochReport>, TrainError> {
        let epoch = self.epochs_done + 1;
        let cfg = &self.cfg;
        let device = self.model.device();
        tch::manual_seed(cfg.seed.wrapping_add(u64::from(epoch)) as i64);
        let starts = data::example_starts(self.train_ids.len(), cfg);
        let order = data::epoch_order(starts.len(), cfg.seed, epoch);
        let shuffled: Vec<usize> = order.iter().map(|&i| starts[i]).collect();
        let batches =
            data::batch_starts(&shuffled, cfg.batch_size as usize, cfg.max_batches as usize);
        let started = Instant::now();
        let (mut loss_sum, mut targets, mut chars, mut norm_sum) = (0.0, 0usize, 0usize, 0.0);
        for (i, starts) in batches.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let Batch {
                inputs,
                targets: tg,
                targets_count,
                input_chars,
            } = data::make_batch(&self.train_ids, starts, cfg, device);
            self.adam.zero_grad();
            let loss = self.model.loss(&inputs, &tg, true);
            loss.backward();
            let loss = f64::try_from(&loss).unwrap_or(f64::NAN);
            if !loss.is_finite() {
                return Err(TrainError::NonFinite { epoch, batch: i });
            }
            norm_sum += self.adam.clip_grad_norm(cfg.grad_clip);
            self.adam
                .set_lr(self.sched.lr_at(self.adam.step_count() + 1));
            self.adam.step();
            loss_sum += loss * targets_count as f64;
            targets += targets_count;
            chars += input_chars;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            progress(Progress {
                epoch,
                batch: i + 1,
                batches: batches.len(),
                loss,
                chars_per_sec: chars as f64 / secs,
            });
        }
        let duration_s = started.elapsed().as_secs_f64();
        let val_started = Instant::now();
        let val_loss = self.validation_loss();
        let formulation_val_loss = self.formulation_val_loss();
        let val_duration_s = val_started.elapsed().as_secs_f64();
        let lr = self.adam.lr();
        self.sched.end_epoch(val_loss);
        let train_loss = loss_sum / targets.max(1) as f64;
        let chars_per_sec = chars as f64 / duration_s.max(1e-9);
        self.epochs_done = epoch;
        self.history.push(EpochRecord {
            epoch,
            train_loss,
            val_loss,
            duration_s,
            chars_per_sec,
        });
        Ok(Some(EpochReport {
            epoch,
            train_loss,
            val_loss,
            duration_s,
            chars_per_sec,
            formulation_val_loss,
            val_duration_s,
            grad_norm_mean: norm_sum / batches.len().max(1) as f64,
            lr,
            batches: batches.len(),
            checkpoint: self.checkpoint().to_bytes(),
        }))
    }

    /// The validation measure every run reports, whatever its formulation: mean nats per
    /// character over the validation text in eval mode, each character predicted from a zero
    /// state after `VAL_CONTEXT + 1 ..= VAL_CONTEXT + VAL_BLOCK` characters of the text before
    /// it ([`data::eval_windows`]). Runs of either formulation, any `seq_len`, are compared on
    /// it. Windows go `batch_size` at a time, capped at `max_batches` batches when that is
    /// set. NaN when the validation text has fewer than 3 characters.
    pub fn validation_loss(&self) -> f64 {
        let cfg = &self.cfg;
        let (context, windows) = data::eval_windows(self.val_ids.len());
        // The last window may be shorter: it goes in a batch of its own.
        let (full, part): (Vec<_>, Vec<_>) = windows.iter().partition(|w| w.1 == data::VAL_BLOCK);
        let mut batches: Vec<&[(usize, usize)]> = full.chunks(cfg.batch_size as usize).collect();
        if cfg.max_batches > 0 {
            batches.truncate(cfg.max_batches as usize);
        }
        if cfg.max_batches == 0 || batches.len() < cfg.max_batches as usize {
            batches.extend(part.chunks(1));
        }
        if batches.is_empty() {
            return f64::NAN;
        }
        let device = self.model.device();
        let (mut sum, mut n) = (0.0, 0usize);
        tch::no_grad(|| {
            for batch in batches {
                let scored = batch[0].1;
                let len = context + scored;
                let mut inputs = Vec::with_capacity(batch.len() * len);
                let mut targets = Vec::with_capacity(batch.len() * scored);
                for &(s, _) in batch {
                    inputs.extend_from_slice(&self.val_ids[s..s + len]);
                    targets.extend_from_slice(&self.val_ids[s + context + 1..=s + len]);
                }
                let b = batch.len() as i64;
                let inputs = Tensor::from_slice(&inputs)
                    .view([b, len as i64])
                    .to_device(device);
                let targets = Tensor::from_slice(&targets).to_device(device);
                let (out, _) = self.model.forward(&inputs, None, false);
                let out = out.narrow(1, context as i64, scored as i64);
                let loss = self
                    .model
                    .logits(&out, false)
                    .view([-1, self.model.vocab_size() as i64])
                    .log_softmax(-1, Kind::Float)
                    .nll_loss(&targets);
                sum += f64::try_from(loss).unwrap_or(f64::NAN) * (batch.len() * scored) as f64;
                n += batch.len() * scored;
            }
        });
        sum / n as f64
    }

    /// The formulation's own loss over the validation text in eval mode (no dropout), in text
    /// order: the last character of each window for `keras`, every position for `seq`, as the
    /// training loss is taken. Reported beside [`Trainer::validation_loss`] as the metric
    /// `formulation_val_loss`, but not comparable across formulations. Capped at `max_batches`
    /// batches when that is set; NaN when the validation text holds no example.
    pub fn formulation_val_loss(&self) -> f64 {
        let cfg = &self.cfg;
        let starts = data::example_starts(self.val_ids.len(), cfg);
        let batches =
            data::batch_starts(&starts, cfg.batch_size as usize, cfg.max_batches as usize);
        if batches.is_empty() {
            return f64::NAN;
        }
        let (mut sum, mut n) = (0.0, 0usize);
        tch::no_grad(|| {
            for starts in batches {
                let b = data::make_batch(&self.val_ids, starts, cfg, self.model.device());
                let loss = f64::try_from(self.model.loss(&b.inputs, &b.targets, false))
                    .unwrap_or(f64::NAN);
                sum += loss * b.targets_count as f64;
                n += b.targets_count;
            }
        });
        sum / n as f64
    }
}
