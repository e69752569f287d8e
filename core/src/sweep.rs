//! Sweep specs and their deterministic expansion into training configs.
//!
//! A spec (TOML by default, YAML or JSON too) names a dataset, a `base` config and two kinds of
//! axes: `grid` (a cartesian product of lists) and `random` (`samples` draws from distributions,
//! seeded). This module owns parsing, every check a spec must pass before the coordinator stores
//! anything, and the expansion into one [`TrainConfig`] per run:
//!
//! - runs = product(grid) × samples when `random` is present, else product(grid); a spec with
//!   neither is the single base config;
//! - grid axes are iterated in sorted key order, the last key varying fastest (an odometer);
//! - the `samples` draws are made once, before the grid is walked: draw `s` takes one value from
//!   every random axis in sorted key order from a ChaCha8 stream seeded by `random.seed`; every
//!   grid point is then crossed with draws `0..samples` in order (grid-major), so all grid points
//!   see the same random points;
//! - configs equal by [`TrainConfig::canonical_json`] are folded, keeping the first occurrence.
//!
//! The same spec always expands to the same configs in the same order, whatever its format: the
//! random draws depend only on the ChaCha8 stream (the float and integer mappings are written
//! here rather than borrowed from `rand`'s distributions, so a `rand` upgrade cannot silently
//! change the runs a stored spec means).
//!
//! `random.seed` is the sampler's seed when it is an integer (default 0). A table there instead
//! (`seed = { int = [0, 1000] }`) is a random axis over the config's own `seed`; grid the config
//! seed (`[grid] seed = [1, 2, 3]`) to keep a chosen sampler seed as well.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::plan::{self, Plan, Search};

use crate::config::{Cell, ConfigError, Formulation, KEYS, LrSchedule, TrainConfig};

/// The default of [`ExpandOptions::max_runs`].
pub const DEFAULT_MAX_RUNS: usize = 1000;

/// A spec's syntax, picked by the caller or by [`SpecFormat::detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML, the default.
    Toml,
    /// YAML 1.2 (as read by `serde_norway`).
    Yaml,
    /// JSON.
    Json,
}

impl SpecFormat {
    /// The format a file name or path implies by its extension (case-insensitive): `.yaml`/`.yml`
    /// is YAML, `.json` is JSON, anything else (including no extension or `-` for stdin) is TOML.
    pub fn detect(path_or_name: &str) -> SpecFormat {
        let ext = path_or_name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        // A dot inside a directory name is not an extension.
        if ext.contains(['/', '\\']) {
            return SpecFormat::Toml;
        }
        ext.parse().unwrap_or(SpecFormat::Toml)
    }
}

impl FromStr for SpecFormat {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "toml" => Ok(SpecFormat::Toml),
            "yaml" | "yml" => Ok(SpecFormat::Yaml),
            "json" => Ok(SpecFormat::Json),
            _ => Err(SpecError::new(
                "format",
                format!("unknown spec format {s:?} (expected toml, yaml or json)"),
            )),
        }
    }
}

impl fmt::Display for SpecFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecFormat::Toml => "toml",
            SpecFormat::Yaml => "yaml",
            SpecFormat::Json => "json",
        })
    }
}

/// What is wrong with a spec, and where: `field` is a path such as `grid.layers[2]`,
/// `random.dropout` or `base.layerz` (`spec` for a syntax error of the whole text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path of the offending value.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl SpecError {
    /// A new error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A config range error re-homed at a spec path (`base.layers`, `grid.layers[2]`, …): the
    /// config's field name gives way to the path, its message is kept.
    fn from_config(path: String, e: ConfigError) -> Self {
        SpecError {
            field: path,
            message: e.message,
        }
    }
}

/// Whether `name` is a valid dataset name: 1-100 letters, digits, `.`, `_` or `-`, starting
/// with a letter or digit (the same rule as the `datasets` table's check). The one rule for
/// ingest (naming a new dataset) and every reader ([`DatasetRef`]).
pub fn valid_dataset_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Which dataset a sweep trains on: `poetry` (the latest version when the sweep is submitted) or
/// `poetry@3` (version 3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatasetRef {
    /// The dataset's name.
    pub name: String,
    /// A pinned version; `None` means the latest.
    pub version: Option<i32>,
}

