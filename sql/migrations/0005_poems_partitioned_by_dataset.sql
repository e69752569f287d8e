-- Poems are partitioned by dataset: one table per dataset version, `poems_<dataset id>`.
--
-- Why: a dataset version is written once, by one `poet ingest` transaction, and then only
-- read. With its own table, ingest COPYs into a table that has no index yet and builds the
-- primary key afterwards, in one sorted pass, instead of inserting ~225,000 random sha256
-- keys into a b-tree one by one; the table is attached to `poems` just before commit. Under
-- `wal_level = minimal` (the private cluster's setting) a table created in the loading
-- transaction is not WAL-logged at all. Server-side COPY of the 500 MB benchmark's poems:
-- 1.40 s into an indexed table, 0.78 s + 0.15 s index build into a fresh one (replica WAL),
-- 0.53 s + 0.13 s under minimal WAL. Reads name a dataset id and touch only its partition;
-- deleting a dataset drops its table.
--
-- The key is no longer deferrable: ingest deletes the copies that lost to a smaller source id
-- before it builds the key, so a unique key never sees two copies.

alter table poems rename to poems_0004;
alter table poems_0004 rename constraint poems_pkey to poems_0004_pkey;

create table poems (
    dataset_id  bigint not null,
    -- sha256 (hex) of the normalised text (lowercase, whitespace folded): one poem per key.
    -- Export order is dedupe_key order. Collation "C": byte order, the same on every server
    -- (the content hash depends on it) and far cheaper to index than a locale collation.
    dedupe_key  text   collate "C" not null,
    -- stable hash of dedupe_key mod datasets.shards: re-ingest assigns the same shards
    shard       int    not null check (shard >= 0),
    source_id   text   not null,
    -- the framed text: '++++\n' || poem || '\n'
    text        text   not null,
    -- title, author, date, tags, lang of the post
    meta        jsonb  not null default '{}',
    primary key (dataset_id, dedupe_key)
) partition by list (dataset_id);

-- Creates dataset `ds`'s partition if it has none, for writers other than ingest (tests that
-- seed a dataset by hand). Ingest builds its partition itself: see `poet_ingest::ingest`.
create function poems_partition(ds bigint) returns void language plpgsql as $$
begin
    execute format('create table if not exists %I partition of poems for values in (%s)',
                   'poems_' || ds, ds);
end $$;

-- Existing poems move to their datasets' partitions.
do $$
declare
    ds bigint;
begin
    for ds in select distinct dataset_id from poems_0004 loop
        perform poems_partition(ds);
    end loop;
end $$;
insert into poems (dataset_id, dedupe_key, shard, source_id, text, meta)
    select dataset_id, dedupe_key, shard, source_id, text, meta from poems_0004;
drop table poems_0004;

-- Deleting a dataset drops its poems' table (replaces 0004's row-by-row delete).
create or replace function datasets_delete_poems() returns trigger language plpgsql as $$
begin
    execute format('drop table if exists %I', 'poems_' || old.id);
    return old;
end $$;
