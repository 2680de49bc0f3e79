//! Ranking of emitted rows.

use crate::subgraph::Subgraph;

/// Sorts by score (ties: fewer alerts to read first, then id) and numbers the ranks from 1.
pub fn rank(subgraphs: &mut [Subgraph]) {
    // Sort small keys side by side (no row read per comparison), then move each row once (rows
    // are large to swap). Ids differ between rows, so the order is total.
    let mut keys: Vec<(std::cmp::Reverse<u64>, u32, &str, usize)> = subgraphs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                std::cmp::Reverse(total_order_bits(s.score)),
                s.alert_count,
                s.subgraph_id.as_str(),
                i,
            )
        })
        .collect();
    keys.sort_unstable();
    let mut order: Vec<usize> = keys.into_iter().map(|k| k.3).collect();
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

/// Bits of `x` that sort as [`f64::total_cmp`] orders the values.
fn total_order_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

#[cfg(test)]
mod tests {
    use super::total_order_bits;

    #[test]
    fn score_bits_sort_as_total_cmp() {
        let mut xs = [
            f64::NAN,
            f64::INFINITY,
            3.5,
            1e-300,
            0.0,
            -0.0,
            -1e-300,
            -2.0,
            f64::NEG_INFINITY,
            -f64::NAN,
        ];
        let mut by_bits = xs;
        xs.sort_by(f64::total_cmp);
        by_bits.sort_by_key(|&x| total_order_bits(x));
        assert_eq!(xs.map(f64::to_bits), by_bits.map(f64::to_bits));
    }
}