impl FromStr for DatasetRef {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: String| SpecError::new("dataset", m);
        let (name, version) = match s.split_once('@') {
            None => (s, None),
            Some((name, v)) => {
                let version: i32 = v
                    .parse()
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| err(format!("version {v:?} is not a positive integer")))?;
                (name, Some(version))
            }
        };
        if name.is_empty() {
            return Err(err("the dataset name is empty".into()));
        }
        if !valid_dataset_name(name) {
            return Err(err(format!(
                "dataset name {name:?} must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )));
        }
        Ok(DatasetRef {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Limits applied by [`SweepSpec::expand`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandOptions {
    /// Most runs (before duplicates are folded) a sweep may expand to; larger sweeps are refused
    /// before anything is materialised.
    pub max_runs: usize,
}

impl Default for ExpandOptions {
    fn default() -> Self {
        ExpandOptions {
            max_runs: DEFAULT_MAX_RUNS,
        }
    }
}

/// The runs of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// Unique configs, in the order of their first occurrence.
    pub configs: Vec<TrainConfig>,
    /// Configs the spec produced more than once, folded into an earlier one; `configs.len() +
    /// duplicates` is the raw run count.
    pub duplicates: usize,
}

/// A parsed and validated sweep spec. Every value in it has been type- and range-checked, so
/// [`SweepSpec::expand`] fails only on the size limit.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// Optional label for listings.
    pub name: Option<String>,
    /// The dataset the runs train on.
    pub dataset: DatasetRef,
    /// Queue priority of the runs, -1000..=1000 (higher runs first).
    pub priority: i32,
    /// How many times a run is tried before it is marked failed, 1..=100.
    pub max_attempts: i32,
    /// The config every run starts from.
    base: TrainConfig,
    /// Grid axes in sorted key order, each a non-empty list of checked values.
    grid: Vec<(&'static str, Vec<Value>)>,
    /// The random section, if present.
    random: Option<Random>,
    /// Search method, stopping rule, budget and concurrency.
    plan: Plan,
    /// What each run needs from its worker (`[resources]`).
    resources: crate::resources::Resources,
}

/// The `random` section: draws and their axes.
#[derive(Debug, Clone, PartialEq)]
struct Random {
    /// Draws per grid point, at least 1.
    samples: u64,
    /// Seed of the ChaCha8 stream.
    seed: u64,
    /// Axes in sorted key order.
    axes: Vec<(&'static str, Dist)>,
}

/// A distribution of one random axis; bounds are checked against the field's range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dist {
    /// Float in [lo, hi].
    Uniform(f64, f64),
    /// Float whose log is uniform in [ln lo, ln hi]; 0 < lo.
    LogUniform(f64, f64),
    /// Integer in lo..=hi.
    Int(u64, u64),
    /// One of the listed values, equally likely.
    Choice(Vec<Value>),
}

/// A checked value of one config field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An integer field's value (`seed` is u64, the others u32, checked on the way in).
    Int(u64),
    /// A float field's value.
    Float(f64),
    /// The formulation.
    Formulation(Formulation),
    /// The recurrent cell.
    Cell(Cell),
    /// The learning-rate schedule.
    Schedule(LrSchedule),
}

/// The type of one config field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    U32,
    U64,
    F64,
    Formulation,
    Cell,
    Schedule,
}

/// The kind of every config key; `None` for an unknown key. A test checks that it covers
/// [`KEYS`], so a new config field cannot be forgotten here.
pub(crate) fn kind(key: &str) -> Option<Kind> {
    Some(match key {
        "layers" | "units" | "seq_len" | "step" | "batch_size" | "epochs" | "embedding"
        | "max_batches" | "warmup_steps" | "plateau_patience" => Kind::U32,
        "seed" => Kind::U64,
        "dropout" | "recurrent_dropout" | "learning_rate" | "grad_clip" | "lr_min"
        | "plateau_factor" => Kind::F64,
        "formulation" => Kind::Formulation,
        "cell" => Kind::Cell,
        "lr_schedule" => Kind::Schedule,
        _ => return None,
    })
}

/// The `&'static` spelling of a known key (axes keep it so they can be applied without lookups).
pub(crate) fn static_key(key: &str) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| *k == key)
}

/// Sets one field; `v` has been checked against the field's kind.
pub(crate) fn apply(c: &mut TrainConfig, key: &str, v: &Value) {
    // Integer values were range-checked against their field's width when parsed.
    let u32v = |v: &Value| match v {
        Value::Int(i) => u32::try_from(*i).expect("checked u32"),
        _ => unreachable!("{key} takes an integer"),
    };
    let f64v = |v: &Value| match v {
        Value::Float(f) => *f,
        _ => unreachable!("{key} takes a float"),
    };
    match key {
        "layers" => c.layers = u32v(v),
        "units" => c.units = u32v(v),
        "dropout" => c.dropout = f64v(v),
        "recurrent_dropout" => c.recurrent_dropout = f64v(v),
        "seq_len" => c.seq_len = u32v(v),
        "step" => c.step = u32v(v),
        "batch_size" => c.batch_size = u32v(v),
        "learning_rate" => c.learning_rate = f64v(v),
        "grad_clip" => c.grad_clip = f64v(v),
        "epochs" => c.epochs = u32v(v),
        "formulation" => match v {
            Value::Formulation(f) => c.formulation = *f,
            _ => unreachable!("formulation takes a formulation"),
        },
        "embedding" => c.embedding = u32v(v),
        "seed" => match v {
            Value::Int(i) => c.seed = *i,
            _ => unreachable!("seed takes an integer"),
        },
        "max_batches" => c.max_batches = u32v(v),
        "cell" => match v {
            Value::Cell(x) => c.cell = *x,
            _ => unreachable!("cell takes a cell"),
        },
        "lr_schedule" => match v {
            Value::Schedule(x) => c.lr_schedule = *x,
            _ => unreachable!("lr_schedule takes a schedule"),
        },
        "warmup_steps" => c.warmup_steps = u32v(v),
        "lr_min" => c.lr_min = f64v(v),
        "plateau_factor" => c.plateau_factor = f64v(v),
        "plateau_patience" => c.plateau_patience = u32v(v),
        _ => unreachable!("unknown key {key}"),
    }
}

/// Reads one field as a [`Value`] (the inverse of [`apply`]).
pub(crate) fn get(c: &TrainConfig, key: &str) -> Value {
    match key {
        "layers" => Value::Int(c.layers.into()),
        "units" => Value::Int(c.units.into()),
        "dropout" => Value::Float(c.dropout),
        "recurrent_dropout" => Value::Float(c.recurrent_dropout),
        "seq_len" => Value::Int(c.seq_len.into()),
        "step" => Value::Int(c.step.into()),
        "batch_size" => Value::Int(c.batch_size.into()),
        "learning_rate" => Value::Float(c.learning_rate),
        "grad_clip" => Value::Float(c.grad_clip),
        "epochs" => Value::Int(c.epochs.into()),
        "formulation" => Value::Formulation(c.formulation),
        "embedding" => Value::Int(c.embedding.into()),
        "seed" => Value::Int(c.seed),
        "max_batches" => Value::Int(c.max_batches.into()),
        "cell" => Value::Cell(c.cell),
        "lr_schedule" => Value::Schedule(c.lr_schedule),
        "warmup_steps" => Value::Int(c.warmup_steps.into()),
        "lr_min" => Value::Float(c.lr_min),
        "plateau_factor" => Value::Float(c.plateau_factor),
        "plateau_patience" => Value::Int(c.plateau_patience.into()),
        _ => unreachable!("unknown key {key}"),
    }
}

/// A document in any of the three formats, reduced to what a spec can hold. Integers are kept
/// apart from floats (so `layers = 2.0` can be refused) and wide enough for every u64.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Doc>),
    Map(BTreeMap<String, Doc>),
}

