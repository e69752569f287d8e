//! The run filter language of `ListRuns` (`poet runs list --filter`, `GET /api/v1/runs?filter=`)
//! and the orders runs can be listed in. This module owns parsing (an error points at its
//! column), type checks, compiling to a SQL `WHERE` fragment in which every value and every
//! config or metrics key is a bound parameter, and keyset page tokens. No I/O: the coordinator
//! binds the [`Param`]s and runs the statement.
//!
//! # The language
//!
//! ```text
//! layers >= 2 and best_val_loss < 1.9 and formulation = 'seq'
//! state in ('succeeded', 'stopped') and not (dropout = 0 or sweep = 'baseline')
//! metrics.val_bpc < 1.4 and created_at >= '2026-12-01'
//! ```
//!
//! - **Fields.** Config keys, bare (`layers`) or dotted (`config.layers`); only the keys of
//!   [`TrainConfig`](crate::config::TrainConfig) are accepted, so a typo is an error rather
//!   than an empty answer. Run summaries: `best_val_loss` (= `min_val_loss`, the lowest
//!   validation loss of any epoch), `last_val_loss`, `last_train_loss`, `epochs_done`,
//!   `epochs_total`, `duration_s` (training seconds: the sum of the epochs' `duration_s`),
//!   `chars_per_sec` (the last epoch's). `metrics.<key>`: that key of the **last** epoch's
//!   `metrics_json` (a key that is not an identifier is quoted: `metrics."val bpc"`). Then
//!   `state`, `sweep` (an id, or a name in quotes; a run shared by several sweeps matches
//!   each), `dataset` (an id or a name), `worker` (an id, or a host name: any worker that held
//!   an attempt of the run), `tag` (= `tags`: one of the run's tags, a name in quotes, so
//!   `tags in ('a', 'b')` is a run with either), `id`, and `created_at`, `started_at`, `finished_at` compared with
//!   a time in quotes (`'2026-12-01'`, `'2026-12-01 10:00'`, RFC 3339; UTC unless it says).
//! - **Operators.** `= != < <= > >=` (`<>` is `!=`), `in (...)`, `not in (...)`, combined with
//!   `and`, `or`, `not` and parentheses; `not` binds tightest, then `and`, then `or`.
//!   Keywords are case-insensitive.
//! - **Literals.** Numbers (`2`, `-0.5`, `1e-3`), strings in single or double quotes (the
//!   quote itself is doubled inside: `'it''s'`), `true`, `false`.
//! - **Types.** A config or metrics value is compared as JSON, with a literal of its own JSON
//!   type: numbers numerically (`2 = 2.0`, exact, no float rounding), strings by the
//!   database's collation, booleans with `=` and `!=` only. A value of another type (say
//!   `formulation > 2`) does not match. Summary fields take numbers, times take strings,
//!   `state` takes one of [`STATES`].
//! - **Missing values.** A comparison on something a run does not have (no epoch yet, a key
//!   its config or last epoch lacks, a value of another type) is false, `!=` included, so
//!   `x not in (...)` is `x != ... and x != ...`. `not (...)` is true exactly where the inside
//!   is not, missing values included.
//!
//! # Orders
//!
//! `FIELD`, `FIELD:asc`, `FIELD:desc` or `-FIELD` (= `FIELD:desc`), over the same fields except
//! `sweep` and `worker` (a run can have several). Ascending is the default; runs without the
//! value come last in both directions, and ties are broken by run id in the sort's direction,
//! so every order is total and a page token (the last row's value and id) is stable. Two old
//! names stay: `created` (newest first, `-id`) and `duration` (`-duration_s`).
//!
//! # SQL
//!
//! The fragment refers to the runs table as `r`, and only to columns named in this file;
//! config and metrics keys, strings, numbers and times are all parameters (`$n::type`).
//! Equality on a config key is JSON containment (`r.config @> $n::jsonb`), which the GIN index
//! on `runs.config` serves; other comparisons on JSON guard the type first
//! (`jsonb_typeof(r.config -> $k::text) = 'number' and r.config -> $k::text < $v::jsonb`), so no
//! cast can fail on a value of another type.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::KEYS;

/// Longest filter accepted, in bytes. It bounds the parameters one query binds (Postgres
/// takes at most 65,535) and the size of the SQL.
pub const MAX_LEN: usize = 4096;

/// Deepest nesting of parentheses and `not`: the parser recurses on them.
const MAX_DEPTH: usize = 32;

/// Longest `metrics.<key>`, in bytes (metrics keys are chosen by workers, but never long).
const MAX_KEY_LEN: usize = 200;

/// The run states, as the database stores them (`runs.state`).
pub const STATES: &[&str] = &[
    "queued",
    "running",
    "paused",
    "stopped",
    "succeeded",
    "failed",
    "cancelled",
];

/// A filter or order that does not parse, with the column (1-based, in characters) where it
/// goes wrong. Displays as the message, then the input and a caret under that column.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError {
    /// 1-based column, in characters, of the first character that is wrong.
    pub column: usize,
    /// What is wrong there, lowercase.
    pub message: String,
    /// The input, control characters shown as spaces so the caret lines up.
    line: String,
}

impl FilterError {
    fn new(input: &str, column: usize, message: impl Into<String>) -> Self {
        FilterError {
            column,
            message: message.into(),
            line: input
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at column {}\n  {}\n  {}^",
            self.message,
            self.column,
            self.line,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

impl std::error::Error for FilterError {}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Ne => "!=",
            other => other.sql(),
        }
    }
}

/// A run summary column: a fixed column of `runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `runs.id`.
    Id,
    /// Epochs reported.
    EpochsDone,
    /// Epochs configured (after any extension).
    EpochsTotal,
    /// Lowest validation loss of any epoch.
    BestValLoss,
    /// The last epoch's validation loss.
    LastValLoss,
    /// The last epoch's training loss.
    LastTrainLoss,
    /// Sum of the epochs' training seconds.
    DurationS,
    /// The last epoch's characters per second.
    CharsPerSec,
}

impl Column {
    /// The column, qualified with the runs alias `r`.
    fn sql(self) -> &'static str {
        match self {
            Column::Id => "r.id",
            Column::EpochsDone => "r.epochs_done",
            Column::EpochsTotal => "r.epochs_total",
            Column::BestValLoss => "r.best_val_loss",
            Column::LastValLoss => "r.last_val_loss",
            Column::LastTrainLoss => "r.last_train_loss",
            Column::DurationS => "r.total_duration_s",
            Column::CharsPerSec => "r.last_chars_per_sec",
        }
    }

    fn integer(self) -> bool {
        matches!(self, Column::Id | Column::EpochsDone | Column::EpochsTotal)
    }
}

/// A time column of `runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// Submitted.
    CreatedAt,
    /// First leased.
    StartedAt,
    /// Finished (succeeded, failed, cancelled or stopped).
    FinishedAt,
}

impl TimeColumn {
    fn sql(self) -> &'static str {
        match self {
            TimeColumn::CreatedAt => "r.created_at",
            TimeColumn::StartedAt => "r.started_at",
            TimeColumn::FinishedAt => "r.finished_at",
        }
    }
}

/// What a comparison looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A key of the run's config (`runs.config`).
    Config(String),
    /// A key of the last epoch's metrics (`runs.last_metrics`).
    Metrics(String),
    /// A number column.
    Column(Column),
    /// A time column.
    Time(TimeColumn),
    /// The run's state.
    State,
    /// A sweep the run belongs to (`sweep_runs`), by id or name.
    Sweep,
    /// Its dataset, by id or name.
    Dataset,
    /// A worker that held an attempt of it, by id or host.
    Worker,
    /// One of its tags (`run_tags`), by name.
    Tag,
}

