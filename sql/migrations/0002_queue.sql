-- Sweeps, runs (the job queue), attempts, epochs, checkpoints and workers.

create table workers (
    id               bigserial primary key,
    host             text        not null,
    device           text        not null,
    gpu_name         text        not null default '',
    gpu_memory_bytes bigint      not null default 0,
    version          text        not null default '',
    registered_at    timestamptz not null default now(),
    last_seen_at     timestamptz not null default now()
);

create table sweeps (
    id           bigserial primary key,
    name         text        not null,
    dataset_id   bigint      not null references datasets (id),
    spec         text        not null,
    spec_format  text        not null check (spec_format in ('toml', 'yaml', 'json')),
    priority     int         not null default 0,
    created_at   timestamptz not null default now()
);

create table runs (
    id               bigserial primary key,
    -- the sweep that created it; other sweeps may share it through sweep_runs
    sweep_id         bigint      not null references sweeps (id),
    dataset_id       bigint      not null references datasets (id),
    config           jsonb       not null,
    -- sha256 of the canonical config JSON (which names the dataset): one run per config
    config_hash      text        not null unique,
    state            text        not null default 'queued'
                     check (state in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority         int         not null default 0,
    attempt          int         not null default 0 check (attempt >= 0),
    max_attempts     int         not null default 3 check (max_attempts >= 1),
    -- attempts that ended in failure or lease expiry (a release on graceful shutdown is not one)
    failures         int         not null default 0 check (failures >= 0),
    epochs_total     int         not null check (epochs_total >= 1),
    -- the current lease: set exactly while running
    lease_id         uuid,
    lease_owner      bigint      references workers (id),
    lease_expires_at timestamptz,
    cancel_requested boolean     not null default false,
    epochs_done      int         not null default 0,
    best_val_loss    double precision,
    best_epoch       int,
    last_train_loss  double precision,
    last_val_loss    double precision,
    error            text,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    check ((state = 'running') = (lease_id is not null and lease_owner is not null and lease_expires_at is not null)),
    check ((state in ('succeeded', 'failed', 'cancelled')) = (finished_at is not null))
);

-- The claimable set, in claim order.
create index runs_claimable on runs (priority desc, id) where state = 'queued';
-- The reaper's scan.
create index runs_expiring on runs (lease_expires_at) where state = 'running';
create index runs_by_sweep on runs (sweep_id, id);
create index runs_by_state on runs (state, id);
create index runs_by_best on runs (best_val_loss) where best_val_loss is not null;

create table sweep_runs (
    sweep_id bigint not null references sweeps (id),
    run_id   bigint not null references runs (id),
    primary key (sweep_id, run_id)
);
create index sweep_runs_by_run on sweep_runs (run_id);

create table run_attempts (
    run_id             bigint      not null references runs (id),
    attempt            int         not null,
    lease_id           uuid        not null unique,
    worker_id          bigint      not null references workers (id),
    resumed_from_epoch int         not null default 0,
    started_at         timestamptz not null default now(),
    ended_at           timestamptz,
    outcome            text        check (outcome in ('completed', 'failed', 'lease_expired', 'released', 'cancelled')),
    detail             text,
    primary key (run_id, attempt)
);

create table epochs (
    run_id        bigint           not null references runs (id),
    epoch         int              not null check (epoch >= 1),
    attempt       int              not null,
    train_loss    double precision not null,
    val_loss      double precision not null,
    duration_s    double precision not null,
    chars_per_sec double precision not null,
    metrics       jsonb            not null default '{}',
    reported_at   timestamptz      not null default now(),
    primary key (run_id, epoch)
);

create table checkpoints (
    id          bigserial primary key,
    run_id      bigint           not null references runs (id),
    epoch       int              not null,
    attempt     int              not null,
    -- object-store key, derived by the coordinator (runs/<run>/epoch-<n>-<sha>.ckpt)
    key         text             not null unique,
    size        bigint           not null check (size >= 0),
    sha256      text             not null,
    val_loss    double precision not null,
    -- false once retention deleted the blob
    live        boolean          not null default true,
    created_at  timestamptz      not null default now(),
    unique (run_id, epoch)
);
create index checkpoints_live on checkpoints (run_id, epoch) where live;

-- Wakes long-polling LeaseRun calls on every coordinator replica.
create function runs_notify_queued() returns trigger language plpgsql as $$
begin
    if new.state = 'queued' then
        perform pg_notify('poet_runs_queued', new.id::text);
    end if;
    return null;
end $$;

create trigger runs_queued_notify after insert or update of state on runs
    for each row execute function runs_notify_queued();
