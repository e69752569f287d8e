-- Run history that answers questions (issue 19): the summaries a `ListRuns` filter or order
-- reads without touching the epochs table, and the indexes its common queries use.

-- Training seconds (the sum of the epochs' duration_s), the last epoch's characters per
-- second and the last epoch's metrics: null until the first epoch, like last_val_loss. Kept
-- with the other summaries (epochs_done, best_val_loss, last_*) by the statements that store
-- or discard epochs (coordinator/src/queue.rs), in the same row update.
alter table runs add column total_duration_s double precision;
alter table runs add column last_chars_per_sec double precision;
alter table runs add column last_metrics jsonb;

update runs r set total_duration_s = s.total, last_chars_per_sec = s.chars_per_sec,
    last_metrics = s.metrics
from (
    select distinct on (run_id) run_id, sum(duration_s) over (partition by run_id) as total,
        chars_per_sec, metrics
    from epochs order by run_id, epoch desc
) s
where s.run_id = r.id;

-- Equality on a config key, `layers = 2`, is `config @> '{"layers": 2}'`: this index serves
-- it (and `in (...)`, a union of them). The config of a run never changes, so the index costs
-- nothing on the reporting path.
create index runs_config on runs using gin (config jsonb_path_ops);

-- Runs by best validation loss, ties by id: the default order of `--order-by best_val_loss`
-- and its page tokens, read straight off the index. The partial index it replaces could not
-- serve `order by best_val_loss nulls last, id`.
drop index runs_by_best;
create index runs_by_best on runs (best_val_loss, id);