/// The names a filter may use besides config keys: the allow-list of fields.
const NAMED: &[(&str, Field)] = &[
    ("id", Field::Column(Column::Id)),
    ("epochs_done", Field::Column(Column::EpochsDone)),
    ("epochs_total", Field::Column(Column::EpochsTotal)),
    ("best_val_loss", Field::Column(Column::BestValLoss)),
    ("min_val_loss", Field::Column(Column::BestValLoss)),
    ("last_val_loss", Field::Column(Column::LastValLoss)),
    ("last_train_loss", Field::Column(Column::LastTrainLoss)),
    ("duration_s", Field::Column(Column::DurationS)),
    ("chars_per_sec", Field::Column(Column::CharsPerSec)),
    ("created_at", Field::Time(TimeColumn::CreatedAt)),
    ("started_at", Field::Time(TimeColumn::StartedAt)),
    ("finished_at", Field::Time(TimeColumn::FinishedAt)),
    ("state", Field::State),
    ("sweep", Field::Sweep),
    ("dataset", Field::Dataset),
    ("worker", Field::Worker),
    ("tag", Field::Tag),
    ("tags", Field::Tag),
];

impl Field {
    fn name(&self) -> String {
        match self {
            // Bare, as users write them; a key outside the allow-list (only built in code) dotted.
            Field::Config(k) if KEYS.contains(&k.as_str()) => k.clone(),
            Field::Config(k) => format!("config.{}", key_text(k)),
            Field::Metrics(k) => format!("metrics.{}", key_text(k)),
            other => NAMED
                .iter()
                .find(|(_, f)| f == other)
                .map(|(n, _)| n.to_string())
                .unwrap_or_default(),
        }
    }
}

/// A key as the language spells it: bare when it is an identifier, else double-quoted.
fn key_text(k: &str) -> String {
    let ident = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        k.to_string()
    } else {
        format!("\"{}\"", k.replace('"', "\"\""))
    }
}

/// The typed value a comparison binds.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `int8`.
    Int(i64),
    /// `float8`.
    Float(f64),
    /// `text`.
    Text(String),
    /// `timestamptz`.
    Time(DateTime<Utc>),
    /// `jsonb`.
    Json(Value),
}

impl Param {
    fn sql_type(&self) -> &'static str {
        match self {
            Param::Int(_) => "int8",
            Param::Float(_) => "float8",
            Param::Text(_) => "text",
            Param::Time(_) => "timestamptz",
            Param::Json(_) => "jsonb",
        }
    }
}

/// The parameters of one statement, in placeholder order: `$1` is the first pushed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params(Vec<Param>);

impl Params {
    /// Adds a parameter; returns its placeholder with its type (`$3::float8`).
    pub fn push(&mut self, p: Param) -> String {
        let ty = p.sql_type();
        self.0.push(p);
        format!("${}::{ty}", self.0.len())
    }

    /// The parameters, to bind in order.
    pub fn into_vec(self) -> Vec<Param> {
        self.0
    }

    /// How many so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One comparison, type-checked: `field op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: Op,
    /// With what, typed for the field: `Json` for config and metrics keys, `Int` or `Text`
    /// for sweeps, datasets and workers (id or name), `Time` for times, `Text` for the state,
    /// `Int` or `Float` for summary columns.
    pub value: Param,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every one holds.
    And(Vec<Expr>),
    /// At least one holds.
    Or(Vec<Expr>),
    /// The inside does not hold (missing values included).
    Not(Box<Expr>),
    /// A comparison.
    Cmp(Cmp),
}

impl Expr {
    /// `field = value` for a value already typed (e.g. a request's `sweep_id`).
    pub fn eq(field: Field, value: Param) -> Expr {
        Expr::Cmp(Cmp {
            field,
            op: Op::Eq,
            value,
        })
    }

    /// The SQL condition, pushing its values onto `params`.
    pub fn to_sql(&self, params: &mut Params) -> String {
        match self {
            Expr::And(xs) => join(xs, " and ", params),
            Expr::Or(xs) => match tag_names(xs) {
                // `tags in ('a', 'b')` (= `tag = 'a' or tag = 'b'`): one semi-join that the
                // index on run_tags (tag, run_id) serves. An `or` of one `exists` per tag
                // made Postgres scan every run against one hashed subplan per tag: 39.6 ms
                // at 10,000 runs, against 17.5 ms this way on the same loaded machine
                // (BENCHMARKS.md, "Tag filters").
                Some(names) => {
                    let names: Vec<String> = names
                        .into_iter()
                        .map(|n| params.push(Param::Text(n)))
                        .collect();
                    format!(
                        "exists (select 1 from run_tags t where t.run_id = r.id and t.tag in ({}))",
                        names.join(", ")
                    )
                }
                None => join(xs, " or ", params),
            },
            // Two-valued logic: a comparison on a missing value is null, which `not` would
            // keep null (no match); `is not true` makes it match, as documented.
            Expr::Not(x) => format!("(({}) is not true)", x.to_sql(params)),
            Expr::Cmp(c) => c.to_sql(params),
        }
    }
}

