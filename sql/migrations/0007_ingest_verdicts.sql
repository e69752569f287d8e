-- Why each document was left out of a dataset (issue 16): besides the malformed lines,
-- `ingest_rejects` now holds every document the filter did not keep (empty or prose), with
-- the rule that decided and the measures it compared, so a user can see what was dropped
-- (`poet dataset rejects NAME@V [--reason R]`, the dashboard's datasets page).
--
-- kind = 'malformed': a line or hit that could not be used; `reason` says why in words.
-- kind = 'filtered':  a valid document judged empty or prose; `reason` is the verdict's name
--                     (`hard_wrapped`, `paragraphs`, ...: poet_ingest::filter::Verdict) and
--                     `measures` has `why` (the comparison in words) and the features.
alter table ingest_rejects
    add column kind      text  not null default 'malformed' check (kind in ('malformed', 'filtered')),
    -- the post's id, when the document has one
    add column source_id text,
    add column measures  jsonb;

-- Counts by reason (dashboard, `rejects --reason`) read one dataset's rows by reason.
create index ingest_rejects_by_reason on ingest_rejects (dataset_id, kind, reason);
