-- Generation requests, their poems and plagiarism reports.

create table generations (
    id               bigserial primary key,
    run_id           bigint      not null references runs (id),
    checkpoint_id    bigint      not null references checkpoints (id),
    params           jsonb       not null,
    state            text        not null default 'queued'
                     check (state in ('queued', 'running', 'done', 'failed')),
    worker_id        bigint      references workers (id),
    lease_expires_at timestamptz,
    attempts         int         not null default 0,
    error            text,
    overall          jsonb,
    created_at       timestamptz not null default now(),
    finished_at      timestamptz
);
create index generations_claimable on generations (id) where state = 'queued';
create index generations_by_run on generations (run_id, id);

create table generated_poems (
    generation_id bigint           not null references generations (id) on delete cascade,
    idx           int              not null,
    temperature   double precision not null,
    text          text             not null,
    report        jsonb            not null,
    primary key (generation_id, idx)
);

create function generations_notify_queued() returns trigger language plpgsql as $$
begin
    if new.state = 'queued' then
        perform pg_notify('poet_generations_queued', new.id::text);
    end if;
    return null;
end $$;

create trigger generations_queued_notify after insert or update of state on generations
    for each row execute function generations_notify_queued();