/// The names, when every one of `xs` is `tag = 'name'`.
fn tag_names(xs: &[Expr]) -> Option<Vec<String>> {
    xs.iter()
        .map(|x| match x {
            Expr::Cmp(Cmp {
                field: Field::Tag,
                op: Op::Eq,
                value: Param::Text(n),
            }) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn join(xs: &[Expr], sep: &str, params: &mut Params) -> String {
    let parts: Vec<String> = xs.iter().map(|x| x.to_sql(params)).collect();
    format!("({})", parts.join(sep))
}

impl Cmp {
    fn to_sql(&self, p: &mut Params) -> String {
        let op = self.op.sql();
        let negate = if self.op == Op::Ne { "not " } else { "" };
        match &self.field {
            Field::Column(c) => format!("{} {op} {}", c.sql(), p.push(self.value.clone())),
            Field::Time(t) => format!("{} {op} {}", t.sql(), p.push(self.value.clone())),
            Field::State => format!("r.state {op} {}", p.push(self.value.clone())),
            // A run belongs to sweeps and ran on workers through other tables: a semi-join,
            // on the id or on the name (the host, for a worker).
            Field::Sweep | Field::Worker => {
                let by_id = matches!(self.value, Param::Int(_));
                let sub = match (&self.field, by_id) {
                    (Field::Sweep, true) => {
                        "select 1 from sweep_runs sr where sr.run_id = r.id and sr.sweep_id"
                    }
                    (Field::Sweep, false) => {
                        "select 1 from sweep_runs sr join sweeps s on s.id = sr.sweep_id \
                         where sr.run_id = r.id and s.name"
                    }
                    (_, true) => {
                        "select 1 from run_attempts a where a.run_id = r.id and a.worker_id"
                    }
                    (_, false) => {
                        "select 1 from run_attempts a join workers w on w.id = a.worker_id \
                         where a.run_id = r.id and w.host"
                    }
                };
                format!("{negate}exists ({sub} = {})", p.push(self.value.clone()))
            }
            // The index on run_tags (tag, run_id) serves it.
            Field::Tag => format!(
                "{negate}exists (select 1 from run_tags t where t.run_id = r.id and t.tag = {})",
                p.push(self.value.clone())
            ),
            Field::Dataset => {
                let v = p.push(self.value.clone());
                if matches!(self.value, Param::Int(_)) {
                    format!("r.dataset_id {op} {v}")
                } else {
                    format!(
                        "r.dataset_id {negate}in (select d.id from datasets d where d.name = {v})"
                    )
                }
            }
            Field::Config(k) => json_cmp("r.config", k, self.op, &self.value, p),
            Field::Metrics(k) => json_cmp("r.last_metrics", k, self.op, &self.value, p),
        }
    }
}

/// A comparison on one key of a JSON column: containment for `=` (index-served), a
/// type-guarded JSON comparison otherwise.
fn json_cmp(col: &str, key: &str, op: Op, value: &Param, p: &mut Params) -> String {
    let Param::Json(v) = value else {
        unreachable!("config and metrics values are typed as JSON by the parser")
    };
    if op == Op::Eq {
        let mut obj = serde_json::Map::new();
        obj.insert(key.to_string(), v.clone());
        return format!("{col} @> {}", p.push(Param::Json(Value::Object(obj))));
    }
    let ty = match v {
        Value::Number(_) => "number",
        Value::String(_) => "string",
        _ => "boolean",
    };
    let k = p.push(Param::Text(key.to_string()));
    let v = p.push(value.clone());
    format!(
        "(jsonb_typeof({col} -> {k}) = '{ty}' and {col} -> {k} {} {v})",
        op.sql()
    )
}

/// A parsed filter: `None` (the empty filter) matches every run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter(pub Option<Expr>);

impl Filter {
    /// Parses and type-checks a filter; the empty or blank string matches every run.
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        if input.len() > MAX_LEN {
            return Err(FilterError::new(
                "",
                1,
                format!(
                    "the filter is {} bytes, more than the {MAX_LEN} allowed",
                    input.len()
                ),
            ));
        }
        let mut p = Parser::new(input)?;
        if p.peek().tok == Tok::End {
            return Ok(Filter(None));
        }
        let e = p.or()?;
        let t = p.peek();
        if t.tok != Tok::End {
            return Err(p.err(
                t.col,
                format!("expected 'and', 'or' or the end, found {}", t.tok),
            ));
        }
        Ok(Filter(Some(e)))
    }

    /// This filter and `e`.
    pub fn and(self, e: Expr) -> Filter {
        Filter(Some(match self.0 {
            None => e,
            Some(Expr::And(mut xs)) => {
                xs.push(e);
                Expr::And(xs)
            }
            Some(x) => Expr::And(vec![x, e]),
        }))
    }

    /// The SQL condition (`true` for the empty filter), pushing its values onto `params`.
    pub fn to_sql(&self, params: &mut Params) -> String {
        match &self.0 {
            None => "true".to_string(),
            Some(e) => e.to_sql(params),
        }
    }
}

/// A literal as written.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    /// The number's text (kept so integers stay exact as JSON) and its value.
    Number(String, f64),
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
    Dot,
    Colon,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) | Tok::Num(s) => write!(f, "'{s}'"),
            Tok::Str(s) => write!(f, "the string '{s}'"),
            Tok::Op(o) => write!(f, "'{}'", o.text()),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
            Tok::Dot => f.write_str("'.'"),
            Tok::Colon => f.write_str("':'"),
            Tok::End => f.write_str("the end"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column of its first character.
    col: usize,
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    let cs: Vec<char> = input.chars().collect();
    let err = |i: usize, m: String| FilterError::new(input, i + 1, m);
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let start = i;
        let next = cs.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' | ')' | ',' | '.' | ':' => {
                i += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ',' => Tok::Comma,
                    '.' => Tok::Dot,
                    _ => Tok::Colon,
                }
            }
            '=' => {
                i += if next == Some('=') { 2 } else { 1 };
                Tok::Op(Op::Eq)
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::Op(Op::Ne)
            }
            '!' => return Err(err(i, "'!' is only part of '!=' (negate with not)".into())),
            '<' => {
                let (op, n) = match next {
                    Some('=') => (Op::Le, 2),
                    Some('>') => (Op::Ne, 2),
                    _ => (Op::Lt, 1),
                };
                i += n;
                Tok::Op(op)
            }
            '>' => {
                let (op, n) = if next == Some('=') {
                    (Op::Ge, 2)
                } else {
                    (Op::Gt, 1)
                };
                i += n;
                Tok::Op(op)
            }
            '\'' | '"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match cs.get(j) {
                        None => return Err(err(i, "unterminated string".into())),
                        Some(&q) if q == c && cs.get(j + 1) == Some(&c) => {
                            s.push(c);
                            j += 2;
                        }
                        Some(&q) if q == c => break,
                        Some(&o) => {
                            s.push(o);
                            j += 1;
                        }
                    }
                }
                i = j + 1;
                Tok::Str(s)
            }
            '-' | '0'..='9' => {
                let mut j = i;
                if c == '-' {
                    j += 1;
                }
                let digits = |j: &mut usize| {
                    let s = *j;
                    while cs.get(*j).is_some_and(|c| c.is_ascii_digit()) {
                        *j += 1;
                    }
                    *j > s
                };
                if !digits(&mut j) {
                    return Err(err(i, "expected a number after '-'".into()));
                }
                if cs.get(j) == Some(&'.') && cs.get(j + 1).is_some_and(|c| c.is_ascii_digit()) {
                    j += 1;
                    digits(&mut j);
                }
                if matches!(cs.get(j), Some('e' | 'E')) {
                    let mut k = j + 1;
                    if matches!(cs.get(k), Some('+' | '-')) {
                        k += 1;
                    }
                    if digits(&mut k) {
                        j = k;
                    }
                }
                if cs
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    return Err(err(i, "malformed number".into()));
                }
                i = j;
                Tok::Num(cs[start..j].iter().collect())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while cs
                    .get(j)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    j += 1;
                }
                i = j;
                Tok::Ident(cs[start..j].iter().collect())
            }
            other => {
                return Err(err(
                    i,
                    format!("unexpected character '{}'", other.escape_debug()),
                ));
            }
        };
        out.push(Token {
            tok,
            col: start + 1,
        });
    }
    out.push(Token {
        tok: Tok::End,
        col: cs.len() + 1,
    });
    Ok(out)
}

struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, FilterError> {
        Ok(Parser {
            input,
            toks: lex(input)?,
            pos: 0,
            depth: 0,
        })
    }

    fn err(&self, col: usize, m: impl Into<String>) -> FilterError {
        FilterError::new(self.input, col, m)
    }

    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn deeper(&mut self, col: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                col,
                format!("nested more than {MAX_DEPTH} deep (parentheses and not)"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        self.chain("or", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        self.chain("and", Self::unary, Expr::And)
    }

    /// `item (kw item)*`, flat: a long chain does not nest (or recurse).
    fn chain(
        &mut self,
        kw: &str,
        item: fn(&mut Self) -> Result<Expr, FilterError>,
        make: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, FilterError> {
        let mut xs = vec![item(self)?];
        while self.keyword(kw) {
            self.next();
            xs.push(item(self)?);
        }
        Ok(joined(xs, make))
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            let t = self.next();
            self.deeper(t.col)?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek().tok == Tok::LParen {
            let open = self.next();
            self.deeper(open.col)?;
            let e = self.or()?;
            self.depth -= 1;
            let t = self.next();
            if t.tok != Tok::RParen {
                return Err(self.err(
                    t.col,
                    format!(
                        "expected ')' to close the '(' at column {}, found {}",
                        open.col, t.tok
                    ),
                ));
            }
            return Ok(e);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let (field, _) = self.field()?;
        let name = field.name();
        let negated = self.keyword("not");
        if negated {
            self.next();
            if !self.keyword("in") {
                let t = self.peek();
                return Err(self.err(
                    t.col,
                    format!("expected 'in' after '{name} not', found {}", t.tok),
                ));
            }
        }
        if self.keyword("in") {
            self.next();
            let t = self.next();
            if t.tok != Tok::LParen {
                return Err(self.err(t.col, format!("expected '(' after 'in', found {}", t.tok)));
            }
            let op = if negated { Op::Ne } else { Op::Eq };
            let mut xs = Vec::new();
            loop {
                let (lit, col) = self.literal("in (")?;
                xs.push(Expr::Cmp(self.check(&field, op, lit, col)?));
                let t = self.next();
                match t.tok {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    other => {
                        return Err(self.err(
                            t.col,
                            format!("expected ',' or ')' in the list, found {other}"),
                        ));
                    }
                }
            }
            return Ok(joined(xs, if negated { Expr::And } else { Expr::Or }));
        }
        let t = self.next();
        let Tok::Op(op) = t.tok else {
            return Err(self.err(
                t.col,
                format!(
                    "expected a comparison (= != < <= > >= in) after '{name}', found {}",
                    t.tok
                ),
            ));
        };
        let (lit, col) = self.literal(op.text())?;
        Ok(Expr::Cmp(self.check(&field, op, lit, col)?))
    }

    /// A field name; returns it and its column.
    fn field(&mut self) -> Result<(Field, usize), FilterError> {
        let t = self.next();
        let Tok::Ident(name) = t.tok else {
            return Err(self.err(t.col, format!("expected a field name, found {}", t.tok)));
        };
        if name == "config" || name == "metrics" {
            let dot = self.next();
            if dot.tok != Tok::Dot {
                return Err(self.err(
                    dot.col,
                    format!("expected '.' and a key after '{name}', found {}", dot.tok),
                ));
            }
            let k = self.next();
            let key = match k.tok {
                Tok::Ident(s) | Tok::Str(s) => s,
                other => {
                    return Err(self.err(
                        k.col,
                        format!("expected a key after '{name}.', found {other}"),
                    ));
                }
            };
            if name == "config" {
                if !KEYS.contains(&key.as_str()) {
                    return Err(self.err(
                        k.col,
                        format!(
                            "unknown config key '{key}' (config keys: {})",
                            KEYS.join(", ")
                        ),
                    ));
                }
                return Ok((Field::Config(key), t.col));
            }
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(self.err(k.col, format!("a metrics key has 1 to {MAX_KEY_LEN} bytes")));
            }
            return Ok((Field::Metrics(key), t.col));
        }
        if let Some((_, f)) = NAMED.iter().find(|(n, _)| *n == name) {
            return Ok((f.clone(), t.col));
        }
        if KEYS.contains(&name.as_str()) {
            return Ok((Field::Config(name), t.col));
        }
        Err(self.err(
            t.col,
            format!(
                "unknown field '{name}' (fields: config keys such as layers or config.units, \
                 {}, metrics.<key>)",
                NAMED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    fn literal(&mut self, after: &str) -> Result<(Literal, usize), FilterError> {
        let t = self.next();
        let lit = match t.tok {
            Tok::Num(s) => {
                let v: f64 = s.parse().expect("the lexer only passes numbers");
                if !v.is_finite() {
                    return Err(self.err(t.col, format!("{s} is out of range")));
                }
                Literal::Number(s, v)
            }
            Tok::Str(s) => Literal::Str(s),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Literal::Bool(false),
            other => {
                return Err(self.err(
                    t.col,
                    format!(
                        "expected a value (a number, a 'string', true or false) after '{after}', \
                         found {other}"
                    ),
                ));
            }
        };
        Ok((lit, t.col))
    }

    /// Types `lit` for `field` and `op`, or says why they do not go together.
    fn check(&self, field: &Field, op: Op, lit: Literal, col: usize) -> Result<Cmp, FilterError> {
        let name = field.name();
        let err = |m: String| Err(self.err(col, m));
        let equality = matches!(op, Op::Eq | Op::Ne);
        let value = match (field, lit) {
            (Field::Config(_) | Field::Metrics(_), lit) => match lit {
                Literal::Number(text, v) => Param::Json(Value::Number(json_number(&text, v))),
                Literal::Str(s) => Param::Json(Value::String(s)),
                Literal::Bool(b) if equality => Param::Json(Value::Bool(b)),
                Literal::Bool(_) => {
                    return err(format!(
                        "true and false compare with = and != only, not {}",
                        op.text()
                    ));
                }
            },
            (Field::Column(c), Literal::Number(text, v)) => match whole(&text) {
                Some(n) if c.integer() => Param::Int(n),
                _ => Param::Float(v),
            },
            (Field::Column(_), _) => {
                return err(format!("{name} is a number: compare it with a number"));
            }
            (Field::Time(_), Literal::Str(s)) => match parse_time(&s) {
                Some(t) => Param::Time(t),
                None => {
                    return err(format!(
                        "'{s}' is not a time (write '2026-12-01', '2026-12-01 10:00' or RFC 3339)"
                    ));
                }
            },
            (Field::Time(_), _) => {
                return err(format!(
                    "{name} is a time: compare it with a time in quotes, e.g. '2026-12-01'"
                ));
            }
            (Field::State, Literal::Str(s)) if equality => {
                if !STATES.contains(&s.as_str()) {
                    return err(format!(
                        "'{s}' is not a state (states: {})",
                        STATES.join(", ")
                    ));
                }
                Param::Text(s)
            }
            (Field::Sweep | Field::Dataset | Field::Worker, lit) if equality => match lit {
                Literal::Number(text, _) => match whole(&text) {
                    Some(n) => Param::Int(n),
                    None => return err(format!("{name} ids are whole numbers, not {text}")),
                },
                Literal::Str(s) => Param::Text(s),
                Literal::Bool(_) => {
                    return err(format!(
                        "{name} is an id or a name in quotes, not true or false"
                    ));
                }
            },
            (Field::Tag, Literal::Str(s)) if equality => Param::Text(s),
            (Field::Tag, _) if equality => {
                return err(format!("{name} is a name in quotes, e.g. 'baseline'"));
            }
            (Field::State, _) if equality => {
                return err(format!(
                    "state is a name in quotes, e.g. 'running' (states: {})",
                    STATES.join(", ")
                ));
            }
            _ => {
                return err(format!(
                    "{name} compares with =, != or in only, not {}",
                    op.text()
                ));
            }
        };
        Ok(Cmp {
            field: field.clone(),
            op,
            value,
        })
    }
}

/// `xs` under `make` (`Expr::And` or `Expr::Or`), or the one expression itself.
fn joined(mut xs: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if xs.len() == 1 {
        xs.pop().expect("one")
    } else {
        make(xs)
    }
}

/// The number as JSON: integers exactly (a 64-bit seed stays whole), others as floats.
fn json_number(text: &str, v: f64) -> serde_json::Number {
    text.parse::<i64>()
        .map(serde_json::Number::from)
        .or_else(|_| text.parse::<u64>().map(serde_json::Number::from))
        .ok()
        .or_else(|| serde_json::Number::from_f64(v))
        .expect("the parser refuses non-finite numbers")
}

/// The literal as a whole number, if it is written as one.
fn whole(text: &str) -> Option<i64> {
    text.parse().ok()
}

/// `2026-12-01`, `2026-12-01 10:00[:00]`, `2026-12-01T10:00[:00]` (UTC) or RFC 3339.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

/// What runs are sorted on.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// A number column.
    Column(Column),
    /// A time column.
    Time(TimeColumn),
    /// The state name.
    State,
    /// The dataset id.
    Dataset,
    /// A config key, in JSON order (numbers numerically, strings by collation).
    Config(String),
    /// A key of the last epoch's metrics, in JSON order.
    Metrics(String),
}

/// The SQL type of a sort key's value (what a page token carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortType {
    /// `int8`.
    Int,
    /// `float8`.
    Float,
    /// `text`.
    Text,
    /// `timestamptz`.
    Time,
    /// `jsonb`.
    Json,
}

impl SortType {
    /// The SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            SortType::Int => "int8",
            SortType::Float => "float8",
            SortType::Text => "text",
            SortType::Time => "timestamptz",
            SortType::Json => "jsonb",
        }
    }
}

/// An order of runs: a key and a direction, ties broken by id in the same direction, runs
/// without the value last.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// The sort key.
    pub key: SortKey,
    /// Largest first.
    pub desc: bool,
}

impl Order {
    /// Parses `FIELD`, `FIELD:asc`, `FIELD:desc`, `-FIELD`, or the old names `created` and
    /// `duration`; the empty string is `created` (newest first).
    pub fn parse(input: &str) -> Result<Order, FilterError> {
        let spec = input.trim();
        match spec {
            "" | "created" => {
                return Ok(Order {
                    key: SortKey::Column(Column::Id),
                    desc: true,
                });
            }
            "duration" => {
                return Ok(Order {
                    key: SortKey::Column(Column::DurationS),
                    desc: true,
                });
            }
            _ => {}
        }
        if input.len() > MAX_LEN {
            return Err(FilterError::new("", 1, "the order is too long"));
        }
        // `-FIELD`: the lexer would read '-' as a number's sign, so it lexes the spec with
        // that '-' blanked out (columns unchanged).
        let minus = spec.starts_with('-');
        let lexed = if minus {
            lex(&input.replacen('-', " ", 1))
        } else {
            lex(input)
        }
        .map_err(|e| FilterError::new(input, e.column, e.message))?;
        let mut p = Parser {
            input,
            toks: lexed,
            pos: 0,
            depth: 0,
        };
        let mut desc = minus;
        let (field, col) = p.field()?;
        let key = match field {
            Field::Column(c) => SortKey::Column(c),
            Field::Time(t) => SortKey::Time(t),
            Field::State => SortKey::State,
            Field::Dataset => SortKey::Dataset,
            Field::Config(k) => SortKey::Config(k),
            Field::Metrics(k) => SortKey::Metrics(k),
            Field::Sweep | Field::Worker | Field::Tag => {
                return Err(p.err(
                    col,
                    format!(
                        "runs cannot be ordered by {} (a run can have several)",
                        field.name()
                    ),
                ));
            }
        };
        if p.peek().tok == Tok::Colon {
            p.next();
            let t = p.next();
            match &t.tok {
                Tok::Ident(d) if !minus && d.eq_ignore_ascii_case("asc") => desc = false,
                Tok::Ident(d) if !minus && d.eq_ignore_ascii_case("desc") => desc = true,
                other => {
                    return Err(p.err(
                        t.col,
                        if minus {
                            "'-' already says descending: drop it or the ':' suffix".to_string()
                        } else {
                            format!("expected asc or desc after ':', found {other}")
                        },
                    ));
                }
            }
        }
        let t = p.peek();
        if t.tok != Tok::End {
            return Err(p.err(
                t.col,
                format!(
                    "expected the end of the order (FIELD, FIELD:asc, FIELD:desc or -FIELD), found {}",
                    t.tok
                ),
            ));
        }
        Ok(Order { key, desc })
    }

    /// The order as text that [`Order::parse`] reads back (`best_val_loss:asc`).
    pub fn canonical(&self) -> String {
        let field = match &self.key {
            SortKey::Column(c) => Field::Column(*c).name(),
            SortKey::Time(t) => Field::Time(*t).name(),
            SortKey::State => "state".into(),
            SortKey::Dataset => "dataset".into(),
            SortKey::Config(k) => Field::Config(k.clone()).name(),
            SortKey::Metrics(k) => Field::Metrics(k.clone()).name(),
        };
        format!("{field}:{}", if self.desc { "desc" } else { "asc" })
    }

    /// Whether a run can lack the sort value (`not null` columns cannot).
    fn nullable(&self) -> bool {
        !matches!(
            self.key,
            SortKey::Column(Column::Id | Column::EpochsDone | Column::EpochsTotal)
                | SortKey::Time(TimeColumn::CreatedAt)
                | SortKey::State
                | SortKey::Dataset
        )
    }

    /// The sort key's SQL expression (pushing a key parameter for config and metrics) and
    /// the type of its value.
    fn key_sql(&self, p: &mut Params) -> (String, SortType) {
        match &self.key {
            SortKey::Column(c) if c.integer() => (c.sql().to_string(), SortType::Int),
            SortKey::Column(c) => (c.sql().to_string(), SortType::Float),
            SortKey::Time(t) => (t.sql().to_string(), SortType::Time),
            SortKey::State => ("r.state".into(), SortType::Text),
            SortKey::Dataset => ("r.dataset_id".into(), SortType::Int),
            SortKey::Config(k) => (
                format!("(r.config -> {})", p.push(Param::Text(k.clone()))),
                SortType::Json,
            ),
            SortKey::Metrics(k) => (
                format!("(r.last_metrics -> {})", p.push(Param::Text(k.clone()))),
                SortType::Json,
            ),
        }
    }
}

/// A sort key's value in a page token: the last row's.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    /// The run has no value (SQL null): it sorts last.
    Null,
    /// An `int8`.
    Int(i64),
    /// A `float8` (NaN and infinities included: losses can diverge).
    Float(f64),
    /// A `text`.
    Text(String),
    /// A `timestamptz`.
    Time(DateTime<Utc>),
    /// A `jsonb` value (JSON `null` included, which is not SQL null).
    Json(Value),
}

