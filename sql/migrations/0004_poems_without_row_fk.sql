-- Poems lose their row-by-row foreign key to datasets.
--
-- Why: `poet ingest` COPYs a dataset's poems in the same transaction that inserted its
-- `datasets` row, and nothing else writes poems, so the per-row referential check never
-- finds anything wrong; it was about 20 % of Postgres's CPU in a bulk load (an SPI query and
-- a row lock on the dataset for each of ~225,000 poems in the 500 MB benchmark,
-- `./poet.sh bench-ingest`). Deleting a dataset still deletes its poems, by the trigger below.
alter table poems drop constraint poems_dataset_id_fkey;

create function datasets_delete_poems() returns trigger language plpgsql as $$
begin
    delete from poems where dataset_id = old.id;
    return old;
end $$;

create trigger datasets_delete_poems before delete on datasets
    for each row execute function datasets_delete_poems();
