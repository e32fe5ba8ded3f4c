-- Security review #17, finding 6: the access log could be rewritten by the database owner.
--
-- The chain in access_log is an unkeyed SHA-256 (0004): whoever may UPDATE the table (the
-- owner) can edit a row and recompute every later hash, and the chain still verifies. The
-- key that stops this must not be in the database, so it is not used here: the workers
-- seal the chain's head at an interval (gateway/storage/access_log_seal.py) with an HMAC
-- under a key from their settings (access_log.keys), and write the seal to this table and
-- outside the database (the log, an anchor file, a webhook). `welfare-gateway access-log
-- verify` checks every seal's HMAC and that the chain still hashes to each sealed head.
-- Rows appended after the last seal are only as safe as the database until the next one.
create table access_log_seals (
    id          bigint generated always as identity primary key,
    sealed_at   timestamptz not null,
    last_id     bigint not null,   -- the newest access_log row the seal covers
    row_count   bigint not null,   -- rows with id <= last_id
    head_hash   bytea not null,    -- access_log.hash of row last_id
    key_id      text not null check (length(key_id) between 1 and 64),
    mac         bytea not null     -- HMAC-SHA256 (access_log_seal.seal_message)
);
create index access_log_seals_last on access_log_seals (last_id);
revoke all on access_log_seals from public;

-- The chain's head for the sealer, without giving it the log's rows (they name persons
-- and staff): the newest row's id and hash and the number of rows, from one snapshot.
create function access_log_head()
returns table (last_id bigint, row_count bigint, head_hash bytea)
language sql stable security definer set search_path = public as $$
    select h.id, c.n, h.hash
    from (select count(*) as n from access_log) c
    left join lateral (select id, hash from access_log order by id desc limit 1) h on true;
$$;
revoke all on function access_log_head() from public;

-- The sealer runs in the workers: it reads the seals and adds one; it can neither change
-- nor remove a seal, nor touch the log itself (no UPDATE, DELETE or TRUNCATE on either).
grant select, insert on access_log_seals to wg_worker;
grant execute on function access_log_head() to wg_worker;
-- wg_api: nothing on the seals.