/// Where the previous page ended: its last row's sort value and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The last row's sort value.
    pub value: SortValue,
    /// The last row's id.
    pub id: i64,
}

/// A statement's pieces for one page: `select ..., {sort_key} as sort_key from runs r where
/// {where_sql} order by {order_sql} limit ...`, with `params` bound in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The filter and, after a page token, the keyset condition.
    pub where_sql: String,
    /// The sort key for the select list, cast to [`Compiled::sort_type`].
    pub sort_key: String,
    /// The `order by` list.
    pub order_sql: String,
    /// The type `sort_key` is read as.
    pub sort_type: SortType,
    /// Parameters so far; the caller pushes its own (the limit) after them.
    pub params: Params,
}

/// Compiles `filter` under `order`, continuing after `after` (keyset: the sort value and id
/// of the previous page's last row).
pub fn compile(filter: &Filter, order: &Order, after: Option<&Cursor>) -> Compiled {
    let mut params = Params::default();
    let (key, sort_type) = order.key_sql(&mut params);
    let mut where_sql = filter.to_sql(&mut params);
    let dir = if order.desc { "desc" } else { "asc" };
    let cmp = if order.desc { "<" } else { ">" };
    let by_id = order.key == SortKey::Column(Column::Id);
    // A key that is never null is ordered without `nulls last` and paged without the null
    // branch, so that its index can serve both: `order by id desc nulls last` is a sort of
    // every matching row where `order by id desc` reads the primary key backwards.
    let nullable = order.nullable();
    if let Some(c) = after {
        let keyset = match c.value.param() {
            _ if by_id => format!("r.id {cmp} {}", params.push(Param::Int(c.id))),
            None => {
                let id = params.push(Param::Int(c.id));
                format!("({key} is null and r.id {cmp} {id})")
            }
            Some(v) => {
                let v = params.push(v);
                let id = params.push(Param::Int(c.id));
                if nullable {
                    format!("(({key}, r.id) {cmp} ({v}, {id}) or {key} is null)")
                } else {
                    format!("({key}, r.id) {cmp} ({v}, {id})")
                }
            }
        };
        where_sql = format!("{where_sql} and {keyset}");
    }
    let order_sql = if by_id {
        format!("r.id {dir}")
    } else if nullable {
        format!("{key} {dir} nulls last, r.id {dir}")
    } else {
        format!("{key} {dir}, r.id {dir}")
    };
    Compiled {
        where_sql,
        sort_key: format!("({key})::{}", sort_type.sql()),
        order_sql,
        sort_type,
        params,
    }
}

