-- Datasets and their poems, written by `poet ingest`.
--
-- A dataset version is immutable once `state = 'ready'`; ingest writes it in one
-- transaction, so an interrupted ingest leaves nothing visible (readers filter on state).

create table datasets (
    id            bigserial primary key,
    name          text        not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    version       int         not null check (version >= 1),
    -- sha256 (hex) of the framed corpus in (source_key) order; with params_hash it identifies
    -- the version: the same dump ingested twice with the same parameters is the same version.
    content_hash  text        not null,
    params_hash   text        not null,
    -- filter parameters, mapping and tag as given to ingest
    params        jsonb       not null,
    -- read, malformed, empty, not_poems, duplicates, kept, ... (see poet_ingest::Summary)
    counts        jsonb       not null,
    poems         bigint      not null check (poems >= 0),
    chars         bigint      not null check (chars >= 0),
    vocab         text        not null,
    shards        int         not null check (shards between 1 and 4096),
    validation_shards int[]   not null,
    state         text        not null default 'ready' check (state in ('loading', 'ready')),
    created_at    timestamptz not null default now(),
    unique (name, version)
);

create unique index datasets_identity on datasets (name, content_hash, params_hash);

create table poems (
    dataset_id  bigint not null references datasets (id) on delete cascade,
    -- deterministic order within the dataset (rank of dedupe_key), 0-based
    ord         int    not null,
    shard       int    not null check (shard >= 0),
    source_id   text   not null,
    -- sha256 of the normalised text used for dedupe (lowercase, whitespace folded)
    dedupe_key  text   not null,
    -- the framed text: '++++\n' || poem
    text        text   not null,
    meta        jsonb  not null default '{}',
    primary key (dataset_id, ord),
    unique (dataset_id, dedupe_key)
);

create index poems_by_shard on poems (dataset_id, shard, ord);

-- Lines of a dump that could not be used, kept with the dataset for inspection.
create table ingest_rejects (
    dataset_id  bigint not null references datasets (id) on delete cascade,
    file        text   not null,
    line        bigint not null,
    reason      text   not null
);

create index ingest_rejects_by_dataset on ingest_rejects (dataset_id);
