-- Wakes the clients waiting on a generation (GetGeneration, Generate with `wait`) on every
-- coordinator replica when it finishes, instead of each polling the database
-- (SECURITY.md, finding 8). The payload is the generation's id.

create function generations_notify_finished() returns trigger language plpgsql as $$
begin
    perform pg_notify('poet_generations_finished', new.id::text);
    return null;
end $$;

create trigger generations_finished_notify after update of state on generations
    for each row when (new.state in ('done', 'failed') and old.state is distinct from new.state)
    execute function generations_notify_finished();