impl SortValue {
    fn param(&self) -> Option<Param> {
        Some(match self {
            SortValue::Null => return None,
            SortValue::Int(v) => Param::Int(*v),
            SortValue::Float(v) => Param::Float(*v),
            SortValue::Text(v) => Param::Text(v.clone()),
            SortValue::Time(v) => Param::Time(*v),
            SortValue::Json(v) => Param::Json(v.clone()),
        })
    }
}

/// A page token that is not one this query handed out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a token from a previous page of this query (same filter and order)")]
pub struct TokenError;

/// What a page token is tied to: the filter and order, so a token is refused by a different
/// query instead of silently paging through it.
fn fingerprint(filter: &Filter, order: &Order) -> String {
    let h = Sha256::digest(format!("{filter:?}\n{order:?}").as_bytes());
    hex::encode(&h[..8])
}

/// The opaque token for the page after `cursor`: base64url of a small JSON document (query
/// fingerprint, sort value, id). Not secret and not signed: a forged token only moves where
/// the page starts, and its value is type-checked and bound like any other.
pub fn encode_token(filter: &Filter, order: &Order, cursor: &Cursor) -> String {
    let v = match &cursor.value {
        SortValue::Null => Value::Array(vec![]),
        SortValue::Int(v) => serde_json::json!([v]),
        // As text: JSON has no NaN or infinity, and Rust's shortest form reads back exactly.
        SortValue::Float(v) => serde_json::json!([v.to_string()]),
        SortValue::Text(v) => serde_json::json!([v]),
        SortValue::Time(v) => serde_json::json!([v.to_rfc3339()]),
        SortValue::Json(v) => serde_json::json!([v]),
    };
    let doc = serde_json::json!({"q": fingerprint(filter, order), "v": v, "id": cursor.id});
    URL_SAFE_NO_PAD.encode(doc.to_string())
}

