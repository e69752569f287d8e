# Shared by the poems benchmarks (run.sh, vs_reference.sh, vocab.sh); sourced, not run.
#
# Each plans poet's epochs and cosine decay for the rate training will get on this machine as
# loaded now: a calibration run of the same config, two epochs of 5 batches, whose second
# (warm) epoch's rate counts. The first pays libtorch's warm-up (one-off allocations and
# kernel choices), which made a 3-batch calibration read 641 chars/s where training then ran
# several times faster.

# calibration_config < CONFIG > CALIBRATION: the config cut to the calibration run.
calibration_config() {
  sed -e 's/^epochs = .*/epochs = 2/' -e 's/^max_batches = .*/max_batches = 5/'
}

# last_rate < LOG: the chars/s of the last epoch line of a `poet-worker train` log.
last_rate() {
  awk '/^epoch/ {r = $10} END {print r}'
}
