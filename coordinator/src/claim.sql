-- The claim (`Queue::claim_batch_for`): one statement for a batch of requests of any mix of
-- worker capacities. Binds: $1..$4 the requests (lease id, worker, lease expiry, now), $5 each
-- request's kind (1-based index into $6..$9), $6..$9 the kinds' capacities (GPU or not, GPU
-- memory, host memory, labels), $10 runs to leave alone (the ones a previous try lost to
-- another transaction's lock).
--
-- Why one statement for all kinds: a flush of 128 workers of 4 kinds cost 4 statements
-- (each planned, executed and committed on its own) where one kind cost one; the mixed fleet
-- ran at about 0.6x the plain one. See the queue section of BENCHMARKS.md.
--
-- The shape: every kind reads, from every sweep with queued runs that its first run says the
-- kind can hold, the sweep's first fitting runs with their turns (fair share); then the kinds
-- pick in turn (`pick`), each its own number of runs, skipping what an earlier kind took; the
-- picks are locked (`skip locked`) and leased. A pick another transaction holds is reported
-- back (`lost`) and the caller claims again without it.
--
-- Every array is read through a subquery (`(select $1::uuid[])`, `array(select unnest($10))`):
-- the planner then cannot see their lengths, so one generic plan is as good for any batch as
-- for any other, and the queue runs the claim with `plan_cache_mode = force_generic_plan`
-- (`Queue::new`; planning it takes about 2 ms, about half of what running it takes).
with recursive req as (
        select t.*, row_number() over (partition by t.kind order by t.n) as nth
        from unnest((select $1::uuid[]), (select $2::bigint[]), (select $3::timestamptz[]),
                (select $4::timestamptz[]), (select $5::int[]))
            with ordinality as t(lease_id, worker_id, expires_at, now, kind, n)
    ), kinds as materialized (
        -- `upto`: this kind's requests and those of the kinds that pick before it. Kind k's
        -- picks from a sweep are among the sweep's first `upto` runs that fit k, since the
        -- kinds before it took at most `upto - want` of those.
        select k.*, w.want, sum(w.want) over (order by k.kind) as upto
        from unnest((select $6::bool[]), (select $7::bigint[]), (select $8::bigint[]),
                (select $9::jsonb[]))
            with ordinality as k(gpu, gpu_memory_bytes, memory_bytes, labels, kind)
        join (select kind, count(*) as want from req group by kind) w on w.kind = k.kind
    ), queued_sweeps(sweep_id, first_id) as (
        -- The sweeps with queued runs and the first of each (in claim order): a skip scan of
        -- runs_queued_by_sweep, one probe a sweep. The order names the index's every column so
        -- that no other index can serve it (one on (sweep_id, id) would walk each sweep's
        -- finished runs, which vacuum never removes: 2-3 ms a probe after 15,000 claims).
        (select sweep_id, id from runs where state = 'queued'
         order by sweep_id, priority desc, id limit 1)
        union all
        select n.sweep_id, n.id from queued_sweeps q cross join lateral (
            select r.sweep_id, r.id from runs r where r.state = 'queued' and r.sweep_id > q.sweep_id
            order by r.sweep_id, r.priority desc, r.id limit 1) n
    ), open_sweeps as materialized (
        -- A paused sweep takes no turns. Its running count once a sweep (not once a row), and
        -- its first queued run's needs: a sweep's GPU, memory-minimum and label needs are its
        -- spec's, the same on all its runs, so a kind that cannot hold that run can hold none
        -- of the sweep's (estimates differ per run: checked in `turns`).
        select s.id, s.max_concurrent, f.need_gpu, f.min_gpu_memory_bytes, f.min_memory_bytes,
            f.need_labels,
            (select count(*) from runs r where r.sweep_id = s.id and r.state = 'running') as running
        from queued_sweeps q
        join sweeps s on s.id = q.sweep_id
        join runs f on f.id = q.first_id
        where not s.paused
    ), turns as materialized (
        -- Each sweep's first queued runs that a kind can hold, each with its turn: the sweep's
        -- running count plus its place among them. A capped sweep (max_concurrent) offers no
        -- turns beyond its room.
        select k.kind, f.id, f.priority, s.id as sweep_id, s.running + f.k as turn
        from kinds k cross join open_sweeps s cross join lateral (
            select x.id, x.priority, row_number() over (order by x.priority desc, x.id) as k
            from (
                select r.id, r.priority from runs r
                where r.sweep_id = s.id and r.state = 'queued' and r.id <> all(array(select unnest($10::bigint[])))
                    and poet_run_fits(r.need_gpu, r.min_gpu_memory_bytes, r.min_memory_bytes,
                        r.need_labels, r.est_memory_bytes,
                        k.gpu, k.gpu_memory_bytes, k.memory_bytes, k.labels)
                order by r.priority desc, r.id limit k.upto
            ) x
            -- No statement claims more (`CLAIM_CHUNK`); a bound the planner can see.
            limit {chunk}
        ) f
        where poet_run_fits(s.need_gpu, s.min_gpu_memory_bytes, s.min_memory_bytes,
                s.need_labels, 0, k.gpu, k.gpu_memory_bytes, k.memory_bytes, k.labels)
            and (s.max_concurrent is null or f.k <= s.max_concurrent - s.running)
    ), pick(kind, mine, taken) as (
        -- The kinds in turn: each takes its `want` best runs, highest priority first and at
        -- equal priority the lowest turn (so sweeps alternate), that no kind before it took.
        select 0::bigint, '{}'::bigint[], '{}'::bigint[]
        union all
        select k.kind, x.ids, p.taken || x.ids
        from pick p join kinds k on k.kind = p.kind + 1
        cross join lateral (select array(
            select t.id from turns t where t.kind = k.kind and t.id <> all(p.taken)
            order by t.priority desc, t.turn, t.id limit k.want) as ids
            -- `offset 0`: one evaluation for both uses of `x.ids` (else the planner copies it).
            offset 0) x
    ), picked as materialized (
        -- Materialized, so that `chosen` joins it to `turns` by a hash on (kind, id). Unnested
        -- inside that join, the array was unnested again for each row of `turns` (432 times
        -- in a claim of 64 runs, whose statement up to its picks took 3.1-3.7 ms, not 1.8).
        select p.kind, u.id, u.rank
        from pick p cross join unnest(p.mine) with ordinality as u(id, rank)
    ), chosen as (
        -- Each kind's picks in its order; a capped sweep's picks across kinds within its room.
        select c.kind, c.id, c.rank from (
            select p.kind, p.id, p.rank, s.max_concurrent - s.running as room,
                row_number() over (partition by t.sweep_id order by p.kind, p.rank) as nth
            from picked p
            join turns t on t.kind = p.kind and t.id = p.id
            join open_sweeps s on s.id = t.sweep_id
        ) c
        where c.room is null or c.nth <= c.room
    ), locked as (
        select r.id, c.kind, c.rank from runs r join chosen c on c.id = r.id
        where r.state = 'queued'
        for update of r skip locked
    ), lost as (
        select array(select id from chosen except select id from locked) as ids
    ), next as (
        -- A kind's i-th locked run goes to its i-th request.
        select l.id, l.kind, row_number() over (partition by l.kind order by l.rank) as nth
        from locked l
    ), claimed as (
        update runs r set state = 'running', attempt = r.attempt + 1, lease_id = req.lease_id,
            lease_owner = req.worker_id, lease_expires_at = req.expires_at,
            started_at = coalesce(r.started_at, req.now), cancel_requested = false
        from next join req on req.kind = next.kind and req.nth = next.nth
        where r.id = next.id
        returning req.n, r.id, r.attempt,
            -- An extended run trains to its new epochs_total.
            jsonb_set(r.config, '{epochs}', to_jsonb(r.epochs_total))::text as config, r.dataset_id,
            r.parent_checkpoint_id, r.sweep_id, req.lease_id, req.worker_id, req.now
    ), resume as (
        -- Its latest checkpoint, else (a fork not yet checkpointed) the one it was forked from.
        select claimed.id, ck.id as ck_id, coalesce(ck.epoch, 0) as epoch
        from claimed left join lateral (
            (select c.id, c.epoch from checkpoints c
             where c.run_id = claimed.id and c.live order by c.epoch desc limit 1)
            union all
            (select c.id, c.epoch from checkpoints c where c.id = claimed.parent_checkpoint_id)
            order by epoch desc limit 1
        ) ck on true
    ), discarded as (
        -- `any(array(..))` keeps this an index probe per run whatever the estimates.
        delete from epochs e using resume
        where e.run_id = any(array(select id from resume))
            and e.run_id = resume.id and e.epoch > resume.epoch
        returning e.run_id
    ), attempt as (
        insert into run_attempts (run_id, attempt, lease_id, worker_id, resumed_from_epoch, started_at)
        select claimed.id, claimed.attempt, claimed.lease_id, claimed.worker_id, resume.epoch, claimed.now
        from claimed join resume on resume.id = claimed.id
    )
    -- One row per claimed run, or one row of nulls when none was: `lost` rides on every row.
    select lost.ids as lost, c.* from lost left join (
        select claimed.n, claimed.id, claimed.attempt, claimed.config, claimed.dataset_id,
            claimed.lease_id, resume.ck_id,
            (select s.adaptive from sweeps s where s.id = claimed.sweep_id) as adaptive,
            (select count(*) from discarded d where d.run_id = claimed.id) as discarded
        from claimed join resume on resume.id = claimed.id
    ) c on true
