//! `memory::retain_freed_memory` in a process of its own (`harness = false`: `main` runs on the
//! main thread before any other thread exists, as in `poet-worker`).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    const SIZE: usize = 64 << 20;
    let pages = (SIZE / 4096) as u64;

    // Minor page faults of the calling thread so far (`/proc/thread-self/stat`, field 10).
    fn thread_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) is parenthesised and may hold spaces: count after it.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(7).unwrap().parse().unwrap()
    }
    // Allocates 64 MB, writes one byte per page, frees it; returns the faults it cost.
    fn cycle() -> u64 {
        let before = thread_faults();
        let mut v = vec![0u8; SIZE];
        for i in (0..SIZE).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&v);
        drop(v);
        thread_faults() - before
    }

    cycle();
    let default = cycle();
    // With transparent huge pages on for every mapping (`always`), a fresh 64 MB block costs
    // a few dozen faults and there is little to win; then the policy must only not be worse.
    let small_pages = default > pages / 2;
    let bound = if small_pages {
        pages / 20
    } else {
        default.max(64)
    };
    if !small_pages {
        println!("memory: {default} faults per fresh 64 MB block (huge pages?): weak check only");
    }
    assert!(poet_worker::memory::retain_freed_memory());
    cycle(); // grows the heap once
    let main_again = cycle();
    assert!(
        main_again < bound,
        "main thread: the second cycle reused the heap: {main_again} faults for {pages} pages \
         (glibc's default: {default})"
    );
    // A thread started later (the agent's training thread) shares that heap.
    let thread_again = std::thread::spawn(|| {
        cycle();
        cycle()
    })
    .join()
    .unwrap();
    assert!(
        thread_again < bound,
        "new thread: {thread_again} faults for {pages} pages (glibc's default: {default})"
    );
    println!(
        "memory: default {default}, retained {main_again} (main) / {thread_again} (thread) faults per 64 MB cycle of {pages} pages: ok"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    assert!(!poet_worker::memory::retain_freed_memory());
}