/// Reads a token back for the same filter and order.
pub fn decode_token(token: &str, filter: &Filter, order: &Order) -> Result<Cursor, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError)?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError)?;
    if doc["q"].as_str() != Some(fingerprint(filter, order).as_str()) {
        return Err(TokenError);
    }
    let id = doc["id"].as_i64().ok_or(TokenError)?;
    let v = doc["v"].as_array().ok_or(TokenError)?;
    let mut p = Params::default();
    let (_, ty) = order.key_sql(&mut p);
    let value = match (v.as_slice(), ty) {
        ([], _) => SortValue::Null,
        ([x], SortType::Int) => SortValue::Int(x.as_i64().ok_or(TokenError)?),
        ([x], SortType::Float) => {
            SortValue::Float(x.as_str().and_then(|s| s.parse().ok()).ok_or(TokenError)?)
        }
        ([x], SortType::Text) => SortValue::Text(x.as_str().ok_or(TokenError)?.to_string()),
        ([x], SortType::Time) => SortValue::Time(
            x.as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .ok_or(TokenError)?
                .with_timezone(&Utc),
        ),
        ([x], SortType::Json) => SortValue::Json(x.clone()),
        _ => return Err(TokenError),
    };
    Ok(Cursor { value, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(f: &str) -> (String, Vec<Param>) {
        let mut p = Params::default();
        let s = Filter::parse(f).unwrap().to_sql(&mut p);
        (s, p.into_vec())
    }

    fn err(f: &str) -> FilterError {
        Filter::parse(f).expect_err(f)
    }

    fn json(v: Value) -> Param {
        Param::Json(v)
    }

    #[test]
    fn the_issue_example_compiles_to_bound_parameters() {
        let (s, p) = sql("layers >= 2 and best_val_loss < 1.9 and formulation = 'seq'");
        assert_eq!(
            s,
            "((jsonb_typeof(r.config -> $1::text) = 'number' and r.config -> $1::text >= $2::jsonb) \
             and r.best_val_loss < $3::float8 and r.config @> $4::jsonb)"
        );
        assert_eq!(
            p,
            vec![
                Param::Text("layers".into()),
                json(serde_json::json!(2)),
                Param::Float(1.9),
                json(serde_json::json!({"formulation": "seq"})),
            ]
        );
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let f = Filter::parse("state = 'failed' or layers = 1 and not units = 8").unwrap();
        let Some(Expr::Or(xs)) = f.0 else {
            panic!("or at the top")
        };
        assert!(matches!(&xs[1], Expr::And(ys) if matches!(ys[1], Expr::Not(_))));
        let (s, _) = sql("not (layers = 1 or layers = 2) AND Not state = 'queued'");
        assert_eq!(
            s,
            "((((r.config @> $1::jsonb or r.config @> $2::jsonb)) is not true) and ((r.state = $3::text) is not true))"
        );
    }

    #[test]
    fn fields_resolve_to_fixed_sql_or_parameters() {
        for (f, want) in [
            ("config.units > 8", "r.config -> $1::text > $2::jsonb"),
            ("min_val_loss <= 2", "r.best_val_loss <= $1::float8"),
            ("last_val_loss < 2", "r.last_val_loss < $1::float8"),
            ("last_train_loss < 2", "r.last_train_loss < $1::float8"),
            ("epochs_done >= 3", "r.epochs_done >= $1::int8"),
            ("epochs_done >= 2.5", "r.epochs_done >= $1::float8"),
            ("duration_s > 60", "r.total_duration_s > $1::float8"),
            ("chars_per_sec > 1e4", "r.last_chars_per_sec > $1::float8"),
            ("id != 4", "r.id <> $1::int8"),
            (
                "created_at >= '2026-12-01'",
                "r.created_at >= $1::timestamptz",
            ),
            (
                "started_at < '2026-12-01 10:30'",
                "r.started_at < $1::timestamptz",
            ),
            (
                "finished_at <> '2026-12-01T10:30:00+02:00'",
                "r.finished_at <> $1::timestamptz",
            ),
            ("state != 'running'", "r.state <> $1::text"),
            (
                "sweep = 3",
                "exists (select 1 from sweep_runs sr where sr.run_id = r.id and sr.sweep_id = $1::int8)",
            ),
            (
                "sweep != 'base'",
                "not exists (select 1 from sweep_runs sr join sweeps s on s.id = sr.sweep_id where sr.run_id = r.id and s.name = $1::text)",
            ),
            ("dataset = 2", "r.dataset_id = $1::int8"),
            (
                "dataset != 'tiny'",
                "r.dataset_id not in (select d.id from datasets d where d.name = $1::text)",
            ),
            (
                "worker = 7",
                "exists (select 1 from run_attempts a where a.run_id = r.id and a.worker_id = $1::int8)",
            ),
            (
                "worker = 'gpu-1'",
                "exists (select 1 from run_attempts a join workers w on w.id = a.worker_id where a.run_id = r.id and w.host = $1::text)",
            ),
            (
                "tag = 'baseline'",
                "exists (select 1 from run_tags t where t.run_id = r.id and t.tag = $1::text)",
            ),
            (
                "tags != 'bad'",
                "not exists (select 1 from run_tags t where t.run_id = r.id and t.tag = $1::text)",
            ),
            ("metrics.val_bpc = 1.5", "r.last_metrics @> $1::jsonb"),
            (
                "metrics.\"val bpc\" < 1.5",
                "r.last_metrics -> $1::text < $2::jsonb",
            ),
        ] {
            let (s, _) = sql(f);
            assert!(s.contains(want), "{f}: {s}");
        }
    }

    #[test]
    fn values_are_typed_for_their_field() {
        let (_, p) = sql("created_at >= '2026-12-01T10:30:00+02:00'");
        assert_eq!(
            p,
            vec![Param::Time(
                "2026-12-01T08:30:00Z".parse::<DateTime<Utc>>().unwrap()
            )]
        );
        let (_, p) = sql("created_at >= '2026-12-01'");
        assert_eq!(p[0], Param::Time("2026-12-01T00:00:00Z".parse().unwrap()));
        // A 64-bit seed stays exact; floats stay floats; true/false are JSON booleans.
        let (_, p) = sql("seed = 18446744073709551615 and dropout = 0.25 and metrics.ok = TRUE");
        assert_eq!(
            p,
            vec![
                json(serde_json::json!({"seed": 18446744073709551615u64})),
                json(serde_json::json!({"dropout": 0.25})),
                json(serde_json::json!({"ok": true})),
            ]
        );
        let (_, p) = sql("formulation < \"say \"\"hi\"\"\" and learning_rate > -1e-3");
        assert_eq!(p[1], json(serde_json::json!("say \"hi\"")));
        assert_eq!(p[3], json(serde_json::json!(-0.001)));
        let (s, _) = sql("formulation >= 'k'");
        assert!(s.contains("= 'string' and"), "{s}");
    }

    #[test]
    fn in_lists_expand_and_not_in_is_every_inequality() {
        let (s, p) = sql("state in ('succeeded', \"stopped\")");
        assert_eq!(s, "(r.state = $1::text or r.state = $2::text)");
        assert_eq!(p.len(), 2);
        let (s, _) = sql("layers not in (1, 2)");
        assert!(s.starts_with("((jsonb_typeof"), "{s}");
        assert!(s.contains(" and (jsonb_typeof"), "{s}");
        let (s, _) = sql("sweep in (1)");
        assert!(s.starts_with("exists"), "{s}");
        // A list of tags is one semi-join on the tag index, not an `or` of one per tag.
        let (s, p) = sql("tags in ('baseline', 'keep')");
        assert_eq!(
            s,
            "exists (select 1 from run_tags t where t.run_id = r.id and t.tag in ($1::text, $2::text))"
        );
        assert_eq!(
            p,
            [Param::Text("baseline".into()), Param::Text("keep".into())]
        );
        let (s, _) = sql("tag = 'a' or layers = 2");
        assert!(s.starts_with("(exists") && s.contains(" or "), "{s}");
        let (s, _) = sql("tags not in ('a', 'b')");
        assert_eq!(s.matches("not exists").count(), 2, "{s}");
    }

    #[test]
    fn keys_and_values_never_reach_the_sql_text() {
        let evil = "x'); drop table runs; --";
        let f = format!(
            "metrics.\"{evil}\" = 'a''b\"c' or sweep = '{}'",
            evil.replace('\'', "''")
        );
        let (s, p) = sql(&f);
        assert!(!s.contains("drop") && !s.contains("a'b"), "{s}");
        assert!(
            p.contains(&json(serde_json::json!({evil: "a'b\"c"}))),
            "{p:?}"
        );
        assert!(p.contains(&Param::Text(evil.into())), "{p:?}");
        // Built directly (bypassing the config key allow-list), a config key is still bound.
        let e = Expr::Cmp(Cmp {
            field: Field::Config(evil.into()),
            op: Op::Gt,
            value: json(serde_json::json!(1)),
        });
        let mut params = Params::default();
        let s = e.to_sql(&mut params);
        assert!(!s.contains("drop"), "{s}");
        assert_eq!(params.into_vec()[0], Param::Text(evil.into()));
    }

    #[test]
    fn errors_point_at_the_column_with_a_caret() {
        let e = err("layers >= 2 and best_val_los < 1.9");
        assert_eq!(e.column, 17);
        assert!(e.message.starts_with("unknown field 'best_val_los'"), "{e}");
        let shown = e.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(lines[0].ends_with("at column 17"), "{shown}");
        assert_eq!(lines[1], "  layers >= 2 and best_val_los < 1.9");
        assert_eq!(lines[2], format!("  {}^", " ".repeat(16)));

        for (f, col, msg) in [
            ("layers >=", 10, "expected a value"),
            ("layers >= and", 11, "expected a value"),
            ("layers 2", 8, "expected a comparison"),
            ("layers", 7, "found the end"),
            (
                "(layers = 2",
                12,
                "expected ')' to close the '(' at column 1",
            ),
            (
                "layers = 2 units = 8",
                12,
                "expected 'and', 'or' or the end",
            ),
            ("formulation = 'seq", 15, "unterminated string"),
            ("config.layrs = 2", 8, "unknown config key 'layrs'"),
            ("config = 2", 8, "expected '.' and a key after 'config'"),
            ("state = 'done'", 9, "'done' is not a state"),
            ("state > 'a'", 9, "state compares with =, != or in only"),
            ("state = 2", 9, "state is a name in quotes"),
            ("best_val_loss < 'low'", 17, "best_val_loss is a number"),
            ("created_at > 5", 14, "created_at is a time"),
            ("created_at > 'yesterday'", 14, "'yesterday' is not a time"),
            ("sweep = 1.5", 9, "sweep ids are whole numbers"),
            ("sweep < 3", 9, "sweep compares with =, != or in only"),
            (
                "metrics.ok > true",
                14,
                "true and false compare with = and != only",
            ),
            ("layers = 2x", 10, "malformed number"),
            ("layers = -x", 10, "expected a number after '-'"),
            ("layers ! 2", 8, "'!' is only part of '!='"),
            ("layers = 2 ; drop", 12, "unexpected character ';'"),
            ("layers in 1", 11, "expected '(' after 'in'"),
            ("layers in (1 2)", 14, "expected ',' or ')'"),
            ("layers not 1", 12, "expected 'in' after 'layers not'"),
            ("metrics.\"\" = 1", 9, "a metrics key has 1 to 200 bytes"),
            ("1 = layers", 1, "expected a field name"),
            ("tag = 1", 7, "tag is a name in quotes"),
            ("tags > 'a'", 8, "tag compares with =, != or in only"),
            ("é = 1", 1, "unexpected character 'é'"),
        ] {
            let e = err(f);
            assert_eq!(e.column, col, "{f}: {e}");
            assert!(e.message.contains(msg), "{f}: {e}");
        }
        // Columns count characters, not bytes, and control characters keep the caret aligned.
        let e = err("metrics.\"é\" = 1 and\tx = 2");
        assert_eq!(e.column, 21, "{e}");
        assert!(e.to_string().contains("and x = 2"), "{e}");
    }

    #[test]
    fn limits_are_errors_not_crashes() {
        assert!(
            err(&"x".repeat(MAX_LEN + 1))
                .message
                .contains("more than the 4096 allowed")
        );
        let deep = format!("{}layers = 1{}", "(".repeat(40), ")".repeat(40));
        assert!(err(&deep).message.contains("nested more than 32 deep"));
        let nots = format!("{}layers = 1", "not ".repeat(40));
        assert!(err(&nots).message.contains("nested more than 32 deep"));
        // Long flat chains are fine: and/or lists do not nest.
        let chain = vec!["layers = 1"; 250].join(" or ");
        assert!(Filter::parse(&chain).is_ok());
    }

    #[test]
    fn blank_is_everything_and_and_extends() {
        assert_eq!(Filter::parse("  \n").unwrap(), Filter(None));
        let mut p = Params::default();
        assert_eq!(Filter::default().to_sql(&mut p), "true");
        let f = Filter::parse("layers = 1 and units = 8")
            .unwrap()
            .and(Expr::eq(Field::Sweep, Param::Int(3)));
        assert!(matches!(f.0, Some(Expr::And(ref xs)) if xs.len() == 3));
    }

    #[test]
    fn orders_parse_in_every_spelling() {
        let o = |s: &str| Order::parse(s).unwrap().canonical();
        assert_eq!(o(""), "id:desc");
        assert_eq!(o("created"), "id:desc");
        assert_eq!(o("duration"), "duration_s:desc");
        assert_eq!(o("best_val_loss"), "best_val_loss:asc");
        assert_eq!(o("-best_val_loss"), "best_val_loss:desc");
        assert_eq!(o(" - best_val_loss"), "best_val_loss:desc");
        assert_eq!(o("config.units:desc"), "units:desc");
        assert_eq!(o("units:ASC"), "units:asc");
        assert_eq!(o("metrics.\"val bpc\""), "metrics.\"val bpc\":asc");
        assert_eq!(o("created_at:desc"), "created_at:desc");
        assert_eq!(o("state"), "state:asc");
        for s in [o("-metrics.\"a\"\"b\""), o("dataset:desc")] {
            assert_eq!(o(&s), s, "canonical forms read back");
        }
        for (s, col, msg) in [
            ("loss", 1, "unknown field 'loss'"),
            ("-loss", 2, "unknown field 'loss'"),
            ("sweep", 1, "cannot be ordered by sweep"),
            ("units:up", 7, "expected asc or desc"),
            ("-units:asc", 8, "'-' already says descending"),
            ("units desc", 7, "expected the end of the order"),
        ] {
            let e = Order::parse(s).expect_err(s);
            assert_eq!(e.column, col, "{s}: {e}");
            assert!(e.message.contains(msg), "{s}: {e}");
        }
    }

    #[test]
    fn keyset_pages_continue_after_the_last_row_with_nulls_last() {
        let f = Filter::parse("layers = 2").unwrap();
        let asc = Order::parse("best_val_loss").unwrap();
        let c = compile(&f, &asc, None);
        assert_eq!(c.where_sql, "r.config @> $1::jsonb");
        assert_eq!(c.order_sql, "r.best_val_loss asc nulls last, r.id asc");
        assert_eq!(c.sort_key, "(r.best_val_loss)::float8");
        let after = Cursor {
            value: SortValue::Float(1.5),
            id: 9,
        };
        let c = compile(&f, &asc, Some(&after));
        assert_eq!(
            c.where_sql,
            "r.config @> $1::jsonb and ((r.best_val_loss, r.id) > ($2::float8, $3::int8) or r.best_val_loss is null)"
        );
        let c = compile(
            &f,
            &Order::parse("-config.units").unwrap(),
            Some(&Cursor {
                value: SortValue::Null,
                id: 9,
            }),
        );
        assert_eq!(
            c.where_sql,
            "r.config @> $2::jsonb and ((r.config -> $1::text) is null and r.id < $3::int8)"
        );
        assert_eq!(
            c.order_sql,
            "(r.config -> $1::text) desc nulls last, r.id desc"
        );
        assert_eq!(c.sort_type, SortType::Json);
        // Keys that are never null: no `nulls last`, no null branch (their indexes serve them).
        let at = |v| Cursor { value: v, id: 9 };
        let c = compile(
            &f,
            &Order::parse("created").unwrap(),
            Some(&at(SortValue::Int(9))),
        );
        assert_eq!(c.order_sql, "r.id desc");
        assert_eq!(c.where_sql, "r.config @> $1::jsonb and r.id < $2::int8");
        let o = Order::parse("-created_at").unwrap();
        let t = SortValue::Time("2026-12-01T00:00:00Z".parse().unwrap());
        let c = compile(&f, &o, Some(&at(t)));
        assert_eq!(c.order_sql, "r.created_at desc, r.id desc");
        assert_eq!(
            c.where_sql,
            "r.config @> $1::jsonb and (r.created_at, r.id) < ($2::timestamptz, $3::int8)"
        );
    }

    #[test]
    fn tokens_round_trip_and_are_tied_to_their_query() {
        let f = Filter::parse("layers = 2").unwrap();
        for (order, value) in [
            ("best_val_loss", SortValue::Float(1.234_567_890_123_456_7)),
            ("best_val_loss", SortValue::Float(f64::NAN)),
            ("-last_val_loss", SortValue::Float(f64::INFINITY)),
            ("epochs_done", SortValue::Int(7)),
            ("created", SortValue::Int(7)),
            ("state", SortValue::Text("it's".into())),
            (
                "created_at",
                SortValue::Time("2026-12-01T10:00:00.123456Z".parse().unwrap()),
            ),
            (
                "config.formulation",
                SortValue::Json(serde_json::json!("seq")),
            ),
            ("metrics.x", SortValue::Json(Value::Null)),
            ("metrics.x", SortValue::Null),
        ] {
            let o = Order::parse(order).unwrap();
            let c = Cursor { value, id: 42 };
            let t = encode_token(&f, &o, &c);
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{t}"
            );
            let back = decode_token(&t, &f, &o).unwrap();
            match (&back.value, &c.value) {
                (SortValue::Float(a), SortValue::Float(b)) if b.is_nan() => assert!(a.is_nan()),
                (a, b) => assert_eq!(a, b, "{order}"),
            }
            assert_eq!(back.id, 42);
            let other = Filter::parse("layers = 3").unwrap();
            assert_eq!(decode_token(&t, &other, &o), Err(TokenError));
            let o2 = Order::parse("-units").unwrap();
            assert_eq!(decode_token(&t, &f, &o2), Err(TokenError));
        }
        let o = Order::parse("best_val_loss").unwrap();
        for bad in ["", "50", "!!", &URL_SAFE_NO_PAD.encode("{\"q\": 1}")] {
            assert_eq!(decode_token(bad, &f, &o), Err(TokenError), "{bad}");
        }
        // A token whose value has the wrong type for the order is refused too.
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"q": fingerprint(&f, &o), "v": ["not a number"], "id": 1})
                .to_string(),
        );
        assert_eq!(decode_token(&forged, &f, &o), Err(TokenError));
    }

    #[test]
    fn every_named_field_has_a_name_and_parses() {
        for (n, f) in NAMED {
            let expr = match f {
                Field::Time(_) => format!("{n} > '2026-01-01'"),
                Field::State => format!("{n} = 'queued'"),
                Field::Tag => format!("{n} = 'baseline'"),
                _ => format!("{n} = 1"),
            };
            Filter::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            if *n != "min_val_loss" && *n != "tags" {
                assert_eq!(&f.name(), n);
            }
        }
        for k in KEYS {
            Filter::parse(&format!("{k} = 1 and config.{k} != 'x'")).unwrap();
        }
    }
}
