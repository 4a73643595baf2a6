use super::*;

#[test]
fn the_reserve_enables_memory_sets_min_then_moves_pid1() {
    let p = reserve_plan(16384);
    let files: Vec<&str> = p.iter().map(|(f, _)| *f).collect();
    assert_eq!(files, ["cgroup.subtree_control", "host/memory.min", "host/cgroup.procs"]);
    assert_eq!(p[1].1, (16u64 << 20).to_string());
    assert_eq!(reserve_plan(0).len(), 2);
}
