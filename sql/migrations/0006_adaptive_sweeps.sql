-- Adaptive sweeps: runs a scheduler pauses at a rung or stops early, the decisions it takes,
-- sweeps that can be paused and capped, and runs forked from another run's checkpoint.

-- Two new states. `paused`: waiting at a rung for a promotion (not finished; resumable from
-- its checkpoint). `stopped`: stopped early, finished, history and checkpoints kept.
alter table runs drop constraint runs_state_check;
alter table runs add constraint runs_state_check
    check (state in ('queued', 'running', 'paused', 'stopped', 'succeeded', 'failed', 'cancelled'));
alter table runs drop constraint runs_check1;
alter table runs add constraint runs_finished_check
    check ((state in ('succeeded', 'failed', 'cancelled', 'stopped')) = (finished_at is not null));

-- A decision taken at a report and applied when the worker hands the run back: at epoch
-- `halt_at` the run moves to `halt_state` (its checkpoint of that epoch is stored first).
alter table runs add column halt_at int;
alter table runs add column halt_state text check (halt_state in ('paused', 'stopped'));
-- Why it was paused or stopped, in words (kept after the state changes).
alter table runs add column halt_reason text;
-- The last epoch the scheduler decided on: a retried report gets the stored answer.
alter table runs add column decided_epoch int not null default 0;
-- A fork: the run and checkpoint it was warm-started from.
alter table runs add column parent_run_id bigint references runs (id);
alter table runs add column parent_checkpoint_id bigint references checkpoints (id);
alter table runs add check ((halt_at is null) = (halt_state is null));

alter table sweeps add column paused boolean not null default false;
alter table sweeps add column max_concurrent int check (max_concurrent >= 1);
-- Whether its reports go through the scheduler (a stopping rule, a budget or TPE).
alter table sweeps add column adaptive boolean not null default false;
alter table sweeps add column finished_at timestamptz;

-- The claim counts a capped sweep's running runs.
create index runs_running_by_sweep on runs (sweep_id) where state = 'running';
-- The paused runs of a sweep, waiting for a promotion.
create index runs_paused_by_sweep on runs (sweep_id) where state = 'paused';

-- Every decision of a sweep's scheduler and every run-control action, in the order taken
-- (id order). Decisions are taken under the sweep row's lock, one at a time per sweep.
create table sweep_decisions (
    id         bigserial   primary key,
    sweep_id   bigint      not null references sweeps (id),
    run_id     bigint      references runs (id),
    epoch      int         not null default 0,
    kind       text        not null check (kind in ('stop', 'pause', 'promote', 'propose', 'budget',
                   'finish', 'retry', 'extend', 'fork', 'pause_sweep', 'resume_sweep', 'priority')),
    reason     text        not null,
    detail     jsonb       not null default '{}',
    created_at timestamptz not null default now()
);
create index sweep_decisions_by_sweep on sweep_decisions (sweep_id, id);
create index sweep_decisions_by_run on sweep_decisions (run_id, id) where run_id is not null;
