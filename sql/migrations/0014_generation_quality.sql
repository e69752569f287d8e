-- Every generation carries its quality report (issue 21).
--
-- generations.quality: poet_core::quality::Report as JSON, written with the poems by the
-- fenced completion: the poems' real-word share, mean line length, lines per stanza, stanzas
-- per poem and repeated lines, the corpus's figures for the same measures, and the 4-gram
-- overlap (also in `overall`). Null for generations finished before this migration, failed
-- ones and unfinished ones.
alter table generations add column quality jsonb;

-- datasets.quality: the corpus's own figures (poet_core::quality::Quality as JSON), computed
-- from the stored text the first time a generation of one of its runs needs them. A ready
-- dataset version is immutable, so they never go stale.
alter table datasets add column quality jsonb;
