-- Tags and notes on runs and sweeps (issue 19): `poet runs tag 12 baseline`,
-- `poet runs note 12 "..."`, the same for sweeps, and the web API's POST/DELETE under
-- `/api/v1/{runs,sweeps}/{id}/tags`. Each row keeps who set it (the caller's issued-token
-- name, or its role for a static token) and when. Tags are a set per run or sweep (tagging
-- twice keeps the first author and time); notes only accumulate.

create table run_tags (
    run_id     bigint      not null references runs (id) on delete cascade,
    tag        text        not null check (length(tag) between 1 and 100),
    author     text        not null,
    created_at timestamptz not null default now(),
    primary key (run_id, tag)
);

-- `tag = 'baseline'` in a run filter is a semi-join from runs by tag: this index serves it
-- (the primary key serves the reverse, a run's tags).
create index run_tags_by_tag on run_tags (tag, run_id);

create table sweep_tags (
    sweep_id   bigint      not null references sweeps (id) on delete cascade,
    tag        text        not null check (length(tag) between 1 and 100),
    author     text        not null,
    created_at timestamptz not null default now(),
    primary key (sweep_id, tag)
);

create table run_notes (
    id         bigserial   primary key,
    run_id     bigint      not null references runs (id) on delete cascade,
    text       text        not null check (length(text) between 1 and 10000),
    author     text        not null,
    created_at timestamptz not null default now()
);

create index run_notes_by_run on run_notes (run_id, id);

create table sweep_notes (
    id         bigserial   primary key,
    sweep_id   bigint      not null references sweeps (id) on delete cascade,
    text       text        not null check (length(text) between 1 and 10000),
    author     text        not null,
    created_at timestamptz not null default now()
);

create index sweep_notes_by_sweep on sweep_notes (sweep_id, id);
