-- Workers prove who they are, and generation jobs are fenced like runs (SECURITY.md, finding 9).

-- sha256 (hex) of the random secret `Register` hands out with each worker id: every later call
-- that names the id must carry the secret, so a worker cannot speak for another (ids are
-- sequential, easy to guess). Null for workers registered before: they register anew.
alter table workers add column secret_sha256 text;

-- Every lease of a generation job mints a random id; completion must name the current one,
-- so a worker whose lease expired (and whose job went to another, or to itself again)
-- cannot complete it.
alter table generations add column lease_id uuid;
-- Jobs leased before this migration have no lease id to complete with: queue them again.
update generations set state = 'queued', worker_id = null, lease_expires_at = null
    where state = 'running';
alter table generations add constraint generations_lease_check
    check ((state = 'running') = (lease_id is not null));