impl Doc {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Doc::Null => "null",
            Doc::Bool(_) => "a boolean",
            Doc::Int(_) => "an integer",
            Doc::Float(_) => "a float",
            Doc::Str(_) => "a string",
            Doc::List(_) => "a list",
            Doc::Map(_) => "a table",
        }
    }

    fn from_toml(v: toml::Value) -> Result<Doc, String> {
        Ok(match v {
            toml::Value::String(s) => Doc::Str(s),
            toml::Value::Integer(i) => Doc::Int(i.into()),
            toml::Value::Float(f) => Doc::Float(f),
            toml::Value::Boolean(b) => Doc::Bool(b),
            toml::Value::Datetime(d) => return Err(format!("datetime {d} is not allowed here")),
            toml::Value::Array(a) => Doc::List(
                a.into_iter()
                    .map(Doc::from_toml)
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => Doc::Map(
                t.into_iter()
                    .map(|(k, v)| Ok((k, Doc::from_toml(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    fn from_yaml(v: serde_norway::Value) -> Result<Doc, String> {
        use serde_norway::Value as Y;
        Ok(match v {
            Y::Null => Doc::Null,
            Y::Bool(b) => Doc::Bool(b),
            Y::Number(n) => number(n.as_i64(), n.as_u64(), n.as_f64()),
            Y::String(s) => Doc::Str(s),
            Y::Sequence(s) => Doc::List(
                s.into_iter()
                    .map(Doc::from_yaml)
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(m) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let Y::String(k) = k else {
                        return Err(format!("keys must be strings, found {k:?}"));
                    };
                    out.insert(k, Doc::from_yaml(v)?);
                }
                Doc::Map(out)
            }
            Y::Tagged(t) => return Err(format!("yaml tag {} is not allowed", t.tag)),
        })
    }

    fn from_json(v: serde_json::Value) -> Doc {
        use serde_json::Value as J;
        match v {
            J::Null => Doc::Null,
            J::Bool(b) => Doc::Bool(b),
            J::Number(n) => number(n.as_i64(), n.as_u64(), n.as_f64()),
            J::String(s) => Doc::Str(s),
            J::Array(a) => Doc::List(a.into_iter().map(Doc::from_json).collect()),
            J::Object(o) => Doc::Map(o.into_iter().map(|(k, v)| (k, Doc::from_json(v))).collect()),
        }
    }
}

/// A number from YAML or JSON: an integer if it is one, else a float.
fn number(i: Option<i64>, u: Option<u64>, f: Option<f64>) -> Doc {
    match (i, u) {
        (Some(i), _) => Doc::Int(i.into()),
        (None, Some(u)) => Doc::Int(u.into()),
        _ => Doc::Float(f.unwrap_or(f64::NAN)),
    }
}

/// 1-based line and column of a byte offset, for syntax errors.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn read_doc(text: &str, format: SpecFormat) -> Result<Doc, SpecError> {
    let syntax = |m: String| SpecError::new("spec", m);
    match format {
        SpecFormat::Toml => {
            let v: toml::Table = toml::from_str(text).map_err(|e| {
                let at = e.span().map(|s| line_col(text, s.start));
                let msg = e.message().trim_end().to_string();
                syntax(match at {
                    Some((l, c)) => format!("invalid toml at line {l}, column {c}: {msg}"),
                    None => format!("invalid toml: {msg}"),
                })
            })?;
            Doc::from_toml(toml::Value::Table(v)).map_err(syntax)
        }
        SpecFormat::Yaml => {
            let v: serde_norway::Value =
                serde_norway::from_str(text).map_err(|e| syntax(format!("invalid yaml: {e}")))?;
            Doc::from_yaml(v).map_err(syntax)
        }
        SpecFormat::Json => {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| syntax(format!("invalid json: {e}")))?;
            Ok(Doc::from_json(v))
        }
    }
}

/// Takes a table or says what was found instead.
pub(crate) fn table(doc: Doc, path: &str) -> Result<BTreeMap<String, Doc>, SpecError> {
    match doc {
        Doc::Map(m) => Ok(m),
        other => Err(SpecError::new(
            path,
            format!("expected a table, found {}", other.type_name()),
        )),
    }
}

/// An integer within `lo..=hi`.
pub(crate) fn int_in(doc: &Doc, path: &str, lo: i128, hi: i128) -> Result<i128, SpecError> {
    match doc {
        Doc::Int(i) if (lo..=hi).contains(i) => Ok(*i),
        Doc::Int(i) => Err(SpecError::new(
            path,
            format!("{i} is out of range {lo}..={hi}"),
        )),
        Doc::Float(f) => Err(SpecError::new(
            path,
            format!("expected an integer, found the float {f:?}"),
        )),
        other => Err(SpecError::new(
            path,
            format!("expected an integer, found {}", other.type_name()),
        )),
    }
}

/// Checks one value against a config field's type (ranges are the config's business).
fn value(k: Kind, doc: &Doc, path: &str) -> Result<Value, SpecError> {
    match k {
        Kind::U32 => Ok(Value::Int(int_in(doc, path, 0, u32::MAX.into())? as u64)),
        Kind::U64 => Ok(Value::Int(int_in(doc, path, 0, u64::MAX.into())? as u64)),
        Kind::F64 => match doc {
            Doc::Float(f) => Ok(Value::Float(*f)),
            // TOML and YAML write `1` for 1.0; an integer is a fine float.
            Doc::Int(i) => Ok(Value::Float(*i as f64)),
            other => Err(SpecError::new(
                path,
                format!("expected a number, found {}", other.type_name()),
            )),
        },
        Kind::Formulation => named(doc, path).map(Value::Formulation),
        Kind::Cell => named(doc, path).map(Value::Cell),
        Kind::Schedule => named(doc, path).map(Value::Schedule),
    }
}

/// A string-valued config field (`formulation`, `cell`, `lr_schedule`), parsed by its serde
/// spelling so the accepted names are the config's.
fn named<T: serde::de::DeserializeOwned>(doc: &Doc, path: &str) -> Result<T, SpecError> {
    match doc {
        Doc::Str(s) => serde_json::from_value(serde_json::Value::String(s.clone()))
            .map_err(|e| SpecError::new(path, e.to_string())),
        other => Err(SpecError::new(
            path,
            format!("expected a string, found {}", other.type_name()),
        )),
    }
}

/// A JSON value for config key `key`, type- and range-checked against `base` (the replay
/// benchmark's axes come as JSON).
pub(crate) fn json_value(
    base: &TrainConfig,
    key: &str,
    json: &serde_json::Value,
) -> Result<(&'static str, Value), SpecError> {
    let (key, k) = config_key("axes", key)?;
    let path = format!("axes.{key}");
    let v = value(k, &Doc::from_json(json.clone()), &path)?;
    in_range(base, key, &v, &path)?;
    Ok((key, v))
}

/// Checks `v` against the config's range for `key` by setting it on the (valid) base config.
fn in_range(base: &TrainConfig, key: &str, v: &Value, path: &str) -> Result<(), SpecError> {
    let mut c = base.clone();
    apply(&mut c, key, v);
    c.validate()
        .map_err(|e| SpecError::from_config(path.to_string(), e))
}

/// A config key of a `base`, `grid` or `random` table, or an error naming it.
fn config_key(section: &str, key: &str) -> Result<(&'static str, Kind), SpecError> {
    match (static_key(key), kind(key)) {
        (Some(k), Some(kind)) => Ok((k, kind)),
        _ => Err(SpecError::new(format!("{section}.{key}"), "unknown key")),
    }
}

/// Two numbers `[lo, hi]` of a distribution.
fn bounds(doc: &Doc, path: &str, dist: &str) -> Result<(Doc, Doc), SpecError> {
    match doc {
        Doc::List(l) if l.len() == 2 => Ok((l[0].clone(), l[1].clone())),
        _ => Err(SpecError::new(
            path,
            format!("{dist} takes a list [lo, hi]"),
        )),
    }
}

fn float_bounds(doc: &Doc, path: &str, dist: &str) -> Result<(f64, f64), SpecError> {
    let (lo, hi) = bounds(doc, path, dist)?;
    let num = |d: &Doc, which: &str| match d {
        Doc::Float(f) if f.is_finite() => Ok(*f),
        Doc::Int(i) => Ok(*i as f64),
        Doc::Float(f) => Err(SpecError::new(
            path,
            format!("{dist} {which} {f} is not a finite number"),
        )),
        other => Err(SpecError::new(
            path,
            format!(
                "{dist} {which} must be a number, found {}",
                other.type_name()
            ),
        )),
    };
    let (lo, hi) = (num(&lo, "lo")?, num(&hi, "hi")?);
    if lo > hi {
        return Err(SpecError::new(path, format!("{dist} lo {lo} > hi {hi}")));
    }
    Ok((lo, hi))
}

fn parse_dist(
    key: &'static str,
    k: Kind,
    doc: &Doc,
    path: &str,
    base: &TrainConfig,
) -> Result<Dist, SpecError> {
    const NAMES: &str = "uniform, log_uniform, int or choice";
    let Doc::Map(m) = doc else {
        return Err(SpecError::new(
            path,
            format!(
                "expected a distribution table ({NAMES}), found {}",
                doc.type_name()
            ),
        ));
    };
    let mut entries = m.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(SpecError::new(
            path,
            format!("a distribution has exactly one of {NAMES}"),
        ));
    };
    let is_float = k == Kind::F64;
    let is_int = matches!(k, Kind::U32 | Kind::U64);
    let dist = match name.as_str() {
        "uniform" | "log_uniform" if !is_float => {
            return Err(SpecError::new(
                path,
                format!("{name} needs a float field; {key} takes int or choice"),
            ));
        }
        "uniform" => {
            let (lo, hi) = float_bounds(arg, path, name)?;
            Dist::Uniform(lo, hi)
        }
        "log_uniform" => {
            let (lo, hi) = float_bounds(arg, path, name)?;
            if lo <= 0.0 {
                return Err(SpecError::new(
                    path,
                    format!("log_uniform lo {lo} is not positive"),
                ));
            }
            Dist::LogUniform(lo, hi)
        }
        "int" if !is_int => {
            return Err(SpecError::new(
                path,
                format!("int needs an integer field; {key} takes uniform, log_uniform or choice"),
            ));
        }
        "int" => {
            let (lo, hi) = bounds(arg, path, name)?;
            let (Value::Int(lo), Value::Int(hi)) = (value(k, &lo, path)?, value(k, &hi, path)?)
            else {
                unreachable!("an integer kind gives integers")
            };
            if lo > hi {
                return Err(SpecError::new(path, format!("int lo {lo} > hi {hi}")));
            }
            Dist::Int(lo, hi)
        }
        "choice" => {
            let Doc::List(items) = arg else {
                return Err(SpecError::new(path, "choice takes a list of values"));
            };
            if items.is_empty() {
                return Err(SpecError::new(path, "choice list is empty"));
            }
            Dist::Choice(checked_values(
                key,
                k,
                items,
                &format!("{path}.choice"),
                base,
            )?)
        }
        other => {
            return Err(SpecError::new(
                format!("{path}.{other}"),
                format!("unknown distribution (expected {NAMES})"),
            ));
        }
    };
    // The config ranges are intervals, so valid end points mean every draw is valid.
    let ends = match dist {
        Dist::Uniform(lo, hi) | Dist::LogUniform(lo, hi) => {
            vec![("lo", Value::Float(lo)), ("hi", Value::Float(hi))]
        }
        Dist::Int(lo, hi) => vec![("lo", Value::Int(lo)), ("hi", Value::Int(hi))],
        Dist::Choice(_) => vec![],
    };
    for (which, v) in &ends {
        in_range(base, key, v, path)
            .map_err(|e| SpecError::new(path, format!("{which}: {}", e.message)))?;
    }
    Ok(dist)
}

/// Type- and range-checks the items of a list of values for `key`; item `i` is `{path}[i]`.
fn checked_values(
    key: &'static str,
    k: Kind,
    items: &[Doc],
    path: &str,
    base: &TrainConfig,
) -> Result<Vec<Value>, SpecError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let v = value(k, item, &p)?;
            in_range(base, key, &v, &p)?;
            Ok(v)
        })
        .collect()
}

/// The `grid` section: axes in sorted key order (the map is sorted).
fn parse_grid(
    m: BTreeMap<String, Doc>,
    base: &TrainConfig,
) -> Result<Vec<(&'static str, Vec<Value>)>, SpecError> {
    let mut grid = Vec::with_capacity(m.len());
    for (key, doc) in m {
        let (key, k) = config_key("grid", &key)?;
        let path = format!("grid.{key}");
        let Doc::List(items) = doc else {
            return Err(SpecError::new(
                path,
                format!("expected a list of values, found {}", doc.type_name()),
            ));
        };
        if items.is_empty() {
            return Err(SpecError::new(path, "empty list"));
        }
        grid.push((key, checked_values(key, k, &items, &path, base)?));
    }
    Ok(grid)
}

/// The `random` section; `grid` is parsed first so an axis in both is refused.
fn parse_random(
    m: BTreeMap<String, Doc>,
    grid: &[(&'static str, Vec<Value>)],
    base: &TrainConfig,
    tpe: bool,
) -> Result<Random, SpecError> {
    let mut samples = None;
    let mut seed = 0;
    let mut axes = Vec::new();
    for (key, doc) in m {
        match (key.as_str(), &doc) {
            ("samples", _) => {
                samples = Some(int_in(&doc, "random.samples", 1, u64::MAX.into())? as u64)
            }
            // An integer seed seeds the sampler; a table is an axis of config seeds.
            ("seed", d) if !matches!(d, Doc::Map(_)) => {
                seed = int_in(&doc, "random.seed", 0, u64::MAX.into())? as u64
            }
            _ => {
                let (key, k) = config_key("random", &key)?;
                let path = format!("random.{key}");
                if grid.iter().any(|(g, _)| *g == key) {
                    return Err(SpecError::new(path, "axis is in both grid and random"));
                }
                axes.push((key, parse_dist(key, k, &doc, &path, base)?));
            }
        }
    }
    // TPE draws from the axes itself; `samples` only counts draws of a random search.
    let samples = match samples {
        Some(s) => s,
        None if tpe => 1,
        None => return Err(SpecError::new("random.samples", "missing")),
    };
    Ok(Random {
        samples,
        seed,
        axes,
    })
}

/// A string value, or an error saying what was found instead.
pub(crate) fn string(doc: Doc, path: &str) -> Result<String, SpecError> {
    match doc {
        Doc::Str(s) => Ok(s),
        other => Err(SpecError::new(
            path,
            format!("expected a string, found {}", other.type_name()),
        )),
    }
}

impl SweepSpec {
    /// Parses and validates a spec. Every value is type- and range-checked here, so a spec that
    /// parses fails to expand only on the size limit.
    pub fn parse(text: &str, format: SpecFormat) -> Result<SweepSpec, SpecError> {
        let top = table(read_doc(text, format)?, "spec")?;
        let mut name = None;
        let mut dataset = None;
        let mut priority = 0;
        let mut max_attempts = 3;
        let mut max_concurrent = None;
        let mut sections: [Option<BTreeMap<String, Doc>>; 3] = [None, None, None];
        let (mut search_doc, mut stopping_doc, mut budget_doc) = (None, None, None);
        let mut resources = crate::resources::Resources::default();
        for (key, doc) in top {
            match key.as_str() {
                "name" => {
                    let s = string(doc, "name")?;
                    if s.trim().is_empty() {
                        return Err(SpecError::new("name", "must not be empty"));
                    }
                    name = Some(s);
                }
                "dataset" => dataset = Some(string(doc, "dataset")?.parse::<DatasetRef>()?),
                "priority" => priority = int_in(&doc, "priority", -1000, 1000)? as i32,
                "max_attempts" => max_attempts = int_in(&doc, "max_attempts", 1, 100)? as i32,
                "max_concurrent" => {
                    max_concurrent = Some(int_in(&doc, "max_concurrent", 1, 100_000)? as u32)
                }
                "search" => search_doc = Some(doc),
                "stopping" => stopping_doc = Some(doc),
                "budget" => budget_doc = Some(doc),
                "resources" => resources = crate::resources::Resources::parse(doc)?,
                "base" => sections[0] = Some(table(doc, "base")?),
                "grid" => sections[1] = Some(table(doc, "grid")?),
                "random" => sections[2] = Some(table(doc, "random")?),
                _ => return Err(SpecError::new(key, "unknown key")),
            }
        }
        let dataset = dataset.ok_or_else(|| SpecError::new("dataset", "missing"))?;
        let [base_doc, grid_doc, random_doc] = sections;

        let mut base = TrainConfig::default();
        for (key, doc) in base_doc.unwrap_or_default() {
            let (key, k) = config_key("base", &key)?;
            apply(&mut base, key, &value(k, &doc, &format!("base.{key}"))?);
        }
        base.validate()
            .map_err(|e| SpecError::from_config(format!("base.{}", e.field), e))?;

        let grid = parse_grid(grid_doc.unwrap_or_default(), &base)?;
        let search = plan::parse_search(search_doc, random_doc.is_some())?;
        let tpe = matches!(search, Search::Tpe { .. });
        let random = random_doc
            .map(|m| parse_random(m, &grid, &base, tpe))
            .transpose()?;
        let epochs_axis = grid.iter().any(|(k, _)| *k == "epochs")
            || random
                .as_ref()
                .is_some_and(|r| r.axes.iter().any(|(k, _)| *k == "epochs"));
        let policy = plan::parse_policy(
            stopping_doc,
            budget_doc,
            (!epochs_axis).then_some(base.epochs),
        )?;
        let plan = Plan {
            search,
            policy,
            max_concurrent,
        };

        Ok(SweepSpec {
            name,
            dataset,
            priority,
            max_attempts,
            base,
            grid,
            random,
            plan,
            resources,
        })
    }

    /// What each run needs from the worker that trains it ([`crate::resources`]).
    pub fn resources(&self) -> &crate::resources::Resources {
        &self.resources
    }

    /// Search method, stopping rule, budget and concurrency ([`crate::plan`]).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The search space: grid axes as lists, random axes as distributions, in key order.
    pub(crate) fn search_axes(&self) -> Vec<(&'static str, Dist)> {
        let mut axes: Vec<(&'static str, Dist)> = self
            .grid
            .iter()
            .map(|(k, v)| (*k, Dist::Choice(v.clone())))
            .chain(self.random.iter().flat_map(|r| r.axes.iter().cloned()))
            .collect();
        axes.sort_by_key(|a| a.0);
        axes
    }

    /// The config every run starts from (defaults overlaid with `base`).
    pub fn base(&self) -> &TrainConfig {
        &self.base
    }

    /// Runs the spec expands to before duplicates are folded, saturating at `u128::MAX`;
    /// computed without materialising anything.
    pub fn run_count(&self) -> u128 {
        if let Search::Tpe { .. } = self.plan.search {
            return u128::from(self.plan.parallel());
        }
        let grid = self.grid_count();
        let samples = self.random.as_ref().map_or(1, |r| u128::from(r.samples));
        grid.saturating_mul(samples)
    }

    fn grid_count(&self) -> u128 {
        self.grid
            .iter()
            .fold(1u128, |n, (_, v)| n.saturating_mul(v.len() as u128))
    }

    /// Expands the spec into its runs (see the module doc for the order). Refuses, before
    /// materialising anything, a sweep of more than `opts.max_runs` runs.
    pub fn expand(&self, opts: &ExpandOptions) -> Result<Expansion, SpecError> {
        let total = self.run_count();
        if total > opts.max_runs as u128 {
            let field = if self.grid_count() > opts.max_runs as u128 {
                "grid"
            } else {
                "random.samples"
            };
            return Err(SpecError::new(
                field,
                format!(
                    "the sweep has {total} runs, more than the limit of {}",
                    opts.max_runs
                ),
            ));
        }

        if let Search::Tpe { seed, .. } = self.plan.search {
            // The first batch: random configs; later ones are proposed as results come in.
            let space = crate::search::Space::from_spec(self);
            let mut configs: Vec<TrainConfig> = Vec::new();
            for trial in 0..self.plan.parallel() {
                let seen: HashSet<String> = configs.iter().map(|c| c.canonical_json()).collect();
                match space.random_new(seed, trial, &|c| seen.contains(&c.canonical_json())) {
                    Some(c) => configs.push(c),
                    None => break,
                }
            }
            return Ok(Expansion {
                configs,
                duplicates: 0,
            });
        }
        let draws: Vec<Vec<Value>> = match &self.random {
            None => vec![vec![]],
            Some(r) => {
                let mut rng = ChaCha8Rng::seed_from_u64(r.seed);
                (0..r.samples)
                    .map(|_| r.axes.iter().map(|(_, d)| draw(&mut rng, d)).collect())
                    .collect()
            }
        };
        let random_keys: Vec<&str> = self
            .random
            .iter()
            .flat_map(|r| r.axes.iter().map(|(k, _)| *k))
            .collect();

        let mut seen = HashSet::new();
        let mut configs = Vec::new();
        let mut duplicates = 0;
        let mut index = vec![0usize; self.grid.len()];
        let mut run = 0usize;
        loop {
            let mut point = self.base.clone();
            for ((key, vals), &i) in self.grid.iter().zip(&index) {
                apply(&mut point, key, &vals[i]);
            }
            for draw in &draws {
                let mut c = point.clone();
                for (key, v) in random_keys.iter().zip(draw) {
                    apply(&mut c, key, v);
                }
                // Every value was range-checked at parse time; this guards a future config
                // rule that ties fields together.
                c.validate()
                    .map_err(|e| SpecError::new(format!("runs[{run}].{}", e.field), e.message))?;
                run += 1;
                if seen.insert(c.canonical_json()) {
                    configs.push(c);
                } else {
                    duplicates += 1;
                }
            }
            // Odometer step: the last axis varies fastest.
            let mut axis = self.grid.len();
            loop {
                if axis == 0 {
                    return Ok(Expansion {
                        configs,
                        duplicates,
                    });
                }
                axis -= 1;
                index[axis] += 1;
                if index[axis] < self.grid[axis].1.len() {
                    break;
                }
                index[axis] = 0;
            }
        }
    }
}

/// A float uniform in [0, 1) from the top 53 bits of one draw.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An integer uniform in lo..=hi, by rejection so every value is equally likely.
pub(crate) fn int_between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    let span = u128::from(hi - lo) + 1;
    if span > u128::from(u64::MAX) {
        return rng.next_u64();
    }
    let span = span as u64;
    let zone = u64::MAX - u64::MAX % span;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return lo + x % span;
        }
    }
}

pub(crate) fn draw(rng: &mut ChaCha8Rng, d: &Dist) -> Value {
    match d {
        // Clamped because lo + (hi - lo) * u can round just past hi.
        Dist::Uniform(lo, hi) => Value::Float((lo + (hi - lo) * unit(rng)).clamp(*lo, *hi)),
        Dist::LogUniform(lo, hi) => {
            let (a, b) = (lo.ln(), hi.ln());
            Value::Float((a + (b - a) * unit(rng)).exp().clamp(*lo, *hi))
        }
        Dist::Int(lo, hi) => Value::Int(int_between(rng, *lo, *hi)),
        Dist::Choice(vals) => vals[int_between(rng, 0, vals.len() as u64 - 1) as usize].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_and_references_follow_one_rule() {
        assert!(valid_dataset_name("poetry"));
        assert!(valid_dataset_name("wp-2017.v_1"));
        assert!(!valid_dataset_name(""));
        assert!(!valid_dataset_name("-x"));
        assert!(!valid_dataset_name("a@b"));
        assert!(!valid_dataset_name(&"a".repeat(101)));
        let r: DatasetRef = "wp-2017.v_1@3".parse().unwrap();
        assert_eq!((r.name.as_str(), r.version), ("wp-2017.v_1", Some(3)));
        for bad in ["poetry@x", "poetry@0", "-x", "a b", "x@1@2", "@3"] {
            assert!(bad.parse::<DatasetRef>().is_err(), "{bad}");
        }
    }
    use proptest::prelude::*;

    const TOML_SPEC: &str = r#"
name = "layers"
dataset = "poetry@3"
priority = 5
[base]
units = 32
epochs = 3
formulation = "seq"
[grid]
layers = [1, 2, 3]
learning_rate = [0.001, 0.003]
[random]
samples = 4
seed = 7
dropout = { uniform = [0.0, 0.5] }
grad_clip = { log_uniform = [1e-1, 1e1] }
batch_size = { int = [16, 64] }
formulation = { choice = ["keras", "seq"] }
"#;

    const YAML_SPEC: &str = r#"
name: layers
dataset: poetry@3
priority: 5
base: { units: 32, epochs: 3, formulation: seq }
grid:
  layers: [1, 2, 3]
  learning_rate: [0.001, 0.003]
random:
  samples: 4
  seed: 7
  dropout: { uniform: [0.0, 0.5] }
  grad_clip: { log_uniform: [1.0e-1, 1.0e+1] }
  batch_size: { int: [16, 64] }
  formulation: { choice: [keras, seq] }
"#;

    const JSON_SPEC: &str = r#"{
"name": "layers", "dataset": "poetry@3", "priority": 5,
"base": {"units": 32, "epochs": 3, "formulation": "seq"},
"grid": {"learning_rate": [0.001, 0.003], "layers": [1, 2, 3]},
"random": {"samples": 4, "seed": 7, "dropout": {"uniform": [0.0, 0.5]},
  "grad_clip": {"log_uniform": [0.1, 10]}, "batch_size": {"int": [16, 64]},
  "formulation": {"choice": ["keras", "seq"]}}
}"#;

    fn toml(s: &str) -> Result<SweepSpec, SpecError> {
        SweepSpec::parse(s, SpecFormat::Toml)
    }

    fn expand(s: &str) -> Result<Expansion, SpecError> {
        toml(s)?.expand(&ExpandOptions::default())
    }

    fn err(s: &str) -> SpecError {
        match toml(s).and_then(|s| s.expand(&ExpandOptions::default())) {
            Ok(_) => panic!("spec accepted:\n{s}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_config_key_has_a_kind_and_can_be_set() {
        for key in KEYS {
            let k = kind(key).unwrap_or_else(|| panic!("{key} has no kind"));
            let v = match k {
                Kind::U32 | Kind::U64 => Value::Int(7777),
                Kind::F64 => Value::Float(0.123),
                Kind::Formulation => Value::Formulation(Formulation::Seq),
                Kind::Cell => Value::Cell(Cell::Gru),
                Kind::Schedule => Value::Schedule(LrSchedule::Cosine),
            };
            let mut c = TrainConfig::default();
            apply(&mut c, key, &v);
            let before = serde_json::to_value(TrainConfig::default()).unwrap();
            let after = serde_json::to_value(&c).unwrap();
            assert_ne!(before[*key], after[*key], "setting {key} changed nothing");
        }
    }

    #[test]
    fn formats_give_the_same_expansion() {
        let t = SweepSpec::parse(TOML_SPEC, SpecFormat::Toml).unwrap();
        let y = SweepSpec::parse(YAML_SPEC, SpecFormat::Yaml).unwrap();
        let j = SweepSpec::parse(JSON_SPEC, SpecFormat::Json).unwrap();
        assert_eq!(t, y);
        assert_eq!(t, j);
        let opts = ExpandOptions::default();
        let e = t.expand(&opts).unwrap();
        assert_eq!(e.configs.len(), 3 * 2 * 4);
        assert_eq!(e, y.expand(&opts).unwrap());
        assert_eq!(e, j.expand(&opts).unwrap());
        assert_eq!(t.name.as_deref(), Some("layers"));
        assert_eq!(
            t.dataset,
            DatasetRef {
                name: "poetry".into(),
                version: Some(3)
            }
        );
        assert_eq!((t.priority, t.max_attempts), (5, 3));
    }

    #[test]
    fn format_names_and_detection() {
        assert_eq!("YML".parse::<SpecFormat>().unwrap(), SpecFormat::Yaml);
        assert_eq!("json".parse::<SpecFormat>().unwrap(), SpecFormat::Json);
        assert_eq!("toml".parse::<SpecFormat>().unwrap(), SpecFormat::Toml);
        assert!("xml".parse::<SpecFormat>().is_err());
        assert_eq!(SpecFormat::detect("sweeps/a.yaml"), SpecFormat::Yaml);
        assert_eq!(SpecFormat::detect("a.Yml"), SpecFormat::Yaml);
        assert_eq!(SpecFormat::detect("a.json"), SpecFormat::Json);
        assert_eq!(SpecFormat::detect("a.toml"), SpecFormat::Toml);
        assert_eq!(SpecFormat::detect("-"), SpecFormat::Toml);
        assert_eq!(SpecFormat::detect("dir.json/spec"), SpecFormat::Toml);
    }

    #[test]
    fn dataset_refs() {
        let d: DatasetRef = "poetry".parse().unwrap();
        assert_eq!((d.name.as_str(), d.version), ("poetry", None));
        let d: DatasetRef = "poetry@12".parse().unwrap();
        assert_eq!((d.name.as_str(), d.version), ("poetry", Some(12)));
        assert_eq!(d.to_string(), "poetry@12");
        for bad in [
            "",
            "@3",
            "poetry@",
            "poetry@0",
            "poetry@-1",
            "poetry@x",
            "a b",
            "a@1@2",
        ] {
            let e = bad.parse::<DatasetRef>().unwrap_err();
            assert_eq!(e.field, "dataset", "{bad}");
        }
    }

    #[test]
    fn base_alone_is_one_run_and_missing_keys_take_defaults() {
        let e = expand("dataset = \"poetry\"\n[base]\nunits = 32\n").unwrap();
        assert_eq!(
            e.configs,
            vec![TrainConfig {
                units: 32,
                ..Default::default()
            }]
        );
        assert_eq!(e.duplicates, 0);
        let e = expand("dataset = \"poetry\"\n").unwrap();
        assert_eq!(e.configs, vec![TrainConfig::default()]);
        let s = toml("dataset = \"poetry\"\n").unwrap();
        assert_eq!((s.priority, s.max_attempts, s.name.clone()), (0, 3, None));
    }

    #[test]
    fn grid_count_and_order_last_key_fastest() {
        let e = expand(
            "dataset = \"p\"\n[grid]\nunits = [8, 16]\nlayers = [1, 2, 3]\nformulation = [\"keras\", \"seq\"]\n",
        )
        .unwrap();
        // Sorted keys: formulation, layers, units; units varies fastest.
        let got: Vec<(Formulation, u32, u32)> = e
            .configs
            .iter()
            .map(|c| (c.formulation, c.layers, c.units))
            .collect();
        let mut want = vec![];
        for f in [Formulation::Keras, Formulation::Seq] {
            for l in [1, 2, 3] {
                for u in [8, 16] {
                    want.push((f, l, u));
                }
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn integers_are_floats_but_floats_are_not_integers() {
        let e = expand("dataset = \"p\"\n[grid]\nlearning_rate = [1, 2]\n").unwrap();
        let lr: Vec<f64> = e.configs.iter().map(|c| c.learning_rate).collect();
        assert_eq!(lr, vec![1.0, 2.0]);
        let e = err("dataset = \"p\"\n[grid]\nlayers = [1, 2.5]\n");
        assert_eq!(e.field, "grid.layers[1]");
        assert!(e.message.contains("expected an integer"), "{e}");
        let e = err("dataset = \"p\"\n[base]\nunits = 2.0\n");
        assert_eq!(e.field, "base.units");
    }

    #[test]
    fn random_draws_are_deterministic_in_range_and_seeded() {
        let a = expand(TOML_SPEC).unwrap();
        let b = expand(TOML_SPEC).unwrap();
        assert_eq!(a, b);
        for c in &a.configs {
            assert!((0.0..=0.5).contains(&c.dropout));
            assert!((0.1..=10.0).contains(&c.grad_clip));
            assert!((16..=64).contains(&c.batch_size));
            c.validate().unwrap();
        }
        // The same draws are crossed with every grid point.
        let draws = |i: usize| {
            a.configs[i * 4..i * 4 + 4]
                .iter()
                .map(|c| (c.dropout, c.batch_size, c.formulation))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(0), draws(5));
        let other = expand(&TOML_SPEC.replace("seed = 7", "seed = 8")).unwrap();
        assert_ne!(a, other);
        // Draws vary between samples.
        assert!(
            a.configs[..4]
                .windows(2)
                .any(|w| w[0].dropout != w[1].dropout)
        );
    }

    #[test]
    fn random_values_are_pinned() {
        // Stored specs must keep meaning the same runs: a change to the stream or to the
        // mappings from it shows up here.
        let e = expand(
            "dataset = \"p\"\n[random]\nsamples = 3\nseed = 1\n\
             units = { int = [1, 100] }\ndropout = { uniform = [0.0, 0.5] }\n\
             learning_rate = { log_uniform = [1e-4, 1e-2] }\n\
             formulation = { choice = [\"keras\", \"seq\"] }\n",
        )
        .unwrap();
        let got: Vec<String> = e
            .configs
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} {:?}",
                    c.units, c.dropout, c.learning_rate, c.formulation
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "67 0.20124283183242403 0.0015599847824822699 Seq",
                "11 0.14184529565186882 0.0008359423859250747 Keras",
                "84 0.43739053921794624 0.0009257938952225044 Keras",
            ]
        );
    }

    #[test]
    fn cells_and_schedules_can_be_swept_and_bad_names_are_refused() {
        let e = expand(&std::fs::read_to_string("../examples/sweeps/demo.toml").unwrap()).unwrap();
        assert_eq!(
            e.configs.iter().map(|c| c.cell).collect::<Vec<_>>(),
            vec![Cell::Lstm, Cell::Gru]
        );
        assert!(
            e.configs
                .iter()
                .all(|c| c.lr_schedule == LrSchedule::Cosine)
        );
        let e = expand(
            "dataset = \"p\"\n[grid]\nlr_schedule = [\"constant\", \"plateau\"]\nplateau_factor = [0.5]\n",
        )
        .unwrap();
        assert_eq!(e.configs[1].lr_schedule, LrSchedule::Plateau);
        let e = err("dataset = \"p\"\n[grid]\ncell = [\"lstm\", \"rnn\"]\n");
        assert!(e.to_string().contains("rnn"), "{e}");
    }

    #[test]
    fn config_seed_can_be_swept_in_grid_and_random() {
        // TOML integers stop at i64::MAX; JSON reaches every u64.
        let e = SweepSpec::parse(
            r#"{"dataset": "p", "grid": {"seed": [1, 2, 18446744073709551615]}}"#,
            SpecFormat::Json,
        )
        .unwrap()
        .expand(&ExpandOptions::default())
        .unwrap();
        assert_eq!(
            e.configs.iter().map(|c| c.seed).collect::<Vec<_>>(),
            vec![1, 2, u64::MAX]
        );
        let e = expand("dataset = \"p\"\n[random]\nsamples = 5\nseed = { int = [100, 200] }\n")
            .unwrap();
        assert!(e.configs.iter().all(|c| (100..=200).contains(&c.seed)));
        assert!(e.configs.iter().any(|c| c.seed != e.configs[0].seed));
    }

    #[test]
    fn duplicates_are_folded_in_first_occurrence_order() {
        let e = expand("dataset = \"p\"\n[grid]\nlayers = [2, 1, 2]\nunits = [4, 4]\n").unwrap();
        assert_eq!(
            e.configs.iter().map(|c| c.layers).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(e.duplicates, 4);
        // A random section without axes repeats each grid point `samples` times.
        let e =
            expand("dataset = \"p\"\n[grid]\nlayers = [1, 2]\n[random]\nsamples = 3\n").unwrap();
        assert_eq!((e.configs.len(), e.duplicates), (2, 4));
    }

    fn assert_error(spec: &str, field: &str, msg: &str) {
        let e = err(spec);
        assert_eq!(e.field, field, "{spec}\n-> {e}");
        assert!(e.message.contains(msg), "{spec}\n-> {e} (wanted {msg:?})");
        assert!(e.to_string().starts_with(&format!("{field}: ")));
    }

    #[test]
    #[rustfmt::skip] // One case per line reads as a table.
    fn errors_name_their_field() {
        assert_error("name = \"x\"\n", "dataset", "missing");
        assert_error("dataset = 3\n", "dataset", "expected a string, found an integer");
        assert_error("dataset = \"p\"\n[grid\n", "spec", "invalid toml at line 2");
        // Each body follows `dataset = "p"`.
        let cases: &[(&str, &str, &str)] = &[
            ("[grid]\nlayers = [1, 2, 0]", "grid.layers[2]", "0 is out of range 1..=16"),
            ("[random]\nsamples = 1\ndropout = { uniform = [0.6, 0.5] }", "random.dropout", "uniform lo 0.6 > hi 0.5"),
            ("[base]\nlayerz = 2", "base.layerz", "unknown key"),
            ("[grid]\nlayerz = [2]", "grid.layerz", "unknown key"),
            ("[random]\nsamples = 1\nlayerz = { int = [1, 2] }", "random.layerz", "unknown key"),
            ("colour = \"red\"", "colour", "unknown key"),
            ("name = \"\"", "name", "must not be empty"),
            ("priority = 1001", "priority", "out of range -1000..=1000"),
            ("priority = 1.5", "priority", "expected an integer, found the float 1.5"),
            ("max_attempts = 0", "max_attempts", "out of range 1..=100"),
            ("[base]\nlayers = 0", "base.layers", "out of range 1..=16"),
            ("[base]\ndropout = 1.0", "base.dropout", "out of range"),
            ("[base]\nlayers = \"3\"", "base.layers", "expected an integer, found a string"),
            ("[base]\nunits = -1", "base.units", "out of range 0..=4294967295"),
            ("[base]\nformulation = \"lstm\"", "base.formulation", "unknown variant"),
            ("[base]\nformulation = 1", "base.formulation", "expected a string"),
            ("[grid]\nlayers = []", "grid.layers", "empty list"),
            ("[grid]\nlayers = 3", "grid.layers", "expected a list"),
            ("[grid]\nlearning_rate = [0.1, nan]", "grid.learning_rate[1]", "not a finite number"),
            ("[grid]\nlearning_rate = [0.1, true]", "grid.learning_rate[1]", "expected a number, found a boolean"),
            ("[grid]\nlayers = [1]\n[random]\nsamples = 1\nlayers = { int = [1, 2] }", "random.layers", "both grid and random"),
            ("[random]\nsamples = 1\nlearning_rate = { log_uniform = [0.0, 0.1] }", "random.learning_rate", "log_uniform lo 0 is not positive"),
            ("[random]\nsamples = 1\ndropout = { uniform = [nan, 0.5] }", "random.dropout", "not a finite number"),
            ("[random]\nsamples = 1\ndropout = { uniform = [0.0, 1.0] }", "random.dropout", "hi: 1 is out of range [0, 1)"),
            ("[random]\nsamples = 1\nunits = { int = [0, 10] }", "random.units", "lo: 0 is out of range 1..=8192"),
            ("[random]\nsamples = 1\nunits = { int = [10, 5] }", "random.units", "int lo 10 > hi 5"),
            ("[random]\nsamples = 1\nunits = { int = [1, 5.5] }", "random.units", "expected an integer"),
            ("[random]\nsamples = 1\nunits = { uniform = [10, 50] }", "random.units", "needs a float field"),
            ("[random]\nsamples = 1\ndropout = { int = [0, 1] }", "random.dropout", "needs an integer field"),
            ("[random]\nsamples = 1\ndropout = { normal = [0, 1] }", "random.dropout.normal", "unknown distribution"),
            ("[random]\nsamples = 1\ndropout = { uniform = [0, 0.1], choice = [0.1] }", "random.dropout", "exactly one"),
            ("[random]\nsamples = 1\ndropout = 0.1", "random.dropout", "expected a distribution table"),
            ("[random]\nsamples = 1\ndropout = { uniform = [0.1] }", "random.dropout", "takes a list [lo, hi]"),
            ("[random]\nsamples = 1\nlayers = { choice = [2, 40] }", "random.layers.choice[1]", "40 is out of range 1..=16"),
            ("[random]\nsamples = 1\nlayers = { choice = [] }", "random.layers", "choice list is empty"),
            ("[random]\nseed = 1", "random.samples", "missing"),
            ("[random]\nsamples = 0", "random.samples", "out of range"),
            ("[random]\nsamples = 1\nseed = -1", "random.seed", "out of range"),
            ("grid = 3", "grid", "expected a table"),
        ];
        for (body, field, msg) in cases {
            assert_error(&format!("dataset = \"p\"\n{body}\n"), field, msg);
        }
    }

    #[test]
    fn yaml_and_json_numbers_follow_the_same_rules() {
        for (text, format) in [
            ("dataset: p\ngrid: { layers: [1.0] }\n", SpecFormat::Yaml),
            (
                r#"{"dataset": "p", "grid": {"layers": [1.0]}}"#,
                SpecFormat::Json,
            ),
        ] {
            let e = SweepSpec::parse(text, format).unwrap_err();
            assert_eq!(e.field, "grid.layers[0]", "{e}");
            assert!(e.message.contains("expected an integer"), "{e}");
        }
        for (text, format) in [
            (
                "dataset: p\ngrid: { dropout: [0, 0.5] }\n",
                SpecFormat::Yaml,
            ),
            (
                r#"{"dataset": "p", "grid": {"dropout": [0, 0.5]}}"#,
                SpecFormat::Json,
            ),
        ] {
            let e = SweepSpec::parse(text, format)
                .unwrap()
                .expand(&ExpandOptions::default());
            let dropouts: Vec<f64> = e.unwrap().configs.iter().map(|c| c.dropout).collect();
            assert_eq!(dropouts, vec![0.0, 0.5]);
        }
        let e = SweepSpec::parse("dataset: p\nbase: { dropout: .nan }\n", SpecFormat::Yaml);
        assert_eq!(e.unwrap_err().field, "base.dropout");
    }

    #[test]
    fn syntax_errors_in_yaml_and_json_are_spec_errors() {
        for (text, format) in [
            ("dataset: [", SpecFormat::Yaml),
            ("{\"dataset\": ", SpecFormat::Json),
            ("[1, 2]", SpecFormat::Json),
            ("? [a]\n: 1\n", SpecFormat::Yaml),
            ("", SpecFormat::Yaml),
        ] {
            let e = SweepSpec::parse(text, format).unwrap_err();
            assert_eq!(e.field, "spec", "{text:?} -> {e}");
        }
    }

    #[test]
    fn size_limit_refuses_huge_sweeps_without_materialising() {
        let axes: String = [
            "layers",
            "units",
            "seq_len",
            "step",
            "batch_size",
            "epochs",
            "embedding",
            "max_batches",
            "seed",
        ]
        .iter()
        .map(|k| format!("{k} = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"))
        .collect();
        let spec = toml(&format!("dataset = \"p\"\n[grid]\n{axes}")).unwrap();
        assert_eq!(spec.run_count(), 1_000_000_000);
        let start = std::time::Instant::now();
        let e = spec.expand(&ExpandOptions::default()).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
        assert_eq!(e.field, "grid");
        assert!(e.message.contains("1000000000 runs"), "{e}");

        let spec = toml(
            "dataset = \"p\"\n[grid]\nlayers = [1, 2]\n[random]\nsamples = 9223372036854775807\n",
        )
        .unwrap();
        let e = spec.expand(&ExpandOptions::default()).unwrap_err();
        assert_eq!(e.field, "random.samples");
        let spec = toml("dataset = \"p\"\n[grid]\nlayers = [1, 2, 3]\n").unwrap();
        assert_eq!(
            spec.expand(&ExpandOptions { max_runs: 3 })
                .unwrap()
                .configs
                .len(),
            3
        );
        assert!(spec.expand(&ExpandOptions { max_runs: 2 }).is_err());
    }

    /// A spec with `lens[i]` values on grid axis i (keys from KEYS' integer fields) and an
    /// optional random section.
    fn spec_text(lens: &[usize], dup: bool, samples: Option<u64>, seed: u64) -> String {
        let keys = ["layers", "units", "seq_len", "step", "epochs"];
        let mut s = String::from("dataset = \"p\"\n[grid]\n");
        for (k, n) in keys.iter().zip(lens) {
            // With `dup`, values repeat (1, 2, 1, 2, …) so some runs fold.
            let vals: Vec<String> = (0..*n)
                .map(|i| {
                    if dup {
                        (i % 2 + 1).to_string()
                    } else {
                        (i + 1).to_string()
                    }
                })
                .collect();
            s += &format!("{k} = [{}]\n", vals.join(", "));
        }
        if let Some(n) = samples {
            s += &format!(
                "[random]\nsamples = {n}\nseed = {seed}\nbatch_size = {{ int = [1, 3] }}\nformulation = {{ choice = [\"keras\", \"seq\"] }}\n"
            );
        }
        s
    }

    proptest! {
        #[test]
        fn count_determinism_and_dedupe(
            lens in proptest::collection::vec(1usize..4, 0..5),
            dup in any::<bool>(),
            samples in proptest::option::of(1u64..5),
            seed in 0..=i64::MAX as u64,
        ) {
            let spec = toml(&spec_text(&lens, dup, samples, seed)).unwrap();
            let raw: usize = lens.iter().product::<usize>() * samples.unwrap_or(1) as usize;
            prop_assert_eq!(spec.run_count(), raw as u128);
            let a = spec.expand(&ExpandOptions::default()).unwrap();
            let b = spec.expand(&ExpandOptions::default()).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.configs.len() + a.duplicates, raw);
            let unique: HashSet<String> = a.configs.iter().map(|c| c.canonical_json()).collect();
            prop_assert_eq!(unique.len(), a.configs.len());
            if !dup && samples.is_none() {
                prop_assert_eq!(a.duplicates, 0);
            }
        }
    }
}
