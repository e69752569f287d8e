-- Datasets and their poems, written by `poet ingest` (crate poet-ingest).
--
-- A dataset version is immutable once `state = 'ready'`. Ingest writes a version in one
-- transaction (row inserted as 'loading', poems COPYed, then marked 'ready' and committed), so
-- an interrupted or aborted ingest leaves nothing behind; readers only ever select 'ready'.

create table datasets (
    id            bigserial primary key,
    name          text        not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    -- 1, 2, ... per name; ingest takes an advisory lock on the name to pick max+1
    version       int         not null check (version >= 1),
    -- sha256 (hex) over the sha256 of each framed poem, in export order (dedupe_key); with
    -- params_hash it identifies the version: the same dump with the same parameters is the
    -- same version. Empty while 'loading'.
    content_hash  text        not null,
    -- sha256 (hex) of the canonical JSON of `params`
    params_hash   text        not null,
    -- field mapping, tag, filter thresholds, shards and validation fraction given to ingest
    params        jsonb       not null,
    -- read, blank, malformed, docs, other_tag, empty, not_poems, duplicates, kept
    -- (poet_ingest::Counts) and input bytes
    counts        jsonb       not null default '{}',
    poems         bigint      not null default 0 check (poems >= 0),
    -- characters (Unicode scalar values) of the framed corpus
    chars         bigint      not null default 0 check (chars >= 0),
    -- every distinct character of the framed corpus, sorted by code point
    vocab         text        not null default '',
    shards        int         not null check (shards between 1 and 4096),
    -- poems whose shard is listed here form the validation split
    validation_shards int[]   not null,
    -- dedupe_key of one poem moved across the split so that neither side is empty when the
    -- dataset has >= 2 poems (tiny datasets, where hashing can put every poem on one side);
    -- null for any dataset of normal size
    split_flip    text collate "C",
    state         text        not null default 'loading' check (state in ('loading', 'ready')),
    created_at    timestamptz not null default now(),
    unique (name, version)
);

create unique index datasets_identity on datasets (name, content_hash, params_hash) where state = 'ready';

create table poems (
    dataset_id  bigint not null references datasets (id) on delete cascade,
    -- sha256 (hex) of the normalised text (lowercase, whitespace folded): one poem per key.
    -- Export order is dedupe_key order. Deferred so that a bulk load may briefly hold two
    -- copies of a poem; ingest deletes the copy with the larger source_id before commit.
    -- Collation "C": byte order, the same on every server (the content hash depends on it) and
    -- far cheaper to index than a locale collation.
    dedupe_key  text   collate "C" not null,
    -- stable hash of dedupe_key mod datasets.shards: re-ingest assigns the same shards
    shard       int    not null check (shard >= 0),
    source_id   text   not null,
    -- the framed text: '++++\n' || poem || '\n'
    text        text   not null,
    -- title, author, date, tags, lang of the post
    meta        jsonb  not null default '{}',
    primary key (dataset_id, dedupe_key) deferrable initially deferred
);

-- No index on shard: a split reads its side by scanning the dataset's primary key range
-- (validation is ~10%, training ~90% of it); an extra index cost ~35% of the bulk load.

-- Lines of a dump that could not be used, kept with the dataset for inspection.
create table ingest_rejects (
    dataset_id  bigint not null references datasets (id) on delete cascade,
    file        text   not null,
    line        bigint not null,
    reason      text   not null
);

create index ingest_rejects_by_dataset on ingest_rejects (dataset_id, file, line);
