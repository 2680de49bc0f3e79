//! Ranking of emitted rows.

use crate::subgraph::Subgraph;

/// Sorts by score (ties: fewer alerts to read first, then id) and numbers the ranks from 1.
pub fn rank(subgraphs: &mut [Subgraph]) {
    // Sort small keys, then move each row once (rows are large to swap).
    let mut order: Vec<usize> = (0..subgraphs.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&subgraphs[a], &subgraphs[b]);
        b.score
            .total_cmp(&a.score)
            .then(a.alert_count.cmp(&b.alert_count))
            .then(a.subgraph_id.cmp(&b.subgraph_id))
    });
    // Apply the permutation in place, cycle by cycle: position i takes row order[i].
    for start in 0..order.len() {
        let mut i = start;
        while order[i] != start {
            let next = order[i];
            subgraphs.swap(i, next);
            order[i] = i;
            i = next;
        }
        order[i] = i;
    }
    for (i, s) in subgraphs.iter_mut().enumerate() {
        s.rank = i as u32 + 1;
    }
}
