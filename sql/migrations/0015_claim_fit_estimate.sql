-- poet_run_fits (0013), the same answers, written so that the planner estimates it well.
--
-- The claim (coordinator/src/claim.sql) now checks every kind of worker in a batch in one
-- statement, so the capacities are columns, not constants the planner can look up in the
-- statistics. `need_labels <@ labels` between two columns gets the default estimate for
-- containment (0.1 %), which made the planner expect to read a sweep's whole queue to find a
-- few fitting runs: an estimated cost past jit_above_cost, and Postgres JIT-compiled the claim
-- (250 ms a statement instead of 20). Most runs need no labels, which the statistics do know:
-- `need_labels = '{}' or ...` is estimated from them (the bench's claim: 99,574 -> 32,201).
create or replace function poet_run_fits(
    need_gpu boolean, min_gpu_memory_bytes bigint, min_memory_bytes bigint, need_labels jsonb,
    est_memory_bytes bigint,
    has_gpu boolean, gpu_memory_bytes bigint, memory_bytes bigint, labels jsonb
) returns boolean language sql immutable as $$
    select (need_gpu is null or need_gpu = has_gpu)
        and (need_labels = '{}' or need_labels <@ labels)
        and (memory_bytes = 0 or min_memory_bytes <= memory_bytes)
        and case when has_gpu
                 then gpu_memory_bytes = 0 or greatest(min_gpu_memory_bytes, est_memory_bytes) <= gpu_memory_bytes
                 else memory_bytes = 0 or est_memory_bytes <= memory_bytes end
$$;
