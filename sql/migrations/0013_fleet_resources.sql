-- A heterogeneous fleet (issue 20): workers announce what they are, runs carry what they need,
-- and the claim gives a run only to a worker that can hold it.

-- What a worker announced at Register. 0 = not announced (a worker from before this
-- migration): the claim then does not check that capacity.
alter table workers
    add column cpu_threads  int    not null default 0 check (cpu_threads >= 0),
    add column memory_bytes bigint not null default 0 check (memory_bytes >= 0),
    -- free-form `--label key=value` pairs, a JSON object of strings
    add column labels       jsonb  not null default '{}';

-- What a run needs, from its sweep's `[resources]` table and poet_core::resources' estimate.
alter table runs
    -- true: a GPU worker only; false: a CPU worker only; null: either
    add column need_gpu             boolean,
    add column min_gpu_memory_bytes bigint not null default 0,
    add column min_memory_bytes     bigint not null default 0,
    -- labels a worker must carry, a JSON object of strings
    add column need_labels          jsonb  not null default '{}',
    -- the memory its training takes (weights, Adam state, activations), on the GPU it trains
    -- on or in host memory on a CPU worker
    add column est_memory_bytes     bigint not null default 0;

-- Whether a worker with this capacity can hold a run with these needs. The one definition the
-- claim, the submit warning and `poet sweeps show` share. A single SQL expression, immutable:
-- the planner inlines it into the claim's WHERE, so it costs what the expression costs.
create function poet_run_fits(
    need_gpu boolean, min_gpu_memory_bytes bigint, min_memory_bytes bigint, need_labels jsonb,
    est_memory_bytes bigint,
    has_gpu boolean, gpu_memory_bytes bigint, memory_bytes bigint, labels jsonb
) returns boolean language sql immutable as $$
    select (need_gpu is null or need_gpu = has_gpu)
        and need_labels <@ labels
        and (memory_bytes = 0 or min_memory_bytes <= memory_bytes)
        and case when has_gpu
                 then gpu_memory_bytes = 0 or greatest(min_gpu_memory_bytes, est_memory_bytes) <= gpu_memory_bytes
                 else memory_bytes = 0 or est_memory_bytes <= memory_bytes end
$$;

-- The fair-share claim walks each sweep's queued runs in claim order (and counts each
-- sweep's running runs through 0006's runs_running_by_sweep).
create index runs_queued_by_sweep on runs (sweep_id, priority desc, id) where state = 'queued';
-- A worker's latest attempts, for the throughput of its last epoch (`poet workers`).
create index run_attempts_by_worker on run_attempts (worker_id, started_at desc);
