-- The claim's hot path (issue 20; BENCHMARKS.md, coordinator section, 2026-12-07).

-- The claim walks each sweep's queued runs through runs_queued_by_sweep (0013); nothing reads
-- runs_claimable (priority desc, id) any more. Left in place, it was the planner's pick for the
-- claim's per-sweep scans (its leading column follows the table's physical order, which the
-- planner prices as cheap heap reads), and such a scan filters every other sweep's queued runs
-- to find one sweep's: 0.3-0.5 ms a scan at 4 sweeps, 28 scans a claim. Every submit and
-- requeue also paid to keep it.
drop index runs_claimable;

-- The wake-up NOTIFY fires only for runs that become queued, but as a plain row trigger it was
-- called for every claim and every completion too (a PL/pgSQL call that returned at once):
-- about a tenth of a claim of 64 runs. A WHEN clause decides it before any call.
drop trigger runs_queued_notify on runs;
create trigger runs_queued_notify after insert or update of state on runs
    for each row when (new.state = 'queued') execute function runs_notify_queued();
