//! The compaction picker: a pure function from the shape of the LSM tree to the next compaction to run.
//!
//! It does no I/O and keeps no state, so every decision is unit-tested on hand-built [`LevelsView`]s.
//! Leveled compaction with three triggers, in priority order by score:
//!
//! 1. **L0 file count**: at `l0_compaction_trigger` files, all of L0 merges into L1 (L0 files overlap, so
//!    every read checks each of them).
//! 2. **Level size**: level `n >= 1` targets `level1_target_bytes * multiplier^(n-1)` bytes; the fullest
//!    level (by size / target) pushes one file into the next level, choosing the file whose overlap with
//!    the next level is smallest relative to its size (RocksDB's "min overlapping ratio", which minimises
//!    write amplification). Tombstone-heavy files count as larger so they are preferred.
//! 3. **Tombstone density**: when no level is over its target, a file whose tombstones reach
//!    `tombstone_ratio_trigger` of its entries is pushed down anyway. A queue workload (insert at one end,
//!    delete at the other) otherwise leaves its dead keys in a level that never fills, and every scan of the
//!    queue's head walks over them. Pushing the tombstones down makes them meet the puts they delete; at the
//!    bottommost level both disappear. Only levels 1 to last-1 are considered: L0 has its count trigger,
//!    and a last-level file is never picked, so the trigger cannot loop on tombstones a snapshot pins.

use crate::compaction::picker::CompactionReason::{L0FileCount, LevelSize, TombstoneDensity};

/// One SSTable as the picker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileInfo {
    /// File id.
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Smallest user key (including range tombstone starts).
    pub smallest_user_key: Vec<u8>,
    /// Largest user key (including range tombstone ends).
    pub largest_user_key: Vec<u8>,
    /// Point entries.
    pub entries: u64,
    /// Point plus range tombstones.
    pub tombstones: u64,
    /// Already an input or output of a running compaction.
    pub being_compacted: bool,
}

impl FileInfo {
    fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest_user_key.as_slice() <= hi && lo <= self.largest_user_key.as_slice()
    }

    fn tombstone_ratio(&self) -> f64 {
        self.tombstones as f64 / self.entries.max(1) as f64
    }
}

/// The tree's shape: `levels[0]` is L0 (newest file first, files may overlap); `levels[1..]` are sorted by
/// key and non-overlapping within a level.
#[derive(Debug, Clone, Copy)]
pub struct LevelsView<'a> {
    /// Files per level.
    pub levels: &'a [Vec<FileInfo>],
}

/// Tuning of the picker.
#[derive(Debug, Clone, PartialEq)]
pub struct PickerOptions {
    /// L0 file count that triggers an L0 -> L1 compaction. Default 4.
    pub l0_compaction_trigger: usize,
    /// Target size of L1 in bytes. Default 64 MiB.
    pub level1_target_bytes: u64,
    /// Each level's target is this many times the previous one's. Default 10.
    pub level_size_multiplier: u64,
    /// Number of levels including L0. Default 7.
    pub max_levels: usize,
    /// Tombstones per entry at which a file is compacted down regardless of level sizes. Default 0.5.
    pub tombstone_ratio_trigger: f64,
}

impl Default for PickerOptions {
    fn default() -> Self {
        PickerOptions {
            l0_compaction_trigger: 4,
            level1_target_bytes: 64 << 20,
            level_size_multiplier: 10,
            max_levels: 7,
            tombstone_ratio_trigger: 0.5,
        }
    }
}

/// Why a compaction was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionReason {
    /// L0 reached its file-count trigger.
    L0FileCount,
    /// The input level exceeds its size target.
    LevelSize,
    /// The input file is dense with tombstones. The job must rewrite it (never a trivial move), since the
    /// point is to drop what the tombstones delete.
    TombstoneDensity,
    /// Asked for by [`crate::Db::compact_all`], not picked.
    Manual,
}

