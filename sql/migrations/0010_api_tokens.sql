-- Tokens issued per identity (SECURITY.md, finding 4): `poet token create --role … --name …`.
-- Only the SHA-256 of a token is stored; coordinators keep the live ones in memory and re-read
-- them every two seconds, so revoking one takes effect within that.
create table api_tokens (
    id bigserial primary key,
    name text not null check (length(name) between 1 and 100),
    role text not null check (role in ('client', 'worker', 'viewer')),
    token_sha256 bytea not null unique check (length(token_sha256) = 32),
    created_at timestamptz not null default now(),
    created_by text not null default current_user,
    revoked_at timestamptz,
    last_used_at timestamptz
);

-- One live token per name; a revoked name may be issued again.
create unique index api_tokens_live_name on api_tokens (name) where revoked_at is null;