/// One compaction to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionTask {
    /// Level the inputs come from.
    pub input_level: usize,
    /// Level the outputs go to.
    pub output_level: usize,
    /// Input files of `input_level` (for L0: oldest last, as in the view).
    pub inputs: Vec<u64>,
    /// Files of `output_level` overlapping the inputs; they are rewritten too.
    pub overlapping: Vec<u64>,
    /// No level below `output_level` overlaps the key range: tombstones can be dropped.
    pub bottommost: bool,
    /// Why.
    pub reason: CompactionReason,
}

/// Size target of level `level >= 1`.
fn target_bytes(opts: &PickerOptions, level: usize) -> u64 {
    let mut t = opts.level1_target_bytes.max(1);
    for _ in 1..level {
        t = t.saturating_mul(opts.level_size_multiplier.max(2));
    }
    t
}

fn level_bytes(files: &[FileInfo]) -> u64 {
    files.iter().map(|f| f.size).sum()
}

fn level<'a>(view: &LevelsView<'a>, i: usize) -> &'a [FileInfo] {
    view.levels.get(i).map_or(&[], Vec::as_slice)
}

/// Smallest and largest user key over `files`.
fn key_range<'f>(files: impl Iterator<Item = &'f FileInfo>) -> Option<(&'f [u8], &'f [u8])> {
    let mut range: Option<(&[u8], &[u8])> = None;
    for f in files {
        let (lo, hi) = (
            f.smallest_user_key.as_slice(),
            f.largest_user_key.as_slice(),
        );
        range = Some(match range {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
    range
}

/// Files of `level` overlapping `lo..=hi`; None if one of them is busy.
fn overlapping<'f>(files: &'f [FileInfo], lo: &[u8], hi: &[u8]) -> Option<Vec<&'f FileInfo>> {
    let out: Vec<&FileInfo> = files.iter().filter(|f| f.overlaps(lo, hi)).collect();
    out.iter().all(|f| !f.being_compacted).then_some(out)
}

/// Builds the task for moving `inputs` from `input_level` into the next level, or None if busy.
fn task_for(
    view: &LevelsView,
    opts: &PickerOptions,
    input_level: usize,
    inputs: &[&FileInfo],
    reason: CompactionReason,
) -> Option<CompactionTask> {
    let output_level = input_level + 1;
    if output_level >= opts.max_levels.max(2) || inputs.iter().any(|f| f.being_compacted) {
        return None;
    }
    let (lo, hi) = key_range(inputs.iter().copied())?;
    let over = overlapping(level(view, output_level), lo, hi)?;
    // The full range the outputs will span decides whether anything deeper could be shadowed.
    let (lo, hi) = key_range(inputs.iter().copied().chain(over.iter().copied()))?;
    let bottommost = (output_level + 1..view.levels.len())
        .all(|l| level(view, l).iter().all(|f| !f.overlaps(lo, hi)));
    Some(CompactionTask {
        input_level,
        output_level,
        inputs: inputs.iter().map(|f| f.id).collect(),
        overlapping: over.iter().map(|f| f.id).collect(),
        bottommost,
        reason,
    })
}

/// Picks one file of `level` to push down: the smallest next-level overlap per (tombstone-weighted) byte.
fn pick_file_in_level(
    view: &LevelsView,
    opts: &PickerOptions,
    lvl: usize,
    reason: CompactionReason,
    eligible: impl Fn(&FileInfo) -> bool,
) -> Option<CompactionTask> {
    let next = level(view, lvl + 1);
    let mut best: Option<(f64, CompactionTask)> = None;
    for f in level(view, lvl)
        .iter()
        .filter(|f| !f.being_compacted && eligible(f))
    {
        let Some(task) = task_for(view, opts, lvl, &[f], reason) else {
            continue;
        };
        let overlap: u64 = next
            .iter()
            .filter(|o| task.overlapping.contains(&o.id))
            .map(|o| o.size)
            .sum();
        let weighted = f.size.max(1) as f64 * (1.0 + f.tombstone_ratio().min(1.0));
        let mut score = overlap as f64 / weighted;
        if reason == TombstoneDensity {
            // Densest first; overlap only breaks ties.
            score = -f.tombstone_ratio() + score * 1e-9;
        }
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, task));
        }
    }
    best.map(|(_, t)| t)
}

/// Decides the next compaction, or None when the tree is within all its targets. Pure: no I/O.
pub fn pick(view: &LevelsView, opts: &PickerOptions) -> Option<CompactionTask> {
    let last_level = opts.max_levels.max(2) - 1;
    // Scores >= 1 mean "over target"; the highest wins.
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    let l0 = level(view, 0);
    if !l0.is_empty() && l0.len() >= opts.l0_compaction_trigger.max(1) {
        candidates.push((
            l0.len() as f64 / opts.l0_compaction_trigger.max(1) as f64,
            0,
        ));
    }
    for lvl in 1..last_level.min(view.levels.len()) {
        let score = level_bytes(level(view, lvl)) as f64 / target_bytes(opts, lvl) as f64;
        if score >= 1.0 {
            candidates.push((score, lvl));
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, lvl) in candidates {
        let task = if lvl == 0 {
            // L0 files overlap each other, so they go down together and only when none is busy.
            let inputs: Vec<&FileInfo> = l0.iter().collect();
            task_for(view, opts, 0, &inputs, L0FileCount)
        } else {
            pick_file_in_level(view, opts, lvl, LevelSize, |_| true)
        };
        if task.is_some() {
            return task;
        }
    }

    // Nothing is over target: look for tombstone-dense files above the last level, shallowest first
    // (they shadow the most data below them).
    let trigger = opts.tombstone_ratio_trigger;
    if trigger.is_finite() && trigger > 0.0 {
        // L0 is left to its file-count trigger: applying the density trigger there would turn every
        // delete-heavy flush into an L0 compaction.
        for lvl in 1..last_level.min(view.levels.len()) {
            let dense = |f: &FileInfo| f.tombstones > 0 && f.tombstone_ratio() >= trigger;
            if let Some(t) = pick_file_in_level(view, opts, lvl, TombstoneDensity, dense) {
                return Some(t);
            }
        }
    }
    None
}

/// Bytes that compaction must still rewrite to bring every level within its target (RocksDB's
/// "estimated pending compaction bytes"): the basis of write stalls and the compaction-debt metric.
pub fn compaction_debt_bytes(view: &LevelsView, opts: &PickerOptions) -> u64 {
    let last_level = opts.max_levels.max(2) - 1;
    let mut debt = 0u64;
    // Bytes arriving into the current level from compactions above it.
    let mut incoming = 0u64;
    let l0 = level(view, 0);
    if l0.len() >= opts.l0_compaction_trigger.max(1) {
        let l0_bytes = level_bytes(l0);
        // L0 -> L1 rewrites L0 plus all of L1 (L0 files usually span the key space).
        debt = debt.saturating_add(l0_bytes.saturating_add(level_bytes(level(view, 1))));
        incoming = l0_bytes;
    }
    for lvl in 1..last_level {
        let size = level_bytes(level(view, lvl)).saturating_add(incoming);
        let target = target_bytes(opts, lvl);
        if size <= target {
            break;
        }
        let excess = size - target;
        let this = level_bytes(level(view, lvl)).max(1);
        let next = level_bytes(level(view, lvl + 1));
        // Moving `excess` bytes down rewrites them plus their share of the next level.
        let fanout = (next as f64 / this as f64) + 1.0;
        debt = debt.saturating_add((excess as f64 * fanout) as u64);
        incoming = excess;
    }
    debt
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn file(id: u64, lo: &str, hi: &str, size: u64) -> FileInfo {
        FileInfo {
            id,
            size,
            smallest_user_key: lo.as_bytes().to_vec(),
            largest_user_key: hi.as_bytes().to_vec(),
            entries: 1000,
            tombstones: 0,
            being_compacted: false,
        }
    }

    fn opts() -> PickerOptions {
        PickerOptions {
            l0_compaction_trigger: 4,
            level1_target_bytes: 10 * MIB,
            level_size_multiplier: 10,
            max_levels: 4,
            tombstone_ratio_trigger: 0.5,
        }
    }

    #[test]
    fn empty_and_small_trees_pick_nothing() {
        let levels: Vec<Vec<FileInfo>> = vec![];
        assert_eq!(pick(&LevelsView { levels: &levels }, &opts()), None);
        let levels = vec![vec![file(1, "a", "z", MIB)], vec![file(2, "a", "m", MIB)]];
        let view = LevelsView { levels: &levels };
        assert_eq!(pick(&view, &opts()), None);
        assert_eq!(compaction_debt_bytes(&view, &opts()), 0);
    }

    #[test]
    fn l0_trigger_takes_all_l0_and_overlapping_l1() {
        let levels = vec![
            vec![
                file(10, "c", "f", MIB),
                file(11, "a", "d", MIB),
                file(12, "e", "g", MIB),
                file(13, "b", "c", MIB),
            ],
            vec![
                file(1, "a", "a", MIB),
                file(2, "b", "e", MIB),
                file(3, "h", "k", MIB),
            ],
            vec![file(4, "x", "z", MIB)],
        ];
        let t = pick(&LevelsView { levels: &levels }, &opts()).unwrap();
        assert_eq!(t.reason, L0FileCount);
        assert_eq!((t.input_level, t.output_level), (0, 1));
        assert_eq!(t.inputs, vec![10, 11, 12, 13]);
        assert_eq!(t.overlapping, vec![1, 2]);
        assert!(t.bottommost, "L2 only holds x..z, outside a..g");
        assert!(compaction_debt_bytes(&LevelsView { levels: &levels }, &opts()) >= 4 * MIB);
    }

    #[test]
    fn busy_files_block_their_compactions() {
        let mut l0: Vec<FileInfo> = (0..4).map(|i| file(10 + i, "a", "z", MIB)).collect();
        l0[2].being_compacted = true;
        let levels = vec![l0, vec![]];
        assert_eq!(pick(&LevelsView { levels: &levels }, &opts()), None);

        let mut l1 = file(1, "a", "m", MIB);
        l1.being_compacted = true;
        let levels = vec![
            (0..4).map(|i| file(10 + i, "a", "c", MIB)).collect(),
            vec![l1],
        ];
        assert_eq!(pick(&LevelsView { levels: &levels }, &opts()), None);
    }

    #[test]
    fn oversized_level_pushes_min_overlap_file() {
        // L1 holds 12 MiB against a 10 MiB target; file 2 overlaps nothing in L2, file 1 overlaps a lot.
        let levels = vec![
            vec![],
            vec![file(1, "a", "f", 6 * MIB), file(2, "g", "m", 6 * MIB)],
            vec![file(5, "a", "c", 30 * MIB), file(6, "n", "z", 30 * MIB)],
        ];
        let view = LevelsView { levels: &levels };
        let t = pick(&view, &opts()).unwrap();
        assert_eq!(t.reason, LevelSize);
        assert_eq!((t.input_level, t.output_level), (1, 2));
        assert_eq!(t.inputs, vec![2]);
        assert!(t.overlapping.is_empty());
        assert!(t.bottommost);
        assert!(compaction_debt_bytes(&view, &opts()) >= 2 * MIB);
    }

    #[test]
    fn highest_score_wins() {
        // L0 at 5/4 = 1.25; L2 at 300/100 = 3.0.
        let levels = vec![
            (0..5).map(|i| file(10 + i, "a", "b", MIB)).collect(),
            vec![file(1, "a", "b", MIB)],
            vec![file(2, "a", "k", 150 * MIB), file(3, "l", "z", 150 * MIB)],
            vec![file(4, "a", "z", MIB)],
        ];
        let t = pick(&LevelsView { levels: &levels }, &opts()).unwrap();
        assert_eq!((t.input_level, t.reason), (2, LevelSize));
        assert!(!t.bottommost || t.output_level == 3);
    }

    #[test]
    fn last_level_is_never_an_input() {
        let levels = vec![
            vec![],
            vec![],
            vec![],
            vec![file(1, "a", "z", 100_000 * MIB)],
        ];
        assert_eq!(pick(&LevelsView { levels: &levels }, &opts()), None);
    }

    #[test]
    fn queue_tombstones_are_pushed_down_and_dropped() {
        // A queue: the head (keys a..c) was deleted; the tombstones sit in L1 above the puts in L2, and no
        // level is over its size target.
        let mut dead = file(1, "a", "c", MIB);
        dead.tombstones = 900;
        let live = file(2, "d", "f", MIB);
        let levels = vec![
            vec![],
            vec![dead, live],
            vec![file(3, "a", "c", 2 * MIB), file(4, "d", "f", 2 * MIB)],
        ];
        let t = pick(&LevelsView { levels: &levels }, &opts()).unwrap();
        assert_eq!(t.reason, TombstoneDensity);
        assert_eq!((t.input_level, t.output_level), (1, 2));
        assert_eq!(t.inputs, vec![1]);
        assert_eq!(t.overlapping, vec![3]);
        assert!(t.bottommost);
    }

    #[test]
    fn range_tombstone_only_file_counts_as_dense() {
        let mut rt = file(1, "a", "m", 4096);
        rt.entries = 0;
        rt.tombstones = 1;
        let levels = vec![vec![], vec![rt.clone()], vec![file(2, "a", "z", MIB)]];
        let t = pick(&LevelsView { levels: &levels }, &opts()).unwrap();
        assert_eq!((t.input_level, t.reason), (1, TombstoneDensity));
        assert_eq!(t.overlapping, vec![2]);
        // In L0 the file waits for the file-count trigger.
        let levels = vec![vec![rt], vec![file(2, "a", "z", MIB)]];
        assert_eq!(pick(&LevelsView { levels: &levels }, &opts()), None);
    }

    #[test]
    fn tombstones_in_the_last_level_do_not_loop() {
        let mut f = file(1, "a", "z", MIB);
        f.tombstones = 1000;
        let levels = vec![vec![], vec![], vec![], vec![f]];
        assert_eq!(pick(&LevelsView { levels: &levels }, &opts()), None);
        let mut o = opts();
        o.tombstone_ratio_trigger = 0.0;
        let mut f = file(1, "a", "z", MIB);
        f.tombstones = 1000;
        let levels = vec![vec![], vec![f]];
        assert_eq!(
            pick(&LevelsView { levels: &levels }, &o),
            None,
            "0 disables the trigger"
        );
    }

    #[test]
    fn bottommost_false_when_deeper_level_overlaps() {
        let mut dead = file(1, "a", "c", MIB);
        dead.tombstones = 900;
        let levels = vec![vec![], vec![dead], vec![], vec![file(9, "b", "b", MIB)]];
        let t = pick(&LevelsView { levels: &levels }, &opts()).unwrap();
        assert_eq!(t.output_level, 2);
        assert!(!t.bottommost);
    }

    #[test]
    fn debt_grows_with_excess() {
        let small = vec![
            vec![],
            vec![file(1, "a", "z", 11 * MIB)],
            vec![file(2, "a", "z", 50 * MIB)],
        ];
        let big = vec![
            vec![],
            vec![file(1, "a", "z", 40 * MIB)],
            vec![file(2, "a", "z", 50 * MIB)],
        ];
        let d1 = compaction_debt_bytes(&LevelsView { levels: &small }, &opts());
        let d2 = compaction_debt_bytes(&LevelsView { levels: &big }, &opts());
        assert!(d1 > 0 && d2 > d1, "{d1} {d2}");
    }
}
